// What the page and its worker say to each other. The worker (worker.js,
// session.js) holds the session: WebTransport, the codec, the room's state,
// when the pose goes out, and the jitter buffers' intake. The main thread
// draws. Messages are plain objects with a type:
//
// Page to worker:
//   start  {base, join, wtURL, hz, copies, origin}: run the session; join is
//          {room, device, name, token}, hz and copies the pose schedule
//          (TickPacer's), origin the page's performance.timeOrigin, so that
//          the worker reports times on the page's clock.
//   pose   {pose: Float64Array (packPose), transferred}: the newest pose,
//          posted each frame that has one; the worker sends the newest it
//          holds when one is due.
//   leave  {}: leave the room (the page is going).
//
// Worker to page:
//   status {state, detail, url, sessions}: the connection (Connection's).
//   joined {msg}: the server's joined message, for its placement and token.
//   room   {room, user, slot, tickMs, entities, presence}: the room's state
//          after a control message changed it; entities ([id, components]
//          pairs) only when they changed, presence as [user, metas] pairs
//          or null.
//   points {ids, data: Float64Array (packPoints), transferred}: what the
//          avatars' jitter buffers are to play out (PoseIntake's points).
//   stats  {rtt, minRtt, posesSent, margin, updateRate, resyncs}: for the
//          panel, a few times a second.
//
// Times are performance.now() milliseconds on the page's clock. The page is
// not cross-origin isolated (the server sends no COOP and COEP headers), so
// there is no SharedArrayBuffer: buffers are transferred instead.

const TRANSFORM = 7; // x, y, z, then the quaternion x, y, z, w
export const POSE_FLOATS = 1 + 3 * TRANSFORM; // time, head, left, right
const POINT_FLOATS = 4 + POSE_FLOATS; // kind, t, offset, delay, pose

// packPose writes a pose ({time, head, left, right}) into floats at off of
// f, an absent hand as NaN, and returns f.
export function packPose(pose, f = new Float64Array(POSE_FLOATS), off = 0) {
  f[off] = pose.time;
  writeTransform(f, off + 1, pose.head);
  writeTransform(f, off + 1 + TRANSFORM, pose.left);
  writeTransform(f, off + 1 + 2 * TRANSFORM, pose.right);
  return f;
}

// unpackPose reads a pose that packPose wrote at off of f.
export function unpackPose(f, off = 0) {
  return {
    time: f[off],
    head: readTransform(f, off + 1),
    left: readTransform(f, off + 1 + TRANSFORM),
    right: readTransform(f, off + 1 + 2 * TRANSFORM),
  };
}

function writeTransform(f, off, t) {
  if (!t) {
    f.fill(NaN, off, off + TRANSFORM);
    return;
  }
  f.set(t.position, off);
  f.set(t.rotation, off + 3);
}

function readTransform(f, off) {
  if (Number.isNaN(f[off])) return null;
  return { position: Array.from(f.subarray(off, off + 3)), rotation: Array.from(f.subarray(off + 3, off + TRANSFORM)) };
}

// packPoints packs [avatar id, point] pairs (PoseIntake's points) as a
// points message's ids and data.
export function packPoints(pairs) {
  const data = new Float64Array(pairs.length * POINT_FLOATS);
  pairs.forEach(([, p], i) => {
    const off = i * POINT_FLOATS;
    data.set([p.kind, p.t, p.offset, p.delay], off);
    packPose(p.pose, data, off + 4);
  });
  return { ids: pairs.map(([id]) => id), data };
}

// unpackPoints returns the [avatar id, point] pairs of a points message.
export function unpackPoints({ ids, data }) {
  return ids.map((id, i) => {
    const off = i * POINT_FLOATS;
    return [id, { kind: data[off], t: data[off + 1], offset: data[off + 2], delay: data[off + 3], pose: unpackPose(data, off + 4) }];
  });
}
