# shellcheck shell=bash
# Helpers shared by the test environment's scripts (sourced, not run).

log() { printf 'testenv: %s\n' "$*" >&2; }
die() { printf 'testenv: error: %s\n' "$*" >&2; exit 1; }

# Waits until a probe says ready, for at most $1 seconds: wait_for SECS WHAT PROBE [ARGS...].
# The probe returns 0 when ready, 1 when not yet, and anything else when it
# can never become ready (a terminal state such as a volume in `error`); its
# last line of output says what it saw, and goes into the error message.
# Nothing in the test environment waits without a deadline.
wait_for() {
  local secs=$1 what=$2 deadline out rc; shift 2
  deadline=$((SECONDS + secs))
  while :; do
    rc=0; out=$("$@" 2>&1) || rc=$?
    [ "$rc" -eq 0 ] && return 0
    out=$(printf '%s' "$out" | tail -n 1)
    [ "$rc" -eq 1 ] || die "$what failed: ${out:-no detail}"
    [ $SECONDS -lt $deadline ] || die "$what not ready after $secs s${out:+: $out}"
    sleep "${WAIT_POLL:-1}"
  done
}

# Runs a command without the file descriptors its caller inherited beyond
# stdin, stdout and stderr. Daemons are started through it: one that kept
# the lock file tests run under (`flock -s /tmp/ferry-testenv.lock cargo
# test ...`, whose descriptor every child inherits) would hold that lock
# for as long as it lives, and no test could ever take it exclusively.
# It execs: call it in a subshell.
without_inherited_fds() {
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ] && [ "$fd" -lt 255 ]; then eval "exec $fd>&-"; fi
  done
  exec "$@"
}

# A pid file names a live process. Not only `kill -0`: that also succeeds
# for a thread id, and after a reboot a stale pid file can name a thread of
# another daemon (a stopped OSD then counts as running).
pid_alive() {
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null && [ "$(awk '$1 == "Tgid:" {print $2}' "/proc/$pid/status" 2>/dev/null)" = "$pid" ]
}

# Whether the testenv runs compute (Nova, Placement, Neutron, libvirt) in
# both clouds: see ceph-testenv/nova.
nova_wanted() { [ "${FERRY_TESTENV_OPENSTACK:-1}" != 0 ] && [ "${FERRY_TESTENV_NOVA:-1}" != 0 ]; }

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

# --- OpenStack as a clouds.yaml user (demo fixtures, checks) -----------------

# login CLOUD: a Keystone token and the Cinder, Glance and (empty without
# one) compute endpoints of a clouds.yaml entry ($OS_CLIENT_CONFIG_FILE) in
# TOKEN, CINDER, GLANCE and NOVA.
login() {
  local cloud=$1 hdr auth_url region body
  { read -r auth_url; read -r region; read -r body; } < <(/usr/bin/python3 - "$cloud" "$OS_CLIENT_CONFIG_FILE" <<'PY'
import json, sys, yaml
c = yaml.safe_load(open(sys.argv[2]))["clouds"][sys.argv[1]]
a = c["auth"]
print(a["auth_url"])
print(c["region_name"])
print(json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": {
    "name": a["username"], "domain": {"name": a["user_domain_name"]}, "password": a["password"]}}},
    "scope": {"project": {"name": a["project_name"], "domain": {"name": a["project_domain_name"]}}}}}))
PY
)
  hdr=$(mktemp)
  curl -sf --max-time 30 -D "$hdr" -o "$hdr.json" -H 'Content-Type: application/json' "$auth_url/auth/tokens" -d "$body" ||
    { rm -f "$hdr" "$hdr.json"; die "cannot log in to cloud $cloud at $auth_url"; }
  TOKEN=$(awk -F': ' 'tolower($1) == "x-subject-token" {print $2}' "$hdr" | tr -d '\r')
  CINDER=$(jq -r --arg r "$region" '.token.catalog[] | select(.type == "volumev3") | .endpoints[] | select(.interface == "public" and .region_id == $r) | .url' "$hdr.json")
  # shellcheck disable=SC2034 # read by the scripts that source this file
  GLANCE=$(jq -r --arg r "$region" '.token.catalog[] | select(.type == "image") | .endpoints[] | select(.interface == "public" and .region_id == $r) | .url' "$hdr.json")
  # shellcheck disable=SC2034 # read by the scripts that source this file
  NOVA=$(jq -r --arg r "$region" '.token.catalog[] | select(.type == "compute") | .endpoints[] | select(.interface == "public" and .region_id == $r) | .url' "$hdr.json")
  rm -f "$hdr" "$hdr.json"
}

# api METHOD URL [curl args]: one authenticated call, bounded in time.
api() { local m=$1 url=$2; shift 2; curl -sf --max-time 60 -X "$m" -H "X-Auth-Token: $TOKEN" -H 'Content-Type: application/json' "$url" "$@"; }

# Why Cinder put a volume in error: its user messages (the scheduler's "No
# valid backend" and the like), newest first.
volume_messages() {
  api GET "$CINDER/messages?resource_uuid=$1" -H 'OpenStack-API-Version: volume 3.3' 2>/dev/null |
    jq -r '[.messages[] | "\(.event_id): \(.user_message)"] | join("; ")' 2>/dev/null || true
}

