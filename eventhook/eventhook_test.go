package eventhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwater-live/headwater/auth"
)

// TestDeliversSignedInOrderWithRetries: a receiver that fails the first
// attempt of each event gets every event, in order, signed, each id the
// same across its attempts.
func TestDeliversSignedInOrderWithRetries(t *testing.T) {
	secret := []byte("0123456789abcdef")
	var mu sync.Mutex
	var got []Body
	attempts := make(map[string]int)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := auth.VerifyWebhook(secret, r.Header, body, time.Now(), time.Minute); err != nil {
			t.Errorf("signature: %v", err)
		}
		var b Body
		if err := json.Unmarshal(body, &b); err != nil {
			t.Errorf("body: %v", err)
		}
		if r.Header.Get(HeaderEventID) != b.ID || r.Header.Get(HeaderEvent) != b.Event {
			t.Errorf("headers %q %q do not match the body %q %q", r.Header.Get(HeaderEventID), r.Header.Get(HeaderEvent), b.ID, b.Event)
		}
		mu.Lock()
		defer mu.Unlock()
		attempts[b.ID]++
		if attempts[b.ID] == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		got = append(got, b)
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	h := New(Config{URL: srv.URL, Secret: secret}, nil, reg)
	h.backoff = func(int) time.Duration { return time.Millisecond }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	for i := range 3 {
		h.Send("recording.ready", map[string]int{"n": i})
	}
	// Wait on the hook's own count, not on the receiver: the receiver
	// has the third event before the hook has read its response, and
	// cancelling then would abort that attempt.
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(h.count.WithLabelValues("delivered")) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("delivered %d events, want 3", len(got))
	}
	for i, b := range got {
		if b.Event != "recording.ready" || b.Data.(map[string]any)["n"] != float64(i) {
			t.Errorf("event %d = %+v", i, b)
		}
		if attempts[b.ID] != 2 {
			t.Errorf("event %d took %d attempts, want 2", i, attempts[b.ID])
		}
	}
	if v := testutil.ToFloat64(h.count.WithLabelValues("delivered")); v != 3 {
		t.Errorf("delivered counter = %v, want 3", v)
	}
}

// TestGivesUpAndDrops: attempts are bounded, a full queue drops.
func TestGivesUpAndDrops(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer srv.Close()
	h := New(Config{URL: srv.URL, MaxAttempts: 3, Buffer: 1}, nil, prometheus.NewRegistry())
	h.backoff = func(int) time.Duration { return time.Millisecond }
	h.Send("recording.failed", nil)
	h.Send("recording.failed", nil) // the queue holds one: dropped
	if v := testutil.ToFloat64(h.count.WithLabelValues("dropped")); v != 1 {
		t.Fatalf("dropped = %v, want 1", v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(h.count.WithLabelValues("failed")) != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if calls != 3 {
		t.Errorf("attempts = %d, want 3", calls)
	}
	if v := testutil.ToFloat64(h.count.WithLabelValues("failed")); v != 1 {
		t.Errorf("failed = %v, want 1", v)
	}
}
