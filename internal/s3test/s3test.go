// Package s3test runs a real S3 server for tests: versitygw (Apache-2.0)
// in posix mode over a temporary directory, on a loopback port, with one
// root access key and a bucket made for the test. The versitygw binary is
// a tool, not a dependency of the module: scripts/test.sh builds it into
// .cache/bin (BinDir) under the repository root.
//
// Only _test.go files import this package.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/headwater-live/headwater/internal/testpeer"
)

// Version is the versitygw release scripts/test.sh builds.
const Version = "v1.8.0"

// BinDir is where scripts/test.sh puts versitygw, relative to the
// repository root.
const BinDir = ".cache/bin"

// Region is the region the server is started with.
const Region = "us-east-1"

// Server is a running (or stopped) versitygw.
type Server struct {
	// Endpoint is the server's URL, http://127.0.0.1:<port>.
	Endpoint string
	// Addr is its listen address, 127.0.0.1:<port>.
	Addr string
	// Bucket is the bucket made for the test.
	Bucket string
	// AccessKey and SecretKey are the root user's credentials.
	AccessKey, SecretKey string
	// Dir is the posix root: one directory per bucket, one file per
	// object.
	Dir string

	t      testing.TB
	bin    string
	output *testpeer.LogBuffer // the output of every run

	mu   sync.Mutex
	cmd  *exec.Cmd  // nil while stopped
	done chan error // cmd.Wait's result
}

// Binary returns the versitygw executable in BinDir under the repository
// root (the directory above the test's that holds go.mod). It fails t
// with how to build it when it is missing.
func Binary(t testing.TB) string {
	t.Helper()
	p := filepath.Join(testpeer.RepoRoot(t), BinDir, "versitygw")
	if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("versitygw not found in %s: run ./scripts/test.sh (it builds it) or "+
			"GOBIN=$PWD/%s go install github.com/versity/versitygw/cmd/versitygw@%s", BinDir, BinDir, Version)
	}
	return p
}

// Start starts versitygw on a free loopback port over a new temporary
// directory, waits until it answers, and makes the bucket "rec". The
// server is stopped when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	key := make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	addr := testpeer.FreeAddr(t)
	s := &Server{
		Endpoint:  "http://" + addr,
		Addr:      addr,
		Bucket:    "rec",
		AccessKey: "headwater-test",
		SecretKey: hex.EncodeToString(key),
		Dir:       t.TempDir(),
		t:         t,
		bin:       Binary(t),
		output:    &testpeer.LogBuffer{},
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("versitygw output:\n%s", s.output.String())
		}
	})
	s.Start()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Client(t).MakeBucket(ctx, s.Bucket, minio.MakeBucketOptions{Region: Region}); err != nil {
		t.Fatalf("versitygw: make bucket %s: %v", s.Bucket, err)
	}
	return s
}

// Start starts the server (again, after Stop) on the same address and
// directory, and waits until it answers HTTP. It fails the test if it
// does not within 10 s or exits.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		s.t.Fatal("s3test: Start: the server is running")
	}
	cmd := exec.Command(s.bin, "--port", s.Addr, "--access", s.AccessKey, "--secret", s.SecretKey,
		"--region", Region, "--quiet", "posix", s.Dir)
	cmd.Stdout = s.output
	cmd.Stderr = s.output
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("s3test: starting versitygw: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	s.cmd, s.done = cmd, done

	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(s.Endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return // any answer (403 without credentials) means it serves
		}
		select {
		case err := <-done:
			done <- err
			s.t.Fatalf("s3test: versitygw exited at start (%v):\n%s", err, s.output.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("s3test: versitygw on %s did not answer within 10s: %v", s.Addr, err)
		}
	}
}

// Stop kills the server (SIGKILL: an outage, not a shutdown) and waits
// until it has exited. The directory, and so every object, is kept.
func (s *Server) Stop() {
	s.t.Helper()
	if !s.stop() {
		s.t.Fatal("s3test: Stop: the server is not running")
	}
}

// stop kills and reaps the process, and reports whether one was running.
func (s *Server) stop() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	if err := s.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		s.t.Errorf("s3test: killing versitygw: %v", err)
	}
	var exit *exec.ExitError
	if err := <-s.done; err != nil && !errors.As(err, &exit) { // an exit status (killed) is expected
		s.t.Errorf("s3test: waiting for versitygw: %v", err)
	}
	s.cmd, s.done = nil, nil
	return true
}

// Client returns a minio-go client of the server with the root
// credentials, for a test to look at objects behind the code it tests.
func (s *Server) Client(t testing.TB) *minio.Client {
	t.Helper()
	c, err := minio.New(s.Addr, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Region:       Region,
		BucketLookup: minio.BucketLookupPath,
		MaxRetries:   1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Objects returns the keys and contents of every object in the bucket,
// read through the S3 API.
func (s *Server) Objects(t testing.TB) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.Client(t)
	out := map[string]string{}
	for o := range c.ListObjects(ctx, s.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("s3test: list %s: %v", s.Bucket, o.Err)
		}
		obj, err := c.GetObject(ctx, s.Bucket, o.Key, minio.GetObjectOptions{})
		if err != nil {
			t.Fatalf("s3test: get %s: %v", o.Key, err)
		}
		data, err := io.ReadAll(obj)
		obj.Close()
		if err != nil {
			t.Fatalf("s3test: read %s: %v", o.Key, err)
		}
		out[o.Key] = string(data)
	}
	return out
}
