package spool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/headwater-live/headwater/internal/s3test"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/objstore/local"
	"github.com/headwater-live/headwater/objstore/s3"
)

func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// spoolFiles lists the spool directory's files but its lock.
func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if e.Name() != lockName {
			out = append(out, e.Name())
		}
	}
	return out
}

func seqName(seq uint64, suffix string) string { return fmt.Sprintf("%020d%s", seq, suffix) }

func TestOrderAndReplace(t *testing.T) {
	for _, kind := range backendKinds {
		t.Run(kind.name, func(t *testing.T) {
			b := kind.make(t)
			h := openSpool(t, "", Config{Workers: 1}, b)
			h.add("s/720p/init.mp4", "init", "video/mp4")
			h.add("s/index.json", `{"v":1}`, "application/json")
			h.add("s/720p/seg1.m4s", "seg1", "video/iso.segment")
			h.add("s/index.json", `{"v":2}`, "application/json")
			h.add("s/720p/seg2.m4s", "seg2", "video/iso.segment")
			h.add("s/index.json", `{"v":3}`, "application/json")
			if n, bytes := h.s.Pending(); n != 4 || bytes != 4+7+4+4 {
				t.Fatalf("Pending = %d, %d; want 4 entries (index.json replaced twice), 19 bytes", n, bytes)
			}
			if got, want := spoolFiles(t, h.s.cfg.Dir), []string{
				seqName(1, ".data"), seqName(1, ".log"), seqName(3, ".data"), seqName(5, ".data"), seqName(6, ".data"),
			}; !slices.Equal(got, want) {
				t.Fatalf("spool files %v, want %v", got, want)
			}
			rc, ok := h.s.Open("s/index.json")
			if !ok {
				t.Fatal("Open(s/index.json) found nothing")
			}
			data, _ := io.ReadAll(rc)
			rc.Close()
			if string(data) != `{"v":3}` {
				t.Fatalf("Open(s/index.json) read %q", data)
			}
			if _, ok := h.s.Open("s/missing"); ok {
				t.Fatal("Open of a key never added found something")
			}
			if h.metric("headwater_record_spool_entries") != 4 || h.metric("headwater_record_spool_bytes") != 19 {
				t.Fatalf("gauges %v entries, %v bytes", h.metric("headwater_record_spool_entries"), h.metric("headwater_record_spool_bytes"))
			}

			h.run()
			h.waitStored(10 * time.Second)
			if got, want := h.storedKeys(), []string{"s/720p/init.mp4", "s/720p/seg1.m4s", "s/720p/seg2.m4s", "s/index.json"}; !slices.Equal(got, want) {
				t.Fatalf("stored in the order %v, want %v", got, want)
			}
			if got, want := contents(t, b), map[string]string{
				"s/720p/init.mp4": "init", "s/720p/seg1.m4s": "seg1", "s/720p/seg2.m4s": "seg2", "s/index.json": `{"v":3}`,
			}; !same(got, want) {
				t.Fatalf("backend holds %v, want %v", got, want)
			}
			if _, ok := h.s.Open("s/index.json"); ok {
				t.Fatal("Open found a stored entry in the spool")
			}
			if got, want := spoolFiles(t, h.s.cfg.Dir), []string{seqName(1, ".log")}; !slices.Equal(got, want) {
				t.Fatalf("spool files left: %v, want %v (the current meta log segment)", got, want)
			}
			if h.metric("headwater_record_uploads_total", "result", "ok") != 4 || h.metric("headwater_record_uploads_total", "result", "error") != 0 ||
				h.metric("headwater_record_spool_entries") != 0 || h.metric("headwater_record_spool_bytes") != 0 {
				t.Fatal("metrics after the uploads are not 4 ok, 0 errors, empty spool")
			}
			if srvb, ok := b.(*s3.Backend); ok {
				checkContentTypes(t, srvb)
			}
		})
	}
}

// checkContentTypes checks the content types the S3 objects of
// TestOrderAndReplace were stored with.
func checkContentTypes(t *testing.T, b *s3.Backend) {
	t.Helper()
	for key, want := range map[string]string{"s/720p/init.mp4": "video/mp4", "s/index.json": "application/json", "s/720p/seg1.m4s": "video/iso.segment"} {
		rc, _, err := b.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		st, err := rc.(interface {
			Stat() (minio.ObjectInfo, error)
		}).Stat()
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if st.ContentType != want {
			t.Errorf("%s stored with Content-Type %q, want %q", key, st.ContentType, want)
		}
	}
}

