// RoomView is what the page's session knows of its room, folded from the
// server's messages and pose updates as transport/client.go folds them:
// entities, presence, the slot of each avatar, and the intake of a jitter
// buffer per remote avatar, whose points it collects for the page to play
// out (channel.js).
import { PoseIntake } from './jitter.js';

const MAX_EVENTS = 20;
const RATE_WINDOW = 2000; // ms over which the pose update rate is counted
const RESYNC_RETRY = 1000; // ms after a refused resync before asking again
const RESYNC_WAIT = 5000; // ms before asking again for a resync whose state has not come (dropped unanswered)

const newer = (a, b) => ((a - b) | 0) > 0; // a after b, on a wrapping uint32

export class RoomView {
  constructor() {
    this.room = '';
    this.user = '';
    this.slot = -1;
    this.tickMs = 200;
    this.repeat = 3;
    this.farEvery = 1; // how many ticks apart far avatars come (joined.interest), 1 without interest management
    this.entities = null; // Map id -> components, once the state has come
    this.presence = null; // Map user -> metas
    this.slots = new Map(); // slot -> avatar id
    this.avatarSlots = new Map(); // avatar id -> slot: slots backwards
    this.intakes = new Map(); // avatar id -> PoseIntake
    this.points = []; // [avatar id, point] taken since the last drain
    this.poseSeq = new Map(); // avatar id -> seq of the update that carried its pose
    this.seq = 0; // the newest pose update received whole
    this.parts = new Map(); // seq -> {got: Set of parts, parts}
    this.resyncing = false; // asked for a resync, and its entities_state has not come
    this.resyncRef = 0; // the ref the resync went with, set by whoever sent it
    this.resyncAgain = 0; // when to ask again if its state has not come
    this.version = 0; // grows on every entity change, for the renderer
    this.events = [];
    this.lastError = null;
    this.updateTimes = []; // local times of the pose updates received
    this.resyncs = 0;
  }

  // welcome takes the session's parameters.
  welcome(w) {
    this.tickMs = w.tick_ms || this.tickMs;
    this.repeat = w.repeat ?? this.repeat;
  }

  // apply folds one control message in, received at local time now.
  apply(m, now) {
    switch (m.type) {
      case 'joined':
        this.room = m.room;
        this.user = m.user;
        this.slot = m.slot;
        this.tickMs = m.tick_ms || this.tickMs;
        this.farEvery = Math.max(1, m.interest?.far_every || 1);
        this.entities = null;
        this.presence = null;
        this.seq = 0; // pose updates are numbered per member of a room
        this.slots.clear();
        this.avatarSlots.clear();
        this.parts.clear();
        this.poseSeq.clear();
        break;
      case 'entities_state':
        this.entities = new Map(Object.entries(m.entities || {}));
        this.slots.clear();
        this.avatarSlots.clear();
        for (const [id, c] of this.entities) this.trackAvatar(id, c, m.seq, now);
        for (const id of this.intakes.keys()) {
          if (!this.isAvatar(id)) this.intakes.delete(id);
        }
        if (newer(m.seq, this.seq)) this.seq = m.seq;
        for (const s of this.parts.keys()) if (!newer(s, this.seq)) this.parts.delete(s);
        this.resyncing = false;
        this.version++;
        break;
      case 'entities_diff':
        this.entities ??= new Map();
        for (const [id, c] of Object.entries(m.creates || {})) {
          this.untrackAvatar(id); // made again within a tick: a new avatar, maybe on another clock
          this.entities.set(id, c);
          this.trackAvatar(id, c, this.seq, now);
        }
        for (const [id, changed] of Object.entries(m.updates || {})) {
          const cur = { ...(this.entities.get(id) || {}) };
          for (const [k, v] of Object.entries(changed)) {
            if (v === null || v === undefined) delete cur[k];
            else cur[k] = v;
          }
          this.entities.set(id, cur);
        }
        for (const id of m.deletes || []) {
          this.untrackAvatar(id);
          this.entities.delete(id);
        }
        this.version++;
        break;
      case 'presence_state':
        this.presence = new Map(Object.entries(m.state || {}).map(([k, e]) => [k, e.metas || []]));
        break;
      case 'presence_diff':
        this.presence ??= new Map();
        for (const [k, e] of Object.entries(m.joins || {})) {
          const metas = this.presence.get(k) || [];
          for (const meta of e.metas || []) {
            if (!metas.some((x) => x.phx_ref === meta.phx_ref)) metas.push(meta);
          }
          this.presence.set(k, metas);
        }
        for (const [k, e] of Object.entries(m.leaves || {})) {
          const gone = new Set((e.metas || []).map((x) => x.phx_ref));
          const metas = (this.presence.get(k) || []).filter((x) => !gone.has(x.phx_ref));
          if (metas.length) this.presence.set(k, metas);
          else this.presence.delete(k);
        }
        break;
      case 'event':
        this.events.push(m);
        if (this.events.length > MAX_EVENTS) this.events.shift();
        break;
      case 'error':
        this.lastError = m;
        if (this.resyncing && m.ref && m.ref === this.resyncRef) this.resyncAgain = now + RESYNC_RETRY; // dropped (rate_limited)
        break;
    }
  }

