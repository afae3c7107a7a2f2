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
  NOVA=$(endpoint compute)
  NEUTRON=$(endpoint network)
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

# api_send METHOD URL BODY CONTENT-TYPE [VOLUME MICROVERSION]: body in OUT,
# status in CODE. ferry prints these arguments from the request it sends.
api_send() {
  login
  mv=''
  [ -z "${5:-}" ] || mv="OpenStack-API-Version: $5"
  CODE=$(curl_ -X "$1" -H "Content-Type: $4" ${mv:+-H "$mv"} --data-binary "$3" "$2") || die "$1 $2: $(cat "$ERR")"
  OUT=$(cat "$BODY")
}

uri() { printf '%s' "$1" | jq -sRr @uri; }

need_cinder() { [ -n "$CINDER" ] || die "the cloud's catalog has no volumev3 endpoint${REGION:+ in region $REGION}"; }
need_nova() { [ -n "$NOVA" ] || die "the cloud's catalog has no compute endpoint${REGION:+ in region $REGION}"; }
need_neutron() { [ -n "$NEUTRON" ] || die "the cloud's catalog has no network endpoint${REGION:+ in region $REGION}"; }
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
# Cinder cuts a page to its osapi_max_limit (often below the 1000 asked)
# and links no next page: pages are read, each from where the last ended
# (by offset: a marker that vanished meanwhile gets HTTP 400), until one is
# empty or repeats the one before (a service that ignores the offset).
manageable() {
  need_cinder
  offset=0
  first_before=''
  while :; do
    pause=2
    while :; do
      api_get "$CINDER/manageable_volumes?host=$(uri "$1")&limit=${FERRY_MANAGEABLE_PAGE:-1000}&offset=$offset" 3.8
      if [ "$CODE" != 500 ] || [ "$pause" -gt 60 ]; then break; fi
      sleep "$pause"
      pause=$((pause * 2))
    done
    [ "$CODE" = 200 ] || die "listing manageable volumes gave HTTP $CODE: $OUT"
    printf '%s' "$OUT" | jq -e --arg n "$2" 'any(.["manageable-volumes"][]; .reference["source-name"] == $n)' >/dev/null && return 0
    n=$(printf '%s' "$OUT" | jq '.["manageable-volumes"] | length')
    [ "$n" -gt 0 ] || return 1
    first=$(printf '%s' "$OUT" | jq -c '.["manageable-volumes"][0].reference')
    [ "$first" != "$first_before" ] || return 1
    first_before=$first
    offset=$((offset + n))
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

# volume_named NAME: the project has a volume named exactly NAME, other
# than those being replaced (REPLACING).
volume_named() {
  need_cinder
  api_get "$CINDER/volumes?name=$(uri "$1")"
  [ "$CODE" = 200 ] || die "listing volumes gave HTTP $CODE: $OUT"
  found=$(printf '%s' "$OUT" | jq --arg n "$1" --arg r "${REPLACING:-}" \
    '($r | split(" ")) as $gone | any(.volumes[]; .name == $n and (.id as $i | $gone | index([$i]) | not))') ||
    die "listing volumes gave no JSON list: $OUT"
  [ "$found" = true ]
}

# adopted SOURCE_ID: this plan's adoption of SOURCE_ID, the destination
# volume carrying ferry_source_volume = SOURCE_ID and ferry_plan = $PLAN: its
# id in VOL, status in VOL_STATUS, metadata in VOL_META. The volumes of the
# same source that another plan (or an older ferry, which noted no plan)
# adopted go to EARLIER, a JSON list.
adopted() {
  need_cinder
  api_get "$CINDER/volumes/detail?metadata=$(uri "$(jq -cn --arg s "$1" '{ferry_source_volume: $s}')")"
  [ "$CODE" = 200 ] || die "listing volumes gave HTTP $CODE: $OUT"
  mine=$(printf '%s' "$OUT" | jq -c --arg s "$1" --arg p "$PLAN" '[.volumes[] | select(.metadata.ferry_source_volume == $s and .metadata.ferry_plan == $p)]')
  EARLIER=$(printf '%s' "$OUT" | jq -c --arg s "$1" --arg p "$PLAN" '[.volumes[] | select(.metadata.ferry_source_volume == $s and .metadata.ferry_plan != $p) |
    {id, name: (.name // ""), status, metadata, plan: .metadata.ferry_plan, pending: (.metadata | has("ferry_stream_pending")),
     servers: [(.attachments // [])[] | .server_id // empty]}]')
  n=$(printf '%s' "$mine" | jq length)
  [ "$n" -le 1 ] || die "$n destination volumes carry ferry_source_volume=$1 and ferry_plan=$PLAN: keep one"
  VOL=$(printf '%s' "$mine" | jq -r '.[0].id // empty')
  VOL_STATUS=$(printf '%s' "$mine" | jq -r '.[0].status // empty')
  VOL_META=$(printf '%s' "$mine" | jq -c '.[0].metadata // {}')
  [ -n "$VOL" ]
}

# stream_target SOURCE_ID: the stream path's volume for SOURCE_ID, in VOL,
# VOL_STATUS and VOL_META: this plan's, or else an unfinished one
# (ferry_stream_pending set) another plan made, which this plan takes over
# (nothing trusts a pending volume's data; finish-volume marks it this
# plan's).
stream_target() {
  adopted "$1" && return 0
  n=$(printf '%s' "$EARLIER" | jq '[.[] | select(.pending)] | length')
  [ "$n" -le 1 ] || die "$n unfinished destination volumes carry ferry_source_volume=$1: keep one"
  VOL=$(printf '%s' "$EARLIER" | jq -r '[.[] | select(.pending)][0].id // empty')
  VOL_STATUS=$(printf '%s' "$EARLIER" | jq -r '[.[] | select(.pending)][0].status // empty')
  VOL_META=$(printf '%s' "$EARLIER" | jq -c '[.[] | select(.pending)][0].metadata // {}')
  [ -n "$VOL" ]
}

# earlier_choice PLANNED: CHOICE is what to do with an earlier adoption:
# FERRY_EARLIER_ADOPTION when set, else the plan's (refuse, keep, replace).
earlier_choice() {
  CHOICE=${FERRY_EARLIER_ADOPTION:-$1}
  case $CHOICE in refuse | keep | replace) ;; *) die "FERRY_EARLIER_ADOPTION=$CHOICE: say refuse, keep or replace" ;; esac
}

# judge_earlier SOURCE_ID PLANNED (after adopted): what to do with EARLIER:
# stop naming them (refuse), KEPT=<id> (keep one), or REPLACING="<ids>".
judge_earlier() {
  KEPT='' REPLACING=''
  earlier_choice "$2"
  n=$(printf '%s' "$EARLIER" | jq length)
  [ "$n" -gt 0 ] || return 0
  named=$(printf '%s' "$EARLIER" | jq -r '[.[] | "volume \(.id) \(.name | tojson) (\(.status), adopted by \(if .plan == null then "an older ferry (no plan noted)" else "plan \(.plan)" end))"] | join("; ")')
  case $CHOICE in
    keep)
      [ "$n" -eq 1 ] || die "source volume $1 has $n earlier adoptions ($named): keep one, or replace them"
      # shellcheck disable=SC2034 # KEPT: read by the rendered steps
      KEPT=$(printf '%s' "$EARLIER" | jq -r '.[0].id')
      ;;
    replace)
      busy=$(printf '%s' "$EARLIER" | jq -r --arg s "$1" 'first(.[] | select(.status == "in-use" or (.servers | length > 0))) |
        "volume \(.id) \(.name | tojson), adopted earlier from \($s), is attached (servers \(.servers | join(", ")))"')
      [ -z "$busy" ] || die "$busy: replacing it would leave them on the old data; detach it first, or keep it"
      REPLACING=$(printf '%s' "$EARLIER" | jq -r '[.[].id] | join(" ")')
      ;;
    *) die "source volume $1 was adopted before, not by this plan ($PLAN): $named. It is not taken as this plan's. Choose with options.earlier_adoption in the spec (or ferry run --earlier-adoption, or FERRY_EARLIER_ADOPTION for the script): keep (it stays the adoption; this plan's verified copy is not adopted), replace (this plan's copy is adopted; the earlier volume keeps its data and is renamed <name>.ferry-replaced-$PLAN), or unmanage or delete it yourself" ;;
  esac
}

# replace_earlier: each volume in REPLACING is renamed
# <name>.ferry-replaced-$PLAN and its ferry_source_volume mark moved to
# ferry_replaced_source_volume, ferry_replaced_by set (one update, name and
# metadata at once); its data and attachments stay.
replace_earlier() {
  for id in $REPLACING; do
    api_get "$CINDER/volumes/$id"
    [ "$CODE" = 200 ] || die "reading volume $id gave HTTP $CODE: $OUT"
    body=$(printf '%s' "$OUT" | jq -c --arg p "$PLAN" '.volume | (".ferry-replaced-" + $p) as $suf |
      {volume: {name: (((.name // "") | .[0:(255 - ($suf | length))]) + $suf),
        metadata: ((.metadata | del(.ferry_source_volume))
          + (if .metadata.ferry_source_volume then {ferry_replaced_source_volume: .metadata.ferry_source_volume} else {} end)
          + {ferry_replaced_by: $p})}}')
    api_send PUT "$CINDER/volumes/$id" "$body" application/json
    case $CODE in 2*) ;; *) die "renaming the replaced volume $id gave HTTP $CODE: $OUT" ;; esac
    say "replaced: volume $id renamed $(printf '%s' "$body" | jq .volume.name), its data kept (delete it once the new volume is trusted)"
  done
}

# volume_adopted SOURCE_ID PLANNED: this plan's adoption is available (a
# volume the stream path made: its pending mark gone); or, when the plan
# keeps an earlier adoption, that one is.
volume_adopted() {
  if adopted "$1"; then
    # Available, or attached since (the server made from it).
    case $VOL_STATUS in available | in-use | reserved | attaching | detaching) ;; *) return 1 ;; esac
    printf '%s' "$VOL_META" | jq -e 'has("ferry_stream_pending") | not' >/dev/null
    return
  fi
  earlier_choice "$2"
  [ "$CHOICE" = keep ] &&
    printf '%s' "$EARLIER" | jq -e 'length == 1 and .[0].status == "available" and (.[0].pending | not)' >/dev/null || return 1
  say "keeps $(printf '%s' "$EARLIER" | jq -r '.[0] | "volume \(.id) \(.name | tojson), adopted earlier by \(if .plan == null then "an older ferry (no plan noted)" else "plan \(.plan)" end)"'), as the adoption of $1 (earlier adoption: keep): this plan's copy is not adopted"
}
# volume_created SOURCE_ID: the stream path's volume for SOURCE_ID is made.
volume_created() {
  stream_target "$1" || return 1
  case $VOL_STATUS in creating | error*) return 1 ;; esac
}
# stream_verified SOURCE_ID: this plan's stream filled it from SOURCE_ID and
# noted the digest: ferry_stream_verified is "PLAN SOURCE_ID DIGEST" with the
# volume's ferry_sha256 as DIGEST (plan::stream_verified; a key that an
# earlier move left proves nothing).
stream_verified() {
  stream_target "$1" && printf '%s' "$VOL_META" | jq -e --arg p "$PLAN" --arg s "$1" \
    '(.ferry_sha256 | type == "string" and length > 0) and .ferry_stream_verified == ($p + " " + $s + " " + .ferry_sha256)' >/dev/null
}

# image_earlier ID PLANNED (after osq image show ID): 1 when the image is
# this plan's (ferry_plan = $PLAN); 0 when another plan registered it and
# the plan keeps it; stops otherwise (not ferry's, refused, or replace,
# which Glance cannot do: it never gives an image id twice).
image_earlier() {
  printf '%s' "$OUT" | jq -e '.properties.ferry_source // empty' >/dev/null ||
    die "image id $1 is taken by an image ferry did not register"
  by=$(printf '%s' "$OUT" | jq -r '.properties.ferry_plan // empty')
  [ "$by" = "$PLAN" ] && return 1
  if [ -n "$by" ]; then by="plan $by"; else by='an older ferry (no plan noted)'; fi
  earlier_choice "$2"
  case $CHOICE in
    keep) return 0 ;;
    replace) die "image $1 was registered earlier by $by: Glance never gives an image id twice, so it cannot be replaced; keep it (options.earlier_adoption: keep), or delete it and move the source with a plan that gives the image another id" ;;
    *) die "image $1 was registered earlier by $by, not by this plan ($PLAN): it is not taken as this plan's. Keep it with options.earlier_adoption: keep (or ferry run --earlier-adoption keep, or FERRY_EARLIER_ADOPTION=keep for the script), or delete it (Glance will not take its id again)" ;;
  esac
}

