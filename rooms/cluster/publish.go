package cluster

import (
	"github.com/nats-io/nats.go"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// publishLoop publishes this node's presence updates, in order, each on its
// room's subject. Runs in its own goroutine until Close.
func (n *Node) publishLoop() {
	for {
		select {
		case <-n.quit:
			return
		case u := <-n.updates:
			msg := presenceUpdate{
				Node: n.cfg.NodeID, Inc: n.inc, Seq: u.Seq, RoomSeq: u.RoomSeq, Room: u.Room,
				Joins: u.Joins, Leaves: u.Leaves, Gone: u.Gone,
			}
			// While NATS is away the client buffers a little; past that the
			// update is lost, and the others repair it by snapshot when
			// the next heartbeat shows its number.
			if _, fatal, _ := n.leaseState(); fatal != nil {
				continue // another process speaks for this node id now
			}
			if err := n.nc.Publish(n.subj.presence+token(u.Room), encode(msg)); err != nil {
				n.log.Debug("presence update not published", "room", u.Room, "seq", u.Seq, "err", err)
			}
			n.markPublished(u.Seq)
		}
	}
}

// chunkBytes bounds the presence carried by one message of a snapshot,
// well under NATS's smallest usual payload limit (1 MiB).
const chunkBytes = 256 << 10

// answerPresence answers a request for this node's presence: the snapshot
// at one update number, in as many chunks as it takes, each sent to the
// requester's inbox. Runs in a NATS callback.
func (n *Node) answerPresence(req *nats.Msg) {
	// Only the holder of the node's lease speaks for it.
	if rev, fatal, _ := n.leaseState(); req.Reply == "" || rev == 0 || fatal != nil {
		return
	}
	seq, state := n.reg.PresenceSnapshot(nil)
	// Chunks split rooms between users, so that no room is too big for one.
	var chunks []map[string]rooms.RoomPresence
	cur, size := map[string]rooms.RoomPresence{}, 0
	for room, users := range state {
		for user, metas := range users {
			s := presenceSize(room, user, metas)
			if size > 0 && size+s > chunkBytes {
				chunks = append(chunks, cur)
				cur, size = map[string]rooms.RoomPresence{}, 0
			}
			if cur[room] == nil {
				cur[room] = rooms.RoomPresence{}
			}
			cur[room][user] = metas
			size += s
		}
	}
	chunks = append(chunks, cur)
	for i, rooms := range chunks {
		msg := presenceChunk{Inc: n.inc, Seq: seq, Chunk: i, Of: len(chunks), Rooms: rooms}
		if err := n.nc.Publish(req.Reply, encode(msg)); err != nil {
			n.log.Debug("presence snapshot not sent", "err", err)
			return
		}
	}
}

// presenceSize estimates the encoded size of a user's presence in a room.
func presenceSize(room, user string, metas []codec.PresenceMeta) int {
	size := len(room) + len(user) + 16
	for _, m := range metas {
		size += 64 + len(m.Ref) + len(m.PrevRef) + len(m.Name) + len(m.Device) + len(encode(m.Meta))
	}
	return size
}
