package transcoder

import "testing"

// TestStreamPrefixBoundary checks that every stream-prefix rule of the
// transcoder (reserved workers, per-prefix ladders) matches at a
// path-element boundary: "live/vip" and "live/vip/" cover live/vip and
// live/vip/x, not live/vipx.
func TestStreamPrefixBoundary(t *testing.T) {
	vip := Ladder{{Name: "1080p", Height: 1080, Bitrate: "6M"}}
	def := Ladder{{Name: "360p", Height: 360, Bitrate: "800k"}}
	for _, tc := range []struct {
		prefix, stream string
		want           bool
	}{
		{"", "live/x", true},
		{"live/vip", "live/vip", true},
		{"live/vip", "live/vip/x", true},
		{"live/vip", "live/vip/x/y", true},
		{"live/vip", "live/vipx", false},
		{"live/vip", "live/vipx/y", false},
		{"live/vip", "live/vi", false},
		{"live/vip", "live", false},
		{"live/vip/", "live/vip", true},
		{"live/vip/", "live/vip/x", true},
		{"live/vip/", "live/vipx", false},
		{"live/vip/", "live/vipx/y", false},
		{"live/", "live/a", true},
		{"live/", "live", true},
		{"live/", "livex/a", false},
		{"live", "livestream", false},
	} {
		r := Reservation{Streams: tc.prefix, Workers: 1}
		if got := r.matchStream(tc.stream); got != tc.want {
			t.Errorf("reserve %q: matches stream %q = %v, want %v", tc.prefix, tc.stream, got, tc.want)
		}
		j := &Job{Stream: tc.stream, Renditions: def}
		if got := r.matches(j); got != tc.want {
			t.Errorf("reserve %q: runs a job of %q = %v, want %v", tc.prefix, tc.stream, got, tc.want)
		}
		p := &Pool{cfg: PoolConfig{Reserve: []Reservation{r}}}
		if got := p.protected(j, def[0]); got != tc.want {
			t.Errorf("reserve %q: protects a rendition of %q = %v, want %v", tc.prefix, tc.stream, got, tc.want)
		}
		ls := Ladders{"": def, tc.prefix: vip}
		if got := ls.For(tc.stream)[0].Name == "1080p"; got != tc.want {
			t.Errorf("prefix ladder %q: used for %q = %v, want %v", tc.prefix, tc.stream, got, tc.want)
		}
	}
}

func TestCheckStreamPrefix(t *testing.T) {
	for p, ok := range map[string]bool{
		"": true, "live": true, "live/": true, "live/vip": true, "live/vip/": true,
		"/": false, "/live": false, "live//": false, "live//vip": false, "live/../x": false, "live/./": false, "live vip": false,
	} {
		if err := CheckStreamPrefix(p); (err == nil) != ok {
			t.Errorf("CheckStreamPrefix(%q) = %v", p, err)
		}
	}
	if err := (PoolConfig{Size: 2, Reserve: []Reservation{{Streams: "live//vip", Workers: 1}}}).Validate(); err == nil {
		t.Error("a reservation that covers no stream name accepted")
	}
}
