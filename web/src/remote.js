// RemoteRoom is what the main thread knows of the room, from its worker's
// messages (channel.js): the room's state, the connection and its figures,
// and a playback per remote avatar of what its jitter buffer's intake took.
import { unpackPoints } from './channel.js';
import { PosePlayback } from './jitter.js';

export class RemoteRoom {
  constructor() {
    this.room = '';
    this.user = '';
    this.slot = -1;
    this.tickMs = 200;
    this.entities = null; // Map id -> components, once the state has come
    this.version = 0; // grows on every entity change, for the renderer
    this.presence = null; // Map user -> metas
    this.playbacks = new Map(); // avatar id -> PosePlayback
    this.status = { state: 'idle', detail: '', url: '', sessions: 0 };
    this.stats = { rtt: null, minRtt: 0, posesSent: 0, margin: 0, updateRate: 0, resyncs: 0 };
  }

  // receive takes a message from the worker at local time now.
  receive(m, now) {
    switch (m.type) {
      case 'status':
        this.status = { state: m.state, detail: m.detail, url: m.url, sessions: m.sessions };
        break;
      case 'stats':
        this.stats = { rtt: m.rtt, minRtt: m.minRtt, posesSent: m.posesSent, margin: m.margin, updateRate: m.updateRate, resyncs: m.resyncs };
        break;
      case 'room':
        this.room = m.room;
        this.user = m.user;
        this.slot = m.slot;
        this.tickMs = m.tickMs;
        this.presence = m.presence && new Map(m.presence);
        if (m.entities) {
          this.entities = new Map(m.entities);
          this.version++;
          for (const id of this.playbacks.keys()) if (this.entities.get(id)?.avatar !== true) this.playbacks.delete(id);
        }
        break;
      case 'points':
        for (const [id, point] of unpackPoints(m)) {
          let p = this.playbacks.get(id);
          if (!p) {
            p = new PosePlayback();
            this.playbacks.set(id, p);
          }
          p.add(point, now);
        }
        break;
    }
  }

  // avatars returns the remote avatars: [id, components, playback].
  *avatars() {
    if (!this.entities) return;
    for (const [id, p] of this.playbacks) {
      const c = this.entities.get(id);
      if (c) yield [id, c, p];
    }
  }

  // isStale reports whether every device of a user has stopped sending.
  isStale(user) {
    const metas = this.presence?.get(user);
    return !!metas && metas.length > 0 && metas.every((m) => m.stale);
  }
}
