package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var webhookSecret = []byte("webhook-secret-0123456789")

// receiver is a webhook endpoint that verifies signatures the way a real
// receiver would (VerifyWebhook plus replay protection by request id).
type receiver struct {
	t      *testing.T
	status int
	delay  time.Duration
	mu     sync.Mutex
	events []WebhookEvent
	hdrs   []http.Header
	seen   map[string]bool
	bad    int // requests refused by the signature check
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := VerifyWebhook(webhookSecret, r.Header, body, time.Now(), 0); err != nil {
		rc.mu.Lock()
		rc.bad++
		rc.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var ev WebhookEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	replay := rc.seen[ev.RequestID+"/"+ev.Action]
	if rc.seen == nil {
		rc.seen = map[string]bool{}
	}
	rc.seen[ev.RequestID+"/"+ev.Action] = true
	rc.events = append(rc.events, ev)
	rc.hdrs = append(rc.hdrs, r.Header.Clone())
	rc.mu.Unlock()
	if replay {
		http.Error(w, "replayed", http.StatusConflict)
		return
	}
	if rc.delay > 0 {
		select {
		case <-time.After(rc.delay):
		case <-r.Context().Done():
			return
		}
	}
	w.WriteHeader(rc.status)
}

func newReq(id string) PublishRequest {
	return PublishRequest{Protocol: "rtmp", Stream: "live/a", RemoteAddr: "192.0.2.7:50000", RequestID: id,
		Params: map[string]string{"token": "tok-secret-value", "x": "1"}}
}

func TestWebhookAuthorize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		delay  time.Duration
		want   error
	}{
		{"200 allows", 200, 0, nil},
		{"204 allows", 204, 0, nil},
		{"403 denies", 403, 0, ErrWebhookDenied},
		{"401 denies", 401, 0, ErrWebhookDenied},
		{"302 denies (no redirects followed)", 302, 0, ErrWebhookDenied},
		{"500 refuses as unavailable", 500, 0, ErrWebhookUnavailable},
		{"503 refuses as unavailable", 503, 0, ErrWebhookUnavailable},
		{"timeout refuses", 200, 2 * time.Second, ErrWebhookUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := &receiver{t: t, status: tc.status, delay: tc.delay}
			srv := httptest.NewServer(rc)
			defer srv.Close()
			if tc.status == 302 {
				srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, "/elsewhere", http.StatusFound)
				})
			}
			wh, err := NewWebhook(WebhookConfig{URL: srv.URL + "/hook?api_key=querysecret", Secret: webhookSecret, Timeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = wh.Authorize(context.Background(), newReq("r1"))
			if (tc.want == nil) != (err == nil) || !errors.Is(err, tc.want) {
				t.Fatalf("Authorize = %v, want %v", err, tc.want)
			}
			if el := time.Since(start); el > time.Second {
				t.Fatalf("Authorize took %v with a 100ms timeout", el)
			}
			if err != nil {
				for _, s := range []string{"querysecret", "tok-secret-value", string(webhookSecret), srv.URL} {
					if strings.Contains(err.Error(), s) {
						t.Fatalf("error %q contains %q", err, s)
					}
				}
			}
			if rc.bad != 0 {
				t.Fatalf("%d requests failed the receiver's signature check", rc.bad)
			}
		})
	}
}

func TestWebhookBodyAndSignature(t *testing.T) {
	rc := &receiver{t: t, status: 200}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	wh, err := NewWebhook(WebhookConfig{URL: srv.URL, Secret: webhookSecret, Traceparent: TraceparentFromContext})
	if err != nil {
		t.Fatal(err)
	}
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	ctx := WithTraceparent(context.Background(), tp)
	req := newReq("abc123")
	req.Key = "k"
	if err := wh.Authorize(ctx, req); err != nil {
		t.Fatal(err)
	}
	ev, h := rc.events[0], rc.hdrs[0]
	if ev.Action != ActionPublish || ev.Protocol != "rtmp" || ev.Stream != "live/a" || ev.RemoteAddr != "192.0.2.7:50000" ||
		ev.RequestID != "abc123" || ev.Params["token"] != "tok-secret-value" || ev.Key != "k" || ev.Time.IsZero() {
		t.Fatalf("event %+v", ev)
	}
	if h.Get("Traceparent") != tp || h.Get(HeaderRequestID) != "abc123" || h.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", h)
	}
	if !strings.HasPrefix(h.Get(HeaderSignature), "sha256=") || len(h.Get(HeaderSignature)) != 7+64 {
		t.Fatalf("signature header %q", h.Get(HeaderSignature))
	}
	// The same request again is a replay the receiver refuses.
	if err := wh.Authorize(ctx, req); !errors.Is(err, ErrWebhookDenied) {
		t.Fatalf("replayed request: %v", err)
	}
}

