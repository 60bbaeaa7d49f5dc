// Package web holds posecast's browser client, built into dist/ and embedded
// in the binary, and the handler that serves it.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed dist
var dist embed.FS

// Handler serves the browser client.
func Handler() http.Handler {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded at build time; it is always there
	}
	return http.FileServerFS(sub)
}
