// The room in three.js: its floor, its entities (the spawn point, obstacles,
// anything else with a position) and the avatars of the others, each with
// a head, hands when they send them, and a name tag.
import * as THREE from 'three';

export class RoomScene {
  constructor(canvas) {
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: true });
    this.renderer.setPixelRatio(Math.min(2, globalThis.devicePixelRatio || 1));
    this.renderer.xr.enabled = true;
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(0x20232a);
    this.scene.fog = new THREE.Fog(0x20232a, 15, 45);
    this.camera = new THREE.PerspectiveCamera(70, 1, 0.05, 200);
    this.scene.add(new THREE.HemisphereLight(0xdde6ff, 0x404040, 2));
    const sun = new THREE.DirectionalLight(0xffffff, 1.5);
    sun.position.set(5, 10, 3);
    this.scene.add(sun);
    const floor = new THREE.Mesh(new THREE.PlaneGeometry(200, 200), new THREE.MeshStandardMaterial({ map: gridTexture(this.renderer) }));
    floor.rotation.x = -Math.PI / 2;
    this.scene.add(floor);
    this.entities = new Map(); // id -> Object3D
    this.entitiesVersion = -1;
    this.avatars = new Map(); // id -> Avatar
  }

  resize(width, height) {
    this.renderer.setSize(width, height, false);
    this.camera.aspect = width / Math.max(1, height);
    this.camera.updateProjectionMatrix();
  }

  // update brings the scene in line with the view at local time now and
  // returns what it shows of each avatar: id -> {pose, name, stale}.
  update(view, now) {
    if (view.version !== this.entitiesVersion) {
      this.entitiesVersion = view.version;
      this.syncEntities(view.entities || new Map());
    }
    const shown = new Map();
    for (const [id, c, buffer] of view.avatars()) {
      const pose = buffer.sample(now);
      if (!pose) continue;
      let a = this.avatars.get(id);
      if (!a) {
        a = new Avatar(id);
        this.avatars.set(id, a);
        this.scene.add(a.group);
      }
      const name = String(c.name ?? id);
      const stale = view.isStale(id);
      a.show(pose, name, stale);
      shown.set(id, { pose, name, stale });
    }
    for (const [id, a] of this.avatars) {
      if (!shown.has(id)) {
        this.scene.remove(a.group);
        a.dispose();
        this.avatars.delete(id);
      }
    }
    return shown;
  }

  syncEntities(entities) {
    for (const obj of this.entities.values()) {
      this.scene.remove(obj);
      disposeTree(obj);
    }
    this.entities.clear();
    for (const [id, c] of entities) {
      if (c.avatar === true || !Array.isArray(c.position)) continue;
      const obj = entityObject(c);
      obj.position.fromArray(c.position.map(Number));
      if (Array.isArray(c.rotation) && c.rotation.length === 4) obj.quaternion.fromArray(c.rotation.map(Number));
      this.entities.set(id, obj);
      this.scene.add(obj);
    }
  }

  render() {
    this.renderer.render(this.scene, this.camera);
  }
}

// gridTexture is the floor: a square metre with its edges drawn, repeated.
function gridTexture(renderer) {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 64;
  const g = canvas.getContext('2d');
  g.fillStyle = '#3a3f47';
  g.fillRect(0, 0, 64, 64);
  g.strokeStyle = '#262a30';
  g.lineWidth = 2;
  g.strokeRect(0, 0, 64, 64);
  const t = new THREE.CanvasTexture(canvas);
  t.wrapS = t.wrapT = THREE.RepeatWrapping;
  t.repeat.set(200, 200);
  t.anisotropy = renderer.capabilities.getMaxAnisotropy();
  t.colorSpace = THREE.SRGBColorSpace;
  return t;
}

