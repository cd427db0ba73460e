package hlsenc_test

import (
	"testing"

	"github.com/headwater-live/headwater/auth/playback"
	"github.com/headwater-live/headwater/hlsenc"
)

// A playback token for a stream covers its key files, not others'. (An
// external test: playback imports hlsenc for its key id alphabet.)
func TestKeyPathCoveredByStreamToken(t *testing.T) {
	for _, stream := range []string{"live/a", "a", "app/sub/x"} {
		path := hlsenc.KeyPath(stream, hlsenc.NewKeyID())
		if !playback.Covers("/"+stream+"/", path) {
			t.Fatalf("token for %s does not cover %s", stream, path)
		}
		if playback.Covers("/other/", path) {
			t.Fatalf("token for /other/ covers %s", path)
		}
	}
}
