package rtsp

import (
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/sdp"
)

// sdpPanics tells whether gortsplib's parser panics on an SDP. gortsplib
// parses the SDP of an ANNOUNCE (before any handler, authentication
// included) and of a pull source's DESCRIBE response on its own
// goroutines, without recovering: a panic there ends the process. v5.5.0
// panics on an MP4A-LATM config whose second layer reuses the first one's
// AudioSpecificConfig (useSameConfig=1; fixed upstream by
// bluenviron/gortsplib#1162). Such a body is emptied before gortsplib sees
// it (OnRequest, the source client's OnResponse), which makes it an
// invalid SDP: 400, reason protocol.
func sdpPanics(body []byte) (panicked bool) {
	if len(body) == 0 {
		return false
	}
	defer func() {
		if recover() != nil {
			panicked = true
		}
	}()
	var ssd sdp.SessionDescription
	if ssd.Unmarshal(body) != nil {
		return false
	}
	var desc description.Session
	_ = desc.Unmarshal(&ssd)
	return false
}
