package codec

import "time"

// Version is the protocol version this package speaks, sent in hello and welcome.
const Version = 1

// Control message types: the "type" field of every message on the reliable stream.
const (
	// Client to server.
	TypeHello  = "hello"
	TypeJoin   = "join"
	TypeLeave  = "leave"
	TypeCreate = "create"
	TypeUpdate = "update"
	TypeDelete = "delete"
	TypeResync = "resync"
	TypePing   = "ping"

	// Presence across rooms: a client asks for the presence of every room
	// whose id matches a pattern, and stops asking.
	TypeSubscribePresence   = "subscribe_presence"
	TypeUnsubscribePresence = "unsubscribe_presence"

	// TypePresenceUpdate replaces the meta of the sender's own presence.
	TypePresenceUpdate = "presence_update"

	// Both ways: a client sends an application event; the server relays it,
	// and sends its own (user_joined, user_left, ...).
	TypeEvent = "event"

	// Server to client.
	TypeWelcome       = "welcome"
	TypeJoined        = "joined"
	TypeEntitiesState = "entities_state"
	TypeEntitiesDiff  = "entities_diff"
	TypePresenceState = "presence_state"
	TypePresenceDiff  = "presence_diff"
	TypeOK            = "ok"
	TypeError         = "error"
	TypePong          = "pong"
	TypeGoodbye       = "goodbye"
	// TypePresenceCollection answers subscribe_presence: the presence of
	// the matching rooms, then at each interval what changed.
	TypePresenceCollection = "presence_collection"
)

// Events the server publishes itself. Clients may not send these names.
const (
	EventUserJoined    = "user_joined"
	EventUserLeft      = "user_left"
	EventUserStale     = "user_stale"
	EventUserRecovered = "user_recovered"
)

// Components maps component names to values: anything JSON can hold.
type Components = map[string]any

// Header is the start of every control message: its type, and the client's
// request reference that the server's reply repeats.
type Header struct {
	Type string `msgpack:"type"`
	Ref  uint32 `msgpack:"ref,omitempty"`
}

func (h *Header) header() *Header { return h }

// RefOf returns a message's ref.
func RefOf(m Message) uint32 { return m.header().Ref }

// TypeOf returns a message's type, as its type field spells it.
func TypeOf(m Message) string { return m.kind() }

// SetRef sets a message's ref.
func SetRef(m Message, ref uint32) { m.header().Ref = ref }

// Message is any control message. Use the pointer types of this package.
type Message interface {
	header() *Header
	// kind returns the message's type string.
	kind() string
}

// Hello opens a session: the client's protocol version.
type Hello struct {
	Header
	Version int    `msgpack:"v"`
	Client  string `msgpack:"client,omitempty"`
}

// Welcome answers hello with the session's parameters.
type Welcome struct {
	Header
	Version int    `msgpack:"v"`
	Session string `msgpack:"session"`
	// ServerTime is the server's clock in Unix milliseconds.
	ServerTime int64 `msgpack:"server_time"`
	// TickMillis is the period of the rooms' tick.
	TickMillis int64 `msgpack:"tick_ms"`
	// MaxDatagram is the largest datagram the server sends to this session.
	MaxDatagram int `msgpack:"max_datagram"`
	// MaxMessage is the largest control message the server accepts.
	MaxMessage int `msgpack:"max_message"`
	// Repeat is how many more ticks the server sends an avatar that stopped
	// moving; receivers use it to tell a loss they cannot recover from.
	Repeat int `msgpack:"repeat"`
}

// Join asks to enter a room as a user. A session is in at most one room.
type Join struct {
	Header
	Room string `msgpack:"room"`
	// Name is shown to others.
	Name string `msgpack:"name,omitempty"`
	// Device names this device, so a reconnect takes over its own presence.
	Device string `msgpack:"device,omitempty"`
	// Meta is application metadata put in the presence meta.
	Meta map[string]any `msgpack:"meta,omitempty"`
	// Token says who joins: a join token from the application's backend
	// (required when the server has an auth secret), or one a server in
	// development mode handed out in an earlier joined reply. The user id
	// comes from it; without one, a server in development mode makes a new
	// user up.
	Token string `msgpack:"token,omitempty"`
}

