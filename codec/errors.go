package codec

import "errors"

// Sentinel errors of the decoders. Decoders wrap them with detail; test with errors.Is.
var (
	// ErrMalformed reports bytes that are not what the protocol allows.
	ErrMalformed = errors.New("malformed message")
	// ErrTooLarge reports a frame, message or value over its size or depth limit.
	ErrTooLarge = errors.New("message too large")
	// ErrUnknownType reports a control message whose type this version does not know.
	ErrUnknownType = errors.New("unknown message type")
)
