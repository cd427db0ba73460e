// Package testpeer holds the helpers that the tests of several packages
// share: a goroutine-safe log buffer, polling waits, Prometheus look-ups,
// ffmpeg and other binaries, a frame capture of published streams, a
// self-signed certificate and a fake read authorizer.
//
// Only _test.go files import it, so that it never ends up in the server
// binary (go list -deps . does not list it).
package testpeer
