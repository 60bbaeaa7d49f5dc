#!/usr/bin/env bash
# Measures the transport's floor: posecast's traffic (rooms of 50 aside,
# CONNS connections on loopback sending small datagrams at 20 Hz, one
# 1000-byte datagram back to each every 200 ms) over bare QUIC and over
# WebTransport sessions, with none of posecast on the path. Writes the table
# into docs/BENCHMARKS.md between the bench-floor markers.
#
#   SIZES="500 1000 1500 2000" DURATION=30s scripts/bench-floor.sh
#
# HZ sets the client datagrams' rate (HZ=5: one per tick, as posecast's
# clients send by default); a rate other than 20 goes between the
# bench-floor-HZhz markers.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bench-docs.sh

SIZES=${SIZES:-"500 1000 1500 2000"}
STACKS=${STACKS:-"quic webtransport"}
DURATION=${DURATION:-30s}
RAMP=${RAMP:-8s}
HZ=${HZ:-20}
block=bench-floor prefix=
[ "$HZ" = 20 ] || block=bench-floor-${HZ}hz prefix="HZ=$HZ "

go build -o bin/ ./scripts/quicfloor
rows=
for n in $SIZES; do
  for stack in $STACKS; do
    echo "== $stack, $n connections, $HZ Hz, $DURATION"
    row=$(bin/quicfloor --stack "$stack" --conns "$n" --hz "$HZ" --duration "$DURATION" --ramp "$RAMP" --row)
    echo "$row"
    rows+="$row"$'\n'
  done
done

table=$(printf '| stack | connections | failed | datagrams in/s | datagrams out/s | server (cores) | load (cores) | together |\n|---|---:|---:|---:|---:|---:|---:|---:|\n%s' "${rows%$'\n'}")
write_block "$block" "$(printf '`%sSIZES="%s" STACKS="%s" DURATION=%s RAMP=%s scripts/bench-floor.sh` on %s, %s.\nClient datagrams at %s Hz. Cores are measured from a second after the ramp to the end of each run.\n\n%s' \
  "$prefix" "$SIZES" "$STACKS" "$DURATION" "$RAMP" "$(date -u +%Y-%m-%d)" "$(machine)" "$HZ" "$table")"
