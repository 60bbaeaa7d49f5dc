// The load generator for the Colyseus peer: posebot's workload and
// measurements (cmd/posebot) on the Colyseus client SDK. Clients join rooms
// "bot-<i>" of the server in server.mjs, each sends its head pose --hz times a
// second, and each measures the latency of the poses it receives and how
// stale its view of the others gets. The clients are spread over worker
// processes (a room's clients all in one), so the load is not bound by one
// JavaScript thread; the parent merges their results.
//
//   node load.mjs --server ws://127.0.0.1:2567 --rooms 10 --per-room 50 \
//     --hz 20 --duration 40s --ramp 10s --server-pid PID --json out.json
//
// The JSON has posebot's field names, plus load_cpu_s (this generator's CPU
// seconds, workers and parent) and system.
import { execFileSync, fork } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

// histogram counts millisecond values as posebot's does: 1 ms buckets below
// one second, then 100 ms buckets up to a minute, the rest in the last.
const FINE = 1000, COARSE = 600;

class Histogram {
  constructor() {
    this.buckets = new Float64Array(FINE + COARSE + 1);
    this.count = 0;
    this.max = 0;
  }

  static bucketOf(ms) {
    if (ms < 0) return 0;
    if (ms < FINE) return Math.floor(ms);
    if (ms < FINE + COARSE * 100) return FINE + Math.floor((ms - FINE) / 100);
    return FINE + COARSE;
  }

  // bucketValue is a bucket's upper edge in milliseconds.
  static bucketValue(b) {
    return b < FINE ? b : FINE + (b - FINE + 1) * 100;
  }

  record(ms) {
    this.buckets[Histogram.bucketOf(ms)]++;
    this.count++;
    if (ms > this.max) this.max = ms;
  }

  quantile(q) {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let b = 0; b < this.buckets.length; b++) {
      seen += this.buckets[b];
      if (seen >= rank) return Math.min(Histogram.bucketValue(b), this.max);
    }
    return this.max;
  }

  // toJSON and merge carry a histogram from a worker to the parent: only the
  // buckets that hold values.
  toJSON() {
    const nz = [];
    this.buckets.forEach((n, b) => { if (n) nz.push([b, n]); });
    return { buckets: nz, count: this.count, max: this.max };
  }

  merge(h) {
    for (const [b, n] of h.buckets) this.buckets[b] += n;
    this.count += h.count;
    this.max = Math.max(this.max, h.max);
  }
}

// parseDuration reads a Go-style duration (40s, 500ms, 1m, 1m30s) in ms.
function parseDuration(s) {
  const unit = { ms: 1, s: 1000, m: 60000, h: 3600000 };
  let ms = 0, rest = String(s);
  while (rest) {
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)/.exec(rest);
    if (!m) throw new Error(`bad duration ${s}`);
    ms += Number(m[1]) * unit[m[2]];
    rest = rest.slice(m[0].length);
  }
  return ms;
}

const round1 = (v) => Math.round(v * 10) / 10;
const cpuSeconds = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };

// ---- the parent: flags, workers, the server's usage, the report ----

