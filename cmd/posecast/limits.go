package main

import (
	"log/slog"
	"syscall"
)

// raiseFileLimit lifts the process's limit on open descriptors to the most
// it may have: every session, HTTP connection and database connection
// takes one, and a limit reached makes accept fail for everyone.
func raiseFileLimit(log *slog.Logger) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		log.Warn("open files limit unknown", "err", err)
		return
	}
	if l.Cur < l.Max {
		was := l.Cur
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			log.Warn("open files limit not raised", "err", err, "limit", was)
			return
		}
	}
	log.Debug("open files limit", "limit", l.Cur)
}
