# shellcheck shell=bash
# Helpers shared by the test environment's scripts (sourced, not run).

log() { printf 'testenv: %s\n' "$*" >&2; }
die() { printf 'testenv: error: %s\n' "$*" >&2; exit 1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stops one daemon: SIGTERM, then SIGKILL after a timeout (rbd-mirror may
# ignore SIGTERM once its remote is gone).
kill_pidfile() {
  local f=$1 pid deadline=$((SECONDS + 30))
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid ($(basename "$f" .pid)) ignored SIGTERM, killing"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# Installs the Debian packages named in the arguments that are missing;
# a first argument --no-recommends leaves recommended packages out.
apt_install() {
  local missing=() p opts=()
  if [ "${1:-}" = --no-recommends ]; then opts=(--no-install-recommends); shift; fi
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then log "packages present"; return; fi
  log "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${opts[@]}" "${missing[@]}" >/dev/null
}