// Joined answers join: who the session is in the room and where it stands.
type Joined struct {
	Header
	Room string `msgpack:"room"`
	User string `msgpack:"user"`
	// Entity is the id of the user's avatar entity (the user id).
	Entity string `msgpack:"entity"`
	// Slot is the avatar's number in pose updates.
	Slot int `msgpack:"slot"`
	// PresenceRef is this device's presence meta reference (phx_ref).
	PresenceRef string     `msgpack:"presence_ref"`
	Position    [3]float64 `msgpack:"position"`
	Rotation    [4]float64 `msgpack:"rotation"`
	TickMillis  int64      `msgpack:"tick_ms"`
	// Resumed is true when the join took over an avatar that a dropped session
	// of the same user left behind.
	Resumed bool `msgpack:"resumed"`
	// Token, from a server in development mode, is a join token for this
	// user in this room: a reconnect or a second device that presents it
	// joins as the same user.
	Token string `msgpack:"token,omitempty"`
	// Interest is how the room chooses which avatars each member gets at
	// every tick; absent when every member gets every avatar at every tick.
	Interest *Interest `msgpack:"interest,omitempty"`
}

// Interest is a room's interest management: a member gets the avatars near
// it at every tick and the others every FarEvery ticks.
type Interest struct {
	// Radius is the distance on the floor (x, z), in metres, within which
	// an avatar is near.
	Radius float64 `msgpack:"radius"`
	// Nearest is how many of the nearest avatars are near however far
	// they are.
	Nearest int `msgpack:"nearest"`
	// FarEvery is how many ticks apart a member gets the far avatars.
	FarEvery int `msgpack:"far_every"`
	// Cell is the side, in metres, of the square cells of the floor by
	// which the room sorts avatars: a member gets whole cells, so an
	// avatar within a cell that reaches into the radius is near too.
	Cell float64 `msgpack:"cell"`
}

// Leave leaves the room; the session stays open.
type Leave struct {
	Header
}

// PresenceUpdate replaces the application meta of the sender's presence in
// its room (its status, its avatar's colour...): the room sees its old meta
// leave and the new one, with a new phx_ref and the old one as
// phx_ref_prev, join. An empty or absent meta clears it.
type PresenceUpdate struct {
	Header
	Meta map[string]any `msgpack:"meta,omitempty"`
}

// Event is an event in a room. Clients send Name and Data; the server relays
// it to the room's other members with User and At filled in.
type Event struct {
	Header
	Name string `msgpack:"name"`
	Data any    `msgpack:"data,omitempty"`
	// User is who caused the event (set by the server).
	User string `msgpack:"user,omitempty"`
	// At is the server's clock in Unix milliseconds (set by the server).
	At int64 `msgpack:"at,omitempty"`
}

// Create adds an environment entity; the server answers ok with its id.
type Create struct {
	Header
	Components Components `msgpack:"components"`
}

// Update merges components into an environment entity; a nil value removes
// that component.
type Update struct {
	Header
	Entity     string     `msgpack:"entity"`
	Components Components `msgpack:"components"`
}

// Delete removes an environment entity.
type Delete struct {
	Header
	Entity string `msgpack:"entity"`
}

// Resync asks for a fresh entities_state, for a receiver that lost pose
// updates it cannot recover.
type Resync struct {
	Header
}

// Ping asks for a pong; Time, whatever the client put there (its clock,
// say), is echoed as it came.
type Ping struct {
	Header
	Time any `msgpack:"t,omitempty"`
}

// Pong answers ping.
type Pong struct {
	Header
	Time       any   `msgpack:"t,omitempty"`
	ServerTime int64 `msgpack:"server_time"`
}

// EntitiesState is the whole world of a room: every entity, avatars included.
type EntitiesState struct {
	Header
	// Seq is the pose update sequence number the state is at least as new as.
	Seq      uint32                `msgpack:"seq"`
	Entities map[string]Components `msgpack:"entities"`
	// Encoded, for a sender, holds more entities already encoded by
	// AppendEntities, EncodedCount of them, sent in the entities map along
	// with Entities: what a sender caches because it changes more rarely
	// than it is sent.
	Encoded      []byte `msgpack:"-"`
	EncodedCount int    `msgpack:"-"`
}

