package s3test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

func TestStopStart(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := t.Context()
	if _, err := c.PutObject(ctx, s.Bucket, "a/b", strings.NewReader("kept"), 4, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	pid := s.cmd.Process.Pid
	s.Stop()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("versitygw %d after Stop: kill -0 = %v, want ESRCH", pid, err)
	}
	hc := &http.Client{Timeout: time.Second}
	defer hc.CloseIdleConnections()
	if resp, err := hc.Get(s.Endpoint); err == nil {
		resp.Body.Close()
		t.Fatal("the endpoint answered after Stop")
	}
	s.Start()
	if got := s.Objects(t); len(got) != 1 || got["a/b"] != "kept" {
		t.Fatalf("after a restart the bucket holds %v", got)
	}
	if st, err := os.Stat(s.Dir + "/rec/a/b"); err != nil || st.Size() != 4 {
		t.Fatalf("the object's file: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if ok, err := c.BucketExists(ctx, s.Bucket); !ok || err != nil {
		t.Fatalf("BucketExists after a restart = %v, %v", ok, err)
	}
}
