package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
)

func get(t *testing.T, h http.Handler, path string) (*httptest.ResponseRecorder, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Body)
	return rec, string(body)
}

func TestHandlerServesTheEmbeddedPage(t *testing.T) {
	// Built or not, "/" is an HTML page about posecast.
	rec, body := get(t, Handler(), "/")
	if rec.Code != http.StatusOK || !strings.Contains(body, "posecast") {
		t.Errorf("GET / = %d %q", rec.Code, body)
	}
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestABuiltClientIsServedWithItsScript(t *testing.T) {
	h := handler(fstest.MapFS{
		"index.html": {Data: []byte(`<!doctype html><title>posecast</title><script type="module" src="app.js"></script>`)},
		"app.js":     {Data: []byte(`console.log("posecast")`)},
	})
	rec, body := get(t, h, "/")
	if rec.Code != http.StatusOK || !strings.Contains(body, `src="app.js"`) {
		t.Fatalf("GET / = %d %q", rec.Code, body)
	}
	rec, _ = get(t, h, "/app.js")
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/javascript") {
		t.Errorf("GET /app.js = %d, Content-Type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control %q, want no-cache", cc)
	}
}

func TestAnUnbuiltClientServesThePlaceholder(t *testing.T) {
	h := handler(fstest.MapFS{".gitkeep": {}})
	rec, body := get(t, h, "/")
	if rec.Code != http.StatusOK || !strings.Contains(body, "make web") {
		t.Errorf("GET / = %d %q, want the placeholder that says to run make web", rec.Code, body)
	}
	if rec, _ := get(t, h, "/app.js"); rec.Code != http.StatusNotFound {
		t.Errorf("GET /app.js = %d, want 404", rec.Code)
	}
}

// Pages load without a 404 for their icon: /favicon.svg is served, and
// /favicon.ico, which browsers ask for by themselves, leads there.
func TestTheIconIsServed(t *testing.T) {
	for _, h := range []http.Handler{Handler(), handler(fstest.MapFS{".gitkeep": {}})} {
		rec, body := get(t, h, "/favicon.svg")
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "image/svg+xml" || !strings.HasPrefix(body, "<svg") {
			t.Errorf("GET /favicon.svg = %d %q %.20q", rec.Code, rec.Header().Get("Content-Type"), body)
		}
		if rec, _ := get(t, h, "/favicon.ico"); rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "/favicon.svg" {
			t.Errorf("GET /favicon.ico = %d to %q", rec.Code, rec.Header().Get("Location"))
		}
	}
}
