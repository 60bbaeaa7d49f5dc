package transport

import (
	"errors"
	"fmt"

	"github.com/quic-go/webtransport-go"

	"github.com/posecast/posecast/codec"
	"github.com/posecast/posecast/rooms"
)

// CloseReason says why a session ended. It is the WebTransport session
// error code the server closes with, and the label of the disconnect metric.
type CloseReason webtransport.SessionErrorCode

// Close reasons. Their numbers are the session error codes on the wire.
const (
	// CloseNormal: the client or server closed the session in good order.
	CloseNormal CloseReason = 0
	// CloseProtocolError: the client broke the protocol (no hello, a bad
	// version, a frame that cannot be read).
	CloseProtocolError CloseReason = 1
	// CloseTooLarge: a control message over the size limit.
	CloseTooLarge CloseReason = 2
	// CloseSlowConsumer: the client did not read its stream fast enough.
	CloseSlowConsumer CloseReason = 3
	// CloseServerShutdown: the server is stopping.
	CloseServerShutdown CloseReason = 4
	// CloseTimeout: the client went silent (QUIC idle timeout) or never
	// opened its control stream.
	CloseTimeout CloseReason = 5
	// CloseClientGone: the connection failed under the session.
	CloseClientGone CloseReason = 6
	// CloseRateLimited: the client stayed over a rate limit.
	CloseRateLimited CloseReason = 7
	// CloseMoved: the session's room moved to another node.
	CloseMoved CloseReason = 8
	// CloseReplaced: the same device of the same user joined again on
	// another session, which took its place.
	CloseReplaced CloseReason = 9
)

func (r CloseReason) String() string {
	switch r {
	case CloseNormal:
		return "normal"
	case CloseProtocolError:
		return "protocol_error"
	case CloseTooLarge:
		return "too_large"
	case CloseSlowConsumer:
		return "slow_consumer"
	case CloseServerShutdown:
		return "server_shutdown"
	case CloseTimeout:
		return "timeout"
	case CloseClientGone:
		return "client_gone"
	case CloseRateLimited:
		return "rate_limited"
	case CloseMoved:
		return "moved"
	case CloseReplaced:
		return "replaced"
	}
	return fmt.Sprintf("reason_%d", uint32(r))
}

// errorCode maps an error of a room operation to the wire's error code.
func errorCode(err error) string {
	switch {
	case errors.Is(err, rooms.ErrInvalid):
		return codec.CodeInvalid
	case errors.Is(err, rooms.ErrForbidden):
		return codec.CodeForbidden
	case errors.Is(err, rooms.ErrNotFound), errors.Is(err, rooms.ErrRoomNotFound):
		return codec.CodeNotFound
	case errors.Is(err, rooms.ErrRoomFull):
		return codec.CodeRoomFull
	case errors.Is(err, rooms.ErrLeft):
		return codec.CodeNotJoined
	case errors.Is(err, rooms.ErrRateLimited):
		return codec.CodeRateLimited
	case errors.Is(err, rooms.ErrClosed):
		return codec.CodeServerShutdown
	case errors.Is(err, rooms.ErrStoreBacklog), errors.Is(err, rooms.ErrUnavailable), errors.Is(err, rooms.ErrTooManyRooms):
		return codec.CodeUnavailable
	}
	return codec.CodeInternal
}
