package testpeer

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback TCP address (127.0.0.1:port) whose port was
// free a moment ago, for a process that must be told its address up front.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
