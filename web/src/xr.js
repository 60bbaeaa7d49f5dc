// What the page sends in VR: the viewer's pose and each tracked hand or
// controller, read from an XRFrame in room coordinates (PoseSender, in
// pacer.js, says when).

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
