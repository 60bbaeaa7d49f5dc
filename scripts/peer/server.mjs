// A Colyseus 0.18 server for posecast's workload, the peer that
// scripts/bench-peer.sh measures posecast against: one room type whose state
// is every member's head pose, patched to the members every 200 ms as
// posecast's tick is.
//
//   node server.mjs --port 2567 [--max-clients 100] [--tls-cert C --tls-key K]
//
// With --tls-cert/--tls-key it serves wss:// (and the matchmaking requests
// over HTTPS) with that certificate.
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { parseArgs } from "node:util";
import { Room, Server } from "@colyseus/core";
import { WebSocketTransport } from "@colyseus/ws-transport";
import { schema, t } from "@colyseus/schema";

const { values: opts } = parseArgs({
  options: {
    port: { type: "string", default: "2567" },
    host: { type: "string", default: "127.0.0.1" },
    "max-clients": { type: "string", default: "100" },
    "tls-cert": { type: "string" },
    "tls-key": { type: "string" },
  },
});

// A member's head: position, rotation and the sender's timestamp (ms mod
// 2^32), which the load generator reads back to measure latency.
const Player = schema({
  x: t.float32(), y: t.float32(), z: t.float32(),
  qx: t.float32(), qy: t.float32(), qz: t.float32(), qw: t.float32(),
  t: t.uint32(),
}, "Player");

const PoseState = schema({ players: t.map(Player) }, "PoseState");

class PoseRoom extends Room {
  onCreate() {
    this.maxClients = Number(opts["max-clients"]);
    this.state = new PoseState();
    // What changed goes out every 200 ms (posecast's default tick);
    // setPatchRate is deprecated in 0.18 for this setter, which does the same.
    this.patchRate = 200;
    this.onMessage("pose", (client, p) => {
      const pl = this.state.players.get(client.sessionId);
      if (!pl || typeof p !== "object" || p === null) return;
      pl.x = p.x; pl.y = p.y; pl.z = p.z;
      pl.qx = p.qx; pl.qy = p.qy; pl.qz = p.qz; pl.qw = p.qw;
      pl.t = p.t;
    });
  }

  onJoin(client) {
    this.state.players.set(client.sessionId, new Player());
  }

  onLeave(client) {
    this.state.players.delete(client.sessionId);
  }
}

const tls = opts["tls-cert"] && opts["tls-key"];
const httpServer = tls
  ? https.createServer({ cert: readFileSync(opts["tls-cert"]), key: readFileSync(opts["tls-key"]) })
  : http.createServer();
const server = new Server({ transport: new WebSocketTransport({ server: httpServer }), greet: false });
// Clients name their room in the join options: joinOrCreate("pose",
// { room: "bot-3" }) lands in the room created with that name, or creates it.
server.define("pose", PoseRoom).filterBy(["room"]);
await server.listen(Number(opts.port), opts.host);
console.log(`colyseus listening on ${tls ? "wss" : "ws"}://${opts.host}:${opts.port}`);
