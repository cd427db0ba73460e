package spool

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/internal/s3test"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/objstore"
	"github.com/headwater-live/headwater/objstore/local"
	"github.com/headwater-live/headwater/objstore/s3"
)

// backendKind makes a fresh backend of one kind for a test.
type backendKind struct {
	name string
	make func(t *testing.T) objstore.Backend
}

// backendKinds are the backends the spool's scenarios run against: a
// local directory (a FilePutter) and a real S3 server (versitygw).
var backendKinds = []backendKind{
	{"local", func(t *testing.T) objstore.Backend { return newLocal(t) }},
	{"s3", func(t *testing.T) objstore.Backend { return newS3(t, s3test.Start(t)) }},
}

func newLocal(t testing.TB) *local.Backend {
	t.Helper()
	b, err := local.New(filepath.Join(t.TempDir(), "rec"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	return b
}

func newS3(t testing.TB, srv *s3test.Server) *s3.Backend {
	t.Helper()
	b, err := s3.New(s3Config(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.CloseIdleConnections)
	if err := b.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	return b
}

func s3Config(t testing.TB, srv *s3test.Server) s3.Config {
	t.Helper()
	dir := t.TempDir()
	a, k := filepath.Join(dir, "access"), filepath.Join(dir, "secret")
	writeFile(t, a, srv.AccessKey)
	writeFile(t, k, srv.SecretKey)
	return s3.Config{Endpoint: srv.Endpoint, Region: s3test.Region, Bucket: srv.Bucket, PathStyle: true, AccessKeyFile: a, SecretKeyFile: k}
}

// harness is a spool under test with what it logs, its metrics and the
// keys it reported stored.
type harness struct {
	t       testing.TB
	s       *Spool
	backend objstore.Backend
	reg     *prometheus.Registry
	log     *testpeer.LogBuffer

	mu     sync.Mutex
	stored []string // OnStored's keys, in order
}

// openSpool opens a spool on dir (a new one when "") with cfg's other
// fields, storing into backend. It is closed when the test ends.
func openSpool(t testing.TB, dir string, cfg Config, backend objstore.Backend) *harness {
	t.Helper()
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "spool")
	}
	h := &harness{t: t, backend: backend, reg: prometheus.NewRegistry(), log: &testpeer.LogBuffer{}}
	cfg.Dir = dir
	cfg.OnStored = func(key string, _ int64) {
		h.mu.Lock()
		h.stored = append(h.stored, key)
		h.mu.Unlock()
	}
	s, err := Open(cfg, backend, slog.New(slog.NewTextHandler(h.log, nil)), h.reg)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	t.Cleanup(func() {
		s.Close()
		if t.Failed() {
			t.Logf("spool log:\n%s", h.log.String())
		}
	})
	return h
}

func (h *harness) add(key, data, contentType string) {
	h.t.Helper()
	if err := h.s.Add(key, []byte(data), contentType); err != nil {
		h.t.Fatal(err)
	}
}

// storedKeys returns the keys OnStored reported, in order.
func (h *harness) storedKeys() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.stored)
}

// run starts Run and returns the function that ends it, waits for it to
// return and checks that it left no goroutine behind. It is also called
// when the test ends.
func (h *harness) run() (stop func()) {
	h.t.Helper()
	goroutines := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					h.t.Errorf("Run = %v", err)
				}
			case <-time.After(10 * time.Second):
				h.t.Fatal("Run did not return within 10s of its context's end")
			}
			if b, ok := h.backend.(*s3.Backend); ok {
				b.CloseIdleConnections()
			}
			testpeer.WaitGoroutines(h.t, goroutines)
		})
	}
	h.t.Cleanup(stop)
	return stop
}

// waitStored waits until the spool is empty.
func (h *harness) waitStored(timeout time.Duration) {
	h.t.Helper()
	testpeer.WaitFor(h.t, timeout, "the spool to empty", func() bool {
		n, _ := h.s.Pending()
		return n == 0
	})
}

// metric is a counter or gauge of the spool's registry (0 when absent).
func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	v, _ := testpeer.Metric(h.t, h.reg, name, labels...)
	return v
}

// contents returns every object of backend as key → data.
func contents(t *testing.T, b objstore.Backend) map[string]string {
	t.Helper()
	ctx := t.Context()
	out := map[string]string{}
	err := b.List(ctx, "", func(i objstore.Info) error {
		rc, _, err := b.Get(ctx, i.Key)
		if err != nil {
			return err
		}
		defer rc.Close()
		data, err := io.ReadAll(rc)
		if err != nil {
			return err
		}
		out[i.Key] = string(data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// same reports whether two maps of objects are equal, for messages too.
func same(a, b map[string]string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// histogramCount is the sample count of a histogram of the spool's
// registry (0 when absent).
func (h *harness) histogramCount(name string) uint64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// crash leaves the spool as a process that dies leaves it: nothing more
// is committed (Run must have returned), its Close does nothing, and the
// directory's lock is released (the kernel closes a dead process's
// files). What a machine crash would lose besides is the test's to do to
// the files.
func (h *harness) crash() {
	h.t.Helper()
	h.s.mu.Lock()
	running := h.s.running
	h.s.closed = true
	h.s.mu.Unlock()
	if running {
		h.t.Fatal("crash while Run is running")
	}
	if err := h.s.lock.Close(); err != nil {
		h.t.Fatal(err)
	}
}
