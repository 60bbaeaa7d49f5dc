#!/usr/bin/env bash
# posecast against its peer, Colyseus 0.18 (scripts/peer), on the same
# workload and this machine's cores: rooms of 50, 20 Hz head poses, what
# changed sent every 200 ms. For each size, one after the other:
#   a. posecast, posebot free-running at --hz
#   b. posecast, posebot on its default schedule: a pose per tick, in step
#      (and with LOSS, also two per tick, posebot --copies 2)
#   c. Colyseus over ws://, the load from scripts/peer/load.mjs
#   d. Colyseus over wss:// (a self-signed certificate made here, in bin/)
# then writes one table into docs/BENCHMARKS.md between the bench-peer markers.
#
#   SIZES="500 1000" DURATION=40s RAMP=10s scripts/bench-peer.sh
#
# With LOSS=2 the same runs drop 2 % of the packets on the run's loopback
# ports (an nftables table of its own, removed on exit) and the table goes
# between the bench-peer-loss markers. `make bench-peer` installs
# scripts/peer's packages first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-docs.sh

SIZES=${SIZES:-"500 1000"}
PER_ROOM=${PER_ROOM:-50}
HZ=${HZ:-20}
DURATION=${DURATION:-40s}
RAMP=${RAMP:-10s}
LOSS=${LOSS:-0}
WORKERS=${WORKERS:-2}
OUT=${OUT:-bin/bench-peer}
UDP_PORT=${UDP_PORT:-14433}
HTTP_PORT=${HTTP_PORT:-18080}
PEER_PORT=${PEER_PORT:-12567}

[ -d scripts/peer/node_modules ] || { echo "scripts/peer/node_modules is missing: run make bench-peer (or npm ci in scripts/peer)" >&2; exit 1; }
# Another server on these ports would answer in place of the run's own.
for p in "u $UDP_PORT" "t $HTTP_PORT" "t $PEER_PORT"; do
  read -r proto port <<<"$p"
  if [ -n "$(ss -Hln"$proto" "sport = :$port")" ]; then
    echo "port $port is taken here; choose others with UDP_PORT, HTTP_PORT and PEER_PORT" >&2
    exit 1
  fi
done
go build -o bin/ ./cmd/...
rm -rf "$OUT" && mkdir -p "$OUT"
# The wss runs' certificate, with the address the clients dial in it, so that
# they check it against it as their CA rather than not checking at all.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$OUT/peer-key.pem" -out "$OUT/peer-cert.pem" 2>/dev/null

