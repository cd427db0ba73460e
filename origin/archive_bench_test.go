package origin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/internal/s3test"
	"github.com/headwater-live/headwater/objstore"
	"github.com/headwater-live/headwater/objstore/local"
	"github.com/headwater-live/headwater/objstore/s3"
	"github.com/headwater-live/headwater/recording"
	"github.com/headwater-live/headwater/spool"
	"github.com/headwater-live/headwater/store"
)

// dvrSegmentSize is the size of the benchmarked segments: 2 s at 1.2 Mb/s,
// ten 200 ms parts.
const dvrSegmentSize = 300_000

// dvrBench is a live stream whose older segments only the recording holds,
// served by the origin with the recorder as its Archive.
type dvrBench struct {
	h     http.Handler
	first uint64 // the oldest segment of the DVR window
	live  uint64 // the oldest segment the store still holds
}

// segmentSignal is the recorder's writer (the spool), telling the fixture
// each media segment handed to it.
type segmentSignal struct {
	recording.Writer
	segments chan string
}

func (w *segmentSignal) Add(key string, data []byte, contentType string) error {
	err := w.Writer.Add(key, data, contentType)
	if strings.HasPrefix(key, "media/") && strings.Contains(key, "/seg") {
		w.segments <- key
	}
	return err
}

