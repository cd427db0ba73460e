package origin

import (
	"net/http"

	"github.com/headwater-live/headwater/auth/playback"
)

// outOfScope reports whether the request came with a playback token that
// does not cover stream, the stream its path resolved to: a token for the
// stream live/a reads "/live/a/x/index.m3u8" only as the rendition x of
// live/a, never as the stream live/a/x (playback.CoversStream).
func outOfScope(r *http.Request, stream string) bool {
	c, ok := playback.ClaimsFromContext(r.Context())
	return ok && !playback.CoversStream(c.Prefix, stream)
}

// forbidden answers 403 to a token that does not cover the stream.
func (h *handler) forbidden(w *respWriter, o object) object {
	h.fail(w, http.StatusForbidden, "forbidden\n")
	return o
}