  isAvatar(id) {
    const c = this.entities?.get(id);
    return !!c && c.avatar === true;
  }

  // trackAvatar notes an avatar's slot and the pose its components carry.
  trackAvatar(id, c, seq, now) {
    if (c.avatar !== true || typeof c.slot !== 'number') return;
    this.forgetSlot(id);
    const old = this.slots.get(c.slot);
    if (old !== undefined) this.avatarSlots.delete(old); // the slot went to another avatar
    this.slots.set(c.slot, id);
    this.avatarSlots.set(id, c.slot);
    if (id === this.user) return;
    let b = this.intakes.get(id);
    if (!b) {
      b = new PoseIntake({ tickMs: this.tickMs, maxInterval: this.tickMs * this.farEvery });
      this.intakes.set(id, b);
    }
    if (Array.isArray(c.position) && c.position.length === 3) {
      const rotation = Array.isArray(c.rotation) && c.rotation.length === 4 ? c.rotation : [0, 0, 0, 1];
      this.take(id, b.push({ time: c.pose_time >>> 0, head: { position: c.position, rotation }, left: null, right: null }, now, true));
      this.poseSeq.set(id, seq);
    }
  }

  untrackAvatar(id) {
    this.forgetSlot(id);
    this.intakes.delete(id);
    this.poseSeq.delete(id);
  }

  // forgetSlot forgets which slot avatar id had.
  forgetSlot(id) {
    const s = this.avatarSlots.get(id);
    if (s === undefined) return;
    this.avatarSlots.delete(id);
    if (this.slots.get(s) === id) this.slots.delete(s);
  }

  // take notes a point of an avatar's intake, if there is one.
  take(id, point) {
    if (point) this.points.push([id, point]);
  }

  // drain returns the points taken since the last drain.
  drain() {
    const p = this.points;
    this.points = [];
    return p;
  }

  // applyPoses folds a pose update in, received at local time now, and
  // reports whether to ask for a resync (docs/PROTOCOL.md §6.4): when the
  // newest update known to exist is more than repeat updates past the
  // newest received whole, an avatar that stopped in between may never be
  // sent again. A resync the server refused is asked for again a second
  // later, and one it never answered after a few.
  applyPoses(u, now) {
    if (this.entities === null) return false; // no room state yet
    let latest = u.seq;
    if (u.parts > 0) {
      latest = (u.seq - 1) >>> 0;
      for (const { slot, pose } of u.records) {
        const id = this.slots.get(slot);
        if (id === undefined || id === this.user) continue;
        const prev = this.poseSeq.get(id);
        if (prev !== undefined && newer(prev, u.seq)) continue; // reordered: keep the newer
        this.poseSeq.set(id, u.seq);
        const b = this.intakes.get(id);
        if (b) this.take(id, b.push(pose, now));
      }
      let p = this.parts.get(u.seq);
      if (!p) {
        p = { got: new Set(), parts: u.parts };
        this.parts.set(u.seq, p);
        this.updateTimes.push(now);
      }
      p.got.add(u.part);
      if (p.got.size === p.parts) {
        this.parts.delete(u.seq);
        if (newer(u.seq, this.seq)) this.seq = u.seq;
        for (const s of this.parts.keys()) if (!newer(s, this.seq)) this.parts.delete(s);
      }
    }
    while (this.updateTimes.length && this.updateTimes[0] < now - RATE_WINDOW) this.updateTimes.shift();
    if (this.resyncing ? now >= this.resyncAgain : ((latest - this.seq) | 0) > this.repeat) {
      this.resyncing = true;
      this.resyncAgain = now + RESYNC_WAIT;
      this.resyncs++;
      return true;
    }
    return false;
  }

  // updateRate returns the pose updates received a second, lately.
  updateRate(now) {
    const recent = this.updateTimes.filter((t) => t >= now - RATE_WINDOW);
    return recent.length / (RATE_WINDOW / 1000);
  }
}