async function parent() {
  const { values: f } = parseArgs({
    options: {
      server: { type: "string", default: "ws://127.0.0.1:2567" },
      rooms: { type: "string", default: "4" },
      "per-room": { type: "string", default: "25" },
      hz: { type: "string", default: "20" },
      duration: { type: "string", default: "30s" },
      ramp: { type: "string", default: "3s" },
      "room-prefix": { type: "string", default: "bot-" },
      "join-timeout": { type: "string", default: "10s" },
      "server-pid": { type: "string", default: "0" },
      workers: { type: "string", default: "2" },
      system: { type: "string" },
      "max-error-rate": { type: "string", default: "0.01" },
      json: { type: "string" },
    },
  });
  const cfg = {
    server: f.server.replace(/\/$/, ""),
    rooms: Number(f.rooms),
    perRoom: Number(f["per-room"]),
    hz: Number(f.hz),
    duration: parseDuration(f.duration),
    ramp: parseDuration(f.ramp),
    roomPrefix: f["room-prefix"],
    joinTimeout: parseDuration(f["join-timeout"]),
  };
  const workers = Math.max(1, Math.min(Number(f.workers), cfg.rooms));
  const serverPID = Number(f["server-pid"]);
  const system = f.system ?? (cfg.server.startsWith("wss:") ? "colyseus-wss" : "colyseus-ws");
  if (!(cfg.rooms >= 1 && cfg.perRoom >= 1)) throw new Error("--rooms and --per-room must be at least 1");
  if (!(cfg.hz > 0 && cfg.hz <= 1000)) throw new Error("--hz must be in (0, 1000]");
  if (!(cfg.duration > cfg.ramp && cfg.ramp >= 0)) throw new Error("--duration must be longer than --ramp");
  const n = cfg.rooms * cfg.perRoom;

  // Start the workers and wait until each has loaded the SDK.
  const procs = [];
  for (let w = 0; w < workers; w++) {
    const p = fork(fileURLToPath(import.meta.url), ["--worker"], { stdio: "inherit" });
    procs.push(p);
    await new Promise((resolve, reject) => {
      p.once("message", (m) => (m.type === "ready" ? resolve() : reject(new Error(`worker: ${JSON.stringify(m)}`))));
      p.once("exit", (code) => reject(new Error(`worker exited with ${code}`)));
    });
  }

  const usage = new ServerUsage(serverPID);
  const started = Date.now();
  const cpuStart = cpuSeconds();
  usage.sample();
  const progress = new Array(workers).fill(null);
  const results = procs.map((p, w) => new Promise((resolve, reject) => {
    p.on("message", (m) => {
      if (m.type === "progress") progress[w] = m;
      if (m.type === "result") resolve(m);
    });
    p.once("exit", (code) => reject(new Error(`worker ${w} exited with ${code} before its result`)));
  }));
  // Room r is worker r mod workers': a room's clients are all in one worker,
  // where its staleness can be sampled.
  procs.forEach((p, w) => p.send({ type: "start", cfg, started, worker: w, workers, clients: n }));

  // A live line each second; rates are each worker's over its own last
  // second, summed.
  const live = setInterval(() => {
    usage.sample();
    const sum = { joined: 0, sent: 0, received: 0, errors: {} };
    for (const p of progress.filter(Boolean)) {
      sum.joined += p.joined; sum.sent += p.sentRate; sum.received += p.receivedRate;
      for (const [k, v] of Object.entries(p.errors)) sum.errors[k] = (sum.errors[k] ?? 0) + v;
    }
    console.log(`joined ${sum.joined}/${n}  poses/s ${sum.sent.toFixed(0)}  updates/s ${sum.received.toFixed(0)}  errors ${errorSummary(sum.errors)}`);
  }, 1000);

  const done = await Promise.all(results);
  clearInterval(live);
  const elapsed = (Date.now() - started) / 1000;
  usage.sample();
  const loadCPU = cpuSeconds() - cpuStart + done.reduce((s, r) => s + r.cpuS, 0);

  const latency = new Histogram(), stale = new Histogram(), joins = new Histogram();
  const errors = {};
  let joined = 0, posesSent = 0, updatesReceived = 0, bytesSent = 0, bytesReceived = 0;
  for (const r of done) {
    latency.merge(r.latency); stale.merge(r.stale); joins.merge(r.joins);
    joined += r.joined; posesSent += r.posesSent; updatesReceived += r.updatesReceived;
    bytesSent += r.bytesSent; bytesReceived += r.bytesReceived;
    for (const [k, v] of Object.entries(r.errors)) errors[k] = (errors[k] ?? 0) + v;
  }
  const rep = {
    system,
    clients: n, joined, rooms: cfg.rooms, per_room: cfg.perRoom, hz: cfg.hz, hands: false,
    join_ms: { p50: joins.quantile(0.5), p99: joins.quantile(0.99) },
    latency_ms: { p50: latency.quantile(0.5), p90: latency.quantile(0.9), p99: latency.quantile(0.99), max: latency.max },
    staleness_ms: { p50: stale.quantile(0.5), p99: stale.quantile(0.99), max: stale.max },
    poses_sent: posesSent, updates_received: updatesReceived,
    bytes_sent: bytesSent, bytes_received: bytesReceived,
    errors, tick_ms: 200, duration_s: round1(elapsed),
    load_cpu_s: round1(loadCPU),
  };
  if (usage.ok) {
    rep.server_cpu_s = round1(usage.cpuEnd - usage.cpuStart);
    rep.server_rss_mb = round1(usage.rssPeak / (1 << 20));
  }
  summary(rep);
  if (f.json) writeFileSync(f.json, JSON.stringify(rep, null, 2) + "\n");
  const total = Object.values(errors).reduce((a, b) => a + b, 0);
  if (joined < n) fail(`${n - joined} of ${n} clients did not join`);
  if (total / n > Number(f["max-error-rate"])) fail(`${total} errors for ${n} clients is over --max-error-rate: ${errorSummary(errors)}`);
}

