package codec

// Sender says who sends a message type.
type Sender int

// Senders of message types; event goes both ways.
const (
	FromClient Sender = 1 << iota
	FromServer
)

// messageType is one entry of the table of message types.
type messageType struct {
	from Sender
	new  func() Message
}

// messageTypes is every control message type, who sends it and how it is
// made: the one table that the decoder, the server's dispatch (through
// Types) and the tests over every type are driven from. A type missing
// from it is not decoded, and a test says so.
var messageTypes = map[string]messageType{
	TypeHello:               {FromClient, func() Message { return &Hello{} }},
	TypeJoin:                {FromClient, func() Message { return &Join{} }},
	TypeLeave:               {FromClient, func() Message { return &Leave{} }},
	TypePresenceUpdate:      {FromClient, func() Message { return &PresenceUpdate{} }},
	TypeCreate:              {FromClient, func() Message { return &Create{} }},
	TypeUpdate:              {FromClient, func() Message { return &Update{} }},
	TypeDelete:              {FromClient, func() Message { return &Delete{} }},
	TypeResync:              {FromClient, func() Message { return &Resync{} }},
	TypePing:                {FromClient, func() Message { return &Ping{} }},
	TypeSubscribePresence:   {FromClient, func() Message { return &SubscribePresence{} }},
	TypeUnsubscribePresence: {FromClient, func() Message { return &UnsubscribePresence{} }},
	TypeEvent:               {FromClient | FromServer, func() Message { return &Event{} }},
	TypeWelcome:             {FromServer, func() Message { return &Welcome{} }},
	TypeJoined:              {FromServer, func() Message { return &Joined{} }},
	TypeEntitiesState:       {FromServer, func() Message { return &EntitiesState{} }},
	TypeEntitiesDiff:        {FromServer, func() Message { return &EntitiesDiff{} }},
	TypePresenceState:       {FromServer, func() Message { return &PresenceState{} }},
	TypePresenceDiff:        {FromServer, func() Message { return &PresenceDiff{} }},
	TypeOK:                  {FromServer, func() Message { return &OK{} }},
	TypeError:               {FromServer, func() Message { return &Error{} }},
	TypePong:                {FromServer, func() Message { return &Pong{} }},
	TypeGoodbye:             {FromServer, func() Message { return &Goodbye{} }},
	TypePresenceCollection:  {FromServer, func() Message { return &PresenceCollection{} }},
}

// Types returns every control message type and who sends it.
func Types() map[string]Sender {
	out := make(map[string]Sender, len(messageTypes))
	for t, mt := range messageTypes {
		out[t] = mt.from
	}
	return out
}

// New returns an empty message of the type, with its type set, or nil for
// a type this version does not know.
func New(typ string) Message {
	m := newMessage(typ)
	if m != nil {
		m.header().Type = typ
	}
	return m
}
