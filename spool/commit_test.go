package spool

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/objstore/local"
)

const commitMetric = "headwater_record_spool_commit_duration_seconds"

// TestUploadAfterCommit: an entry is uploaded only once committed,
// CommitInterval after its Add, by one commit.
func TestUploadAfterCommit(t *testing.T) {
	const interval = 300 * time.Millisecond
	b := newLocal(t)
	h := openSpool(t, "", Config{CommitInterval: interval}, b)
	h.run()
	added := time.Now()
	h.add("u/1", "one", "")
	h.add("u/2", "two", "")
	time.Sleep(interval / 2)
	if got := h.storedKeys(); len(got) != 0 && time.Since(added) < interval {
		t.Fatalf("%v stored before their commit", got)
	}
	h.waitStored(10 * time.Second)
	if took := time.Since(added); took < interval {
		t.Fatalf("stored %s after the Adds, before CommitInterval", took)
	}
	if n := h.histogramCount(commitMetric); n != 1 {
		t.Fatalf("%d commits, want 1 for both entries", n)
	}
	if got, want := contents(t, b), map[string]string{"u/1": "one", "u/2": "two"}; !same(got, want) {
		t.Fatalf("backend holds %v, want %v", got, want)
	}
}

// TestGroupCommit: Durable waits for the commit, which Run makes; after a
// crash every committed entry is resumed; of the entries not committed, a
// whole one is resumed (a process crash leaves them so) and those a
// machine crash cut short are dropped, never resumed torn; a replaced
// committed entry, whose files stay until its replacement is committed,
// is resumed when its replacement is lost.
func TestGroupCommit(t *testing.T) {
	const interval = 50 * time.Millisecond
	dir := filepath.Join(t.TempDir(), "spool")
	// A backend whose directory is then replaced by a file: every upload
	// fails, and the entries stay in the spool.
	root := filepath.Join(t.TempDir(), "rec")
	broken, err := local.New(root)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, "not a directory")
	h := openSpool(t, dir, Config{CommitInterval: interval}, broken)
	h.add("k/1", "one", "")
	h.add("k/2", "two", "")
	h.add("k/3", "three", "")

	ctx, cancel := context.WithTimeout(t.Context(), interval)
	err = h.s.Durable(ctx)
	cancel()
	if fmt.Sprint(err) != "spool durable: context deadline exceeded" {
		t.Fatalf("Durable without Run = %v", err)
	}
	if n := h.histogramCount(commitMetric); n != 0 {
		t.Fatalf("%d commits without Run", n)
	}
	start := time.Now()
	stop := h.run()
	if err := h.s.Durable(t.Context()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < interval {
		t.Fatalf("committed %s after Run started, before CommitInterval", took)
	}
	if n := h.histogramCount(commitMetric); n != 1 {
		t.Fatalf("%d commits, want 1 for the 3 entries", n)
	}
	h.s.mu.Lock()
	for el := h.s.queue.Front(); el != nil; el = el.Next() {
		if e := el.Value.(*entry); !e.committed {
			t.Errorf("%s (seq %d) not committed after Durable", e.key, e.seq)
		}
	}
	h.s.mu.Unlock()
	if err := h.s.Durable(t.Context()); err != nil {
		t.Fatalf("Durable with nothing to commit = %v", err)
	}
	testpeer.WaitMetricCond(t, h.reg, 5*time.Second, func(v float64) bool { return v > 0 }, "> 0",
		"headwater_record_uploads_total", "result", "error")
	stop()
	if n, _ := h.s.Pending(); n != 3 {
		t.Fatalf("%d entries left by the failing uploads, want 3", n)
	}

	// Not committed: k/2 replaced, k/4 and k/5 added.
	h.add("k/2", "two again", "")
	h.add("k/4", "four", "")
	h.add("k/5", "five", "")
	all := []string{seqName(1, ".log")}
	for seq := uint64(1); seq <= 6; seq++ {
		all = append(all, seqName(seq, ".data"))
	}
	slices.Sort(all)
	if got := spoolFiles(t, dir); !slices.Equal(got, all) {
		t.Fatalf("spool files %v, want %v (the replaced k/2's kept)", got, all)
	}
	h.crash()
	// What a machine crash may leave of the entries not committed: k/2's
	// replacement without its record, k/4's data cut short. k/5 is whole.
	logPath := filepath.Join(dir, seqName(1, ".log"))
	lines, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, l := range strings.SplitAfter(string(lines), "\n") {
		if !strings.HasPrefix(l, `{"seq":4,`) {
			kept = append(kept, l)
		}
	}
	if len(kept) != 6 { // 5 records and the empty string after the last newline
		t.Fatalf("meta log %q has no record of seq 4", lines)
	}
	// And zeros where a record not committed was (shown by a file
	// system that does not order its metadata after the data).
	writeFile(t, logPath, strings.Join(kept, "")+"\x00\x00\x00\x00")
	if err := os.Truncate(filepath.Join(dir, seqName(5, ".data")), 2); err != nil {
		t.Fatal(err)
	}

	b := newLocal(t)
	h2 := openSpool(t, dir, Config{Workers: 1}, b)
	if log := h2.log.String(); !strings.Contains(log, " entries=4 bytes=15 tmp_files_removed=0 torn_entries_removed=1 unreadable_entries_dropped=1\n") {
		t.Fatalf("no resume line with 4 entries, 1 torn, 1 unreadable:\n%s", log)
	}
	if v := h2.metric("headwater_record_dropped_entries_total", "reason", "unreadable"); v != 1 {
		t.Fatalf("%v unreadable entries dropped, want 1", v)
	}
	h2.run()
	h2.waitStored(10 * time.Second)
	if got, want := h2.storedKeys(), []string{"k/1", "k/2", "k/3", "k/5"}; !slices.Equal(got, want) {
		t.Fatalf("stored in the order %v, want %v", got, want)
	}
	if got, want := contents(t, b), map[string]string{"k/1": "one", "k/2": "two", "k/3": "three", "k/5": "five"}; !same(got, want) {
		t.Fatalf("backend holds %v, want %v", got, want)
	}
	if got := spoolFiles(t, dir); len(got) != 0 {
		t.Fatalf("spool files left: %v", got)
	}
}

