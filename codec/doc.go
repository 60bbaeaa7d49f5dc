// Package codec is posecast's wire format: the msgpack control messages that
// travel on a session's reliable stream, the length prefix that frames them,
// and the compact pose records and datagrams that carry head and hand poses.
//
// It does no I/O and starts no goroutines. Every decoder of untrusted bytes
// checks sizes before it allocates and has a fuzz target. docs/PROTOCOL.md is
// the human-readable form of this package.
package codec
