package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// ffprobeCodecs runs ffprobe on a live URL and returns the codec names it
// found, or its error and output.
func ffprobeCodecs(t *testing.T, url string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	defer func() { t.Logf("ffprobe %s: %s", strings.SplitN(url, "?", 2)[0], time.Since(start)) }()
	out, err := exec.CommandContext(ctx, "ffprobe", "-hide_banner", "-loglevel", "error", "-analyzeduration", "2000000",
		"-show_entries", "stream=codec_name", "-of", "csv=p=0", url).CombinedOutput()
	return strings.Join(strings.Fields(string(out)), " "), err
}

// TestPlaybackTokensSRTAndRTSP: with playback tokens required, one token
// signed for the stream (as the HLS origin wants it) lets ffprobe read the
// stream over HLS, SRT and RTSP; without a token, with a token of another
// stream or bound to another address, SRT and RTSP readers are refused and
// counted.
func TestPlaybackTokensSRTAndRTSP(t *testing.T) {
	s, kr := tokenServer(t, func(c *config.Config) {
		c.SRT.Address = "127.0.0.1:0"
		c.SRT.Latency = config.Duration(500 * time.Millisecond)
		c.RTSP.Address = "127.0.0.1:0"
		c.RTSP.UDPRTPAddress, c.RTSP.UDPRTCPAddress = "", ""
	})
	// Published over RTMP, without a token: publishing is not concerned.
	testpeer.PublishRTMP(t, s.rtmpURL("x"), 30*time.Second, 30) // killed at the end
	testpeer.WaitFor(t, 10*time.Second, "live/x live", func() bool {
		_, live := s.Registry().Get("live/x")
		return live
	})
	tok, err := kr.Sign("live/x/", time.Now().Add(time.Minute), netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	srtURL := func(streamid string) string {
		return fmt.Sprintf("srt://%s?streamid=%s&latency=500000", s.SRTAddr(), streamid)
	}
	rtspURL := func(query string) string { return fmt.Sprintf("rtsp://%s/live/x%s", s.RTSPAddr(), query) }
	srtRefused := func() float64 {
		return testpeer.MetricSum(t, s.Metrics(), "headwater_srt_rejections_total", "reason", "unauthorized")
	}
	rtspRefused := func() float64 {
		return testpeer.MetricSum(t, s.Metrics(), "headwater_ingest_errors_total", "protocol", "rtsp", "reason", "unauthorized")
	}
	wantCodecs := func(what, got string, err error) {
		t.Helper()
		if err != nil || !strings.Contains(got, "h264") || !strings.Contains(got, "aac") {
			t.Errorf("%s with the token: %v: %q", what, err, got)
		}
	}

	// The token of the stream plays its HLS playlist (once it exists)...
	testpeer.WaitFor(t, 15*time.Second, "the HLS playlist through the token", func() bool {
		return get(t, s.originURL("/t/"+tok+"/live/x/index.m3u8")).status == http.StatusOK
	})
	// ...and reads it over SRT and RTSP.
	got, err := ffprobeCodecs(t, srtURL("#!::r=live/x,m=request,token="+tok))
	wantCodecs("SRT", got, err)
	got, err = ffprobeCodecs(t, rtspURL("?token="+tok))
	wantCodecs("RTSP", got, err)

	// Refused: no token, another stream's token, a token bound to another
	// address. A token bound to the reader's address is accepted.
	other, err := kr.Sign("live/other/", time.Now().Add(time.Minute), netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := sign(t, kr, "live/x/", "192.0.2.1")
	for i, bad := range []struct{ what, srt, rtsp string }{
		{"no token", "#!::r=live/x,m=request", ""},
		{"another stream's token", "#!::r=live/x,m=request,token=" + other, "?token=" + other},
		{"token bound to another address", "#!::r=live/x,m=request,token=" + elsewhere, "?token=" + elsewhere},
	} {
		if got, err := ffprobeCodecs(t, srtURL(bad.srt)); err == nil {
			t.Errorf("SRT, %s: ffprobe read %q", bad.what, got)
		}
		testpeer.WaitFor(t, 5*time.Second, fmt.Sprintf("%d SRT refusals", i+1), func() bool { return srtRefused() == float64(i+1) })
		if got, err := ffprobeCodecs(t, rtspURL(bad.rtsp)); err == nil {
			t.Errorf("RTSP, %s: ffprobe read %q", bad.what, got)
		}
		testpeer.WaitFor(t, 5*time.Second, fmt.Sprintf("%d RTSP refusals", i+1), func() bool { return rtspRefused() == float64(i+1) })
	}
	bound := sign(t, kr, "live/x/", "127.0.0.1")
	got, err = ffprobeCodecs(t, srtURL("#!::r=live/x,m=request,token="+bound))
	wantCodecs("SRT, token bound to the reader's address,", got, err)

	if logs := s.logs.String(); strings.Contains(logs, tok) || strings.Contains(logs, other) || strings.Contains(logs, elsewhere) || strings.Contains(logs, bound) {
		t.Error("a playback token is in the logs")
	}
}
