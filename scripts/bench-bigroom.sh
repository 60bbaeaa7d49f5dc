#!/usr/bin/env bash
# Big rooms: for each size, one room of that many bots walking in a shared
# square (density varies as they go), first with interest management (the
# server's defaults), then with every member getting every avatar at every
# tick (--interest-radius 0). A few bots read their socket at a limited
# rate (SLOW, SLOW_RATE) and are reported apart. Writes the table into
# docs/BENCHMARKS.md between the bench-bigroom markers. Bot and server share
# this machine's cores.
#
#   SIZES="500 1000" AREA=60 DURATION=120s RAMP=60s scripts/bench-bigroom.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-docs.sh

SIZES=${SIZES:-"500 1000"}
AREA=${AREA:-60}
DURATION=${DURATION:-120s}
RAMP=${RAMP:-60s}
SLOW=${SLOW:-10}
SLOW_RATE=${SLOW_RATE:-16KB}
OUT=${OUT:-bin/bench-bigroom}
UDP_PORT=${UDP_PORT:-14433}
HTTP_PORT=${HTTP_PORT:-18080}

go build -o bin/ ./cmd/...
rm -rf "$OUT" && mkdir -p "$OUT"
server_pid=
trap stop_server EXIT

for n in $SIZES; do
  for mode in interest everyone; do
    radius=()
    [ "$mode" = everyone ] && radius=(--interest-radius 0)
    bin/posecast --listen "127.0.0.1:$UDP_PORT" --http "127.0.0.1:$HTTP_PORT" --log-level warn \
      --max-members "$n" "${radius[@]}" >"$OUT/server-$n-$mode.log" 2>&1 &
    server_pid=$!
    server="http://127.0.0.1:$HTTP_PORT"
    for _ in $(seq 50); do
      curl -fsS "$server/healthz" >/dev/null 2>&1 && break
      sleep 0.1
    done
    echo "== $n bots in one room, walking in $AREA m, $mode, $DURATION"
    bin/posebot --server "$server" --rooms 1 --per-room "$n" --walk "$AREA" --slow "$SLOW" --slow-rate "$SLOW_RATE" \
      --duration "$DURATION" --ramp "$RAMP" --join-timeout 30s --server-pid "$server_pid" \
      --json "$OUT/$(printf %05d "$n")-$mode.json" | tail -n 14 || echo "(posebot reported a failed run)"
    stop_server
  done
done

table=$(bin/posebot table "$OUT"/*.json)
echo "$table"
write_block bench-bigroom "$(printf '`SIZES="%s" AREA=%s DURATION=%s RAMP=%s scripts/bench-bigroom.sh` on %s, %s.\nOne room, bots walking in a %s m square, a pose per tick, server tick 200 ms; %s bots reading at %s.\n\n%s' \
  "$SIZES" "$AREA" "$DURATION" "$RAMP" "$(date -u +%Y-%m-%d)" "$(machine)" "$AREA" "$SLOW" "$SLOW_RATE" "$table")"
