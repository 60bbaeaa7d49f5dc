#!/usr/bin/env bash
# Measures the capacity of one node: starts posecast and runs posebot against
# it on loopback for a series of client counts (rooms of 50, 20 Hz, head
# poses), then writes the table into docs/BENCHMARKS.md between the
# bench-load markers. Bot and server share this machine's cores.
#
#   SIZES="100 500 1000 2000" DURATION=40s RAMP=10s scripts/bench-load.sh
#
# With SERVER=http://host:8080 it starts no server and loads that one, whose
# CPU and memory posebot then reads from its /metrics: run it on a machine of
# its own to measure a server without the load generator beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-docs.sh

SIZES=${SIZES:-"100 500 1000 2000 3000"}
PER_ROOM=${PER_ROOM:-50}
# HZ=20 sends 20 poses a second per client, free-running; without it the
# clients send one pose per tick, in step with it (posebot's default).
HZ=${HZ:-}
DURATION=${DURATION:-40s}
RAMP=${RAMP:-10s}
OUT=${OUT:-bin/bench-load}
UDP_PORT=${UDP_PORT:-14433}
HTTP_PORT=${HTTP_PORT:-18080}

go build -o bin/ ./cmd/...
rm -rf "$OUT" && mkdir -p "$OUT"
server_pid=
trap stop_server EXIT

for n in $SIZES; do
  rooms=$(( (n + PER_ROOM - 1) / PER_ROOM ))
  server=${SERVER:-}
  pid_flag=()
  if [ -z "$server" ]; then
    bin/posecast --listen "127.0.0.1:$UDP_PORT" --http "127.0.0.1:$HTTP_PORT" --log-level warn \
      --max-members $(( PER_ROOM * 2 )) --max-sessions-per-ip 100000 --pprof >"$OUT/server-$n.log" 2>&1 &
    server_pid=$!
    server="http://127.0.0.1:$HTTP_PORT"
    pid_flag=(--server-pid "$server_pid")
    for _ in $(seq 50); do
      curl -fsS "$server/healthz" >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi
  echo "== $n clients in $rooms rooms of $PER_ROOM, ${HZ:+$HZ Hz}${HZ:-a pose per tick}, $DURATION against $server"
  bin/posebot --server "$server" --rooms "$rooms" --per-room "$PER_ROOM" ${HZ:+--hz "$HZ"} \
    --duration "$DURATION" --ramp "$RAMP" --join-timeout 30s "${pid_flag[@]}" \
    --json "$OUT/$(printf %05d "$n").json" | tail -n 16 || echo "(posebot reported a failed run)"
  stop_server
done

table=$(bin/posebot table "$OUT"/*.json)
echo "$table"
where=$(machine)
if [ -n "${SERVER:-}" ]; then
  where="$where, loading $SERVER (a server whose machine this line does not describe)"
fi
write_block bench-load "$(printf '`%s` on %s, %s.\nRooms of %s, head poses %s, %s per run (%s ramp), server tick 200 ms.\n\n%s' \
  "${SERVER:+SERVER=$SERVER }${HZ:+HZ=$HZ }SIZES=\"$SIZES\" DURATION=$DURATION RAMP=$RAMP scripts/bench-load.sh" "$(date -u +%Y-%m-%d)" "$where" "$PER_ROOM" "${HZ:+at $HZ Hz}${HZ:-once per tick}" "$DURATION" "$RAMP" "$table")"
