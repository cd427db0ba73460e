package origin

import (
	"net/url"
	"strconv"
	"testing"
)

// FuzzHLSQuery checks parseHLSQuery on any raw query: it never panics, a
// part needs an MSN, and an accepted directive is what the query says.
func FuzzHLSQuery(f *testing.F) {
	for _, s := range []string{
		"", "_HLS_msn=5", "_HLS_msn=5&_HLS_part=2", "_HLS_part=2", "_HLS_msn=5&_HLS_msn=6",
		"_HLS_msn=18446744073709551615&_HLS_part=2147483647", "_HLS_msn=18446744073709551616",
		"_HLS_msn=-1", "_HLS_msn=5&_HLS_part=2147483648", "_HLS_skip=YES", "_HLS_skip=v2&_HLS_skip=NO",
		"_HLS_msn=%35", "_HLS_msn=5;_HLS_part=1", "%zz", "_HLS_msn=+5", "_HLS_msn=05", "a=b&&&c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, ok := parseHLSQuery(raw)
		if !ok {
			return
		}
		if q.part < -1 || (q.part >= 0 && !q.hasMSN) {
			t.Fatalf("%q: part %d without an MSN", raw, q.part)
		}
		vals, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatalf("%q accepted but ParseQuery fails: %v", raw, err)
		}
		if q.hasMSN && vals.Get("_HLS_msn") != strconv.FormatUint(q.msn, 10) && len(vals["_HLS_msn"]) != 1 {
			t.Fatalf("%q: msn %d", raw, q.msn)
		}
	})
}
