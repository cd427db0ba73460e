package ingest

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
)

func TestAddrIP(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1}, "192.0.2.1"},
		{&net.UDPAddr{IP: net.ParseIP("::ffff:192.0.2.2"), Port: 1}, "192.0.2.2"},
		{&net.UDPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1, Zone: "eth0"}, "2001:db8::1"},
		{&net.UnixAddr{Name: "/tmp/x", Net: "unix"}, "invalid IP"},
		{nil, "invalid IP"},
	} {
		if got := AddrIP(tc.addr).String(); got != tc.want {
			t.Errorf("AddrIP(%v) = %s, want %s", tc.addr, got, tc.want)
		}
	}
	if AddrIP(&net.TCPAddr{IP: net.ParseIP("127.0.0.1")}) != netip.MustParseAddr("127.0.0.1") {
		t.Error("loopback")
	}
}

func TestRefusalReason(t *testing.T) {
	cause := errors.New("playback token expired")
	err := fmt.Errorf("read live/x: %w", &ReadRefusal{Reason: "expired", Err: cause})
	if got := RefusalReason(err); got != "expired" {
		t.Errorf("RefusalReason = %q", got)
	}
	if !errors.Is(err, cause) || err.Error() != "read live/x: playback token expired" {
		t.Errorf("wrapping: %v", err)
	}
	if got := RefusalReason(cause); got != "" {
		t.Errorf("RefusalReason of a plain error = %q", got)
	}
}
