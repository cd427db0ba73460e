package rtsp

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// describeStatus sends a DESCRIBE with gortsplib's client and returns the
// response and the error.
func describeStatus(t *testing.T, rawURL string) (*base.Response, error) {
	t.Helper()
	u, err := base.ParseURL(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	tcp := gortsplib.ProtocolTCP
	c := &gortsplib.Client{Scheme: u.Scheme, Host: u.Host, Protocol: &tcp}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, res, err := c.Describe(u)
	return res, err
}

// TestReadAuthorization: with a ReadAuthorizer, a reader without a token
// gets 401 with a Basic challenge, with a refused one 403, both with the
// reason in X-Headwater-Token, counted (ingest reason "unauthorized") and
// logged once; a stream that is not live is not found out. ffmpeg reads
// with the token as query parameter or as Basic password, also when SETUP
// comes without DESCRIBE; the publisher needs no token.
func TestReadAuthorization(t *testing.T) {
	t.Parallel()
	m := loadAV(t)
	const name = "live/guarded"
	az := &testpeer.ReadAuth{Stream: name}
	e := newEnv(t, Config{ReadAuthorizer: az.Authorize})
	host := e.addr()

	p, err := startClientPublisher(t, e.url(name), m, true, gortsplib.ProtocolTCP)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pubCtx, stopPub := context.WithCancel(ctx)
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for loop := 0; pubCtx.Err() == nil; loop++ {
			offset := time.Duration(loop) * time.Duration(len(m.video)) * time.Second / 30
			if p.send(m, 0, len(m.video), 33*time.Millisecond, offset) != nil {
				return
			}
		}
	}()
	c := e.waitPublished(name, 1, 10*time.Second)

	refusals := 0
	refused := func() {
		t.Helper()
		refusals++
		e.metrics.WaitErrors(ingest.ReasonUnauthorized, float64(refusals))
	}

	for _, tc := range []struct {
		what, url string
		code      base.StatusCode
		why       string
	}{
		{"no token", e.url(name), base.StatusUnauthorized, "missing_token"},
		{"no token, stream not live", e.url("live/nothing"), base.StatusUnauthorized, "missing_token"},
		{"wrong token", e.url(name) + "?token=" + testpeer.ForgedReadToken, base.StatusForbidden, "bad_signature"},
		{"wrong Basic password", "rtsp://viewer:" + testpeer.ForgedReadToken + "@" + host + "/" + name, base.StatusForbidden, "bad_signature"},
		{"token of another stream", e.url("live/other") + "?token=" + testpeer.GoodReadToken, base.StatusForbidden, "wrong_path"},
	} {
		res, err := describeStatus(t, tc.url)
		var bad liberrors.ErrClientBadStatusCode
		switch {
		case !errors.As(err, &bad) || bad.Code != tc.code || res == nil:
			t.Errorf("%s: DESCRIBE: %v, want status %d", tc.what, err, tc.code)
		case len(res.Header["X-Headwater-Token"]) != 1 || res.Header["X-Headwater-Token"][0] != tc.why:
			t.Errorf("%s: X-Headwater-Token %q, want %q", tc.what, res.Header["X-Headwater-Token"], tc.why)
		case tc.code == base.StatusUnauthorized && len(res.Header["WWW-Authenticate"]) == 0:
			t.Errorf("%s: 401 without a challenge", tc.what)
		}
		refused()
	}

	// SETUP without DESCRIBE: challenged, then accepted on the same
	// connection with the token in the query (before the track id).
	transport := map[string]string{"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1"}
	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	code, h := rawRequest(t, conn, br, "SETUP", e.url(name)+"/trackID=0", 1, transport, "")
	if code != 401 || h.Get("X-Headwater-Token") != "missing_token" || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("SETUP without a token: %d %v", code, h)
	}
	code, h = rawRequest(t, conn, br, "SETUP", e.url(name)+"?token="+testpeer.GoodReadToken+"/trackID=0", 2, transport, "")
	if code != 200 {
		t.Fatalf("SETUP with the token: %d %v", code, h)
	}
	session, _, _ := strings.Cut(h.Get("Session"), ";")
	if code, _ := rawRequest(t, conn, br, "PLAY", e.url(name)+"?token="+testpeer.GoodReadToken, 3, map[string]string{"Session": session}, ""); code != 200 {
		t.Errorf("PLAY: %d", code)
	}
	e.metrics.Wait(1, 5*time.Second, "headwater_rtsp_readers")
	conn.Close()
	e.metrics.Wait(0, 5*time.Second, "headwater_rtsp_readers")

	// A client challenged that comes back without a credential is refused
	// and the connection closed.
	conn, err = net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br = bufio.NewReader(conn)
	if code, _ := rawRequest(t, conn, br, "DESCRIBE", e.url(name), 1, nil, ""); code != 401 {
		t.Errorf("DESCRIBE without a token: %d", code)
	}
	if code, _ := rawRequest(t, conn, br, "DESCRIBE", e.url(name), 2, nil, ""); code != 401 {
		t.Errorf("DESCRIBE without a token, again: %d", code)
	}
	waitClosed(t, conn, br)
	refused()

	// ffmpeg: refused without the token, plays with it.
	out, err := testpeer.FFmpeg(ctx, "-rtsp_transport", "tcp", "-i", e.url(name), "-t", "1", "-f", "null", "-")
	if err == nil || !strings.Contains(out, "401") {
		t.Errorf("ffmpeg without a token: %v\n%s", err, out)
	}
	refused()
	for _, u := range []string{
		e.url(name) + "?token=" + testpeer.GoodReadToken,
		"rtsp://viewer:" + testpeer.GoodReadToken + "@" + host + "/" + name,
	} {
		out, err := testpeer.FFmpeg(ctx, "-rtsp_transport", "tcp", "-i", u, "-t", "2", "-f", "null", "-")
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("ffmpeg with the token (%s): %v\n%s", strings.ReplaceAll(u, testpeer.GoodReadToken, "TOKEN"), err, out)
		}
	}
	e.metrics.Wait(0, 5*time.Second, "headwater_rtsp_readers")

	stopPub()
	<-sent
	p.c.Close()
	c.Wait(t, 5*time.Second)

	// Authorised readers were not counted as refused.
	if got := e.metrics.Value("headwater_ingest_errors_total", "reason", string(ingest.ReasonUnauthorized)); got != float64(refusals) {
		t.Errorf("%v unauthorized errors, want %d", got, refusals)
	}
	if n := e.metrics.Value("headwater_ingest_errors_total", "reason", string(ingest.ReasonProtocol)); n != 0 {
		t.Errorf("%v protocol errors", n)
	}
	for _, call := range az.Calls() {
		if call.IP != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("authorizer called with address %v", call.IP)
		}
	}
	// Refusals are logged once, with the stream and the address, never the token.
	logs := e.logs.String()
	if strings.Contains(logs, testpeer.GoodReadToken) || strings.Contains(logs, testpeer.ForgedReadToken) {
		t.Error("a token is in the logs")
	}
	n := 0
	for line := range strings.Lines(logs) {
		if strings.Contains(line, "rtsp: reader refused") {
			n++
			if !strings.Contains(line, "remote=127.0.0.1:") || !strings.Contains(line, "stream=live/") ||
				!strings.Contains(line, "reason=unauthorized") || !strings.Contains(line, "refusal=") {
				t.Errorf("refusal logged without stream, address or reasons: %s", line)
			}
		}
	}
	if n != refusals {
		t.Errorf("%d refusals logged, want %d", n, refusals)
	}
}

// TestRedactURL: source URLs are logged without password nor query values.
func TestRedactURL(t *testing.T) {
	u, err := parseSourceURL("rtsp://cam:secret@192.0.2.1:554/live/x?token=abc&channel=1")
	if err != nil {
		t.Fatal(err)
	}
	got := redactURL(u)
	if strings.Contains(got, "secret") || strings.Contains(got, "abc") || !strings.Contains(got, "token=") || !strings.Contains(got, "192.0.2.1:554/live/x") {
		t.Errorf("redactURL: %s", got)
	}
}
