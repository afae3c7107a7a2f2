FERRY_WAIT_TIMEOUT=${FERRY_WAIT_TIMEOUT:-3600}
FERRY_POLL=${FERRY_POLL:-5}
ERR=$(mktemp)
trap 'rm -f "$ERR"' EXIT

USERS=
say() { printf '%s\n' "ferry $ROLE: $*" >&2; }
die() { say "error: $*"; exit 1; }

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