// EntitiesDiff is what changed in a room's world since the last diff,
// keyed by entity id. Updates carry only the changed components; a nil
// component value was removed.
type EntitiesDiff struct {
	Header
	Creates map[string]Components `msgpack:"creates"`
	Updates map[string]Components `msgpack:"updates"`
	Deletes []string              `msgpack:"deletes"`
}

// PresenceMeta is one device's presence, as in Phoenix.Presence.
type PresenceMeta struct {
	Ref     string `msgpack:"phx_ref" json:"phx_ref"`
	PrevRef string `msgpack:"phx_ref_prev,omitempty" json:"phx_ref_prev,omitempty"`
	Name    string `msgpack:"name" json:"name"`
	Device  string `msgpack:"device,omitempty" json:"device,omitempty"`
	// OnlineAt is when the device joined, Unix milliseconds.
	OnlineAt int64 `msgpack:"online_at" json:"online_at"`
	// Stale is true while the avatar's poses have stopped arriving.
	Stale bool           `msgpack:"stale" json:"stale"`
	Meta  map[string]any `msgpack:"meta,omitempty" json:"meta,omitempty"`
}

// PresenceEntry is one presence key (a user) with a meta per device, and
// whatever the server's presence hook put beside the metas (as
// Phoenix.Presence's fetch/2 does: a user's profile, say). On the wire it is
// one map: "metas" and the Extra keys.
type PresenceEntry struct {
	Metas []PresenceMeta `msgpack:"metas" json:"metas"`
	// Extra holds the entry's keys other than "metas".
	Extra map[string]any `msgpack:"-" json:"-"`
}

// PresenceState is the whole presence of a room, keyed by user id.
type PresenceState struct {
	Header
	State map[string]PresenceEntry `msgpack:"state"`
}

// PresenceDiff is what joined and left since the last diff. A meta update
// is a leave of the old meta and a join of the new one.
type PresenceDiff struct {
	Header
	Joins  map[string]PresenceEntry `msgpack:"joins"`
	Leaves map[string]PresenceEntry `msgpack:"leaves"`
}

// OK answers a request that succeeded.
type OK struct {
	Header
	// Entity is the id of a created entity.
	Entity string `msgpack:"entity,omitempty"`
}

// Error answers a request that failed, or reports a problem with something
// the client sent. Ref is the failed request's, or zero.
type Error struct {
	Header
	Code    string `msgpack:"code"`
	Message string `msgpack:"message"`
	// Moved, with code moved, says where the room lives.
	Moved *Location `msgpack:"moved,omitempty"`
}

// Goodbye is the last message before the server closes the session.
type Goodbye struct {
	Header
	Code    string `msgpack:"code"`
	Message string `msgpack:"message"`
	// Moved, with code moved, says where the session's room lives now.
	Moved *Location `msgpack:"moved,omitempty"`
}

// Location is where a room lives: the node that runs it, and what a client
// needs to open a session there, as GET /cert-hash answers.
type Location struct {
	Node string `msgpack:"node,omitempty" json:"node,omitempty"`
	// URL is the node's WebTransport URL.
	URL string `msgpack:"url" json:"url"`
	// Current and Next are the SHA-256 hashes of the certificate the node
	// serves now and of the one it serves after its next rotation.
	Current CertHash  `msgpack:"current" json:"current"`
	Next    *CertHash `msgpack:"next,omitempty" json:"next,omitempty"`
}

// CertHashResponse is the JSON of GET /cert-hash: where the WebTransport
// endpoint is (a room's, when asked with ?room=), and the SHA-256 hashes of
// the certificate it serves now and of the one it serves after the next
// rotation.
type CertHashResponse struct {
	Location
	// Alternates are the WebTransport URLs on the machine's other
	// addresses, for a page loaded from localhost (say, through adb reverse)
	// whose WebTransport must go to the LAN address.
	Alternates []string   `json:"alternates,omitempty"`
	Expires    *time.Time `json:"expires,omitempty"`
}

// CertHash is a certificate's SHA-256 hash in hex and in base64.
type CertHash struct {
	Hex    string `msgpack:"hex" json:"hex"`
	Base64 string `msgpack:"base64" json:"base64"`
}

