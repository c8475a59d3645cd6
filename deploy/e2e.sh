#!/usr/bin/env bash
# End-to-end test of the container set on the local Docker engine, offline:
#   1. build the images (deploy/build-images.sh) and make a fresh test PKI and secrets (deploy/setup.sh);
#   2. `up` the set (docker-compose.yml + deploy/docker-compose.offline.yml + deploy/docker-compose.e2e.yml),
#      wait until the three devices are attached and dms-1 and dms-2 received their deviceattached;
#   3. stop dms-1, start a device holding dms-1, start dms-1 again: its alert arrives afterwards;
#   4. stop dms-2, start a device holding dms-2, SIGKILL the gateway and start it again, start dms-2:
#      every device still attached, the alert arrives once, nothing doubled anywhere;
#   5. disconnect the gateway from the `wan` network, start a device holding dms-1 and dms-2, reconnect
#      after 10 s or more: both alerts arrive;
#   6. tear everything down (containers, networks, volumes, secrets), also on failure.
# Every check reads the services' JSON APIs (the gateway's admin API, the DM Servers' /api/v1/alerts,
# the bootstrap server's /api/v1/bootstraps) over HTTPS on 127.0.0.1 with the run's CA.
# Traces: the offline override runs dmgw's otlp-sink as `jaeger`; after step 2 every device's
# onboarding must be one trace across the containers (device-sim, dmgw, the DM Servers and, for
# the plug's workflow-1 bootstrap, the bootstrap server), read from the sink's GET /spans.
# Env: DMGW_E2E_SKIP_BUILD=1 reuses the images already built; DMGW_E2E_PROJECT names the compose project.
set -euo pipefail
cd "$(dirname "$0")/.."

T0=$SECONDS
P="${DMGW_E2E_PROJECT:-dmgw-e2e}"
export COMPOSE_PROJECT_NAME="$P"
export DMGW_IMAGE_TAG="${DMGW_IMAGE_TAG:-local}"
export DMGW_ALERT_BACKOFF_MS=500 DMGW_ALERT_BACKOFF_MAX_MS=3000 # retry quickly after an outage

say() { printf '[e2e %4ds] %s\n' "$((SECONDS - T0))" "$*"; }
fail() {
  say "FAIL: $*"
  if [[ -n ${FAIL_DETAIL:-} && -s ${FAIL_DETAIL} ]]; then sed 's/^/  /' "$FAIL_DETAIL"; fi
  exit 1
}

for tool in docker curl jq openssl python3; do
  command -v "$tool" >/dev/null || fail "$tool is needed"
done
if command -v docker-compose >/dev/null 2>&1; then
  COMPOSE=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
else
  fail "neither docker-compose nor 'docker compose' is available"
fi
compose() {
  "${COMPOSE[@]}" -f docker-compose.yml -f deploy/docker-compose.offline.yml \
    -f deploy/docker-compose.e2e.yml "$@"
}

WORK="$(mktemp -d /tmp/dmgw-e2e.XXXXXX)"
export DMGW_SECRETS="$WORK/secrets"
DMGW_ADMIN_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export DMGW_ADMIN_PORT
DMGW_SINK_PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export DMGW_SINK_PORT