func TestCapDropsOldest(t *testing.T) {
	b := newLocal(t)
	h := openSpool(t, "", Config{MaxBytes: 1000}, b)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for i := range 10 {
		h.add(fmt.Sprintf("k/%02d", i), strings.Repeat("x", 100), "")
	}
	if n, bytes := h.s.Pending(); n != 10 || bytes != 1000 {
		t.Fatalf("Pending = %d, %d at the cap", n, bytes)
	}
	// A Flush of everything so far, then 5 more entries past the cap:
	// the 5 oldest are dropped, and the Flush says so.
	flushed := make(chan error, 1)
	go func() { flushed <- h.s.Flush(ctx, "k/") }()
	testpeer.WaitFor(t, 5*time.Second, "Flush to wait", func() bool {
		h.s.mu.Lock()
		defer h.s.mu.Unlock()
		return len(h.s.waiters) == 1
	})
	for i := 10; i < 15; i++ {
		h.add(fmt.Sprintf("k/%02d", i), strings.Repeat("y", 100), "")
	}
	if n, bytes := h.s.Pending(); n != 10 || bytes != 1000 {
		t.Fatalf("Pending = %d, %d after 5 more", n, bytes)
	}
	for i := range 15 {
		_, ok := h.s.Open(fmt.Sprintf("k/%02d", i))
		if ok != (i >= 5) {
			t.Errorf("k/%02d spooled: %v", i, ok)
		}
	}
	if e, b := h.metric("headwater_record_dropped_entries_total", "reason", "cap"), h.metric("headwater_record_dropped_bytes_total", "reason", "cap"); e != 5 || b != 500 {
		t.Fatalf("dropped %v entries, %v bytes; want 5, 500", e, b)
	}
	if got := strings.Count(h.log.String(), "recording spool full"); got != 1 {
		t.Fatalf("%d 'spool full' lines, want 1 for the burst:\n%s", got, h.log.String())
	}
	if err := h.s.Add("big", make([]byte, 1001), ""); fmt.Sprint(err) != "spool add big: 1001 bytes, more than the spool's cap 1000" {
		t.Fatalf("Add past the cap = %v", err)
	}

	h.run()
	h.waitStored(10 * time.Second)
	if err := <-flushed; fmt.Sprint(err) != "spool flush k/: 5 entries dropped (the spool was full), the others stored" {
		t.Fatalf("Flush = %v", err)
	}
	// An Add with room ends the burst: its summary is logged once.
	h.add("k/15", "z", "")
	log := h.log.String()
	if strings.Count(log, "recording spool dropped entries") != 1 ||
		!strings.Contains(log, "dropped_entries=5 dropped_bytes=500 first_key=k/00 last_key=k/04 max_bytes=1000") {
		t.Fatalf("the burst's summary is not logged once with its counts:\n%s", log)
	}
	h.waitStored(10 * time.Second)
	want := map[string]string{"k/15": "z"}
	for i := 5; i < 15; i++ {
		want[fmt.Sprintf("k/%02d", i)] = strings.Repeat(map[bool]string{true: "x", false: "y"}[i < 10], 100)
	}
	if got := contents(t, b); !same(got, want) {
		t.Fatalf("backend holds %v, want %v", got, want)
	}
}

