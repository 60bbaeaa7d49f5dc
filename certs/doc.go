// Package certs provides the TLS certificates posecast serves over QUIC.
//
// For local use it makes its own: ECDSA P-256 certificates whose total
// validity is at most 14 days, the only kind Chrome accepts through
// WebTransport's serverCertificateHashes (the hostname is not checked). A
// Manager keeps two of them, the current one it serves and the next one
// that takes over at the next rotation, so clients can be given both hashes
// ahead of time, and it rotates them without a restart.
//
// In production it serves certificate and key files instead, and reloads
// them when they change on disk.
package certs
