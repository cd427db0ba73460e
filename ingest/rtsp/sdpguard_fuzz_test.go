package rtsp

import (
	"os"
	"testing"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/sdp"
)

// FuzzSDPGuard: whatever SDP an ANNOUNCE carries, what the server does with
// it does not panic: sdpPanics (which recovers) flags what would crash
// gortsplib's parser (run on its own goroutines, where a panic ends the
// process), and a description that parses goes through the publisher's
// track planning and assembler set-up (on the handler's path).
func FuzzSDPGuard(f *testing.F) {
	for _, name := range []string{"testdata/seed.latm.sdp", "testdata/seed-frag.latm.sdp"} {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(latmSDP("MP4A-LATM/48000/2", "profile-level-id=1;object=2;cpresent=0;config=400026203fc0")))
	f.Add([]byte(latmSDP("MP4A-LATM/48000/2", "cpresent=0;config=8000262030000026203fc0")))
	f.Add([]byte("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1;sprop-parameter-sets=Z2QAH6zZQFAFuwEQAAADABAAAAMDwPGDGWA=,aOvjyyLA\r\n"))
	f.Add([]byte("v=0\r\ns=-\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 mpeg4-generic/48000/2\r\na=fmtp:97 streamtype=5;mode=AAC-hbr;config=1190;sizelength=13;indexlength=3;indexdeltalength=3\r\n"))
	f.Add([]byte("v=0\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=fmtp:96 sprop-vps=;sprop-sps=;sprop-pps=\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		if sdpPanics(body) {
			return
		}
		var ssd sdp.SessionDescription
		if ssd.Unmarshal(body) != nil {
			return
		}
		var desc description.Session
		if desc.Unmarshal(&ssd) != nil {
			return
		}
		plans, _ := planTracks(&desc)
		for _, p := range plans {
			_, _ = newAssembler(p, func(string, string, ...any) {})
		}
	})
}
