#!/usr/bin/env bash
# Three posecast nodes on this machine as one cluster, on this machine's
# PostgreSQL, until Ctrl-C.
#
#   NATS_URL=nats://host:4222   use that NATS (JetStream on) instead of one
#                               embedded in the first node
#   DATABASE_URL=postgres://... the shared store (default: database posecast
#                               on 127.0.0.1:5432 as postgres, made if missing)
#   POSECAST_AUTH_SECRET=...    the shared secret (default: a random one)
#   NATS_REPLICAS=3             copies of the directory's buckets (default 1;
#                               3 for a NATS_URL of three servers)
#   ROOM=lobby                  the room the printed links open
set -euo pipefail
cd "$(dirname "$0")/.."

room=${ROOM:-lobby}
secret=${POSECAST_AUTH_SECRET:-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')}
export POSECAST_AUTH_SECRET=$secret

if [ -z "${DATABASE_URL:-}" ]; then
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    echo "run-cluster: no PostgreSQL answers on 127.0.0.1:5432; start one or set DATABASE_URL" >&2
    exit 1
  fi
  psql -q -h 127.0.0.1 -U postgres -d postgres -tc "SELECT 1 FROM pg_database WHERE datname = 'posecast'" | grep -q 1 ||
    psql -q -h 127.0.0.1 -U postgres -d postgres -c "CREATE DATABASE posecast"
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/posecast
fi
export DATABASE_URL

make --no-print-directory build >/dev/null

nats=${NATS_URL:-nats://127.0.0.1:14222}
embed=()
[ -z "${NATS_URL:-}" ] && embed=(--nats-embed)

# A page loaded from one node follows its room to another node: every
# node's pages are allowed origins everywhere.
origins=""
for port in 8080 8081 8082; do
  origins+="http://127.0.0.1:$port,http://localhost:$port,"
done

pids=()
stop() {
  trap - INT TERM EXIT
  [ ${#pids[@]} -gt 0 ] && kill -TERM "${pids[@]}" 2>/dev/null
  wait
}
trap stop INT TERM EXIT

for i in 1 2 3; do
  args=(--node-id "node$i" --nats-url "$nats" --nats-replicas "${NATS_REPLICAS:-1}" --listen "127.0.0.1:$((4432 + i))" --http "127.0.0.1:$((8079 + i))"
        --advertise-url "https://127.0.0.1:$((4432 + i))/wt" --allowed-origins "${origins%,}")
  [ "$i" = 1 ] && args+=("${embed[@]}")
  bin/posecast "${args[@]}" > >(sed -u "s/^/node$i | /") 2>&1 &
  pids+=($!)
  # The first node may embed NATS: the others need it up.
  [ "$i" = 1 ] && sleep 2
done

sleep 2
echo
echo "Three nodes, NATS at $nats, store at ${DATABASE_URL%%\?*}."
for i in 1 2 3; do
  echo "  node$i  page http://127.0.0.1:$((8079 + i))/  WebTransport https://127.0.0.1:$((4432 + i))/wt"
done
echo
echo "Room '$room' opened from any node runs on one node; pages follow it there:"
for user in ada bob; do
  tok=$(bin/posecast token --room "$room" --user "$user" --name "$user" --ttl 24h)
  echo "  $user  http://127.0.0.1:8080/?room=$room&token=$tok"
done
echo
echo "Presence of every room, from any node:"
echo "  curl -H 'Authorization: Bearer $(bin/posecast token --api)' 'http://127.0.0.1:8081/api/presence?match=.'"
echo "Ctrl-C stops the nodes."
wait