# Probe for wait_for: the volume is available (0), still on its way (1), or
# in a state it will not leave by itself (3), saying which and why.
volume_probe() {
  local id=$1 st
  st=$(api GET "$CINDER/volumes/$id" | jq -r .volume.status) || { echo "cannot read volume $id"; return 1; }
  case $st in
    available) return 0 ;;
    creating|downloading|uploading|extending|retyping|maintenance) echo "volume $id is $st"; return 1 ;;
    *) echo "volume $id is $st${st:+ }$(volume_messages "$id")"; return 3 ;;
  esac
}

volume_gone() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 30 -H "X-Auth-Token: $TOKEN" "$CINDER/volumes/$1")
  [ "$code" = 404 ] && return 0
  echo "volume $1 still there (HTTP $code)"
  return 1
}

# volume_ensure NAME BODY: the id of the available volume NAME in the cloud
# logged in; made from BODY (the JSON of POST /volumes) when missing, and made
# anew when found in any state but available (a fixture left by a failed run).
# Waits at most FERRY_WAIT_TIMEOUT seconds (default 180) for each change.
volume_ensure() {
  local name=$1 body=$2 id st secs=${FERRY_WAIT_TIMEOUT:-180}
  id=$(api GET "$CINDER/volumes/detail?name=$name" | jq -r '.volumes[0].id // empty')
  if [ -n "$id" ]; then
    st=$(api GET "$CINDER/volumes/$id" | jq -r .volume.status)
    [ "$st" = available ] && { echo "$id"; return; }
    log "volume $name ($id) is $st: removing it and making it anew"
    api POST "$CINDER/volumes/$id/action" -d '{"os-reset_status": {"status": "error"}}' >/dev/null 2>&1 || true
    api DELETE "$CINDER/volumes/$id" >/dev/null || die "cannot delete volume $name ($id), status $st"
    wait_for "$secs" "removal of volume $name ($id)" volume_gone "$id"
  fi
  id=$(api POST "$CINDER/volumes" -d "$body" | jq -r .volume.id) || die "Cinder refused to create volume $name"
  wait_for "$secs" "volume $name ($id)" volume_probe "$id"
  echo "$id"
}

# --- Servers (demo and bench): the test guest of ceph-testenv/guest --------

# nova METHOD URL [curl args]: a compute API call (microversion 2.52).
nova() { api "$@" -H 'OpenStack-API-Version: compute 2.52'; }
server_status() { nova GET "$NOVA/servers/$1" | jq -r .server.status; }
# Probes for wait_for.
server_up() {
  case $(server_status "$1") in ACTIVE) return 0 ;; ERROR) echo "server $1 went to ERROR"; return 2 ;; *) return 1 ;; esac
}
server_gone() { ! nova GET "$NOVA/servers/$1" >/dev/null 2>&1; }
# The guest's console lines (ferry-guest: ...): through Nova while the
# server runs; a stopped server's from the log libvirt kept (Nova gives
# nothing for it).
guest_lines() {
  local out
  # A stopped server's: Nova answers 409.
  out=$(nova POST "$NOVA/servers/$1/action" -d '{"os-getConsoleOutput": {"length": 200}}' 2>/dev/null |
    jq -r '.output // empty' 2>/dev/null || true)
  [ -n "$out" ] || out=$(cat "$DIR"/openstack/nova-site-?/instances/"$1"/console.log 2>/dev/null || true)
  printf '%s\n' "$out" | tr -d '\r' | grep '^ferry-guest:' || true
}
guest_wrote() { [ "$(guest_lines "$1" | grep -c ' wrote ')" -ge "$2" ]; }
guest_booted() { guest_lines "$1" | grep -q 'boot, last counter'; }

# clear_servers NAME_RE VOLUME_RE: removes the logged-in cloud's servers and
# volumes whose names match (what an earlier demo or bench left).
clear_servers() {
  local id
  for id in $(nova GET "$NOVA/servers?name=$1" | jq -r '.servers[].id'); do
    nova DELETE "$NOVA/servers/$id" >/dev/null
    wait_for 300 "removal of server $id" server_gone "$id"
  done
  for id in $(api GET "$CINDER/volumes/detail" | jq -r --arg re "$2" '.volumes[] | select(.name // "" | test($re)) | .id'); do
    api DELETE "$CINDER/volumes/$id" >/dev/null || true
    wait_for 300 "removal of volume $id" volume_gone "$id"
  done
}

# guest_server NAME BOOT DATA: a server of the logged-in cloud (flavor
# ferry.tiny, no network) booted from volume BOOT with DATA attached; waits
# until its guest has written; prints its id.
guest_server() {
  local flavor id
  flavor=$(nova GET "$NOVA/flavors" | jq -r '.flavors[] | select(.name == "ferry.tiny") | .id')
  id=$(nova POST "$NOVA/servers" -d "$(jq -n --arg n "$1" --arg f "$flavor" --arg b "$2" --arg d "$3" '{server: {name: $n,
    flavorRef: $f, networks: "none", block_device_mapping_v2: [
    {uuid: $b, source_type: "volume", destination_type: "volume", boot_index: 0, delete_on_termination: false},
    {uuid: $d, source_type: "volume", destination_type: "volume", boot_index: -1, delete_on_termination: false}]}}')" |
    jq -r .server.id)
  wait_for 300 "server $1 ($id) to be ACTIVE" server_up "$id"
  wait_for 300 "the guest of server $1 to write" guest_wrote "$id" 3
  echo "$id"
}