func TestRestartResumes(t *testing.T) {
	for _, kind := range backendKinds {
		t.Run(kind.name, func(t *testing.T) {
			b := kind.make(t)
			dir := filepath.Join(t.TempDir(), "spool")
			h := openSpool(t, dir, Config{Workers: 1}, b)
			for i := range 5 {
				h.add(fmt.Sprintf("r/%d", i), fmt.Sprintf("data %d", i), "text/plain")
			}
			h.add("r/1", "data 1 again", "text/plain")
			if err := h.s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := h.s.Add("r/9", nil, ""); fmt.Sprint(err) != "spool add r/9: spool closed" {
				t.Fatalf("Add after Close = %v", err)
			}
			if got, want := spoolFiles(t, dir), []string{
				seqName(1, ".data"), seqName(1, ".log"), seqName(3, ".data"), seqName(4, ".data"), seqName(5, ".data"), seqName(6, ".data"),
			}; !slices.Equal(got, want) {
				t.Fatalf("spool files after Close %v, want %v", got, want)
			}
			// What a crash leaves: a .tmp file (an older version's), a
			// data file without its record (an Add cut short), another
			// whose record's line was cut short, a record whose data file
			// is gone (stored), an entry whose record is garbage, one
			// whose data file is shorter than its record says, a line that
			// is no record, and a replaced entry's data file (its record
			// is in the first segment).
			writeFile(t, filepath.Join(dir, seqName(7, ".data.tmp")), "torn")
			writeFile(t, filepath.Join(dir, seqName(8, ".data")), "no record")
			writeFile(t, filepath.Join(dir, seqName(12, ".data")), "cut")
			writeFile(t, filepath.Join(dir, seqName(10, ".data")), "bad")
			writeFile(t, filepath.Join(dir, seqName(11, ".data")), "short")
			// (The zeros before a record: what a file system that shows
			// unwritten blocks as zeros may leave of a record not
			// committed before a machine crash.)
			writeFile(t, filepath.Join(dir, seqName(9, ".log")), `{"seq":9,"key":"r/gone","size":3}
{"seq":10,"key":"../x","size":3}
`+"\x00\x00\x00"+`{"seq":11,"key":"r/short","size":10}
{"seq":
{"seq":12,"key":"r/cut","size":3`)
			writeFile(t, filepath.Join(dir, seqName(2, ".data")), "data 1")

			h2 := openSpool(t, dir, Config{Workers: 1}, b)
			if n, _ := h2.s.Pending(); n != 5 {
				t.Fatalf("resumed %d entries, want 5", n)
			}
			// The replaced entry's data file stays until its replacement
			// is committed (Run's first commit); the second segment has
			// no entry left.
			if got, want := spoolFiles(t, dir), []string{
				seqName(1, ".data"), seqName(1, ".log"), seqName(2, ".data"), seqName(3, ".data"), seqName(4, ".data"), seqName(5, ".data"), seqName(6, ".data"),
			}; !slices.Equal(got, want) {
				t.Fatalf("spool files after Open %v, want %v", got, want)
			}
			if log := h2.log.String(); !strings.Contains(log, " entries=5 bytes=36 tmp_files_removed=1 torn_entries_removed=2 unreadable_entries_dropped=3\n") ||
				!strings.Contains(log, "msg=\"recording spool: unreadable entries dropped\" spool="+dir+" entries=1 file="+filepath.Join(dir, seqName(9, ".log"))+" err=\"lines that are not records\"\n") ||
				!strings.Contains(log, "entries=1 seq=10 err=\"record: invalid object key \\\"../x\\\": a \\\"..\\\" element\"\n") ||
				!strings.Contains(log, "entries=1 seq=11 err=\"data has 5 bytes, its record says 10\"\n") {
				t.Fatalf("the resume is not logged:\n%s", log)
			}
			if v := h2.metric("headwater_record_dropped_entries_total", "reason", "unreadable"); v != 3 {
				t.Fatalf("%v unreadable entries dropped, want 3", v)
			}
			h2.add("r/5", "after the restart", "text/plain")
			h2.run()
			h2.waitStored(10 * time.Second)
			if got, want := h2.storedKeys(), []string{"r/0", "r/2", "r/3", "r/4", "r/1", "r/5"}; !slices.Equal(got, want) {
				t.Fatalf("stored in the order %v, want %v", got, want)
			}
			if got, want := contents(t, b), map[string]string{
				"r/0": "data 0", "r/1": "data 1 again", "r/2": "data 2", "r/3": "data 3", "r/4": "data 4", "r/5": "after the restart",
			}; !same(got, want) {
				t.Fatalf("backend holds %v, want %v", got, want)
			}
			// Left: the segment r/5's record started (the current one).
			if got, want := spoolFiles(t, dir), []string{seqName(13, ".log")}; !slices.Equal(got, want) {
				t.Fatalf("spool files left: %v, want %v", got, want)
			}
			if err := h2.s.Close(); err != nil {
				t.Fatal(err)
			}
			if got := spoolFiles(t, dir); len(got) != 0 {
				t.Fatalf("spool files left after Close: %v", got)
			}
		})
	}
}

