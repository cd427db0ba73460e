package srt

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	gosrt "github.com/datarhei/gosrt"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// TestReadAuthorization: with a ReadAuthorizer, readers without a token,
// with a wrong one or with one for another stream are refused at the
// handshake with REJX_UNAUTHORIZED and counted (rejection and ingest
// reason "unauthorized", before a stream that is not live is found out);
// ffmpeg reads with the right token; the publisher needs none.
func TestReadAuthorization(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	const name = "live/guarded"
	az := &testpeer.ReadAuth{Stream: name}
	e := newEnv(t, Config{ReadAuthorizer: az.Authorize}).start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	published := make(chan error, 1)
	go func() {
		args := append(append([]string{"-re"}, testsrcArgs("10")...), append(x264Args, "-c:a", "aac", "-f", "mpegts", e.url("#!::r="+name+",m=publish", ""))...)
		out, err := testpeer.FFmpeg(ctx, args...)
		if err != nil {
			t.Logf("publisher: %s", out)
		}
		published <- err
	}()
	c := e.waitPublished(name, 1, 15*time.Second)

	refusals := 0
	refused := func(what string) {
		t.Helper()
		refusals++
		e.metrics.Wait(float64(refusals), 5*time.Second, "headwater_srt_rejections_total", "reason", rejectAuth)
		e.metrics.WaitErrors(ingest.ReasonUnauthorized, float64(refusals))
	}
	for _, tc := range []struct{ what, streamid string }{
		{"no token", "#!::r=" + name + ",m=request"},
		{"short form (no token)", "read:" + name},
		{"wrong token", "#!::r=" + name + ",m=request,token=" + testpeer.ForgedReadToken},
		{"token of another stream", "#!::r=live/other,m=request,token=" + testpeer.GoodReadToken},
		{"stream not live, no token", "#!::r=live/nothing,m=request"},
	} {
		conn, err := e.dial(tc.streamid, "")
		if err == nil {
			conn.Close()
			t.Fatalf("%s: reader accepted", tc.what)
		}
		if !rejectedWith(err, gosrt.REJX_UNAUTHORIZED) {
			t.Errorf("%s: %v, want rejection %d", tc.what, err, gosrt.REJX_UNAUTHORIZED)
		}
		refused(tc.what)
	}
	if n := e.metrics.Value("headwater_srt_rejections_total", "reason", rejectNotFound); n != 0 {
		t.Errorf("%v not_found rejections: an unauthorised reader learnt that a stream is not live", n)
	}

	// ffmpeg with a wrong token is refused too.
	if _, errs, err := ffmpegOut(ctx, "-i", e.url("#!::r="+name+",m=request,token="+testpeer.ForgedReadToken, ""), "-t", "1", "-f", "null", "-"); err == nil {
		t.Errorf("ffmpeg read with a wrong token\n%s", errs)
	}
	refused("ffmpeg, wrong token")

	// ffmpeg with the token reads and decodes the stream.
	out, errs, err := ffmpegOut(ctx, "-i", e.url("#!::r="+name+",m=request,token="+testpeer.GoodReadToken, ""), "-t", "2", "-f", "framemd5", "-")
	if err != nil || strings.TrimSpace(errs) != "" {
		t.Errorf("reader with the token: %v\n%s", err, errs)
	}
	var video, audio int
	for line := range strings.Lines(out) {
		switch {
		case strings.HasPrefix(line, "0,"):
			video++
		case strings.HasPrefix(line, "1,"):
			audio++
		}
	}
	if video < 30 || audio < 30 {
		t.Errorf("reader with the token decoded %d video and %d audio frames in 2 s", video, audio)
	}

	if err := <-published; err != nil {
		t.Errorf("publisher: %v", err)
	}
	c.Wait(t, 10*time.Second)
	e.metrics.Wait(0, 5*time.Second, "headwater_srt_readers")

	// The authorizer saw every reader, never the publisher, with the
	// caller's address.
	calls := az.Calls()
	if len(calls) != refusals+1 {
		t.Errorf("%d authorizer calls, want %d (the readers only): %v", len(calls), refusals+1, calls)
	}
	for _, call := range calls {
		if call.IP != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("authorizer called with address %v", call.IP)
		}
	}
	// Refusals are logged with the stream and the address, never the token.
	logs := e.logs.String()
	if strings.Contains(logs, testpeer.GoodReadToken) || strings.Contains(logs, testpeer.ForgedReadToken) {
		t.Error("a token is in the logs")
	}
	n := 0
	for line := range strings.Lines(logs) {
		if strings.Contains(line, "srt: connection refused") && strings.Contains(line, "reason=unauthorized") {
			n++
			if !strings.Contains(line, "remote=127.0.0.1:") || !strings.Contains(line, "stream=live/") || !strings.Contains(line, "refusal=") {
				t.Errorf("refusal logged without stream, address or refusal reason: %s", line)
			}
		}
	}
	if n != refusals {
		t.Errorf("%d refusals logged, want %d", n, refusals)
	}
}

// TestReadAuthorizerNil: without a ReadAuthorizer, readers need no token
// (and a token key is ignored).
func TestReadAuthorizerNil(t *testing.T) {
	t.Parallel()
	e := newEnv(t, Config{}).start()
	pub, err := e.dial("#!::r=live/open,m=publish", "")
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ts := benchTS(t)
	go func() { _ = sendTSErr(pub, ts, 268088/2) }()
	e.waitPublished("live/open", 1, 5*time.Second)
	for _, sid := range []string{"read:live/open", "#!::r=live/open,m=request,token=whatever"} {
		r, err := e.dial(sid, "")
		if err != nil {
			t.Fatalf("%s: %v", sid, err)
		}
		r.Close()
	}
	if n := e.metrics.Value("headwater_srt_rejections_total", "reason", rejectAuth); n != 0 {
		t.Errorf("%v unauthorized rejections", n)
	}
}