teardown() {
  "${COMPOSE[@]}" -f docker-compose.yml -f deploy/docker-compose.offline.yml \
    -f deploy/docker-compose.e2e.yml --profile late down -v --remove-orphans -t 5 >/dev/null 2>&1 || true
  # Whatever is left with the project's label (e.g. after an interrupted run).
  local label="label=com.docker.compose.project=$P"
  docker ps -aq --filter "$label" | xargs -r docker rm -f >/dev/null 2>&1 || true
  docker network ls -q --filter "$label" | xargs -r docker network rm >/dev/null 2>&1 || true
  docker volume ls -q --filter "$label" | xargs -r docker volume rm >/dev/null 2>&1 || true
}
on_exit() {
  local rc=$?
  if ((rc != 0)); then
    say "failed; the services' last log lines:"
    compose --profile late logs --no-color --tail=40 2>&1 | tail -n 300 || true
  fi
  say "tearing down"
  teardown
  rm -rf "$WORK"
  local left
  left="$(docker ps -aq --filter "label=com.docker.compose.project=$P" | wc -l)"
  ((left == 0)) || say "warning: $left containers of $P are left"
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------- build
teardown # a previous run's leftovers
if [[ ${DMGW_E2E_SKIP_BUILD:-0} != 1 ]]; then
  say "building the images"
  tb=$SECONDS
  bash deploy/build-images.sh
  say "images built in $((SECONDS - tb)) s"
fi
for t in gateway dm-server bootstrap-server device-sim; do
  docker image inspect "dmgw/$t:$DMGW_IMAGE_TAG" >/dev/null 2>&1 || fail "image dmgw/$t:$DMGW_IMAGE_TAG is missing"
done
bash deploy/setup.sh "$DMGW_SECRETS" >/dev/null
printf 'Authorization: Bearer %s\n' "$(tr -d '[:space:]' <"$DMGW_SECRETS/admin-token")" >"$WORK/admin.header"
chmod 0600 "$WORK/admin.header"

# ------------------------------------------------------------------------------------------- APIs
CA="$DMGW_SECRETS/ca.pem"
ATTACHED_TYPE="urn:oma:at:oma-gwmo:deviceattached:1.0"
THERMOSTAT="IMEI:356938035643809"
PLUG="MAC:00-1B-44-11-3A-B7"
METER="MAC:00-50-C2-9F-41-07"
LATE1="IMEI:860000000000001"
LATE2="IMEI:860000000000002"
LATE3="IMEI:860000000000003"

admin() { curl -fsS --max-time 10 --cacert "$CA" -H "@$WORK/admin.header" "https://127.0.0.1:$DMGW_ADMIN_PORT$1"; }
# The published 127.0.0.1 port of a WAN server (it changes when its container is started again).
api_of() {
  local hp
  hp="$(compose port "$1" 8443 2>/dev/null | tail -n1)"
  [[ -n $hp ]] || return 1
  echo "https://127.0.0.1:${hp##*:}"
}
server_api() { # SERVICE PATH
  local base
  base="$(api_of "$1")" || return 1
  curl -fsS --max-time 10 --cacert "$CA" "$base$2"
}
# {"<dev_id>": count} of the deviceattached alerts a DM Server recorded.
attached_counts() {
  server_api "$1" "/api/v1/alerts?limit=1000" |
    jq -c --arg t "$ATTACHED_TYPE" \
      '[.items[] | select((.alert_type | ascii_downcase) == $t) | .data] | group_by(.) | map({(.[0]): length}) | add // {}'
}
# True when every given device is `attached` at the gateway.
devices_attached() {
  local json
  json="$(admin "/api/v1/devices?limit=500")" || return 1
  local d
  for d in "$@"; do
    jq -e --arg d "$d" '[.items[] | select(.dev_id == $d and .state == "attached")] | length == 1' \
      <<<"$json" >/dev/null || return 1
  done
}
# True when the DM Server SERVICE recorded a deviceattached for each given device.
alerts_at() {
  local server="$1" counts d
  shift
  counts="$(attached_counts "$server")" || return 1
  for d in "$@"; do
    jq -e --arg d "$d" '(.[$d] // 0) >= 1' <<<"$counts" >/dev/null || return 1
  done
}
# The DM Server SERVICE recorded exactly one deviceattached for each given device, and no other.
exactly_once_at() {
  local server="$1" counts want
  shift
  counts="$(attached_counts "$server")" || fail "cannot read $server's alerts"
  want="$(printf '%s\n' "$@" | jq -R . | jq -sc 'map({(.): 1}) | add')"
  jq -e --argjson w "$want" '. == $w' <<<"$counts" >/dev/null ||
    fail "$server's deviceattached per device: $counts, expected $want"
  say "  $server: deviceattached exactly once for each of $*"
}
# The gateway's outbox holds a deviceattached for DEV to SERVER that was tried and is still pending.
alert_pending_after_failure() {
  admin "/api/v1/alerts?dev_id=$(jq -rn --arg d "$1" '$d|@uri')&server_id=$2&limit=100" |
    jq -e --arg t "$ATTACHED_TYPE" \
      '[.items[] | select((.alert_type | ascii_downcase) == $t and .state == "pending" and .attempts >= 1)] | length == 1' \
      >/dev/null
}
# Every outbox alert delivered, and one row per (type, device, server).
outbox_clean() {
  local json
  json="$(admin "/api/v1/alerts?limit=500")" || fail "cannot read the gateway's alerts"
  jq -e '[.items[] | select(.state != "delivered")] | length == 0' <<<"$json" >/dev/null ||
    fail "undelivered alerts at the gateway: $(jq -c '[.items[] | select(.state != "delivered") | {dev_id, server_id, state, attempts, last_error}]' <<<"$json")"
  jq -e '[.items[] | [.alert_type, .dev_id, .server_id]] | (length == (unique | length))' <<<"$json" >/dev/null ||
    fail "the gateway's outbox holds the same alert twice"
  say "  gateway outbox: $(jq '.items | length' <<<"$json") alerts, all delivered, none twice"
}
wait_for() { # WHAT SECONDS COMMAND...
  local what="$1" limit="$2"
  shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || fail "timed out after ${limit}s waiting for: $what"
    sleep 0.5
  done
}
container_of() { compose ps -q "$1"; }
health_of() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$1"; }
is_healthy() { [[ $(health_of "$1") == healthy ]]; }

# ------------------------------------------------------------------------------------------- 1: up
say "docker-compose up (offline override: dmgw's otlp-sink stands in for Jaeger)"
t_up=$SECONDS
t_up_ns=$(date +%s%N)
compose up -d
say "up returned after $((SECONDS - t_up)) s (health-gated: WAN servers, then the gateway, then the devices)"
wait_for "three devices attached" 120 devices_attached "$THERMOSTAT" "$PLUG" "$METER"
t_attached_ms=$((($(date +%s%N) - t_up_ns) / 1000000))
say "up -> every device attached: ${t_attached_ms} ms"
wait_for "dms-1 alerts" 60 alerts_at dms-1 "$THERMOSTAT" "$PLUG"
wait_for "dms-2 alerts" 60 alerts_at dms-2 "$PLUG" "$METER"
t_alerts_ms=$((($(date +%s%N) - t_up_ns) / 1000000))
say "up -> every DM Server received its alerts: ${t_alerts_ms} ms"
exactly_once_at dms-1 "$THERMOSTAT" "$PLUG"
exactly_once_at dms-2 "$PLUG" "$METER"
bootstraps="$(server_api bootstrap "/api/v1/bootstraps?server_id=dms-2")" || fail "cannot read the bootstrap server"
jq -e '[.items[] | select(.workflow == 1 and .gateway_id == "urn:dmgw:compose-gateway")] | length >= 1' \
  <<<"$bootstraps" >/dev/null || fail "the bootstrap server issued no workflow-1 bootstrap for dms-2: $bootstraps"
jobs="$(admin "/api/v1/bootstraps?limit=100")"
jq -e '[.items[] | select(.state == "failed")] | length == 0' <<<"$jobs" >/dev/null ||
  fail "failed bootstrap jobs at the gateway: $jobs"
say "  dms-2 learned through the bootstrap server (workflow 1); no bootstrap job failed"
for s in thermostat plug meter gateway dms-1 dms-2 bootstrap; do
  is_healthy "$(container_of "$s")" || fail "$s is $(health_of "$(container_of "$s")")"
done
say "  every container healthy"

# ------------------------------------------------------------------------------------------- traces
# One trace per onboarding, across the containers: the device's root span (device-sim), the
# gateway's `onboard device` under it, each `alert <server>` delivered and linked to a DM session
# that reached the DM Server's own spans, and the plug's workflow-1 bootstrap reaching the
# bootstrap server; no secret in any span.
traces_ok() {
  curl -fsS --max-time 10 "http://127.0.0.1:$DMGW_SINK_PORT/spans" >"$WORK/spans.json" ||
    { echo "the OTLP sink on 127.0.0.1:$DMGW_SINK_PORT does not answer" >&2; return 1; }
  python3 - "$WORK/spans.json" "$DMGW_SECRETS" "$THERMOSTAT:dms-1" "$PLUG:dms-1,dms-2" "$METER:dms-2" <<'PY'
import json, os, sys
spans = json.load(open(sys.argv[1]))
by_id = {s["span_id"]: s for s in spans}
children = {}
for s in spans:
    children.setdefault(s["parent_span_id"], []).append(s)
def descendants(root):
    out, stack = [], [root]
    while stack:
        for c in children.get(stack.pop()["span_id"], []):
            out.append(c)
            stack.append(c)
    return out
def ancestors(s):
    out = []
    while s["parent_span_id"] in by_id:
        s = by_id[s["parent_span_id"]]
        out.append(s)
    return out
for arg in sys.argv[3:]:
    dev, servers = arg.rsplit(":", 1)
    onb = [s for s in spans if s["service"] == "dmgw" and s["name"] == "onboard device"
           and s["attributes"].get("dev_id") == dev and s["attributes"].get("outcome") == "attached"]
    if not onb:
        sys.exit(f"{dev}: no attached `onboard device` span yet")
    o = onb[0]
    if not any(a["service"] == "device-sim" and a["name"] == "device onboarding" for a in ancestors(o)):
        sys.exit(f"{dev}: the onboarding is not under the device's own root span")
    for server in servers.split(","):
        alerts = [s for s in children.get(o["span_id"], []) if s["name"] == f"alert {server}"
                  and s["attributes"].get("outcome") == "delivered"]
        if not alerts:
            sys.exit(f"{dev}: no delivered `alert {server}` under its onboarding")
        session = by_id.get(alerts[-1]["links"][0][1]) if alerts[-1]["links"] else None
        if session is None or not any(d["service"] == server for d in descendants(session)):
            sys.exit(f"{dev}: the DM session of `alert {server}` did not reach {server}'s spans")
    if dev.startswith("MAC:00-1B"):  # the plug: workflow 1 for dms-2
        b = [s for s in children.get(o["span_id"], []) if s["name"] == "bootstrap dms-2"]
        if not b or not any(d["service"] == "bootstrap-server" for d in descendants(b[0])):
            sys.exit(f"{dev}: the workflow-1 bootstrap did not reach the bootstrap server's spans")
    print(f"  {dev}: one trace ({o['trace_id']}), services " +
          ", ".join(sorted({s['service'] for s in spans if s['trace_id'] == o['trace_id']})))
dump = json.dumps(spans)
secrets = []
for name in os.listdir(sys.argv[2]):
    if name.endswith((".key", "-token", "master-key")):
        text = open(os.path.join(sys.argv[2], name)).read().strip()
        if text and "PRIVATE KEY" not in text:
            secrets.append(text)
for name in os.listdir(sys.argv[2]):
    path = os.path.join(sys.argv[2], name)
    if name.endswith(".env"):
        for line in open(path):
            if "=" in line and ("SECRET" in line or "PIN" in line):
                secrets.append(line.split("=", 1)[1].strip())
    if name.endswith(".toml"):
        for line in open(path):
            key, _, value = line.partition("=")
            if key.strip() in ("auth_secret", "password", "pin", "imsi") and value.strip().startswith('"'):
                secrets.append(value.strip().strip('"'))
if not secrets:
    sys.exit("no secrets found to look for")
leaked = [i for i, s in enumerate(secrets) if s and s in dump]
if leaked:
    sys.exit(f"{len(leaked)} secret(s) found in the spans")
print(f"  {len(spans)} spans, none holding any of the run's {len(secrets)} secrets")
PY
}
FAIL_DETAIL="$WORK/traces.why"
wait_for "one trace per onboarding at the OTLP sink" 60 eval 'traces_ok 2>"$FAIL_DETAIL"'
FAIL_DETAIL=""
traces_ok | while read -r line; do say "$line"; done

# ------------------------------------------------------------------------------------------- 2: DM Server down
say "stopping dms-1; a new device holding dms-1 joins"
compose stop -t 5 dms-1
compose up -d --no-deps late-1
wait_for "late-1 attached" 60 devices_attached "$LATE1"
wait_for "late-1's alert to dms-1 tried and pending" 60 alert_pending_after_failure "$LATE1" dms-1
say "  late-1 attached; its alert to the stopped dms-1 is pending after a failed attempt"
say "starting dms-1 again"
compose start dms-1
wait_for "dms-1 healthy" 60 is_healthy "$(container_of dms-1)"
wait_for "late-1's alert at dms-1" 60 alerts_at dms-1 "$LATE1"
exactly_once_at dms-1 "$THERMOSTAT" "$PLUG" "$LATE1"

# ------------------------------------------------------------------------------------------- 3: gateway killed
say "stopping dms-2; a new device holding dms-2 joins; then the gateway is SIGKILLed"
compose stop -t 5 dms-2
compose up -d --no-deps late-2
wait_for "late-2 attached" 60 devices_attached "$LATE2"
wait_for "late-2's alert to dms-2 tried and pending" 60 alert_pending_after_failure "$LATE2" dms-2
gw="$(container_of gateway)"
docker kill --signal KILL "$gw" >/dev/null
say "  gateway killed while late-2's alert was pending"
sleep 2
if [[ $(docker inspect -f '{{.State.Running}}' "$gw") != true ]]; then
  docker start "$gw" >/dev/null
  say "  gateway started again (docker start)"
else
  say "  gateway restarted by its restart policy"
fi
wait_for "gateway healthy again" 60 is_healthy "$gw"
devices_attached "$THERMOSTAT" "$PLUG" "$METER" "$LATE1" "$LATE2" || fail "a device is no longer attached after the restart"
say "  gateway healthy; every device still attached (its database is on the gateway-data volume)"
compose start dms-2
wait_for "dms-2 healthy" 60 is_healthy "$(container_of dms-2)"
wait_for "late-2's alert at dms-2" 60 alerts_at dms-2 "$LATE2"
exactly_once_at dms-2 "$PLUG" "$METER" "$LATE2"
exactly_once_at dms-1 "$THERMOSTAT" "$PLUG" "$LATE1"
outbox_clean

# ------------------------------------------------------------------------------------------- 4: WAN cut
wan="$(docker network ls -q --filter "label=com.docker.compose.project=$P" --filter "label=com.docker.compose.network=wan")"
[[ -n $wan ]] || fail "no wan network"
say "disconnecting the gateway from the wan network; a device holding dms-1 and dms-2 joins"
t_cut=$SECONDS
docker network disconnect "$wan" "$gw"
compose up -d --no-deps late-3
wait_for "late-3 attached" 60 devices_attached "$LATE3"
wait_for "late-3's alert to dms-1 tried and pending" 90 alert_pending_after_failure "$LATE3" dms-1
wait_for "late-3's alert to dms-2 tried and pending" 90 alert_pending_after_failure "$LATE3" dms-2
left=$((10 - (SECONDS - t_cut)))
((left <= 0)) || sleep "$left"
docker network connect --alias gateway "$wan" "$gw"
say "  reconnected after $((SECONDS - t_cut)) s (late-3 attached over the lan meanwhile; its alerts pending)"
late3_delivered() { alerts_at dms-1 "$LATE3" && alerts_at dms-2 "$LATE3"; }
wait_for "late-3's alerts at dms-1 and dms-2" 60 late3_delivered
exactly_once_at dms-1 "$THERMOSTAT" "$PLUG" "$LATE1" "$LATE3"
exactly_once_at dms-2 "$PLUG" "$METER" "$LATE2" "$LATE3"
devices_attached "$THERMOSTAT" "$PLUG" "$METER" "$LATE1" "$LATE2" "$LATE3" || fail "a device is not attached"
outbox_clean

# ------------------------------------------------------------------------------------------- report
say "images:"
docker images --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' | grep "dmgw/.*:$DMGW_IMAGE_TAG " | sort
say "up -> 3 devices attached: ${t_attached_ms} ms; up -> all alerts received: ${t_alerts_ms} ms"
say "PASS in $((SECONDS - T0)) s"
