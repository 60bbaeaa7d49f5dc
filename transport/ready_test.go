package transport

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/posecast/posecast/rooms"
)

// readyz returns the status and body of ts's /readyz.
func readyz(t *testing.T, ts *testServer) (int, string) {
	t.Helper()
	status, b := httpGet(t, ts.HTTPURL()+"/readyz")
	return status, strings.TrimSpace(string(b))
}

func TestReadiness(t *testing.T) {
	storeDown := errors.New("store unreachable")
	tests := []struct {
		name    string
		ready   error             // what the server's Ready check answers
		breakIt func(*testServer) // what happens to the server first
		status  int
		says    string
	}{
		{"up", nil, nil, http.StatusOK, "ready"},
		{"the store does not answer", storeDown, nil, http.StatusServiceUnavailable, "not ready: store unreachable"},
		{"the QUIC listener stopped", nil, func(ts *testServer) { ts.ln.Close() }, http.StatusServiceUnavailable, "QUIC listener"},
		{"shutting down", nil, func(ts *testServer) {
			ts.mu.Lock()
			ts.closing = true
			ts.mu.Unlock()
		}, http.StatusServiceUnavailable, "shutting down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, func(c *Config, _ *rooms.Config) {
				c.Ready = func(context.Context) error { return tt.ready }
			})
			if tt.breakIt != nil {
				tt.breakIt(ts)
			}
			var status int
			var body string
			deadline := time.Now().Add(5 * time.Second)
			for {
				status, body = readyz(t, ts)
				if status == tt.status || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if status != tt.status || !strings.Contains(body, tt.says) {
				t.Errorf("/readyz: %d %q, want %d with %q", status, body, tt.status, tt.says)
			}
		})
	}
}
