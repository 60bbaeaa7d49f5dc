// Prints the results of scripts/bench-peer.sh (posebot's and load.mjs's JSON,
// which share their field names) as one Markdown table, in the order given.
//
//   node table.mjs bin/bench-peer/*.json
import { readFileSync } from "node:fs";

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: node table.mjs RESULT.json...");
  process.exit(2);
}

const fixed = (v, digits) => (v === undefined ? "–" : v.toFixed(digits));

function errorSummary(errs = {}) {
  const kinds = Object.keys(errs).sort();
  return kinds.length ? kinds.map((k) => `${k}=${errs[k]}`).join(" ") : "0";
}

const rows = [
  "| system | clients | server CPU (cores) | server CPU per client (ms/s) | server RSS | load generator CPU (cores) | updates received/s | host UDP datagrams/s | latency p50 / p99 | staleness p50 / p99 | errors |",
  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
];
for (const f of files) {
  const r = JSON.parse(readFileSync(f, "utf8"));
  const secs = r.duration_s;
  // posebot's JSON names no system: it is posecast, with posebot's schedule.
  const system = r.system ?? (r.schedule === "free" ? `posecast, ${r.hz} Hz` : r.copies > 1 ? `posecast, ${r.copies} poses per tick` : "posecast, a pose per tick");
  const cores = r.server_cpu_s === undefined ? undefined : r.server_cpu_s / secs;
  const perClient = cores === undefined || !r.joined ? undefined : (cores * 1000) / r.joined;
  const rss = r.server_rss_mb === undefined ? "–" : `${r.server_rss_mb.toFixed(0)} MB`;
  const load = r.load_cpu_s === undefined ? undefined : r.load_cpu_s / secs;
  rows.push(`| ${system} | ${r.joined} | ${fixed(cores, 2)} | ${fixed(perClient, 2)} | ${rss} | ${fixed(load, 2)} | ` +
    `${(r.updates_received / secs).toFixed(0)} | ${r.host_udp ? r.host_udp.out_per_s.toFixed(0) : "–"} | ${r.latency_ms.p50} / ${r.latency_ms.p99} ms | ` +
    `${r.staleness_ms.p50} / ${r.staleness_ms.p99} ms | ${errorSummary(r.errors)} |`);
}
console.log(rows.join("\n"));