// TestSyncFailure: when syncfs fails, the commit syncs each file; the
// entries whose files cannot be synced are dropped (counted, logged once,
// reported by Healthy until a commit succeeds), the others uploaded; when
// the directory cannot be synced, the whole batch is dropped, and Close
// reports it.
func TestSyncFailure(t *testing.T) {
	b := newLocal(t)
	h := openSpool(t, "", Config{CommitInterval: 20 * time.Millisecond, Workers: 1}, b)
	dir := h.s.cfg.Dir
	var failFS atomic.Bool
	var mu sync.Mutex
	failPaths := map[string]bool{}
	setFailing := func(fsFails bool, paths ...string) {
		failFS.Store(fsFails)
		mu.Lock()
		clear(failPaths)
		for _, p := range paths {
			failPaths[p] = true
		}
		mu.Unlock()
	}
	realFS := h.s.syncFS
	h.s.syncFS = func() error {
		if failFS.Load() {
			return fmt.Errorf("syncfs: %w", syscall.EIO)
		}
		return realFS()
	}
	h.s.syncPath = func(p string) error {
		mu.Lock()
		fail := failPaths[p]
		mu.Unlock()
		if fail {
			return fmt.Errorf("sync %s: %w", p, syscall.EIO)
		}
		return syncPath(p)
	}

	setFailing(true, filepath.Join(dir, seqName(2, ".data")))
	h.add("s/ok", "ok", "")
	h.add("s/bad", "bad", "")
	stop := h.run()
	if err := h.s.Durable(t.Context()); err != nil {
		t.Fatal(err)
	}
	h.waitStored(10 * time.Second)
	if got, want := contents(t, b), map[string]string{"s/ok": "ok"}; !same(got, want) {
		t.Fatalf("backend holds %v, want %v", got, want)
	}
	if e, n, errs := h.metric("headwater_record_dropped_entries_total", "reason", "sync"), h.metric("headwater_record_dropped_bytes_total", "reason", "sync"),
		h.metric("headwater_record_spool_errors_total", "op", "sync"); e != 1 || n != 3 || errs != 2 {
		t.Fatalf("%v entries, %v bytes dropped for sync, %v sync errors; want 1, 3, 2 (syncfs, then one file)", e, n, errs)
	}
	want := "spool: syncing " + dir + " failed, entries dropped: sync " + filepath.Join(dir, seqName(2, ".data")) + ": input/output error"
	if err := h.s.Healthy(); fmt.Sprint(err) != want {
		t.Fatalf("Healthy = %v, want %s", err, want)
	}
	log := h.log.String()
	if !strings.Contains(log, `msg="recording spool: syncfs failed, syncing the batch's files one by one" spool=`+dir+` entries=2 err="syncfs: input/output error"`) ||
		!strings.Contains(log, `msg="recording spool: cannot make entries durable, dropping them" spool=`+dir+` entries=1 err="sync `+filepath.Join(dir, seqName(2, ".data"))+`: input/output error"`) ||
		strings.Count(log, "level=ERROR") != 1 {
		t.Fatalf("the failure is not logged:\n%s", log)
	}
	if got, want := spoolFiles(t, dir), []string{seqName(1, ".log")}; !slices.Equal(got, want) {
		t.Fatalf("spool files left: %v, want %v", got, want)
	}

	setFailing(false)
	h.add("s/after", "after", "")
	if err := h.s.Durable(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := h.s.Healthy(); err != nil {
		t.Fatalf("Healthy after a commit that worked = %v", err)
	}
	if !strings.Contains(h.log.String(), `msg="recording spool: entries are made durable again" spool=`+dir+` dropped_entries=1`) {
		t.Fatalf("the recovery is not logged:\n%s", h.log.String())
	}
	h.waitStored(10 * time.Second)

	// Without Run, Close commits; the directory cannot be synced.
	stop()
	setFailing(true, dir)
	h.add("c/1", "c1", "")
	h.add("c/2", "c2", "")
	err := h.s.Close()
	if want := "spool commit: 2 entries dropped, their files could not be synced: sync " + dir + ": input/output error"; fmt.Sprint(err) != want {
		t.Fatalf("Close = %v, want %s", err, want)
	}
	if e := h.metric("headwater_record_dropped_entries_total", "reason", "sync"); e != 3 {
		t.Fatalf("%v entries dropped for sync, want 3", e)
	}
	if got := spoolFiles(t, dir); len(got) != 0 {
		t.Fatalf("spool files left: %v", got)
	}
	if got, want := contents(t, b), map[string]string{"s/ok": "ok", "s/after": "after"}; !same(got, want) {
		t.Fatalf("backend holds %v, want %v", got, want)
	}
}

// TestRunEndsBeforeCommit: the entries a Run leaves uncommitted, its
// committer having taken their wake-up, are committed by the next Run.
func TestRunEndsBeforeCommit(t *testing.T) {
	b := newLocal(t)
	h := openSpool(t, "", Config{CommitInterval: 2 * time.Second}, b)
	stop := h.run()
	h.add("r/1", "one", "")
	testpeer.WaitFor(t, 5*time.Second, "the committer to take its wake-up", func() bool { return len(h.s.commitC) == 0 })
	stop()
	if n := h.histogramCount(commitMetric); n != 0 {
		t.Fatalf("%d commits before CommitInterval", n)
	}
	h.run()
	h.waitStored(10 * time.Second)
	if got, want := contents(t, b), map[string]string{"r/1": "one"}; !same(got, want) {
		t.Fatalf("backend holds %v, want %v", got, want)
	}
}

// TestLogSegments: the meta log starts a new segment when the current one
// is full; Open reads every segment and appends to none of them; a
// segment is removed once the entries it holds records of are stored,
// unless it is the current one.
func TestLogSegments(t *testing.T) {
	b := newLocal(t)
	dir := filepath.Join(t.TempDir(), "spool")
	h := openSpool(t, dir, Config{}, b)
	h.s.logMax = 60 // two records: {"seq":1,"key":"g/0","size":1} and a newline, 31 bytes
	for i := range 6 {
		h.add(fmt.Sprintf("g/%d", i), "x", "")
	}
	files := func(datas []uint64, logs ...uint64) []string {
		var out []string
		for _, seq := range datas {
			out = append(out, seqName(seq, ".data"))
		}
		for _, seq := range logs {
			out = append(out, seqName(seq, ".log"))
		}
		slices.Sort(out)
		return out
	}
	if got, want := spoolFiles(t, dir), files([]uint64{1, 2, 3, 4, 5, 6}, 1, 3, 5); !slices.Equal(got, want) {
		t.Fatalf("spool files %v, want %v", got, want)
	}
	h.crash()

	h2 := openSpool(t, dir, Config{Workers: 1}, b)
	h2.s.logMax = 60
	if log := h2.log.String(); !strings.Contains(log, " entries=6 bytes=6 tmp_files_removed=0 torn_entries_removed=0 unreadable_entries_dropped=0\n") {
		t.Fatalf("no resume line with 6 entries:\n%s", log)
	}
	h2.add("g/6", "x", "")
	if got, want := spoolFiles(t, dir), files([]uint64{1, 2, 3, 4, 5, 6, 7}, 1, 3, 5, 7); !slices.Equal(got, want) {
		t.Fatalf("spool files %v, want %v", got, want)
	}
	h2.run()
	h2.waitStored(10 * time.Second)
	if got, want := h2.storedKeys(), []string{"g/0", "g/1", "g/2", "g/3", "g/4", "g/5", "g/6"}; !slices.Equal(got, want) {
		t.Fatalf("stored in the order %v, want %v", got, want)
	}
	if got, want := spoolFiles(t, dir), files(nil, 7); !slices.Equal(got, want) {
		t.Fatalf("spool files left %v, want %v", got, want)
	}
}