# image_registered ID PLANNED: the image is active and this plan's (or
# another plan's, which the plan keeps).
image_registered() {
  osq image show "$1" -f json || return 1
  [ "$(printf '%s' "$OUT" | jq -r .status)" = active ] || return 1
  printf '%s' "$OUT" | jq -e --arg p "$PLAN" '.properties.ferry_plan == $p' >/dev/null && return 0
  earlier_choice "$2"
  [ "$CHOICE" = keep ] && printf '%s' "$OUT" | jq -e '.properties.ferry_source // empty' >/dev/null || return 1
  say "keeps image $1, registered earlier by $(printf '%s' "$OUT" | jq -r 'if .properties.ferry_plan then "plan \(.properties.ferry_plan)" else "an older ferry (no plan noted)" end'), as the registration (earlier adoption: keep): this plan's copy is not registered"
}

volume_status_is() {
  osq volume show "$1" -f json || die "volume $1 is gone"
  VOL_STATUS=$(printf '%s' "$OUT" | jq -r .status)
  case $VOL_STATUS in error*) die "volume $1 went to status $VOL_STATUS" ;; esac
  [ "$VOL_STATUS" = "$2" ]
}

# snapshot_status_is SNAPSHOT STATUS: the snapshot has STATUS (dies on error).
snapshot_status_is() {
  osq volume snapshot show "$1" -f json || die "snapshot $1 is gone"
  SNAP_STATUS=$(printf '%s' "$OUT" | jq -r .status)
  case $SNAP_STATUS in error*) die "snapshot $1 went to status $SNAP_STATUS" ;; esac
  [ "$SNAP_STATUS" = "$2" ]
}

