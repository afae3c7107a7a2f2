BODY=$(mktemp)
HDR=$(mktemp)
chmod 600 "$HDR"
trap 'rm -f "$ERR" "$BODY" "$HDR"' EXIT
# Longest an HTTP request may take (seconds).
FERRY_HTTP_TIMEOUT=${FERRY_HTTP_TIMEOUT:-120}
TOKEN_AT=0

# osq ARG...: runs openstack, output in OUT; 0: found, 1: not found, any
# other failure stops the script.
osq() {
  OUT=$(bounded openstack "$@" 2>"$ERR") && return 0
  grep -qi 'no .* found\|no .* exists\|not found\|(HTTP 404)' "$ERR" && return 1
  die "openstack $*: $(cat "$ERR")"
}

# login: a token (kept in a 0600 file, never on a command line) and the
# endpoints of the cloud OS_CLOUD names, renewed every 30 minutes.
login() {
  now=$(date +%s)
  [ $((now - TOKEN_AT)) -lt 1800 ] && return 0
  osq token issue -f json || die "cannot log in to cloud ${OS_CLOUD:-(OS_* variables)}"
  printf 'X-Auth-Token: %s\n' "$(printf '%s' "$OUT" | jq -r .id)" >"$HDR"
  TOKEN_AT=$now
  osq configuration show -f json || die "cannot read the cloud's configuration"
  REGION=$(printf '%s' "$OUT" | jq -r '.region_name // empty')
  IFACE=$(printf '%s' "$OUT" | jq -r '.interface // "public"')
  CACERT=$(printf '%s' "$OUT" | jq -r '.cacert // empty')
  VERIFY=$(printf '%s' "$OUT" | jq -r '.verify // true')
  CINDER=$(endpoint volumev3)
  GLANCE=$(endpoint image)
}

# osw ARG...: runs an openstack command that changes something.
osw() {
  bounded openstack "$@" >/dev/null 2>"$ERR" || die "openstack $*: $(cat "$ERR")"
}

endpoint() {
  osq catalog show "$1" -f json || { printf ''; return 0; }
  printf '%s' "$OUT" | jq -r --arg r "$REGION" --arg i "$IFACE" \
    '[.endpoints[] | select(.interface == $i and ($r == "" or .region == $r or .region_id == $r))][0].url // empty' |
    sed 's:/*$::'
}

curl_() {
  if [ -n "$CACERT" ]; then set -- --cacert "$CACERT" "$@"; fi
  if [ "$VERIFY" = false ]; then set -- -k "$@"; fi
  curl -sS --connect-timeout 30 --max-time "$FERRY_HTTP_TIMEOUT" -H @"$HDR" -o "$BODY" -w '%{http_code}' "$@" 2>"$ERR"
}

# api_get URL [VOLUME MICROVERSION]: body in OUT, status in CODE.
api_get() {
  login
  CODE=$(curl_ -H "OpenStack-API-Version: volume ${2:-3.0}" "$1") || die "GET $1: $(cat "$ERR")"
  OUT=$(cat "$BODY")
}

# api_send METHOD URL BODY CONTENT-TYPE: body in OUT, status in CODE.
api_send() {
  login
  CODE=$(curl_ -X "$1" -H "Content-Type: $4" --data-binary "$3" "$2") || die "$1 $2: $(cat "$ERR")"
  OUT=$(cat "$BODY")
}

uri() { printf '%s' "$1" | jq -sRr @uri; }

need_cinder() { [ -n "$CINDER" ] || die "the cloud's catalog has no volumev3 endpoint${REGION:+ in region $REGION}"; }
need_glance() { [ -n "$GLANCE" ] || die "the cloud's catalog has no image endpoint${REGION:+ in region $REGION}"; }

# cinder_host POOL FSID: HOST is the backend pool storing in that RBD pool.
cinder_host() {
  need_cinder
  api_get "$CINDER/scheduler-stats/get_pools?detail=true"
  [ "$CODE" = 200 ] || die "listing Cinder's backend pools gave HTTP $CODE (the admin role is needed by default): $OUT"
  HOST=$(printf '%s' "$OUT" | jq -r --arg p "$1" --arg f "$2" \
    '[.pools[] | select((.capabilities.location_info // "") | split(":") | .[-1] == $p and ($f == "" or .[-3] == $f)) | .name] | if length == 1 then .[0] else empty end')
  [ -n "$HOST" ] || die "no single Cinder backend stores in RBD pool $1 (fsid ${2:-any})"
}

# manageable HOST NAME: Cinder lists the image NAME as manageable. The RBD
# driver opens every image of the pool for this list and answers 500 when
# one vanishes meanwhile (another volume deleted, as happens all the time
# while many are moved): asked again, with growing pauses, for about a minute.
# Pages of 1000 (Cinder's default osapi_max_limit): a full page is followed
# by another, from the last entry's reference as the marker.
manageable() {
  need_cinder
  page=""
  while :; do
    pause=2
    while :; do
      api_get "$CINDER/manageable_volumes?host=$(uri "$1")&limit=1000$page" 3.8
      if [ "$CODE" != 500 ] || [ "$pause" -gt 60 ]; then break; fi
      sleep "$pause"
      pause=$((pause * 2))
    done
    [ "$CODE" = 200 ] || die "listing manageable volumes gave HTTP $CODE: $OUT"
    printf '%s' "$OUT" | jq -e --arg n "$2" 'any(.["manageable-volumes"][]; .reference["source-name"] == $n)' >/dev/null && return 0
    n=$(printf '%s' "$OUT" | jq '.["manageable-volumes"] | length')
    [ "$n" -ge 1000 ] || return 1
    page="&marker=$(uri "$(printf '%s' "$OUT" | jq -c '.["manageable-volumes"][-1].reference')")"
  done
}