// newDVRBench builds the origin over a store (the defaults: 6 segments
// listed, 4 kept past them) holding stream live/key, whose video rendition
// has had n complete 2 s segments written as a publisher's would be, and
// an open one; a real recording.Recorder (DVR window 2 h) has recorded
// them through a real spool into backend, and every object has been stored
// there (the spool is empty), so that the segments the store no longer
// holds are read from the backend. Segment msn holds size(msn) bytes.
// tb owns the fixture (its files, its goroutines); b reports failures.
func newDVRBench(b *testing.B, tb testing.TB, backend objstore.Backend, n int, size func(msn uint64) int) *dvrBench {
	ctx, cancel := context.WithCancel(context.Background())
	st := store.New(store.Config{})
	stream := st.Begin(streamName)
	info := videoInfo
	info.SegmentTarget, info.PartTarget = 2*time.Second, 200*time.Millisecond
	video := stream.AddRendition(info)
	video.SetInit(info, initVideo)

	sp, err := spool.Open(spool.Config{Dir: filepath.Join(tb.TempDir(), "spool")}, backend, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = sp.Run(ctx) })
	w := &segmentSignal{Writer: sp, segments: make(chan string, 1)}
	rec, err := recording.New(recording.Config{Writer: w, Backend: backend,
		Rules: recording.Rules{Include: []string{""}}, DVRWindow: 2 * time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	tb.Cleanup(func() {
		cancel()
		go func() {
			for range w.segments {
			}
		}()
		rec.Wait()
		wg.Wait()
		_ = sp.Close()
		close(w.segments)
	})
	rec.Follow(ctx, stream, stream.Epoch())

	part := make([]byte, dvrSegmentSize/10)
	for i := range part {
		part[i] = byte(i)
	}
	for msn := range uint64(n + 1) {
		if _, err := video.StartSegment(time.Now(), video.NextBaseTime()); err != nil {
			b.Fatal(err)
		}
		sz := size(msn)
		for p := range 10 {
			if _, err := video.AppendPart(part[:sz/10], 200*time.Millisecond, p == 0); err != nil {
				b.Fatal(err)
			}
		}
		if int(msn) == n {
			break // the open segment
		}
		if err := video.FinishSegment(2 * uint64(info.Timescale)); err != nil {
			b.Fatal(err)
		}
		// One at a time: a recorder left more than the store keeps
		// behind would record gaps.
		select {
		case <-w.segments:
		case <-time.After(30 * time.Second):
			b.Fatalf("segment %d not recorded within 30 s", msn)
		}
	}
	if err := sp.Flush(ctx, ""); err != nil {
		b.Fatal(err)
	}
	if entries, _ := sp.Pending(); entries != 0 {
		b.Fatalf("%d objects still spooled", entries)
	}
	snap := video.Snapshot()
	view := rec.DVR(stream, "video", snap)
	d := &dvrBench{
		h:     NewHandler(Config{Gzip: true}, st, NewMetrics(prometheus.NewRegistry()), nil, WithArchive(rec)),
		first: view.Segments[0].MSN,
		live:  snap.Segments[0].MSN,
	}
	if len(view.Segments) <= len(snap.Segments) {
		b.Fatalf("the DVR view lists %d segments, the store %d", len(view.Segments), len(snap.Segments))
	}
	return d
}

func dvrPath(msn uint64) string {
	return "/live/key/video/seg" + strconv.FormatUint(msn, 10) + ".m4s"
}

// benchDVRServe asks h for path one request at a time, handed to the
// handler directly (no client or connection), and reports, besides ns/op
// and the allocations, cpu-ns/op (the process's user+system CPU per
// request, all goroutines) and the p50 and p99 of the requests' times;
// with server set, also server-cpu-ns/op, the CPU per request of this
// process's child processes of that name (the S3 server).
func benchDVRServe(b *testing.B, h http.Handler, path string, size int, server string) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	w := &discardWriter{h: make(http.Header, 16)}
	serve := func() {
		clear(w.h)
		w.code, w.n = 0, 0
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK || w.n != size {
			b.Fatalf("%s: status %d, %d bytes, want 200, %d", path, w.code, w.n, size)
		}
	}
	serve()
	if got := w.h.Get("Cache-Control"); got != "public, max-age=86400, immutable" {
		b.Fatalf("%s: Cache-Control %q", path, got)
	}
	lat := make([]time.Duration, 0, b.N)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	srv0, srvOK := childProcCPU(server)
	b.ResetTimer()
	cpu0 := cpuTime()
	for range b.N {
		t0 := time.Now()
		serve()
		lat = append(lat, time.Since(t0))
	}
	cpu := cpuTime() - cpu0
	b.StopTimer()
	srv1, _ := childProcCPU(server)
	if server != "" && srvOK {
		b.ReportMetric(float64((srv1-srv0).Nanoseconds())/float64(b.N), "server-cpu-ns/op")
	}
	slices.Sort(lat)
	at := func(q float64) float64 {
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}

// localBackend is an objstore/local backend in a directory of tb's.
func localBackend(b *testing.B, tb testing.TB) objstore.Backend {
	backend, err := local.New(filepath.Join(tb.TempDir(), "rec"))
	if err != nil {
		b.Fatal(err)
	}
	if err := backend.Check(context.Background()); err != nil {
		b.Fatal(err)
	}
	return backend
}

func segmentSize(uint64) int { return dvrSegmentSize }

// BenchmarkSegmentFromMemory serves a live stream's segment (300 KB) the
// store holds: the live path, with the recording on (DVR window 2 h) as
// in BenchmarkSegmentFromRecording.
func BenchmarkSegmentFromMemory(b *testing.B) {
	d := newDVRBench(b, b, localBackend(b, b), 30, segmentSize)
	benchDVRServe(b, d.h, dvrPath(d.live+5), dvrSegmentSize, "")
}

// BenchmarkSegmentFromRecording serves a segment (300 KB) of a live
// stream's DVR window that the store no longer holds, read from the
// recording through the recorder's Archive (origin.serveFromDVR):
//
//   - local: the recording in objstore/local (a file, in the page cache:
//     it was just written); 30 segments recorded, the 6th asked for;
//   - local-2h-window: the same with a full 2 h window (3,610 segments of
//     2 s recorded, 3,600 in the window; all but the one asked for, the
//     window's oldest, are 1 KB): the window's look-up is a scan;
//   - s3: the recording in versitygw (a real S3 server on loopback, its
//     posix backend over a directory), through objstore/s3 (minio-go);
//     its own CPU, another process's, is not in cpu-ns/op but reported
//     as server-cpu-ns/op (from /proc, in 10 ms ticks).
//
// Each fixture is built once (the 2 h window's takes a while: each
// segment is spooled with fsyncs).
func BenchmarkSegmentFromRecording(b *testing.B) {
	type variant struct {
		name    string
		n       int
		size    func(uint64) int
		backend func(b *testing.B, tb testing.TB) objstore.Backend
		server  string // the backend's server process, a child of this one
	}
	const window = 3600 // 2 h of 2 s segments
	for _, v := range []variant{
		{"local", 30, segmentSize, localBackend, ""},
		{"local-2h-window", window + 10, func(msn uint64) int {
			if msn == 10 {
				return dvrSegmentSize
			}
			return 1000
		}, localBackend, ""},
		{"s3", 30, segmentSize, s3Backend, "versitygw"},
	} {
		var d *dvrBench // built by the first run, kept for the next ones
		b.Run(v.name, func(sb *testing.B) {
			if d == nil {
				d = newDVRBench(sb, b, v.backend(sb, b), v.n, v.size)
			}
			msn := d.first
			if v.n == 30 {
				msn = 5
			}
			if msn >= d.live {
				sb.Fatalf("segment %d is in the store (from %d)", msn, d.live)
			}
			benchDVRServe(sb, d.h, dvrPath(msn), v.size(msn), v.server)
		})
	}
}

// s3Backend starts versitygw for tb and returns an objstore/s3 backend
// on its bucket.
func s3Backend(b *testing.B, tb testing.TB) objstore.Backend {
	srv := s3test.Start(tb)
	dir := tb.TempDir()
	access, secret := filepath.Join(dir, "access"), filepath.Join(dir, "secret")
	for p, v := range map[string]string{access: srv.AccessKey, secret: srv.SecretKey} {
		if err := os.WriteFile(p, []byte(v), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	backend, err := s3.New(s3.Config{Endpoint: srv.Endpoint, Region: s3test.Region, Bucket: srv.Bucket,
		PathStyle: true, AccessKeyFile: access, SecretKeyFile: secret})
	if err != nil {
		b.Fatal(err)
	}
	tb.Cleanup(backend.CloseIdleConnections)
	if err := backend.Check(context.Background()); err != nil {
		b.Fatal(err)
	}
	return backend
}

// childProcCPU returns the user+system CPU time of this process's child
// processes named comm, from /proc/<pid>/stat (clock ticks of 10 ms); ok
// is false for comm "" and where there is no /proc or no such child.
func childProcCPU(comm string) (cpu time.Duration, ok bool) {
	if comm == "" {
		return 0, false
	}
	paths, _ := filepath.Glob("/proc/[0-9]*/stat")
	self := strconv.Itoa(os.Getpid())
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(data)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open || s[open+1:closing] != comm {
			continue
		}
		// fields[0] is field 3 of proc(5): state, ppid, ..., utime (14), stime (15).
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 13 || fields[1] != self {
			continue
		}
		ut, err1 := strconv.ParseUint(fields[11], 10, 64)
		st, err2 := strconv.ParseUint(fields[12], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		cpu += time.Duration(ut+st) * 10 * time.Millisecond
		ok = true
	}
	return cpu, ok
}
