package origin

import (
	"strconv"

	"github.com/headwater-live/headwater/auth/playback"
	"github.com/headwater-live/headwater/hlsenc"
)

// Header values shared by every response. net/http only reads header value
// slices, and this package never appends to one it did not allocate, so the
// same slice can sit in any number of responses.
var (
	hvM3U8         = []string{"application/vnd.apple.mpegurl"}
	hvVideoMP4     = []string{"video/mp4"}
	hvAudioMP4     = []string{"audio/mp4"}
	hvJPEG         = []string{"image/jpeg"}
	hvVTT          = []string{"text/vtt; charset=utf-8"}
	hvTextPlain    = []string{"text/plain; charset=utf-8"}
	hvNoSniff      = []string{"nosniff"}
	hvNoCache      = []string{"no-cache"}
	hvNoStore      = []string{"no-store"}
	hvPrivate      = []string{"private, no-store"}
	hvOctets       = []string{hlsenc.KeyFileContentType}
	hvKeyLength    = []string{strconv.Itoa(hlsenc.KeySize)}
	hvNoToken      = []string{string(playback.ReasonMissingToken)}
	hvBytes        = []string{"bytes"}
	hvGzip         = []string{"gzip"}
	hvAllow        = []string{"GET, HEAD, OPTIONS"}
	hvAllowHeaders = []string{"Range"}
	hvExpose       = []string{"Content-Length, Content-Range, ETag, Age"}
	hvPreflightAge = []string{"86400"}
	hvStar         = []string{"*"}
	hvVaryOrigin   = []string{"Origin"}
	hvVaryAE       = []string{"Accept-Encoding"}
	hvVaryOriginAE = []string{"Origin, Accept-Encoding"}
)

const hvContentLength = "Content-Length"
