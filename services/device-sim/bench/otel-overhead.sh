#!/usr/bin/env bash
# What tracing costs the gateway: the same load run (device-sim load: N devices announce, consent,
# provision, DM session, deviceattached to one dm-server) against release builds of dmgw, in four
# telemetry configurations, one after the other in the same run so the figures compare:
#   off        OTEL_SDK_DISABLED=true: no OpenTelemetry layer at all (the baseline)
#   ids        the default without a collector: spans and trace IDs, no exporter
#   export     OTLP/HTTP export to a live collector (otlp-sink)
#   blackhole  OTLP/HTTP export to a collector that accepts connections and never answers
# The DM Server and the device simulator run with OTEL_SDK_DISABLED=true in every configuration, so
# only the gateway's telemetry changes between runs.
# Usage: services/device-sim/bench/otel-overhead.sh [devices] [rate]   (plain HTTP on loopback)
# Needs: cargo build --release -p gateway -p device-sim -p dm-server -p telemetry --features telemetry/receiver --bins
set -euo pipefail
DEVICES=${1:-1000}
RATE=${2:-500}
BIN=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
PIDS=()
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "not up: $1" >&2; return 1; }

SINK=$(port); HOLE=$(port)
"$BIN/otlp-sink" --listen "127.0.0.1:$SINK" 2>/dev/null & PIDS+=($!)
# A black hole: accepts TCP connections, reads, never answers.
python3 -c "
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('127.0.0.1', $HOLE)); s.listen(512)
held = []
while True:
    c, _ = s.accept(); held.append(c)
" & PIDS+=($!)
wait_http "http://127.0.0.1:$SINK/health"

run() {
  local name=$1; shift
  local dir="$WORK/$name"; mkdir -p "$dir"
  local dms=$(port) admin=$(port) lan=$(port) wan=$(port)
  printf '[[accounts]]\nname = "gw-1"\npassword = "bench-secret-1"\n' > "$dir/dms.toml"
  OTEL_SDK_DISABLED=true "$BIN/dm-server" --server-id dms-1 --listen "127.0.0.1:$dms" --plain-http --accounts "$dir/dms.toml" \
      --data "$dir/dms.jsonl" >/dev/null 2>&1 & local dms_pid=$!
  printf '[[account]]\nserver_id = "dms-1"\naddr = "http://127.0.0.1:%s/dm"\nallow_plain_http = true\nauth_type = "DIGEST"\nauth_name = "gw-1"\nauth_secret = "bench-secret-1"\n' "$dms" > "$dir/accounts.toml"
  env "$@" "$BIN/dmgw" serve --database "$dir/gw.db" --admin-listen "127.0.0.1:$admin" --admin-token bench-token-0123456789 \
      --lan-listen "127.0.0.1:$lan" --wan-listen "127.0.0.1:$wan" --allow-plain-http \
      --accounts-file "$dir/accounts.toml" --log warn >/dev/null 2>"$dir/dmgw.log" & local gw_pid=$!
  wait_http "http://127.0.0.1:$admin/readyz"
  OTEL_SDK_DISABLED=true "$BIN/device-sim" load --gateway "http://127.0.0.1:$lan" --devices "$DEVICES" --rate "$RATE" --servers dms-1 \
      --admin-url "http://127.0.0.1:$admin" --admin-token bench-token-0123456789 --plain-http --no-progress \
      > "$dir/load.txt" 2>/dev/null || true
  kill "$gw_pid" "$dms_pid" 2>/dev/null || true; wait "$gw_pid" "$dms_pid" 2>/dev/null || true
  local rate
  rate=$(grep -o 'onboarding rate: [0-9.]*' "$dir/load.txt" | grep -o '[0-9.]*$' || echo n/a)
  echo "== $name"
  grep -E '^devices|onboarding rate|announce -> attached' "$dir/load.txt" | sed 's/^/   /'
  echo "$name $rate" >> "$WORK/rates"
}

echo "devices=$DEVICES rate=$RATE (release, plain HTTP, loopback)"
run off OTEL_SDK_DISABLED=true
run ids OTEL_SDK_DISABLED=false
run export "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$SINK"
run blackhole "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$HOLE" OTEL_EXPORTER_OTLP_TIMEOUT=2000
spans=$(curl -fsS "http://127.0.0.1:$SINK/spans" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
echo "spans received by otlp-sink in the export run: $spans"
python3 - "$WORK/rates" <<'PY'
import sys
rates = dict(l.split() for l in open(sys.argv[1]))
base = rates.get("off")
for k, v in rates.items():
    try: print(f"{k:<10} {float(v)/float(base):.2f}x the off baseline")
    except Exception: print(f"{k:<10} n/a")
PY
