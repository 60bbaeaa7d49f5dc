// Test support: a real posecast on loopback, built from this checkout, and a
// UDP relay that can cut a browser off the network.
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

function run(cmd, args, opts) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], ...opts });
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} ${args.join(' ')}: exit ${code}`))));
  });
}

// startPosecast builds cmd/posecast (with the page embedded as web/dist
// holds it) and runs it on free loopback ports with args. It resolves
// once the server is up, with its addresses, its log lines so far and
// growing, and stop, which ends it with SIGTERM and waits for it.
export async function startPosecast(args = []) {
  const dir = await mkdtemp(join(tmpdir(), 'posecast-e2e-'));
  const bin = join(dir, 'posecast');
  try {
    await run('go', ['build', '-o', bin, './cmd/posecast'], { cwd: repoRoot });
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const proc = spawn(bin, ['--listen', '127.0.0.1:0', '--http', '127.0.0.1:0', '--log-format', 'json', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  const log = [];
  const up = new Promise((resolve, reject) => {
    createInterface({ input: proc.stderr }).on('line', (line) => {
      let entry;
      try {
        entry = JSON.parse(line);
      } catch {
        entry = { msg: line };
      }
      log.push(entry);
      if (entry.msg === 'posecast is up') resolve(entry);
    });
    exited.then(({ code }) => reject(new Error(`posecast exited (${code}) before it was up: ${JSON.stringify(log)}`)));
  });
  let entry;
  try {
    entry = await up;
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  return {
    http: entry.http,
    webtransport: entry.webtransport,
    log,
    async stop() {
      proc.kill('SIGTERM');
      const { code } = await exited;
      await rm(dir, { recursive: true, force: true });
      return code;
    },
  };
}

// startRelay forwards UDP between clients and target (host:port), one
// upstream socket per client; while blocked it drops everything, as a
// network that went away would.
export async function startRelay(target) {
  const url = new URL(`udp://${target}`);
  const front = dgram.createSocket('udp4');
  await new Promise((resolve) => front.bind(0, '127.0.0.1', resolve));
  const flows = new Map();
  let blocked = false;
  front.on('message', (msg, from) => {
    if (blocked) return;
    const key = `${from.address}:${from.port}`;
    let up = flows.get(key);
    if (!up) {
      up = dgram.createSocket('udp4');
      up.on('message', (back) => {
        if (!blocked) front.send(back, from.port, from.address);
      });
      flows.set(key, up);
    }
    up.send(msg, Number(url.port), url.hostname);
  });
  return {
    port: front.address().port,
    block(b) {
      blocked = b;
    },
    close() {
      front.close();
      for (const up of flows.values()) up.close();
    },
  };
}
