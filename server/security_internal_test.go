package server

import (
	"errors"
	"net/http"
	"testing"

	"github.com/headwater-live/headwater/media"
)

func TestGuardedRegistry(t *testing.T) {
	for _, reserved := range []bool{false, true} {
		g := guardedRegistry{Registry: media.NewRegistry(media.RegistryConfig{}), reserved: reserved}
		for name, isReserved := range map[string]bool{"t/x": true, "keys/live/a": true, "live/t": false, "tv/x": false} {
			err := g.CheckName(name)
			if _, perr := g.Publish(name, media.PublishInfo{}, nil); (perr != nil && errors.Is(perr, media.ErrInvalidName)) != (reserved && isReserved) {
				t.Errorf("reserved=%v Publish(%q) = %v", reserved, name, perr)
			}
			if (err != nil) != (reserved && isReserved) || err != nil && !errors.Is(err, media.ErrInvalidName) {
				t.Errorf("reserved=%v CheckName(%q) = %v", reserved, name, err)
			}
		}
	}
}

func TestAdminCredential(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   string
		ok     bool
	}{
		{"", "", false},
		{"Bearer abc", "abc", true},
		{"bearer  abc ", "abc", true},
		{"Basic dXNlcjpzM2NyZXQ=", "s3cret", true},
		{"Basic !!!", "", false},
		{"Digest x", "", false},
	} {
		r, _ := http.NewRequest(http.MethodGet, "/", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		if got, ok := adminCredential(r); got != tc.want || ok != tc.ok {
			t.Errorf("%q: %q %v", tc.header, got, ok)
		}
	}
}
