FERRY_WAIT_TIMEOUT=${FERRY_WAIT_TIMEOUT:-3600}
FERRY_POLL=${FERRY_POLL:-5}
# Longest a single command may take (seconds): a cluster or cloud that stops
# answering fails the step instead of hanging the script.
FERRY_CMD_TIMEOUT=${FERRY_CMD_TIMEOUT:-300}
ERR=$(mktemp)
trap 'rm -f "$ERR"' EXIT

USERS=
say() { printf '%s\n' "ferry $ROLE: $*" >&2; }
die() { say "error: $*"; exit 1; }

# bounded CMD ARG...: runs CMD, killed after FERRY_CMD_TIMEOUT seconds
# (status 124, said on stderr).
bounded() {
  rc=0
  timeout "$FERRY_CMD_TIMEOUT" "$@" || rc=$?
  [ "$rc" -ne 124 ] || printf '%s\n' "no answer in $FERRY_CMD_TIMEOUT s (FERRY_CMD_TIMEOUT)" >&2
  return "$rc"
}

# wait_for WHAT CHECK [ARG...]: polls CHECK until it holds; exit 2 after
# FERRY_WAIT_TIMEOUT seconds (run the script again later).
wait_for() {
  what=$1
  shift
  if "$@"; then return 0; fi
  say "waiting for $what (up to $FERRY_WAIT_TIMEOUT s)${USERS:+; in use: $(printf '%s' "$USERS" | tr '\n' ';')}"
  waited=0
  while ! "$@"; do
    if [ "$waited" -ge "$FERRY_WAIT_TIMEOUT" ]; then
      say "gave up after $waited s waiting for $what${USERS:+ (in use: $(printf '%s' "$USERS" | tr '\n' ';'))}; nothing was changed by this step; run this script again later"
      exit 2
    fi
    sleep "$FERRY_POLL"
    waited=$((waited + FERRY_POLL))
  done
}

begin() { say "step $1 ($2): $3"; }
skip() { say "step $1 ($2): done already$3"; }
finish() { say "step $1 ($2): done"; }
