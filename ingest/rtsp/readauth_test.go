package rtsp

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"

	"github.com/headwater-live/headwater/ingest"
)

// Tokens of the read authorisation tests: distinctive, so that a leak into
// the logs cannot go unnoticed.
const (
	goodReadToken   = "GOODREADTOKEN-5e1b9c"
	forgedReadToken = "FORGEDREADTOKEN-8d2a4f"
)

// readCall is one call of a test ReadAuthorizer.
type readCall struct {
	stream, token string
	ip            netip.Addr
}

// testReadAuth accepts goodReadToken for one stream and records its calls.
type testReadAuth struct {
	stream string

	mu    sync.Mutex
	calls []readCall
}

func (a *testReadAuth) authorize(stream, token string, ip netip.Addr) error {
	a.mu.Lock()
	a.calls = append(a.calls, readCall{stream, token, ip})
	a.mu.Unlock()
	switch {
	case token == "":
		return &ingest.ReadRefusal{Reason: "missing_token", Err: errors.New("no playback token")}
	case token != goodReadToken:
		return &ingest.ReadRefusal{Reason: "bad_signature", Err: errors.New("playback token signature invalid")}
	case stream != a.stream:
		return &ingest.ReadRefusal{Reason: "wrong_path", Err: errors.New("playback token does not cover this path")}
	}
	return nil
}

func (a *testReadAuth) seen() []readCall {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]readCall(nil), a.calls...)
}

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
	az := &testReadAuth{stream: name}
	e := newEnv(t, Config{ReadAuthorizer: az.authorize})
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
		e.waitErrors(ingest.ReasonUnauthorized, float64(refusals))
	}

	for _, tc := range []struct {
		what, url string
		code      base.StatusCode
		why       string
	}{
		{"no token", e.url(name), base.StatusUnauthorized, "missing_token"},
		{"no token, stream not live", e.url("live/nothing"), base.StatusUnauthorized, "missing_token"},
		{"wrong token", e.url(name) + "?token=" + forgedReadToken, base.StatusForbidden, "bad_signature"},
		{"wrong Basic password", "rtsp://viewer:" + forgedReadToken + "@" + host + "/" + name, base.StatusForbidden, "bad_signature"},
		{"token of another stream", e.url("live/other") + "?token=" + goodReadToken, base.StatusForbidden, "wrong_path"},
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
	code, h = rawRequest(t, conn, br, "SETUP", e.url(name)+"?token="+goodReadToken+"/trackID=0", 2, transport, "")
	if code != 200 {
		t.Fatalf("SETUP with the token: %d %v", code, h)
	}
	session, _, _ := strings.Cut(h.Get("Session"), ";")
	if code, _ := rawRequest(t, conn, br, "PLAY", e.url(name)+"?token="+goodReadToken, 3, map[string]string{"Session": session}, ""); code != 200 {
		t.Errorf("PLAY: %d", code)
	}
	e.waitMetric(1, 5*time.Second, "headwater_rtsp_readers")
	conn.Close()
	e.waitMetric(0, 5*time.Second, "headwater_rtsp_readers")

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
	out, err := ffmpeg(ctx, "-rtsp_transport", "tcp", "-i", e.url(name), "-t", "1", "-f", "null", "-")
	if err == nil || !strings.Contains(out, "401") {
		t.Errorf("ffmpeg without a token: %v\n%s", err, out)
	}
	refused()
	for _, u := range []string{
		e.url(name) + "?token=" + goodReadToken,
		"rtsp://viewer:" + goodReadToken + "@" + host + "/" + name,
	} {
		out, err := ffmpeg(ctx, "-rtsp_transport", "tcp", "-i", u, "-t", "2", "-f", "null", "-")
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("ffmpeg with the token (%s): %v\n%s", strings.ReplaceAll(u, goodReadToken, "TOKEN"), err, out)
		}
	}
	e.waitMetric(0, 5*time.Second, "headwater_rtsp_readers")

	stopPub()
	<-sent
	p.c.Close()
	c.wait(t, 5*time.Second)

	// Authorised readers were not counted as refused.
	if got := e.metric("headwater_ingest_errors_total", "reason", string(ingest.ReasonUnauthorized)); got != float64(refusals) {
		t.Errorf("%v unauthorized errors, want %d", got, refusals)
	}
	if n := e.metric("headwater_ingest_errors_total", "reason", string(ingest.ReasonProtocol)); n != 0 {
		t.Errorf("%v protocol errors", n)
	}
	for _, call := range az.seen() {
		if call.ip != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("authorizer called with address %v", call.ip)
		}
	}
	// Refusals are logged once, with the stream and the address, never the token.
	logs := e.logs.String()
	if strings.Contains(logs, goodReadToken) || strings.Contains(logs, forgedReadToken) {
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
