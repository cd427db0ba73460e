package testpeer

import (
	"regexp"
	"strconv"
	"testing"
)

// PartURI matches the name of an LL-HLS part, part<msn>.<index>.m4s, with
// the media sequence number and the index as its submatches.
var PartURI = regexp.MustCompile(`^part(\d+)\.(\d+)\.m4s$`)

// ParsePartURI splits an LL-HLS part name such as "part12.3.m4s" into its
// media sequence number 12 and its index 3, and fails t for another name.
func ParsePartURI(t testing.TB, uri string) (uint64, int) {
	t.Helper()
	m := PartURI.FindStringSubmatch(uri)
	if m == nil {
		t.Fatalf("not a part URI: %q", uri)
	}
	msn, _ := strconv.ParseUint(m[1], 10, 64)
	idx, _ := strconv.Atoi(m[2])
	return msn, idx
}
