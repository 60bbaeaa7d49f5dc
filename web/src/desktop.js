// DesktopControls move the camera without a headset: drag to look, WASD
// (or the arrow keys) to walk, Q and E to go down and up.

const KEYS = {
  KeyW: [0, 0, -1], ArrowUp: [0, 0, -1],
  KeyS: [0, 0, 1], ArrowDown: [0, 0, 1],
  KeyA: [-1, 0, 0], ArrowLeft: [-1, 0, 0],
  KeyD: [1, 0, 0], ArrowRight: [1, 0, 0],
  KeyQ: [0, -1, 0], KeyE: [0, 1, 0],
};

export class DesktopControls {
  // target receives the drags; keys are read on window, except while
  // typing in a field.
  constructor(target, { speed = 2, lookSpeed = 0.005 } = {}) {
    this.speed = speed; // metres a second
    this.lookSpeed = lookSpeed; // radians a pixel
    this.position = [0, 1.6, 0];
    this.yaw = 0; // about +y; 0 looks down -z
    this.pitch = 0;
    this.keys = new Set();
    this.target = target;
    this.handlers = {
      keydown: (e) => {
        if (KEYS[e.code] && !isTyping(e.target)) {
          this.keys.add(e.code);
          e.preventDefault();
        }
      },
      keyup: (e) => this.keys.delete(e.code),
      blur: () => this.keys.clear(),
      pointermove: (e) => {
        if (!(e.buttons & 1)) return;
        this.yaw -= e.movementX * this.lookSpeed;
        this.pitch = Math.max(-1.5, Math.min(1.5, this.pitch - e.movementY * this.lookSpeed));
      },
    };
    for (const t of ['keydown', 'keyup', 'blur']) globalThis.addEventListener(t, this.handlers[t]);
    target.addEventListener('pointermove', this.handlers.pointermove);
  }

  // place puts the camera at a position, turned as the rotation [x, y, z, w]
  // turns it about the vertical, looking a little down.
  place(position, rotation = [0, 0, 0, 1]) {
    this.position = [...position];
    const [x, y, z, w] = rotation;
    this.yaw = Math.atan2(2 * (w * y + x * z), 1 - 2 * (y * y + x * x));
    this.pitch = -0.2; // a little down, to see the floor and who is near
  }

  // step walks for dt seconds with the keys held.
  step(dt) {
    let [mx, my, mz] = [0, 0, 0];
    for (const k of this.keys) {
      const [x, y, z] = KEYS[k];
      mx += x;
      my += y;
      mz += z;
    }
    const len = Math.hypot(mx, mz);
    if (len > 0) {
      mx /= len;
      mz /= len;
    }
    const d = this.speed * dt;
    const sin = Math.sin(this.yaw);
    const cos = Math.cos(this.yaw);
    this.position[0] += (mx * cos + mz * sin) * d;
    this.position[1] = Math.max(0.2, this.position[1] + my * d);
    this.position[2] += (-mx * sin + mz * cos) * d;
  }

  // rotation returns the camera's quaternion [x, y, z, w]: yaw, then pitch.
  rotation() {
    const sy = Math.sin(this.yaw / 2);
    const cy = Math.cos(this.yaw / 2);
    const sp = Math.sin(this.pitch / 2);
    const cp = Math.cos(this.pitch / 2);
    return [cy * sp, sy * cp, -sy * sp, cy * cp];
  }

  // pose returns the camera's pose to send, stamped with time.
  pose(time) {
    return { time, head: { position: [...this.position], rotation: this.rotation() }, left: null, right: null };
  }

  dispose() {
    for (const t of ['keydown', 'keyup', 'blur']) globalThis.removeEventListener(t, this.handlers[t]);
    this.target.removeEventListener('pointermove', this.handlers.pointermove);
  }
}

function isTyping(el) {
  return !!el && (el.tagName === 'INPUT' || el.tagName === 'TEXTAREA' || el.isContentEditable);
}