func TestVerifyWebhook(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"action":"publish"}`)
	ts := strconv.FormatInt(now.Unix(), 10)
	good := http.Header{}
	good.Set(HeaderTimestamp, ts)
	good.Set(HeaderSignature, SignWebhook(webhookSecret, ts, body))
	if err := VerifyWebhook(webhookSecret, good, body, now, 0); err != nil {
		t.Fatal(err)
	}
	hdr := func(ts, sig string) http.Header {
		h := http.Header{}
		if ts != "" {
			h.Set(HeaderTimestamp, ts)
		}
		if sig != "" {
			h.Set(HeaderSignature, sig)
		}
		return h
	}
	old := strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10)
	for _, tc := range []struct {
		name string
		h    http.Header
		body []byte
		key  []byte
		want error
	}{
		{"missing", hdr("", ""), body, webhookSecret, ErrSignatureMissing},
		{"body changed", good, []byte(`{"action":"unpublish"}`), webhookSecret, ErrSignatureInvalid},
		{"wrong secret", good, body, []byte("other"), ErrSignatureInvalid},
		{"timestamp changed", hdr(strconv.FormatInt(now.Unix()+1, 10), good.Get(HeaderSignature)), body, webhookSecret, ErrSignatureInvalid},
		{"stale (replay later)", hdr(old, SignWebhook(webhookSecret, old, body)), body, webhookSecret, ErrSignatureStale},
		{"bad timestamp", hdr("yesterday", good.Get(HeaderSignature)), body, webhookSecret, ErrSignatureInvalid},
	} {
		if err := VerifyWebhook(tc.key, tc.h, tc.body, now, 0); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestWebhookUnpublishBounded(t *testing.T) {
	release := make(chan struct{})
	var arrived atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := VerifyWebhook(webhookSecret, r.Header, body, time.Now(), 0); err != nil || !bytes.Contains(body, []byte(`"action":"unpublish"`)) {
			t.Errorf("bad notification: %v %s", err, body)
		}
		arrived.Add(1)
		<-release
	}))
	defer srv.Close()
	defer close(release)
	var logs bytes.Buffer
	m := NewMetrics(nil)
	wh, err := NewWebhook(WebhookConfig{URL: srv.URL, Secret: webhookSecret, OnUnpublish: true, UnpublishInFlight: 2,
		Timeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	chain := New(Config{Webhook: wh, Metrics: m})
	ctx, cancel := context.WithCancel(context.Background())
	for i := range 5 {
		start := time.Now()
		chain.Unpublished(ctx, newReq("u"+strconv.Itoa(i)))
		if time.Since(start) > 100*time.Millisecond {
			t.Fatal("Unpublished blocked")
		}
	}
	cancel() // the session's context ending must not cancel notifications
	deadline := time.Now().Add(5 * time.Second)
	for arrived.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := arrived.Load(); got != 2 {
		t.Fatalf("%d notifications arrived, want 2 (the bound)", got)
	}
	if got := testutilCount(m); got != 3 {
		t.Fatalf("%v dropped, want 3", got)
	}
	if strings.Contains(logs.String(), "tok-secret-value") {
		t.Fatal("logs contain a parameter value")
	}
}

func TestWebhookCloseWaits(t *testing.T) {
	var done atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		done.Store(true)
	}))
	defer srv.Close()
	wh, err := NewWebhook(WebhookConfig{URL: srv.URL, OnUnpublish: true})
	if err != nil {
		t.Fatal(err)
	}
	wh.Notify(context.Background(), newReq("c"))
	wh.Close()
	if !done.Load() {
		t.Fatal("Close returned before the notification finished")
	}
	wh.Notify(context.Background(), newReq("after")) // dropped, no panic
}

func TestNewWebhookInvalid(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "/relative", "http://", "::"} {
		if _, err := NewWebhook(WebhookConfig{URL: u}); err == nil {
			t.Errorf("NewWebhook(%q) accepted", u)
		}
	}
}

func TestWebhookUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	u := srv.URL + "/?token=querysecret"
	srv.Close()
	wh, err := NewWebhook(WebhookConfig{URL: u, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = wh.Authorize(context.Background(), newReq("x"))
	if !errors.Is(err, ErrWebhookUnavailable) || strings.Contains(err.Error(), "querysecret") {
		t.Fatalf("Authorize = %v", err)
	}
}
