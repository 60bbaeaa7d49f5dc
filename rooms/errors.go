package rooms

import (
	"errors"
	"log/slog"
)

// Errors returned to callers of a room. Transport turns them into the wire's
// error codes.
var (
	// ErrInvalid reports a request with a field that fails validation.
	ErrInvalid = errors.New("invalid request")
	// ErrForbidden reports a request the member may not make, such as
	// changing another user's avatar.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound reports a request about an entity that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrRoomFull reports a join into a room with no free slot.
	ErrRoomFull = errors.New("room is full")
	// ErrLeft reports an operation through a membership that has ended.
	ErrLeft = errors.New("not in the room")
	// ErrTooManyRooms reports a join that would start a room past
	// Config.MaxRooms.
	ErrTooManyRooms = errors.New("too many rooms")
	// ErrUnavailable reports a room that could not start, its store failing.
	ErrUnavailable = errors.New("room unavailable")
	// ErrClosed reports a join into a registry that is shutting down.
	ErrClosed = errors.New("registry closed")
	// ErrRoomNotFound is what a Store returns for a room it does not hold.
	ErrRoomNotFound = errors.New("room not found")
	// ErrRoomBusy reports a room that cannot be deleted because people are
	// in it.
	ErrRoomBusy = errors.New("room is in use")
	// ErrRateLimited reports a message refused because a member, or the
	// room, has spent its budget of bytes that every member must be sent.
	ErrRateLimited = errors.New("rate limited")
	// ErrStoreBacklog reports an entity change refused because too many
	// changes are waiting to be written to the store.
	ErrStoreBacklog = errors.New("store backlog full")
	// errRoomClosed is what a closing room answers; the registry retries the
	// join in a fresh room.
	errRoomClosed = errors.New("room closed")
)

// StoreError is a failure of the store as a client is told of it: the
// store cannot be reached now. Its details (addresses, users, the driver's
// words) are for the logs alone: LogValue gives them to slog.
type StoreError struct {
	Op  string // what failed, such as "room lobby: load"
	Err error
}

func (e *StoreError) Error() string {
	return ErrUnavailable.Error() + ": " + e.Op + ": the store cannot be reached now"
}

func (e *StoreError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// LogValue implements slog.LogValuer: the failure with its details.
func (e *StoreError) LogValue() slog.Value { return slog.StringValue(e.Op + ": " + e.Err.Error()) }