function entityObject(c) {
  if (c.spawn_point) {
    const ring = new THREE.Mesh(
      new THREE.RingGeometry(0.6, 0.8, 48),
      new THREE.MeshBasicMaterial({ color: 0x4fd1c5, side: THREE.DoubleSide }),
    );
    ring.rotation.x = -Math.PI / 2;
    const g = new THREE.Group();
    g.add(ring);
    return g;
  }
  const o = c.obstacle;
  if (o && o.shape === 'box' && Array.isArray(o.size) && o.size.length === 3) {
    const [w, h, d] = o.size.map((v) => Math.max(0.01, Number(v) || 0));
    return new THREE.Mesh(new THREE.BoxGeometry(w, h, d), new THREE.MeshStandardMaterial({ color: 0x8a6f4d }));
  }
  return new THREE.Mesh(new THREE.BoxGeometry(0.3, 0.3, 0.3), new THREE.MeshStandardMaterial({ color: 0x9f7aea }));
}

function disposeTree(obj) {
  obj.traverse((o) => {
    o.geometry?.dispose();
    o.material?.map?.dispose();
    o.material?.dispose();
  });
}

// colorOf gives each user a hue of their own.
function colorOf(id) {
  let h = 0;
  for (const ch of id) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return new THREE.Color().setHSL((h % 360) / 360, 0.65, 0.55);
}

class Avatar {
  constructor(id) {
    this.color = colorOf(id);
    this.material = new THREE.MeshStandardMaterial({ color: this.color });
    this.group = new THREE.Group();
    this.head = new THREE.Group();
    const skull = new THREE.Mesh(new THREE.BoxGeometry(0.22, 0.26, 0.24), this.material);
    const visor = new THREE.Mesh(new THREE.BoxGeometry(0.2, 0.08, 0.02), new THREE.MeshStandardMaterial({ color: 0x111111 }));
    visor.position.set(0, 0.03, -0.125);
    this.head.add(skull, visor);
    this.body = new THREE.Mesh(new THREE.CylinderGeometry(0.16, 0.2, 0.6, 16), this.material);
    this.hands = {
      left: new THREE.Mesh(new THREE.BoxGeometry(0.08, 0.04, 0.12), this.material),
      right: new THREE.Mesh(new THREE.BoxGeometry(0.08, 0.04, 0.12), this.material),
    };
    this.name = '';
    this.tag = new THREE.Sprite(new THREE.SpriteMaterial({ depthTest: false }));
    this.tag.scale.set(0.8, 0.2, 1);
    this.group.add(this.head, this.body, this.hands.left, this.hands.right, this.tag);
  }

  show(pose, name, stale) {
    const [x, y, z] = pose.head.position;
    this.head.position.set(x, y, z);
    this.head.quaternion.fromArray(pose.head.rotation);
    // The body hangs under the head, turned only about the vertical.
    const e = new THREE.Euler().setFromQuaternion(this.head.quaternion, 'YXZ');
    this.body.position.set(x, y - 0.5, z);
    this.body.rotation.set(0, e.y, 0);
    for (const side of ['left', 'right']) {
      const t = pose[side];
      this.hands[side].visible = !!t;
      if (t) {
        this.hands[side].position.fromArray(t.position);
        this.hands[side].quaternion.fromArray(t.rotation);
      }
    }
    this.tag.position.set(x, y + 0.3, z);
    if (name !== this.name) {
      this.name = name;
      this.tag.material.map?.dispose();
      this.tag.material.map = nameTexture(name);
      this.tag.material.needsUpdate = true;
    }
    this.material.color.copy(stale ? new THREE.Color(0x777777) : this.color);
  }

  dispose() {
    disposeTree(this.group);
  }
}

function nameTexture(name) {
  const canvas = document.createElement('canvas');
  canvas.width = 512;
  canvas.height = 128;
  const g = canvas.getContext('2d');
  g.fillStyle = 'rgba(0, 0, 0, 0.6)';
  g.beginPath();
  g.roundRect(8, 16, 496, 96, 40);
  g.fill();
  g.fillStyle = '#fff';
  g.font = '600 56px system-ui, sans-serif';
  g.textAlign = 'center';
  g.textBaseline = 'middle';
  g.fillText(name.length > 20 ? name.slice(0, 19) + '…' : name, 256, 66, 470);
  const t = new THREE.CanvasTexture(canvas);
  t.colorSpace = THREE.SRGBColorSpace;
  return t;
}