// TestResumesLegacy opens a spool as the versions before the meta log
// left it (each entry's record in its own .meta file): its entries are
// resumed and stored, the .meta files removed with them.
func TestResumesLegacy(t *testing.T) {
	b := newLocal(t)
	dir := filepath.Join(t.TempDir(), "spool")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, seqName(1, ".data")), "one")
	writeFile(t, filepath.Join(dir, seqName(1, ".meta")), `{"key":"l/1","content_type":"text/plain","size":3}`)
	writeFile(t, filepath.Join(dir, seqName(2, ".data")), "two")
	writeFile(t, filepath.Join(dir, seqName(2, ".meta")), `{"key":"l/2","size":3}`)
	writeFile(t, filepath.Join(dir, seqName(3, ".data")), "bad")
	writeFile(t, filepath.Join(dir, seqName(3, ".meta")), `{"key":`)
	writeFile(t, filepath.Join(dir, seqName(4, ".meta")), `{"key":"l/gone","size":3}`)
	writeFile(t, filepath.Join(dir, seqName(5, ".meta.tmp")), `{`)
	h := openSpool(t, dir, Config{Workers: 1}, b)
	if log := h.log.String(); !strings.Contains(log, " entries=2 bytes=6 tmp_files_removed=1 torn_entries_removed=1 unreadable_entries_dropped=1\n") {
		t.Fatalf("no resume line with 2 entries:\n%s", log)
	}
	h.add("l/3", "three", "")
	if got, want := spoolFiles(t, dir), []string{
		seqName(1, ".data"), seqName(1, ".meta"), seqName(2, ".data"), seqName(2, ".meta"), seqName(5, ".data"), seqName(5, ".log"),
	}; !slices.Equal(got, want) {
		t.Fatalf("spool files %v, want %v", got, want)
	}
	h.run()
	h.waitStored(10 * time.Second)
	if got, want := h.storedKeys(), []string{"l/1", "l/2", "l/3"}; !slices.Equal(got, want) {
		t.Fatalf("stored in the order %v, want %v", got, want)
	}
	if got, want := contents(t, b), map[string]string{"l/1": "one", "l/2": "two", "l/3": "three"}; !same(got, want) {
		t.Fatalf("backend holds %v, want %v", got, want)
	}
	if got, want := spoolFiles(t, dir), []string{seqName(5, ".log")}; !slices.Equal(got, want) {
		t.Fatalf("spool files left: %v, want %v", got, want)
	}
}

