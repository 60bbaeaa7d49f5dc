package certs

import "errors"

var (
	// ErrValidityTooLong is returned for a Validity over MaxValidity, which
	// Chrome refuses for serverCertificateHashes.
	ErrValidityTooLong = errors.New("certs: validity longer than 14 days")

	// ErrNoRotationMargin is returned when 2*RotateEvery is not shorter than
	// Validity: a certificate is next for one period and current for the next,
	// so it would expire while it is still being served.
	ErrNoRotationMargin = errors.New("certs: rotation period leaves no margin before expiry")

	// ErrDurationTooShort is returned for a negative Validity or RotateEvery,
	// or one under a second: certificate times have one-second resolution.
	ErrDurationTooShort = errors.New("certs: duration shorter than one second")
)