# add_location API_SEND_ARGUMENTS (the location patch): 0 when Glance took
# it; 1 while Glance refuses it (HTTP 400: it checks the snapshot in Ceph,
# which is not there yet).
add_location() {
  need_glance
  api_send "$@"
  case $CODE in
    2*) return 0 ;;
    400) return 1 ;;
    *) die "adding the location $(printf '%s' "$3" | jq -c '.[0].value.url') to $2 gave HTTP $CODE (it needs show_multiple_locations = True): $OUT" ;;
  esac
}

# nova GET|POST PATH [BODY]: a compute API call (microversion 2.52), body in
# OUT, status in CODE.
nova() {
  login
  need_nova
  api_send "$1" "$NOVA$2" "${3:-}" application/json 'compute 2.52'
}

# server_status_is ID STATUS: the server has STATUS, in SERVER_STATUS (dies
# when it is gone or in ERROR).
server_status_is() {
  nova GET "/servers/$(uri "$1")"
  [ "$CODE" = 200 ] || die "reading server $1 gave HTTP $CODE: $OUT"
  SERVER_STATUS=$(printf '%s' "$OUT" | jq -r .server.status)
  [ "$SERVER_STATUS" != ERROR ] || die "server $1 went to status ERROR: $(printf '%s' "$OUT" | jq -c '.server.fault // {}')"
  [ "$SERVER_STATUS" = "$2" ]
}

