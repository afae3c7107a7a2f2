RC=$(mktemp)
# rbd's options for the cluster images are read from (a direct transfer
# reads the source cluster): empty for this part's own cluster. rbdq and
# the exports of what is copied or hashed use them.
FROM_ARGS=

# from_source CMD ARG...: CMD reading the source cluster (a direct
# transfer's checks in the destination storage part).
from_source() {
  FROM_ARGS=${FERRY_SOURCE_CEPH_ARGS:?set FERRY_SOURCE_CEPH_ARGS to the rbd options for the source cluster, which a direct transfer reads}
  rc=0
  "$@" || rc=$?
  FROM_ARGS=
  return "$rc"
}
trap 'rm -f "$ERR" "$RC" "$RC".*' EXIT

# rbdq ARG...: runs rbd (on the cluster FROM_ARGS names), output in OUT;
# 0: found, 1: not found (ENOENT), any other failure stops the script.
rbdq() {
  # shellcheck disable=SC2086 # FROM_ARGS: words of options
  OUT=$(bounded rbd $FROM_ARGS "$@" 2>"$ERR") && return 0
  rc=$?
  [ "$rc" -eq 2 ] && return 1
  die "rbd $*: $(cat "$ERR")"
}

# rbdw ARG...: runs an rbd command that changes something.
rbdw() {
  bounded rbd "$@" >/dev/null 2>"$ERR" || die "rbd $*: $(cat "$ERR")"
}

