package cluster

import (
	"encoding/base64"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// What nodes keep in the directory and say to each other. Keys and subject
// tokens carry ids as base64url (room ids may hold '.', which splits
// subjects, and ':' and '@', which KV keys refuse). Messages are msgpack.
//
// Subjects, under the prefix P:
//
//	P.node.<node>.hb        heartbeat, every HeartbeatInterval
//	P.node.<node>.bye       a node stopping in good order
//	P.presence.<room>       a room's presence update, from its owner
//	P.rpc.<node>.presence   request: the node's presence, in chunks
//
// Buckets: P_nodes (leases, key <node>, with the bucket's TTL) and P_rooms
// (claims, key <room>).

// token encodes an id for a KV key or a subject token.
func token(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// untoken decodes what token encoded.
func untoken(t string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(t)
	return string(b), err
}

// lease is a node's entry in P_nodes: who it is and how clients reach it.
type lease struct {
	// Inc is the node's incarnation: new at every start of the process.
	Inc      string         `msgpack:"inc"`
	Location codec.Location `msgpack:"location"`
	Started  int64          `msgpack:"started"` // Unix ms
	Sessions int            `msgpack:"sessions"`
	Rooms    int            `msgpack:"rooms"`
}

// claimEntry is a room's entry in P_rooms: the node that owns it.
type claimEntry struct {
	Node  string `msgpack:"node"`
	Inc   string `msgpack:"inc"`
	Since int64  `msgpack:"since"` // Unix ms
}

// heartbeat says a node is alive, and how far its presence updates went.
type heartbeat struct {
	Inc string `msgpack:"inc"`
	// Beat counts heartbeats of this incarnation.
	Beat uint64 `msgpack:"beat"`
	// Seq is the number of the node's latest presence update published.
	Seq uint64 `msgpack:"seq"`
}

// bye says a node stops: its users are gone.
type bye struct {
	Inc string `msgpack:"inc"`
}

// presenceUpdate is a rooms.PresenceUpdate as its node publishes it.
type presenceUpdate struct {
	Node string `msgpack:"node"`
	Inc  string `msgpack:"inc"`
	// Seq numbers the node's updates across its rooms.
	Seq uint64 `msgpack:"seq"`
	// RoomSeq numbers the updates of this room's instance on the node,
	// from 1.
	RoomSeq uint64                         `msgpack:"room_seq"`
	Room    string                         `msgpack:"room"`
	Joins   map[string]codec.PresenceEntry `msgpack:"joins,omitempty"`
	Leaves  map[string]codec.PresenceEntry `msgpack:"leaves,omitempty"`
	Gone    bool                           `msgpack:"gone,omitempty"`
}

// presenceChunk is one message of a node's answer to a presence request:
// its rooms' presence as of update Seq, split over Of chunks.
type presenceChunk struct {
	Inc   string                        `msgpack:"inc"`
	Seq   uint64                        `msgpack:"seq"`
	Chunk int                           `msgpack:"chunk"`
	Of    int                           `msgpack:"of"`
	Rooms map[string]rooms.RoomPresence `msgpack:"rooms"`
}

func encode(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("cluster: encode %T: %v", v, err)) // our own types always encode
	}
	return b
}

func decode(b []byte, v any) error {
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("cluster: decode %T: %w", v, err)
	}
	return nil
}