// SubscribePresence asks for the presence of every room whose id matches
// Match, a Go regular expression (RE2 syntax), once now and then every
// interval as what changed. The answer is a presence_collection with the
// same ref and the whole state; later ones carry the ref as Sub.
type SubscribePresence struct {
	Header
	Match string `msgpack:"match"`
	// IntervalMillis is how often changes are sent; 0 takes the server's.
	IntervalMillis int64 `msgpack:"interval_ms,omitempty"`
	// Token, on a server with an auth secret, is a presence token for
	// exactly this Match.
	Token string `msgpack:"token,omitempty"`
}

// UnsubscribePresence ends the subscription whose subscribe_presence had
// the ref Sub.
type UnsubscribePresence struct {
	Header
	Sub uint32 `msgpack:"sub"`
}

// PresenceCollection is the presence of the rooms a subscription matches,
// keyed by room and then by user. The first one of a subscription carries
// State (and the subscribe's ref); each later one carries what changed since
// the one before, as joins and leaves of metas, applied as a presence_diff
// is: joins first, then leaves, merging by phx_ref; a user with no metas
// left is gone, and so is a room with no users.
type PresenceCollection struct {
	Header
	// Sub is the ref of the subscribe_presence this belongs to.
	Sub    uint32                              `msgpack:"sub"`
	State  map[string]map[string]PresenceEntry `msgpack:"state,omitempty"`
	Joins  map[string]map[string]PresenceEntry `msgpack:"joins,omitempty"`
	Leaves map[string]map[string]PresenceEntry `msgpack:"leaves,omitempty"`
}

func (*Hello) kind() string          { return TypeHello }
func (*Welcome) kind() string        { return TypeWelcome }
func (*Join) kind() string           { return TypeJoin }
func (*Joined) kind() string         { return TypeJoined }
func (*Leave) kind() string          { return TypeLeave }
func (*PresenceUpdate) kind() string { return TypePresenceUpdate }
func (*Event) kind() string          { return TypeEvent }
func (*Create) kind() string         { return TypeCreate }
func (*Update) kind() string         { return TypeUpdate }
func (*Delete) kind() string         { return TypeDelete }
func (*Resync) kind() string         { return TypeResync }
func (*Ping) kind() string           { return TypePing }
func (*Pong) kind() string           { return TypePong }
func (*EntitiesState) kind() string  { return TypeEntitiesState }
func (*EntitiesDiff) kind() string   { return TypeEntitiesDiff }
func (*PresenceState) kind() string  { return TypePresenceState }
func (*PresenceDiff) kind() string   { return TypePresenceDiff }
func (*OK) kind() string             { return TypeOK }
func (*Error) kind() string          { return TypeError }
func (*Goodbye) kind() string        { return TypeGoodbye }

func (*SubscribePresence) kind() string   { return TypeSubscribePresence }
func (*UnsubscribePresence) kind() string { return TypeUnsubscribePresence }
func (*PresenceCollection) kind() string  { return TypePresenceCollection }

// Error codes carried by Error and Goodbye.
const (
	CodeBadMessage     = "bad_message"     // not a well-formed message of a known type
	CodeTooLarge       = "too_large"       // over a size limit
	CodeUnsupported    = "unsupported"     // protocol version not spoken
	CodeNoHello        = "no_hello"        // a message before hello
	CodeNotJoined      = "not_joined"      // a room operation outside a room
	CodeAlreadyJoined  = "already_joined"  // join while in a room
	CodeInvalid        = "invalid"         // a field fails validation
	CodeForbidden      = "forbidden"       // not allowed for this session
	CodeNotFound       = "not_found"       // no such entity
	CodeRoomFull       = "room_full"       // the room has no free slot
	CodeUnavailable    = "unavailable"     // the server cannot serve this now
	CodeServerShutdown = "server_shutdown" // the server is stopping
	CodeSlowConsumer   = "slow_consumer"   // the session could not keep up
	CodeInternal       = "internal"        // a bug on the server
	CodeUnauthorized   = "unauthorized"    // no valid join token for this room
	CodeRateLimited    = "rate_limited"    // over a rate limit for too long
	CodeMoved          = "moved"           // the room lives on another node
	CodeReplaced       = "replaced"        // the same device joined again on another session
)

var (
	_ Message = (*Hello)(nil)
	_ Message = (*Goodbye)(nil)
)
