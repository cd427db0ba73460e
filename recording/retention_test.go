package recording

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/headwater-live/headwater/objstore"
	"github.com/headwater-live/headwater/objstore/local"
	"github.com/headwater-live/headwater/spool"
)

// newTestRecorder is a recorder over a local directory backend with its
// spool (uploading), both in temporary directories.
func newTestRecorder(t *testing.T) (*Recorder, objstore.Backend, *[]Event) {
	t.Helper()
	backend, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(spool.Config{Dir: t.TempDir()}, backend, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = sp.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = sp.Close()
	})
	var events []Event
	r, err := New(Config{Writer: sp, Backend: backend, Registerer: prometheus.NewRegistry(),
		Notify: func(e Event) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	return r, backend, &events
}

// storeSession puts a finished session of bytes media bytes straight into
// the backend.
func storeSession(t *testing.T, b objstore.Backend, stream string, started time.Time, state string, bytesN int) string {
	t.Helper()
	ctx := context.Background()
	id := NewSessionID(started)
	sum := Summary{Stream: stream, Session: id, Node: "n", State: state, Started: started, Ended: started.Add(time.Hour),
		Updated: started.Add(time.Hour), Bytes: int64(bytesN), Ready: state != StateRecording}
	put := func(key string, data []byte) {
		if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data)), ""); err != nil {
			t.Fatal(err)
		}
	}
	js, _ := json.Marshal(sum)
	put(SummaryKey(stream, id), js)
	put(ChunkKey(stream, id, 0), []byte(`{"entries":[]}`))
	put(MediaKey(stream, id, "video", "seg0.m4s"), make([]byte, bytesN))
	return id
}

func TestRetention(t *testing.T) {
	r, b, events := newTestRecorder(t)
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	oldLive := storeSession(t, b, "live/a", now.Add(-10*day), StateComplete, 100)
	newLive := storeSession(t, b, "live/a", now.Add(-1*day), StateComplete, 100)
	stillRecording := storeSession(t, b, "live/a", now.Add(-20*day), StateRecording, 100)
	big1 := storeSession(t, b, "big/x", now.Add(-3*day), StateInterrupted, 600)
	big2 := storeSession(t, b, "big/x", now.Add(-2*day), StateComplete, 600)
	big3 := storeSession(t, b, "big/y", now.Add(-1*day), StateComplete, 600)
	other := storeSession(t, b, "other/z", now.Add(-100*day), StateComplete, 100)

	rules := []RetentionRule{{Prefix: "live/", MaxAge: 7 * day}, {Prefix: "big/", MaxBytes: 1300}}
	n, err := r.ApplyRetention(context.Background(), rules, now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("deleted %d sessions, want 2", n)
	}
	left, err := r.Sessions(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	kept := map[string]bool{}
	for _, s := range left {
		kept[s.Stream+"/"+s.Session] = true
	}
	for id, want := range map[string]bool{
		"live/a/" + oldLive: false, "live/a/" + newLive: true, "live/a/" + stillRecording: true,
		"big/x/" + big1: false, "big/x/" + big2: true, "big/y/" + big3: true, "other/z/" + other: true,
	} {
		if kept[id] != want {
			t.Errorf("%s kept %v, want %v", id, kept[id], want)
		}
	}
	// Deleted sessions leave nothing behind.
	if _, err := b.Stat(context.Background(), MediaKey("live/a", oldLive, "video", "seg0.m4s")); !errors.Is(err, objstore.ErrNotFound) {
		t.Errorf("media of a deleted session: %v", err)
	}
	if v := testutil.ToFloat64(r.m.deleted.WithLabelValues("retention_age")); v != 1 {
		t.Errorf("retention_age deletions %v", v)
	}
	if v := testutil.ToFloat64(r.m.deleted.WithLabelValues("retention_bytes")); v != 1 {
		t.Errorf("retention_bytes deletions %v", v)
	}
	if len(*events) != 2 || (*events)[0].Kind != EventDeleted {
		t.Errorf("events %+v", *events)
	}
	// Idempotent: a second run deletes nothing.
	if n, err := r.ApplyRetention(context.Background(), rules, now); err != nil || n != 0 {
		t.Errorf("second run: %d, %v", n, err)
	}
	if _, err := r.Delete(context.Background(), "live/a", oldLive, "api"); !errors.Is(err, ErrNoSession) {
		t.Errorf("deleting a deleted session: %v", err)
	}
}