func TestOpenLocks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "spool")
	h := openSpool(t, dir, Config{}, newLocal(t))
	_, err := Open(Config{Dir: dir}, newLocal(t), nil, nil)
	if want := "spool dir " + dir + ": in use by another spool (process)"; fmt.Sprint(err) != want {
		t.Fatalf("a second Open = %v, want %q", err, want)
	}
	h.s.Close()
	s, err := Open(Config{Dir: dir}, newLocal(t), nil, nil)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s.Close()

	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "spool: no directory"},
		{Config{Dir: dir, MaxBytes: -1}, "spool: max bytes -1 below 0"},
		{Config{Dir: dir, MinBackoff: time.Second, MaxBackoff: time.Millisecond}, "spool: backoff 1s..1ms is not a range"},
		{Config{Dir: dir, CommitInterval: -time.Millisecond}, "spool: a negative duration"},
	} {
		if _, err := Open(tc.cfg, newLocal(t), nil, nil); fmt.Sprint(err) != tc.want {
			t.Errorf("Open(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := Open(Config{Dir: dir}, nil, nil, nil); fmt.Sprint(err) != "spool: no backend" {
		t.Errorf("Open without a backend = %v", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	writeFile(t, file, "")
	if _, err := Open(Config{Dir: file}, newLocal(t), nil, nil); !errors.Is(err, syscall.ENOTDIR) ||
		err.Error() != "spool dir "+file+": mkdir "+file+": not a directory" {
		t.Errorf("Open on a file = %v", err)
	}
}

func TestAddErrors(t *testing.T) {
	h := openSpool(t, "", Config{}, newLocal(t))
	for _, key := range []string{"", "../x", "/abs", "a//b"} {
		if err := h.s.Add(key, []byte("x"), ""); !errors.Is(err, local.ErrInvalidKey) {
			t.Errorf("Add(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
	if n, _ := h.s.Pending(); n != 0 {
		t.Fatalf("%d entries after invalid Adds", n)
	}
}

func TestFlush(t *testing.T) {
	b := newLocal(t)
	h := openSpool(t, "", Config{}, b)
	if err := h.s.Flush(t.Context(), ""); err != nil {
		t.Fatalf("Flush of an empty spool = %v", err)
	}
	h.add("a/1", "a1", "")
	h.add("b/1", "b1", "")
	h.add("a/idx", "v1", "")

	// No Run: the Flush waits until its context ends.
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	err := h.s.Flush(ctx, "a/")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || err.Error() != "spool flush a/: context deadline exceeded" {
		t.Fatalf("Flush without Run = %v", err)
	}

	// A Flush waits for the entries under its prefix added before it; a
	// replacement added after it is waited for as the entry it replaced.
	type flushResult struct {
		err    error
		stored []string // the keys stored when it returned
	}
	flushed := make(chan flushResult, 1)
	go func() {
		err := h.s.Flush(t.Context(), "a/")
		flushed <- flushResult{err, h.storedKeys()}
	}()
	testpeer.WaitFor(t, 5*time.Second, "Flush to wait", func() bool {
		h.s.mu.Lock()
		defer h.s.mu.Unlock()
		return len(h.s.waiters) == 1
	})
	h.add("a/idx", "v2", "")
	h.run()
	res := <-flushed
	if res.err != nil || !slices.Contains(res.stored, "a/1") || !slices.Contains(res.stored, "a/idx") {
		t.Fatalf("Flush(a/) = %v with %v stored", res.err, res.stored)
	}
	h.waitStored(10 * time.Second)
	if got, want := contents(t, b), map[string]string{"a/1": "a1", "a/idx": "v2", "b/1": "b1"}; !same(got, want) {
		t.Fatalf("backend holds %v, want %v", got, want)
	}
}

func TestRunTwice(t *testing.T) {
	h := openSpool(t, "", Config{}, newLocal(t))
	stop := h.run()
	testpeer.WaitFor(t, 5*time.Second, "Run to start", func() bool {
		h.s.mu.Lock()
		defer h.s.mu.Unlock()
		return h.s.running
	})
	if err := h.s.Run(t.Context()); fmt.Sprint(err) != "spool: Run is running already" {
		t.Fatalf("a second Run = %v", err)
	}
	stop()
	// Once it has returned, Run may run again.
	h.add("x", "x", "")
	h.run()
	h.waitStored(5 * time.Second)
}

func TestBackoff(t *testing.T) {
	cfg := Config{}.withDefaults()
	var got []string
	for n := 1; n <= 10; n++ {
		got = append(got, cfg.backoff(n).String())
	}
	if want := "200ms 400ms 800ms 1.6s 3.2s 6.4s 12.8s 25.6s 30s 30s"; strings.Join(got, " ") != want {
		t.Fatalf("backoff(1..10) = %v, want %s", got, want)
	}
}

func TestS3Outage(t *testing.T) {
	srv := s3test.Start(t)
	b := newS3(t, srv)
	const minB, maxB = 50 * time.Millisecond, 400 * time.Millisecond
	h := openSpool(t, "", Config{MinBackoff: minB, MaxBackoff: maxB, UnhealthyAfter: 300 * time.Millisecond}, b)
	h.run()
	want := map[string]string{}
	add := func(key, data string) {
		h.add(key, data, "video/iso.segment")
		want[key] = data
	}
	for i := range 3 {
		add(fmt.Sprintf("o/before%d", i), fmt.Sprintf("before %d", i))
	}
	h.waitStored(10 * time.Second)

	srv.Stop()
	stopped := time.Now()
	for i := range 20 {
		add(fmt.Sprintf("o/during%02d", i), strings.Repeat(fmt.Sprintf("%02d", i), 500))
	}
	testpeer.WaitFor(t, 5*time.Second, "Healthy to report the outage", func() bool { return h.s.Healthy() != nil })
	err := h.s.Healthy()
	// The last error is one of the first uploads' (several were under
	// way when the server went).
	if !errors.Is(err, s3.ErrUnreachable) || !strings.HasPrefix(err.Error(), "spool: uploads to "+b.String()+" failing for ") ||
		!regexp.MustCompile(`: s3 put o/during0[0-3]: endpoint unreachable: dial tcp `+srv.Addr+`: connect: connection refused$`).MatchString(err.Error()) {
		t.Fatalf("Healthy during the outage = %v", err)
	}
	time.Sleep(1500 * time.Millisecond)
	if n, bytes := h.s.Pending(); n != 20 || bytes != 20*1000 {
		t.Fatalf("Pending during the outage = %d, %d; want all 20 entries", n, bytes)
	}
	// One request per pause, the pause doubling from 50ms to 400ms: in
	// the time the server was down there were k or k-1 pauses, k the
	// number that fit (the last may have started a few milliseconds
	// late). Failures during a pause are the uploads that were under way
	// when the first failed: fewer than Workers.
	h.s.mu.Lock()
	pauses := h.s.failures
	h.s.mu.Unlock()
	failed := int(h.metric("headwater_record_uploads_total", "result", "error"))
	outage := time.Since(stopped)
	k, sum := 1, time.Duration(0)
	for sum+h.s.cfg.backoff(k) <= outage {
		sum += h.s.cfg.backoff(k)
		k++
	}
	if pauses != k && pauses != k-1 || failed < pauses || failed >= pauses+DefaultWorkers {
		t.Fatalf("%d pauses, %d failed uploads in a %s outage; want %d or %d pauses, and fewer than %d more failures",
			pauses, failed, outage, k-1, k, DefaultWorkers)
	}
	if h.metric("headwater_record_dropped_entries_total", "reason", "cap") != 0 {
		t.Fatal("entries dropped during the outage")
	}

	srv.Start()
	h.waitStored(10 * time.Second)
	if err := h.s.Healthy(); err != nil {
		t.Fatalf("Healthy after the outage = %v", err)
	}
	if got := srv.Objects(t); !same(got, want) {
		t.Fatalf("bucket holds %v, want %v", got, want)
	}
	stored := h.storedKeys()
	counts := map[string]int{}
	for _, k := range stored {
		counts[k]++
	}
	for key := range want {
		if counts[key] != 1 {
			t.Errorf("%s stored %d times", key, counts[key])
		}
	}
	if len(stored) != 23 || h.metric("headwater_record_uploads_total", "result", "ok") != 23 {
		t.Fatalf("%d stored, %v ok uploads; want 23", len(stored), h.metric("headwater_record_uploads_total", "result", "ok"))
	}
	log := h.log.String()
	if strings.Count(log, "recording uploads failing") != 1 || strings.Count(log, "recording uploads resumed") != 1 {
		t.Fatalf("the outage is not logged once as failing and once as resumed:\n%s", log)
	}
}

// TestKilled kills (SIGKILL) a process adding entries in a loop, then
// opens its spool: every entry whose Add had returned is there, though
// none was committed (the adder runs no Run), nothing torn is, and all of
// it is stored.
func TestKilled(t *testing.T) {
	if dir := os.Getenv("SPOOL_TEST_ADDER_DIR"); dir != "" {
		runAdder(t, dir)
		return
	}
	dir := filepath.Join(t.TempDir(), "spool")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilled$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SPOOL_TEST_ADDER_DIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &testpeer.LogBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() {
		if !waited { // the test failed before the kill: end the adder
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	var added []string
	sc := bufio.NewScanner(out)
	for len(added) < 40 && sc.Scan() {
		if key, ok := strings.CutPrefix(sc.Text(), "added "); ok {
			added = append(added, key)
		}
	}
	if len(added) < 40 {
		t.Fatalf("the adder printed %d keys:\n%s", len(added), stderr.String())
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() {
		if key, ok := strings.CutPrefix(sc.Text(), "added "); ok {
			added = append(added, key)
		}
	}
	waited = true
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "signal: killed") {
		t.Fatalf("the adder ended with %v, not killed", err)
	}

	b := newLocal(t)
	h := openSpool(t, dir, Config{}, b)
	n, _ := h.s.Pending()
	if n != len(added) && n != len(added)+1 { // the Add under way may have committed
		t.Fatalf("%d entries after the kill, %d Adds had returned", n, len(added))
	}
	for _, name := range spoolFiles(t, dir) {
		if strings.HasSuffix(name, ".tmp") {
			t.Fatalf("%s left after Open", name)
		}
	}
	h.run()
	h.waitStored(30 * time.Second)
	got := contents(t, b)
	for _, key := range added {
		if got[key] != adderData(key) {
			t.Fatalf("%s stored as %d bytes", key, len(got[key]))
		}
	}
}

// adderData is what the adder of TestKilled stores under key.
func adderData(key string) string { return strings.Repeat(key, 64<<10/len(key)) }

// runAdder is TestKilled's child: it adds entries of 64 KiB to the spool
// in dir, printing each key once Add has returned, until it is killed
// (or for 30 s at most).
func runAdder(t *testing.T, dir string) {
	s, err := Open(Config{Dir: dir}, newLocal(t), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		key := fmt.Sprintf("killed/%06d", i)
		if err := s.Add(key, []byte(adderData(key)), ""); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("added %s\n", key)
	}
}
