// Package web holds posecast's browser client and the handler that serves
// it. `make web` builds the client (web/src, bundled with three.js by
// esbuild) into dist/, which is embedded in the binary; a binary built
// before that serves placeholder.html, which says to run `make web`.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed all:dist
var dist embed.FS

//go:embed placeholder.html
var placeholder []byte

//go:embed favicon.svg
var favicon []byte

// Handler serves the browser client, or the placeholder page when the
// client was not built.
func Handler() http.Handler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded at build time; it is always there
	}
	return handler(sub)
}

func handler(files fs.FS) http.Handler {
	var page http.Handler
	if _, err := fs.Stat(files, "index.html"); err != nil {
		page = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(placeholder)
		})
	} else {
		static := http.FileServerFS(files)
		page = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// Embedded files carry no modification time: have browsers
			// ask again each time, so a new build reaches them at once.
			w.Header().Set("Cache-Control", "no-cache")
			static.ServeHTTP(w, r)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/favicon.svg":
			w.Header().Set("Content-Type", "image/svg+xml")
			w.Header().Set("Cache-Control", "max-age=86400")
			w.Write(favicon)
		case "/favicon.ico":
			// The pages name /favicon.svg; a browser that asks here
			// anyway is sent there.
			http.Redirect(w, r, "/favicon.svg", http.StatusMovedPermanently)
		default:
			page.ServeHTTP(w, r)
		}
	})
}
