package media

import "testing"

func TestNested(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"live/a", "live/a/x", true},
		{"live/a/x/y", "live/a", true},
		{"live/a", "live/ab", false},
		{"live/a", "live/a", false},
		{"live/a/x", "live/b/x", false},
		{"live", "live/a", true},
	} {
		if got := Nested(tc.a, tc.b); got != tc.want {
			t.Errorf("Nested(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}