function fail(msg) {
  console.error(`load: ${msg}`);
  process.exitCode = 1;
}

// ServerUsage follows the server's CPU time and resident memory as posebot
// does: CPU from /proc/PID/stat (utime + stime), the peak of VmRSS sampled
// each second.
class ServerUsage {
  constructor(pid) {
    this.pid = pid;
    this.ok = false;
    this.tck = pid > 0 ? Number(execFileSync("getconf", ["CLK_TCK"]).toString()) : 100;
  }

  read() {
    const stat = readFileSync(`/proc/${this.pid}/stat`, "utf8");
    // The command name, in parentheses, may hold spaces: split after it.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const cpu = (Number(fields[11]) + Number(fields[12])) / this.tck;
    const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${this.pid}/status`, "utf8"));
    return { cpu, rss: Number(rss[1]) * 1024 };
  }

  sample() {
    if (this.pid <= 0) return;
    let u;
    try { u = this.read(); } catch { return; } // the server may be gone: keep what was seen
    if (!this.ok) {
      Object.assign(this, { ok: true, cpuStart: u.cpu, cpuEnd: u.cpu, rssPeak: u.rss });
      return;
    }
    this.cpuEnd = u.cpu;
    this.rssPeak = Math.max(this.rssPeak, u.rss);
  }
}

function errorSummary(errs) {
  const kinds = Object.keys(errs).sort();
  return kinds.length ? kinds.map((k) => `${k}=${errs[k]}`).join(" ") : "0";
}

function summary(r) {
  const rows = [
    ["system", r.system],
    ["clients joined", `${r.joined} / ${r.clients} in ${r.rooms} rooms of ${r.per_room}`],
    ["join", `p50 ${r.join_ms.p50} ms  p99 ${r.join_ms.p99} ms`],
    ["latency", `p50 ${r.latency_ms.p50} ms  p90 ${r.latency_ms.p90} ms  p99 ${r.latency_ms.p99} ms  max ${r.latency_ms.max} ms`],
    ["staleness", `p50 ${r.staleness_ms.p50} ms  p99 ${r.staleness_ms.p99} ms  max ${r.staleness_ms.max} ms`],
    ["poses sent", `${r.poses_sent} (${(r.poses_sent / r.duration_s).toFixed(0)}/s)`],
    ["updates received", `${r.updates_received} (${(r.updates_received / r.duration_s).toFixed(0)}/s)`],
    ["bytes", `sent ${r.bytes_sent}  received ${r.bytes_received}`],
    ["errors", errorSummary(r.errors)],
    ["server tick", `${r.tick_ms} ms`],
  ];
  if (r.server_cpu_s !== undefined) {
    rows.push(["server CPU", `${r.server_cpu_s} s (${(r.server_cpu_s / r.duration_s).toFixed(2)} cores)`]);
    rows.push(["server RSS peak", `${r.server_rss_mb} MB`]);
  }
  rows.push(["load CPU", `${r.load_cpu_s} s (${(r.load_cpu_s / r.duration_s).toFixed(2)} cores)`]);
  rows.push(["duration", `${r.duration_s} s`]);
  console.log("");
  for (const [k, v] of rows) console.log(`${k.padEnd(18)}${v}`);
}

// ---- a worker: its rooms' clients ----

async function worker() {
  const { Client, Callbacks } = await import("@colyseus/sdk");
  process.send({ type: "ready" });
  const { cfg, started, worker: w, workers, clients: n } = await new Promise((resolve) => process.once("message", resolve));
  const cpuStart = cpuSeconds();
  const end = started + cfg.duration;
  const sdk = new Client(cfg.server);
  const latency = new Histogram(), stale = new Histogram(), joins = new Histogram();
  const errors = {};
  const failed = (kind) => { errors[kind] = (errors[kind] ?? 0) + 1; };
  let joined = 0, posesSent = 0, updatesReceived = 0, bytesSent = 0, bytesReceived = 0;
  let ending = false;
  const rooms = new Map(); // room name -> the bots that joined it
  const bots = [];
  const period = 1000 / cfg.hz;

  // startBot runs client i from its place in the ramp to the end of the run.
  async function startBot(i, name) {
    await sleep(started + (cfg.ramp * i) / n - Date.now());
    if (Date.now() >= end) return;
    const began = performance.now();
    const joining = sdk.joinOrCreate("pose", { room: name });
    let timer;
    const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error("timeout")), cfg.joinTimeout); });
    let room;
    try {
      room = await Promise.race([joining, timeout]);
    } catch (err) {
      joining.then((r) => r.leave(), () => {});
      if (!ending) failed(err.message === "timeout" ? "timeout" : "join");
      return;
    } finally {
      clearTimeout(timer);
    }
    if (ending) { room.leave(); return; }
    joins.record(Math.floor(performance.now() - began));
    joined++;
    // A dropped connection ends the bot, as a session that ends does in
    // posebot: no reconnection.
    room.reconnection.enabled = false;
    const bot = { id: i, room, sessionId: room.sessionId, joinedAt: Date.now(), newest: new Map(), sending: null, left: false };
    bots.push(bot);
    if (!rooms.has(name)) rooms.set(name, []);
    const members = rooms.get(name);
    // The matchmaker must put every client of a name in one room: count a
    // client that landed in another as an error of its own.
    if (members.length > 0 && members[0].room.roomId !== room.roomId) failed("split_room");
    members.push(bot);

    // Application bytes, as posebot counts them: every WebSocket message's
    // payload, sent and received, from the join on.
    const tr = room.connection.transport;
    const send = tr.send.bind(tr);
    tr.send = (data) => { bytesSent += data.byteLength; send(data); };
    tr.ws.addEventListener("message", (ev) => { bytesReceived += ev.data.byteLength ?? ev.data.length; });

    room.onLeave(() => {
      bot.left = true;
      clearTimeout(bot.sending);
      if (!ending) failed("disconnect");
    });

    // Every change of another player's t is a pose update received.
    const cb = Callbacks.get(room);
    cb.onAdd("players", (player, key) => {
      if (key === bot.sessionId) return;
      cb.listen(player, "t", (t) => {
        if (t === 0) return; // no pose yet
        latency.record(((Date.now() >>> 0) - t) | 0);
        updatesReceived++;
        const cur = bot.newest.get(key);
        if (cur === undefined || ((t - cur) | 0) > 0) bot.newest.set(key, t);
      });
    });

    // Start at a random point of the period, as real headsets do.
    const walk = motion(i, started);
    await sleep(Math.random() * period);
    if (ending || bot.left) return;
    // A fixed schedule, as Go's ticker keeps: each send is due a period after
    // the last one was due, not after it ran; when more than a period
    // behind, the missed sends are dropped.
    let due = Date.now();
    const tick = () => {
      if (ending || bot.left) return;
      if (room.connection.isOpen) {
        try {
          room.send("pose", walk(Date.now()));
          posesSent++;
        } catch {
          failed("send");
        }
      }
      due += period;
      if (due < Date.now() - period) due = Date.now();
      bot.sending = setTimeout(tick, due - Date.now());
    };
    tick();
  }

  // sampleStaleness records, for every bot and every other bot in its room,
  // the age of the newest pose it holds for that bot; a pair with no pose
  // yet counts from when the later of the two joined.
  function sampleStaleness() {
    const now = Date.now(), now32 = now >>> 0;
    for (const members of rooms.values()) {
      for (const rx of members) {
        for (const tx of members) {
          if (tx === rx) continue;
          const t = rx.newest.get(tx.sessionId);
          if (t !== undefined) stale.record((now32 - t) | 0);
          else stale.record(now - Math.max(rx.joinedAt, tx.joinedAt));
        }
      }
    }
  }

  const starts = [];
  for (let i = 0; i < n; i++) {
    const r = i % cfg.rooms;
    if (r % workers === w) starts.push(startBot(i, `${cfg.roomPrefix}${r}`));
  }
  const sampler = setInterval(sampleStaleness, 100);
  let last = { sent: 0, received: 0, at: Date.now() };
  const progress = setInterval(() => {
    const now = Date.now(), secs = (now - last.at) / 1000;
    process.send({ type: "progress", joined, sentRate: (posesSent - last.sent) / secs, receivedRate: (updatesReceived - last.received) / secs, errors });
    last = { sent: posesSent, received: updatesReceived, at: now };
  }, 1000);
  await sleep(end - Date.now());
  ending = true;
  clearInterval(sampler);
  clearInterval(progress);
  for (const b of bots) clearTimeout(b.sending);
  await Promise.race([Promise.allSettled(starts), sleep(1000)]);
  await Promise.race([Promise.allSettled(bots.filter((b) => !b.left).map((b) => b.room.leave())), sleep(3000)]);
  process.send({
    type: "result",
    latency: latency.toJSON(), stale: stale.toJSON(), joins: joins.toJSON(),
    joined, posesSent, updatesReceived, bytesSent, bytesReceived, errors,
    cpuS: cpuSeconds() - cpuStart,
  }, () => process.exit(0));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

// motion is a bot's slow walk, as posebot's: a circle of 1 to 3 m at 0.2 to
// 0.5 rad/s around the origin, the head bobbing and turning, each bot with its
// own phase. It returns the pose message at a time, stamped with it.
function motion(id, start) {
  let seed = id + 1; // mulberry32: the same walk for the same bot every run
  const rnd = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  const radius = 1 + rnd() * 2, speed = 0.2 + rnd() * 0.3, phase = rnd() * 2 * Math.PI;
  const lookFreq = 0.5 + rnd(), lookAmp = 0.3 + rnd() * 0.5;
  return (now) => {
    const s = (now - start) / 1000;
    const a = phase + speed * s;
    const yaw = -a + lookAmp * Math.sin(lookFreq * s), pitch = 0.1 * Math.sin(0.7 * s);
    const sy = Math.sin(yaw / 2), cy = Math.cos(yaw / 2), sp = Math.sin(pitch / 2), cp = Math.cos(pitch / 2);
    return {
      x: radius * Math.cos(a), y: 1.6 + 0.02 * Math.sin(4 * s), z: radius * Math.sin(a),
      qx: cy * sp, qy: sy * cp, qz: -sy * sp, qw: cy * cp,
      t: now >>> 0, // the sender's time, ms mod 2^32
    };
  };
}

if (process.argv.includes("--worker")) {
  await worker();
} else {
  await parent();
}