server_pid=
loss_table=
cleanup() {
  stop_server
  if [ -n "$loss_table" ]; then
    echo "== nftables dropped $(nft list table inet posecast_loss 2>/dev/null | awk '/drop/ { for (i = 1; i < NF; i++) if ($i == "packets") n += $(i + 1) } END { print n + 0 }') packets"
    nft delete table inet posecast_loss 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_loss drops LOSS % of the packets to and from the run's ports, on
# the input hook (each loopback packet passes it once). It fails when
# nftables cannot be had or the kernel refuses the table.
start_loss() {
  if ! command -v nft >/dev/null; then
    echo "== installing nftables for the loss runs"
    { apt-get install -y -qq nftables || { apt-get update -qq && apt-get install -y -qq nftables; }; } >/dev/null 2>&1 || return 1
  fi
  nft delete table inet posecast_loss 2>/dev/null || true
  nft add table inet posecast_loss 2>/dev/null || return 1
  loss_table=1
  nft add chain inet posecast_loss input '{ type filter hook input priority 0; policy accept; }' &&
    nft add rule inet posecast_loss input udp dport "$UDP_PORT" numgen random mod 100 '<' "$LOSS" counter drop &&
    nft add rule inet posecast_loss input udp sport "$UDP_PORT" numgen random mod 100 '<' "$LOSS" counter drop &&
    nft add rule inet posecast_loss input tcp dport "$PEER_PORT" numgen random mod 100 '<' "$LOSS" counter drop &&
    nft add rule inet posecast_loss input tcp sport "$PEER_PORT" numgen random mod 100 '<' "$LOSS" counter drop
}

start_posecast() {
  bin/posecast --listen "127.0.0.1:$UDP_PORT" --http "127.0.0.1:$HTTP_PORT" --log-level warn \
    --max-members $(( PER_ROOM * 2 )) --max-sessions-per-ip 100000 --pprof >"$OUT/$1.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 50); do
    kill -0 "$server_pid" 2>/dev/null || break
    curl -fsS "http://127.0.0.1:$HTTP_PORT/healthz" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "posecast did not come up: $OUT/$1.log" >&2
  exit 1
}

# run_posebot NAME ARGS... runs posebot against the posecast started, into
# $OUT/NAME.json.
run_posebot() {
  local name=$1
  shift
  start_posecast "$name"
  bin/posebot --server "http://127.0.0.1:$HTTP_PORT" --rooms "$rooms" --per-room "$PER_ROOM" \
    --duration "$DURATION" --ramp "$RAMP" --join-timeout 30s --server-pid "$server_pid" \
    --json "$OUT/$name.json" "$@" | tail -n 18 || echo "(posebot reported a failed run)"
  stop_server
}

# run_colyseus NAME ws|wss runs the Colyseus server and load.mjs against it.
run_colyseus() {
  local name=$1 scheme=$2 tls=()
  [ "$scheme" = wss ] && tls=(--tls-cert "$OUT/peer-cert.pem" --tls-key "$OUT/peer-key.pem")
  node scripts/peer/server.mjs --port "$PEER_PORT" --max-clients $(( PER_ROOM * 2 )) "${tls[@]}" >"$OUT/$name.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    grep -q listening "$OUT/$name.log" && break
    kill -0 "$server_pid" 2>/dev/null || { echo "the Colyseus server did not start:" >&2; cat "$OUT/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  NODE_EXTRA_CA_CERTS="$OUT/peer-cert.pem" node scripts/peer/load.mjs --server "$scheme://127.0.0.1:$PEER_PORT" \
    --rooms "$rooms" --per-room "$PER_ROOM" --hz "$HZ" --duration "$DURATION" --ramp "$RAMP" \
    --workers "$WORKERS" --join-timeout 30s --server-pid "$server_pid" --json "$OUT/$name.json" \
    | tail -n 16 || echo "(the load generator reported a failed run)"
  stop_server
}

block=bench-peer
loss_note=
if [ "$LOSS" != 0 ]; then
  block=bench-peer-loss
  if ! start_loss; then
    echo "LOSS=$LOSS: nftables could not be installed or the kernel refused its table; the loss runs are skipped" >&2
    exit 0
  fi
  loss_note=" $LOSS % of the packets dropped at random each way on the run's ports (nftables, on loopback)."
  echo "== dropping $LOSS % of the packets on udp $UDP_PORT and tcp $PEER_PORT"
fi

for n in $SIZES; do
  rooms=$(( (n + PER_ROOM - 1) / PER_ROOM ))
  n5=$(printf %05d "$n")
  echo "== $n clients in $rooms rooms of $PER_ROOM: posecast, posebot free-running at $HZ Hz"
  run_posebot "$n5-a-posecast" --hz "$HZ"
  echo "== $n clients: posecast, posebot sending a pose per tick"
  run_posebot "$n5-b-posecast-tick"
  if [ "$LOSS" != 0 ]; then
    echo "== $n clients: posecast, posebot sending two poses per tick"
    run_posebot "$n5-b-posecast-tick2" --copies 2
  fi
  echo "== $n clients: Colyseus over ws://"
  run_colyseus "$n5-c-colyseus-ws" ws
  echo "== $n clients: Colyseus over wss://"
  run_colyseus "$n5-d-colyseus-wss" wss
done

table=$(node scripts/peer/table.mjs "$OUT"/*.json)
echo "$table"
cmd="SIZES=\"$SIZES\" DURATION=$DURATION RAMP=$RAMP scripts/bench-peer.sh"
[ "$LOSS" = 0 ] || cmd="LOSS=$LOSS $cmd"
write_block "$block" "$(printf '`%s` on %s, %s, Node.js %s.\nRooms of %s; head poses at %s Hz (Colyseus, and posecast free-running) or in step with the tick (posecast); %s per run (%s ramp); posecast tick and Colyseus patch rate 200 ms. Load: posebot, and scripts/peer/load.mjs (Colyseus SDK) in %s worker processes.%s\n\n%s' \
  "$cmd" "$(date -u +%Y-%m-%d)" "$(machine)" "$(node --version)" \
  "$PER_ROOM" "$HZ" "$DURATION" "$RAMP" "$WORKERS" "$loss_note" "$table")"