# server_holds ID VOLUME: the server has the volume attached.
server_holds() {
  nova GET "/servers/$(uri "$1")/os-volume_attachments"
  [ "$CODE" = 200 ] || die "reading the volumes of server $1 gave HTTP $CODE: $OUT"
  printf '%s' "$OUT" | jq -e --arg v "$2" 'any(.volumeAttachments[]; .volumeId == $v)' >/dev/null
}

# server_made SOURCE_ID: the server this plan made for SOURCE_ID (its
# ferry_source_server and ferry_plan metadata), its id in SERVER (empty: none).
server_made() {
  nova GET /servers/detail
  [ "$CODE" = 200 ] || die "listing servers gave HTTP $CODE: $OUT"
  SERVER=$(printf '%s' "$OUT" | jq -r --arg s "$1" --arg p "$PLAN" \
    '[.servers[] | select(.metadata.ferry_source_server == $s and .metadata.ferry_plan == $p)][0].id // empty')
  [ -n "$SERVER" ]
}

# server_created SOURCE_ID STATUS: that server exists and has STATUS.
server_created() {
  server_made "$1" && server_status_is "$SERVER" "$2"
}

# flavor_id NAME: the id of the flavor named NAME, in FLAVOR.
flavor_id() {
  nova GET '/flavors/detail?is_public=None'
  [ "$CODE" = 200 ] || die "listing flavors gave HTTP $CODE: $OUT"
  # shellcheck disable=SC2034 # read by the create-server step's request
  FLAVOR=$(printf '%s' "$OUT" | jq -r --arg n "$1" '[.flavors[] | select(.name == $n)][0].id // empty')
  [ -n "$FLAVOR" ] || die "no flavor named $1 in the destination cloud: map it (options.flavors) or create it"
}

# network_id NAME: the id of the one network named NAME, in NET.
network_id() {
  login
  need_neutron
  api_send GET "$NEUTRON/v2.0/networks?name=$(uri "$1")" '' application/json
  [ "$CODE" = 200 ] || die "listing networks gave HTTP $CODE: $OUT"
  n=$(printf '%s' "$OUT" | jq --arg n "$1" '[.networks[] | select(.name == $n)] | length')
  [ "$n" = 1 ] || die "$n networks named $1 in the destination cloud: map it (options.networks) to one"
  # shellcheck disable=SC2034 # read by the create-server step's request
  NET=$(printf '%s' "$OUT" | jq -r --arg n "$1" '[.networks[] | select(.name == $n)][0].id')
}