# volume_type_exists NAME: Cinder has a volume type named exactly NAME
# (read through the API: the openstack client's lookup by name misses names
# with quotes or newlines).
volume_type_exists() {
  need_cinder
  api_get "$CINDER/types"
  [ "$CODE" = 200 ] || die "listing volume types gave HTTP $CODE: $OUT"
  found=$(printf '%s' "$OUT" | jq --arg n "$1" 'any(.volume_types[]; .name == $n)') ||
    die "listing volume types gave no JSON list: $OUT"
  [ "$found" = true ]
}

# volume_named NAME: the project has a volume named exactly NAME.
volume_named() {
  need_cinder
  api_get "$CINDER/volumes?name=$(uri "$1")"
  [ "$CODE" = 200 ] || die "listing volumes gave HTTP $CODE: $OUT"
  found=$(printf '%s' "$OUT" | jq --arg n "$1" 'any(.volumes[]; .name == $n)') ||
    die "listing volumes gave no JSON list: $OUT"
  [ "$found" = true ]
}

# adopted SOURCE_ID: the destination volume carrying ferry_source_volume =
# SOURCE_ID, its id in VOL and status in VOL_STATUS.
adopted() {
  need_cinder
  api_get "$CINDER/volumes/detail?metadata=$(uri "$(jq -cn --arg s "$1" '{ferry_source_volume: $s}')")"
  [ "$CODE" = 200 ] || die "listing volumes gave HTTP $CODE: $OUT"
  n=$(printf '%s' "$OUT" | jq --arg s "$1" '[.volumes[] | select(.metadata.ferry_source_volume == $s)] | length')
  [ "$n" -le 1 ] || die "$n destination volumes carry ferry_source_volume=$1: keep one"
  VOL=$(printf '%s' "$OUT" | jq -r --arg s "$1" '[.volumes[] | select(.metadata.ferry_source_volume == $s)][0].id // empty')
  VOL_STATUS=$(printf '%s' "$OUT" | jq -r --arg s "$1" '[.volumes[] | select(.metadata.ferry_source_volume == $s)][0].status // empty')
  VOL_META=$(printf '%s' "$OUT" | jq -c --arg s "$1" '[.volumes[] | select(.metadata.ferry_source_volume == $s)][0].metadata // {}')
  [ -n "$VOL" ]
}
# A volume the stream path made is adopted once its pending mark is gone.
volume_adopted() {
  adopted "$1" && [ "$VOL_STATUS" = available ] &&
    printf '%s' "$VOL_META" | jq -e 'has("ferry_stream_pending") | not' >/dev/null
}
# volume_created SOURCE_ID: the stream path's volume for SOURCE_ID is made.
volume_created() {
  adopted "$1" || return 1
  case $VOL_STATUS in creating | error*) return 1 ;; esac
}
# stream_verified SOURCE_ID: this plan's stream filled it from SOURCE_ID and
# noted the digest: ferry_stream_verified is "PLAN SOURCE_ID DIGEST" with the
# volume's ferry_sha256 as DIGEST (plan::stream_verified; a key that an
# earlier move left proves nothing).
stream_verified() {
  adopted "$1" && printf '%s' "$VOL_META" | jq -e --arg p "$PLAN" --arg s "$1" \
    '(.ferry_sha256 | type == "string" and length > 0) and .ferry_stream_verified == ($p + " " + $s + " " + .ferry_sha256)' >/dev/null
}

image_registered() {
  osq image show "$1" -f json || return 1
  [ "$(printf '%s' "$OUT" | jq -r .status)" = active ]
}

volume_status_is() {
  osq volume show "$1" -f json || die "volume $1 is gone"
  VOL_STATUS=$(printf '%s' "$OUT" | jq -r .status)
  case $VOL_STATUS in error*) die "volume $1 went to status $VOL_STATUS" ;; esac
  [ "$VOL_STATUS" = "$2" ]
}

# add_location ID URL: 0 when Glance took it; 1 while Glance refuses it
# (HTTP 400: it checks the snapshot in Ceph, which is not there yet).
add_location() {
  need_glance
  api_send PATCH "$GLANCE/v2/images/$(uri "$1")" \
    "$(jq -cn --arg u "$2" '[{op: "add", path: "/locations/-", value: {url: $u, metadata: {}}}]')" \
    application/openstack-images-v2.1-json-patch
  case $CODE in
    2*) return 0 ;;
    400) return 1 ;;
    *) die "adding the location $2 to image $1 gave HTTP $CODE (it needs show_multiple_locations = True): $OUT" ;;
  esac
}
