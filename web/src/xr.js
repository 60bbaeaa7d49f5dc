// What the page sends in VR: the viewer's pose and each tracked hand or
// controller, read from an XRFrame in room coordinates, at a set rate.

// sampleXRPose returns the pose to send for an XR frame, or null while the
// viewer is not tracked. refSpace is the room's reference space; time is
// the pose's timestamp (see poseTime). A hand is the controller's grip, or
// for tracked hands the wrist joint.
export function sampleXRPose(frame, refSpace, time) {
  const viewer = frame.getViewerPose(refSpace);
  if (!viewer) return null;
  const pose = { time, head: transformOf(viewer.transform), left: null, right: null };
  for (const source of frame.session.inputSources) {
    if (source.handedness !== 'left' && source.handedness !== 'right') continue;
    let p = source.gripSpace ? frame.getPose(source.gripSpace, refSpace) : null;
    if (!p && source.hand && frame.getJointPose) {
      const wrist = source.hand.get('wrist');
      if (wrist) p = frame.getJointPose(wrist, refSpace);
    }
    if (p) pose[source.handedness] = transformOf(p.transform);
  }
  return pose;
}

function transformOf(t) {
  const p = t.position;
  const o = t.orientation;
  return { position: [p.x, p.y, p.z], rotation: [o.x, o.y, o.z, o.w] };
}

// roomSpace returns a reference space in room coordinates for a base space
// on the floor (local-floor): its origin, where the person stands, is put
// at the room position [x, y, z], facing yaw (radians about +y).
export function roomSpace(base, position, yaw, RigidTransform = globalThis.XRRigidTransform) {
  const standing = new RigidTransform(
    { x: position[0], y: 0, z: position[2] },
    { x: 0, y: Math.sin(yaw / 2), z: 0, w: Math.cos(yaw / 2) },
  );
  // An offset space's poses are the base's seen from the offset: the inverse.
  return base.getOffsetReferenceSpace(standing.inverse);
}

// PoseSender sends poses at most rate times a second, on average exactly
// that when offered more often, from a render loop at any frame rate.
export class PoseSender {
  constructor(rate, send) {
    this.interval = 1000 / rate;
    this.send = send;
    this.next = -Infinity;
    this.sent = 0;
  }

  // offer sends pose() if one is due at local time now (ms); pose may
  // return null (nothing tracked) and nothing is sent.
  offer(now, pose) {
    if (now < this.next) return false;
    this.next = this.next + this.interval > now ? this.next + this.interval : now + this.interval;
    const p = pose();
    if (!p) return false;
    this.send(p);
    this.sent++;
    return true;
  }
}
