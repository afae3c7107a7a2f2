# rbdq ARG...: runs rbd, output in OUT; 0: found, 1: not found (ENOENT),
# any other failure stops the script.
rbdq() {
  OUT=$(rbd "$@" 2>"$ERR") && return 0
  rc=$?
  [ "$rc" -eq 2 ] && return 1
  die "rbd $*: $(cat "$ERR")"
}

# rbdw ARG...: runs an rbd command that changes something.
rbdw() {
  rbd "$@" >/dev/null 2>"$ERR" || die "rbd $*: $(cat "$ERR")"
}

image_exists() { rbdq info --format json "$1"; }
image_absent() { ! image_exists "$1"; }

# snap_id IMAGE SNAP: the snapshot's id in SNAP_ID; OUT keeps the list.
snap_id() {
  rbdq snap ls --all --format json "$1" || return 1
  SNAP_ID=$(printf '%s' "$OUT" | jq -r --arg s "$2" 'map(select(.name == $s))[0].id // empty')
  [ -n "$SNAP_ID" ]
}
snap_exists() { snap_id "$1" "$2"; }
snap_absent() { ! snap_id "$1" "$2"; }
snap_protected() {
  rbdq info --format json "$1@$2" || return 1
  [ "$(printf '%s' "$OUT" | jq -r .protected)" = true ]
}

# meta IMAGE KEY: the value in OUT; 1 when the image or key is missing.
meta() { rbdq image-meta get "$1" "$2"; }
meta_present() { meta "$1" "$2"; }
meta_absent() { ! meta "$1" "$2"; }

# features_are IMAGE true|false FEATURE...: every FEATURE is on (true) or off.
features_are() {
  img=$1
  want=$2
  shift 2
  rbdq info --format json "$img" || return 1
  for f in "$@"; do
    [ "$(printf '%s' "$OUT" | jq --arg f "$f" '.features | index($f) != null')" = "$want" ] || return 1
  done
}
has_features() {
  img=$1
  shift
  features_are "$img" true "$@"
}
lacks_features() {
  img=$1
  shift
  features_are "$img" false "$@"
}
feature_on() { has_features "$1" "$2"; }

mirroring_enabled() {
  rbdq info --format json "$1" || return 1
  [ "$(printf '%s' "$OUT" | jq -r '(.mirroring.state // "disabled") + " " + (.mirroring.mode // "")')" = "enabled $2" ]
}
mirroring_disabled() {
  rbdq info --format json "$1" || return 1
  [ "$(printf '%s' "$OUT" | jq -r '.mirroring.state // "disabled"')" = disabled ]
}

# not_in_use IMAGE: no watchers but the peers' rbd-mirror daemons, which
# watch a snapshot-mirrored primary.
not_in_use() {
  rbdq status --format json "$1" || return 1
  watchers=$(printf '%s' "$OUT" | jq '.watchers | length')
  rbdq info --format json "$1" || return 1
  allowed=0
  if [ "$(printf '%s' "$OUT" | jq -r '"\(.mirroring.state) \(.mirroring.mode) \(.mirroring.primary)"')" = "enabled snapshot true" ]; then
    rbdq mirror pool info --format json "${1%%/*}" || return 1
    allowed=$(printf '%s' "$OUT" | jq '[.peers[]? | select(.direction != "rx-only")] | length')
  fi
  [ "$watchers" -le "$allowed" ]
}

# mirror_snapshot_after IMAGE SNAP: a primary mirror snapshot taken after
# SNAP carries it to the peers.
mirror_snapshot_after() {
  snap_id "$1" "$2" || return 1
  printf '%s' "$OUT" | jq -e --argjson c "$SNAP_ID" \
    'any(.[]; .namespace.type == "mirror" and .namespace.state == "primary" and .id > $c)' >/dev/null
}

# mirror_synced_snapshot IMAGE SNAP: SNAP has arrived, and a complete mirror
# snapshot after it.
mirror_synced_snapshot() {
  snap_id "$1" "$2" || return 1
  printf '%s' "$OUT" | jq -e --argjson c "$SNAP_ID" \
    'any(.[]; .namespace.type == "mirror" and .namespace.complete == true and .id > $c)' >/dev/null
}

# mirror_synced_journal IMAGE SNAP: SNAP has arrived and a status written
# after it says replaying (an initial sync creates the snapshot before it
# copies the data).
mirror_synced_journal() {
  snap_id "$1" "$2" || return 1
  taken=$(printf '%s' "$OUT" | jq -r --arg s "$2" 'map(select(.name == $s))[0].timestamp')
  rbdq mirror image status --format json "$1" || return 1
  state=$(printf '%s' "$OUT" | jq -r '.state')
  updated=$(printf '%s' "$OUT" | jq -r '.last_update')
  [ "${state#*+}" = replaying ] || return 1
  [ -n "$updated" ] || return 1
  [ "$(date -d "$updated" +%s)" -gt "$(date -d "$taken" +%s)" ]
}

# image_digest IMAGE[@SNAP]: the image's digest in SUM, as ferry computes
# it: SHA-256 over the lines "<SHA-256 hex of each 4 MiB chunk>\n" (the last
# chunk shorter), in order. split runs one sha256sum per chunk, one after
# the other.
image_digest() {
  say "reading $1 for its digest"
  SUM=$(rbd export --no-progress "$1" - 2>"$ERR" |
    split -b 4M --filter sha256sum | cut -c1-64 | sha256sum | cut -c1-64)
  [ -s "$ERR" ] && die "rbd export $1: $(cat "$ERR")"
  [ "${#SUM}" -eq 64 ] || die "no digest of $1"
}