# rbdl ARG...: runs an rbd command that reads or writes a whole image, so
# may rightly take hours: each cluster operation is bounded instead.
rbdl() {
  rbd --rados-mon-op-timeout "$FERRY_CMD_TIMEOUT" --rados-osd-op-timeout "$FERRY_CMD_TIMEOUT" "$@"
}
rbdwl() {
  rbdl "$@" >/dev/null 2>"$ERR" || die "rbd $*: $(cat "$ERR")"
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

# record_original IMAGE KEY RECORD: notes RECORD (what IMAGE is before the
# plan changes it) under KEY, unless it is there; another plan's record
# stops the script, as only one plan may move an image.
record_original() {
  rbdq image-meta list --format json "$1" || die "$1 does not exist"
  other=$(printf '%s' "$OUT" | jq -r --arg k "$2" \
    '[keys[] | select(startswith("ferry-plan-") and endswith(".original") and . != $k)] | first // empty') ||
    die "rbd image-meta list $1 gave no JSON object: $OUT"
  [ -z "$other" ] || die "$1 carries $other, the record of another plan: only one plan may move an image (finish or abandon that plan, then rbd image-meta remove $1 $other)"
  meta_present "$1" "$2" || rbdw image-meta set "$1" "$2" "$3"
}

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

# enable_journaling IMAGE [FEATURE...]: enables journaling; only should the
# cluster refuse it beside them (EINVAL), disables the FEATUREs first (in
# this order) and enables it again.
enable_journaling() {
  ej_image=$1
  shift
  feature_on "$ej_image" journaling && return 0
  bounded rbd feature enable "$ej_image" journaling >/dev/null 2>"$ERR" && return 0
  if [ $# -eq 0 ] || ! grep -q '(22)' "$ERR"; then
    die "rbd feature enable $ej_image journaling: $(cat "$ERR")"
  fi
  for f in "$@"; do
    if feature_on "$ej_image" "$f"; then
      say "the cluster refused journaling beside $f: disabling it"
      rbdw feature disable "$ej_image" "$f"
    fi
  done
  rbdw feature enable "$ej_image" journaling
}

mirroring_enabled() {
  rbdq info --format json "$1" || return 1
  [ "$(printf '%s' "$OUT" | jq -r '(.mirroring.state // "disabled") + " " + (.mirroring.mode // "")')" = "enabled $2" ]
}
mirroring_disabled() {
  rbdq info --format json "$1" || return 1
  [ "$(printf '%s' "$OUT" | jq -r '.mirroring.state // "disabled"')" = disabled ]
}

# image_users IMAGE: the clients using IMAGE, a line each, in USERS; the
# one rule ferry applies too (src/ceph/clients.rs): with exclusive-lock,
# the lock holders that still watch the image (writers; rbd-mirror never
# holds a primary's lock); without it, every watcher.
image_users() {
  rbdq info --format json "$1" || return 1
  locked=$(printf '%s' "$OUT" | jq '.features | index("exclusive-lock") != null')
  rbdq status --format json "$1" || return 1
  watchers=$OUT
  if [ "$locked" = true ]; then
    rbdq lock ls --format json "$1" || return 1
    USERS=$(printf '%s' "$OUT" | jq -r --argjson w "$watchers" '
      def norm: sub("^v[12]:"; "");
      ([$w.watchers // [] | .[] | .address | norm]) as $live
      | (if type == "array" then . else [to_entries[] | .value + {id: .key}] end)
      | .[] | select((.address | norm) as $a | $live | index($a))
      | "\(.locker) at \(.address) (holds the exclusive lock: it writes)"')
  else
    USERS=$(printf '%s' "$watchers" | jq -r '.watchers // [] | .[] |
      "client.\(.client) at \(.address) (has the image open, which has no exclusive-lock to tell writers apart)"')
  fi
}
not_in_use() {
  image_users "$1" || return 1
  [ -z "$USERS" ]
}

# unchanged_since IMAGE SNAP: nothing was written to IMAGE after SNAP (a
# discard or zeroing is a change too: rbd diff lists it as not existing).
unchanged_since() {
  rbdq diff --whole-object --from-snap "$2" --format json "$1" || return 1
  n=$(printf '%s' "$OUT" | jq 'length')
  [ "$n" -eq 0 ] && return 0
  say "$1: $n object(s) written or discarded after $2"
  return 1
}

# remove_image IMAGE: removes an image ferry made, with its snapshots
# (mirroring disabled first in an image-mode pool).
remove_image() {
  if rbdq mirror pool info --format json "${1%%/*}" &&
    [ "$(printf '%s' "$OUT" | jq -r .mode)" = image ] && ! mirroring_disabled "$1"; then
    rbdw mirror image disable "$1"
  fi
  rbdw snap purge "$1"
  rbdw rm --no-progress "$1"
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
# the other. POSIX sh has no pipefail: rbd's own status comes back through a
# file.
image_digest() {
  say "reading $1 for its digest"
  printf 'unknown' >"$RC"
  SUM=$({
    rc=0
    # shellcheck disable=SC2086 # FROM_ARGS: words of options
    rbdl $FROM_ARGS export --no-progress "$1" - 2>"$ERR" || rc=$?
    printf '%s' "$rc" >"$RC"
  } | split -b 4M --filter sha256sum | cut -c1-64 | sha256sum | cut -c1-64)
  [ "$(cat "$RC")" = 0 ] || die "rbd export $1 (status $(cat "$RC")): $(cat "$ERR")"
  [ "${#SUM}" -eq 64 ] || die "no digest of $1"
}

# The filter copy_onto_parent runs on each 4 MiB chunk of the source (split
# --filter, chunk number in $FILE): when the chunk's SHA-256 is not the
# parent's (line n+1 of $FERRY_HASHES), an rbd diff 'w' record of it on
# stdout (offset and length as 8 bytes little-endian), and its number in
# $FERRY_WRITTEN.
# shellcheck disable=SC2016
DIFF_FILTER='le64() {
  n=$1
  i=0
  while [ "$i" -lt 8 ]; do
    printf "\\$(printf "%03o" $((n % 256)))"
    n=$((n / 256))
    i=$((i + 1))
  done
}
k=$(expr "${FILE#x}" + 0)
t=$(mktemp)
cat >"$t"
len=$(wc -c <"$t" | tr -d " ")
want=$(sed -n "$((k + 1))p" "$FERRY_HASHES")
got=$(sha256sum <"$t" | cut -c1-64)
if [ "$got" != "$want" ]; then
  printf w
  le64 $((k * 4194304))
  le64 "$len"
  cat "$t"
  echo "$k" >>"$FERRY_WRITTEN"
fi
rm -f "$t"'

# copy_onto_parent FROM@SNAP PARENT@SNAP TO [--image-feature F]...: TO as
# a clone (format 2) of PARENT@SNAP, resized to FROM's size, with FROM's
# 4 MiB chunks written only where their SHA-256 differs from the parent's
# chunk (zeros too, so TO reads as FROM everywhere): one rbd diff stream
# (format v1) into rbd import-diff.
copy_onto_parent() {
  from=$1
  parent=$2
  to=$3
  shift 3
  rbdq info --format json "$from" || die "$from is gone"
  size=$(printf '%s' "$OUT" | jq -r .size)
  rbdw clone --rbd-default-clone-format 2 "$@" "$parent" "$to"
  rbdw resize --allow-shrink --no-progress --size "${size}B" "$to"
  printf 'unknown' >"$RC"
  {
    rc=0
    rbdl export --no-progress "$parent" - 2>"$ERR" || rc=$?
    printf '%s' "$rc" >"$RC"
  } | split -b 4M --filter sha256sum | cut -c1-64 >"$RC.hashes"
  [ "$(cat "$RC")" = 0 ] || die "rbd export $parent (status $(cat "$RC")): $(cat "$ERR")"
  : >"$RC.written"
  printf 'unknown' >"$RC"
  if ! {
    printf 'rbd diff v1\n'
    {
      rc=0
      # shellcheck disable=SC2086 # FROM_ARGS: words of options
      rbdl $FROM_ARGS export --no-progress "$from" - 2>"$ERR" || rc=$?
      printf '%s' "$rc" >"$RC"
    } | FERRY_HASHES="$RC.hashes" FERRY_WRITTEN="$RC.written" split -a 12 -d -b 4M --filter "$DIFF_FILTER"
    printf e
  } | rbdl import-diff --no-progress - "$to" 2>"$RC.import"; then
    die "rbd import-diff into $to: $(cat "$RC.import")"
  fi
  [ "$(cat "$RC")" = 0 ] || die "rbd export $from (status $(cat "$RC")): $(cat "$ERR")"
  say "$to: a clone of $parent; wrote $(wc -l <"$RC.written" | tr -d ' ') of $(((size + 4194303) / 4194304)) chunk(s), those that differ from the parent's"
}

# import_since FROM@SNAP TO [PREV]: what FROM changed from its snapshot
# PREV (the start, when none) to SNAP, written into TO, which holds FROM at
# PREV (rbd export-diff | rbd import-diff); TO then has the snapshot SNAP.
# Again after an interruption, it writes the same: TO ends the same.
import_since() {
  from=$1
  to=$2
  shift 2
  [ "$#" -gt 0 ] && set -- --from-snap "$1"
  printf 'unknown' >"$RC"
  if ! {
    rc=0
    # shellcheck disable=SC2086 # FROM_ARGS: words of options
    rbdl $FROM_ARGS export-diff --no-progress "$@" "$from" - 2>"$ERR" || rc=$?
    printf '%s' "$rc" >"$RC"
  } | rbdl import-diff --no-progress - "$to" 2>"$RC.import"; then
    die "rbd import-diff into $to: $(cat "$RC.import")"
  fi
  [ "$(cat "$RC")" = 0 ] || die "rbd export-diff $from (status $(cat "$RC")): $(cat "$ERR")"
}

# copy_flat FROM@SNAP TO [--image-feature F]...: TO, a new image holding
# FROM's data at SNAP, flat, holes kept (rbd export | rbd import). Not `rbd
# cp`: in Ceph 16.2 it leaves out the objects that only a clone's parent
# holds when it copies the clone at a snapshot.
copy_flat() {
  from=$1
  to=$2
  shift 2
  printf 'unknown' >"$RC"
  if ! {
    rc=0
    # shellcheck disable=SC2086 # FROM_ARGS: words of options
    rbdl $FROM_ARGS export --no-progress "$from" - 2>"$ERR" || rc=$?
    printf '%s' "$rc" >"$RC"
  } | rbdl import --no-progress "$@" - "$to" 2>"$RC.import"; then
    die "rbd import into $to: $(cat "$RC.import")"
  fi
  [ "$(cat "$RC")" = 0 ] || die "rbd export $from (status $(cat "$RC")): $(cat "$ERR")"
}
