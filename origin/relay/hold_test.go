package relay

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// ownerServer serves every playlist with body, counting requests.
func ownerServer(body string, n *atomic.Int64) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n.Add(1)
		w.Header().Set("Content-Type", "application/vnd.apple.mpegurl")
		_, _ = io.WriteString(w, body)
	}))
}

// get runs a ServePlaylist for path of stream.
func get(rl *Relay, path, stream, owner string, lookup Lookup, hold time.Duration) (bool, *httptest.ResponseRecorder) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	handled, err := rl.ServePlaylist(rec, req, stream, owner, lookup, hold, KindPlaylist, false)
	if err != nil {
		panic(err)
	}
	return handled, rec
}

func TestServePlaylistHold(t *testing.T) {
	rl := New(Config{}, nil, prometheus.NewRegistry())
	defer rl.Close()
	const path, stream, hold = "/live/s/v/index.m3u8", "live/s", 3 * time.Second

	var nA, nB atomic.Int64
	a := ownerServer("#EXTM3U\n# from A\n", &nA)
	b := ownerServer("#EXTM3U\n# from B\n", &nB)
	defer b.Close()
	var owner atomic.Value
	owner.Store(a.URL)
	lookup := func() (string, bool) {
		u := owner.Load().(string)
		return u, u != ""
	}

	if handled, rec := get(rl, path, stream, a.URL, lookup, hold); !handled || rec.Code != 200 || rec.Body.String() != "#EXTM3U\n# from A\n" {
		t.Fatalf("from A: handled %v, %d %q", handled, rec.Code, rec.Body)
	}

	// A goes away; its placement entry lingers, then expires, then B owns
	// the stream. Requests arriving meanwhile are held, in one hold, and
	// resume on B with one upstream request.
	a.Close()
	const waiters = 8
	var wg sync.WaitGroup
	recs := make([]*httptest.ResponseRecorder, waiters)
	t0 := time.Now()
	for i := range waiters {
		wg.Go(func() {
			u, _ := lookup()
			_, recs[i] = get(rl, path, stream, u, lookup, hold)
		})
	}
	time.Sleep(300 * time.Millisecond)
	owner.Store("")
	time.Sleep(300 * time.Millisecond)
	owner.Store(b.URL)
	wg.Wait()
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("held requests resumed %s after the new owner appeared", d-600*time.Millisecond)
	}
	for i, rec := range recs {
		if rec.Code != 200 || rec.Body.String() != "#EXTM3U\n# from B\n" {
			t.Errorf("held request %d: %d %q, want B's playlist", i, rec.Code, rec.Body)
		}
	}
	if n := nB.Load(); n != 1 {
		t.Errorf("B got %d requests, want 1 (collapsed)", n)
	}
	if n := testutil.ToFloat64(rl.m.held[heldResumed]); n != waiters {
		t.Errorf("held resumed = %v, want %d", n, waiters)
	}

	// A stream never relayed here is not held: the caller answers 404.
	t1 := time.Now()
	if handled, _ := get(rl, "/live/x/v/index.m3u8", "live/x", "", func() (string, bool) { return "", false }, hold); handled {
		t.Error("a stream never relayed was held")
	}
	if d := time.Since(t1); d > 50*time.Millisecond {
		t.Errorf("an unknown stream took %s", d)
	}

	// No owner comes back: the hold ends at its bound with 404, counted.
	owner.Store("")
	t2 := time.Now()
	handled, rec := get(rl, path, stream, "", lookup, 400*time.Millisecond)
	d := time.Since(t2)
	if !handled || rec.Code != http.StatusNotFound {
		t.Errorf("hold in vain: handled %v, %d, want 404", handled, rec.Code)
	}
	if d < 400*time.Millisecond || d > 2*time.Second {
		t.Errorf("hold in vain answered after %s, hold 400ms", d)
	}
	if n := testutil.ToFloat64(rl.m.held[heldTimeout]); n != 1 {
		t.Errorf("held timeout = %v, want 1", n)
	}
}

func TestRecentBounded(t *testing.T) {
	rl := New(Config{}, nil, nil)
	defer rl.Close()
	now := time.Now()
	for i := range 100 {
		rl.touch(string(rune('a'+i)), now, time.Second)
	}
	rl.touch("late", now.Add(2*time.Second), time.Second)
	if n := len(rl.relayed); n != 1 {
		t.Errorf("%d streams remembered after the window, want 1", n)
	}
	if rl.recent("late", now.Add(3*time.Second), time.Second) {
		t.Error("a stream relayed a window ago is recent")
	}
}
