package rtmp

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/media"
)

// fakeAuth records the requests it sees and refuses those whose "key"
// parameter differs from allow.
type fakeAuth struct {
	allow string
	block chan struct{} // when set, AuthorizePublish waits for it or ctx

	mu          sync.Mutex
	authorized  []auth.PublishRequest
	unpublished []auth.PublishRequest
}

func (f *fakeAuth) AuthorizePublish(ctx context.Context, req auth.PublishRequest) error {
	f.mu.Lock()
	f.authorized = append(f.authorized, req)
	f.mu.Unlock()
	if f.block != nil {
		select {
		case <-f.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if req.Params["key"] != f.allow {
		return &auth.RefusalError{Reason: auth.ReasonBadKey}
	}
	return nil
}

func (f *fakeAuth) Unpublished(_ context.Context, req auth.PublishRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unpublished = append(f.unpublished, req)
}

func (f *fakeAuth) requests() (authorized, unpublished []auth.PublishRequest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]auth.PublishRequest(nil), f.authorized...), append([]auth.PublishRequest(nil), f.unpublished...)
}

func TestAuthRefusesPublish(t *testing.T) {
	t.Parallel()
	fa := &fakeAuth{allow: "good-secret"}
	e := newEnv(t, Config{Auth: fa})

	c := dialRaw(t, e.addr())
	c.connect("live")
	if code := c.publish("cam?key=bad-secret"); code != "NetStream.Publish.Rejected" {
		t.Fatalf("publish with a bad key: %s", code)
	}
	c.waitClosed(5 * time.Second)
	e.metrics.WaitErrors(ingest.ReasonUnauthorized, 1)
	if _, live := e.reg.Get("live/cam"); live {
		t.Fatal("refused stream is live")
	}
	authorized, unpublished := fa.requests()
	if len(authorized) != 1 || len(unpublished) != 0 {
		t.Fatalf("authorized %v, unpublished %v", authorized, unpublished)
	}
	r := authorized[0]
	if r.Protocol != "rtmp" || r.Stream != "live/cam" || r.RequestID == "" || !strings.HasPrefix(r.RemoteAddr, "127.0.0.1:") {
		t.Errorf("request %v", r)
	}
	if strings.Contains(e.logs.String(), "bad-secret") {
		t.Errorf("the key was logged:\n%s", e.logs.String())
	}
}

func TestAuthAllowsPublishAndReportsTheEnd(t *testing.T) {
	t.Parallel()
	fa := &fakeAuth{allow: "from-app"}
	e := newEnv(t, Config{Auth: fa})

	// OBS with the key in the server URL: rtmp://host/live?key=… puts it in
	// the connect command's app and tcUrl; the publish name's query wins.
	c := dialRaw(t, e.addr())
	c.connect("live?key=from-app&x=1")
	if code := c.publish("cam?token=t1"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	authorized, _ := fa.requests()
	want := map[string]string{"key": "from-app", "x": "1", "token": "t1"}
	if len(authorized) != 1 || fmt.Sprint(authorized[0].Params) != fmt.Sprint(want) {
		t.Fatalf("params %v, want %v", authorized, want)
	}
	c.conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, unpublished := fa.requests(); len(unpublished) == 1 {
			if unpublished[0].Stream != "live/cam" || unpublished[0].RequestID != authorized[0].RequestID {
				t.Errorf("unpublished %v", unpublished[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Unpublished not called")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if strings.Contains(e.logs.String(), "from-app") {
		t.Errorf("the key was logged:\n%s", e.logs.String())
	}

	// The publish name's own query takes precedence over the connect URL's.
	c = dialRaw(t, e.addr())
	c.connect("live?key=from-app")
	if code := c.publish("cam2?key=other"); code != "NetStream.Publish.Rejected" {
		t.Fatalf("publish: %s", code)
	}
}

func TestAuthEndsOnClose(t *testing.T) {
	t.Parallel()
	fa := &fakeAuth{allow: "k", block: make(chan struct{})}
	e := newEnv(t, Config{Auth: fa})
	c := dialRaw(t, e.addr())
	c.connect("live")
	if err := c.command(0, "createStream", nil); err != nil {
		t.Fatal(err)
	}
	c.expect("_result", "")
	if err := c.command(1, "publish", nil, "cam?key=k", "live"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for a, _ := fa.requests(); len(a) == 0; a, _ = fa.requests() {
		if time.Now().After(deadline) {
			t.Fatal("AuthorizePublish not called")
		}
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan error, 1)
	go func() { done <- e.srv.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for a blocked authorisation")
	}
}

// reservedPublisher refuses names under "t/".
type reservedPublisher struct{ *media.Registry }

func (p reservedPublisher) CheckName(name string) error {
	if strings.HasPrefix(name, "t/") {
		return fmt.Errorf("%w: reserved", media.ErrInvalidName)
	}
	return nil
}

func TestNameCheckerRefusesBeforeAuth(t *testing.T) {
	t.Parallel()
	fa := &fakeAuth{allow: "k"}
	e := newEnvWith(t, Config{App: "t", Auth: fa}, envOptions{
		publisher: func(r *media.Registry) ingest.Registry { return reservedPublisher{r} },
	})
	c := dialRaw(t, e.addr())
	c.connect("t")
	if code := c.publish("x?key=k"); code != "NetStream.Publish.BadName" {
		t.Fatalf("publish: %s", code)
	}
	e.metrics.WaitErrors(ingest.ReasonInvalidName, 1)
	if a, _ := fa.requests(); len(a) != 0 {
		t.Errorf("reserved name reached the authenticator: %v", a)
	}
}

// TestAuthFFmpeg publishes with ffmpeg through a real static key chain.
func TestAuthFFmpeg(t *testing.T) {
	testpeer.NeedFFmpeg(t)
	t.Parallel()
	const key = "4l0ng-r4nd0m-k3y-f0r-th3-t3st-0nly"
	sk, err := auth.NewStaticKeys([]auth.KeyRule{{Stream: "live/ff", Hashes: []string{auth.HashKey(key)}}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{Auth: auth.New(auth.Config{StaticKeys: sk})})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	codecs := []string{"-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-f", "flv"}
	out, err := testpeer.FFmpeg(ctx, append(append(testsrcArgs("1"), codecs...), e.url("ff?key=wrong"+key))...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("ffmpeg with a wrong key: %v\n%s", err, out)
	}
	e.metrics.WaitErrors(ingest.ReasonUnauthorized, 1)

	if out, err := testpeer.FFmpeg(ctx, append(append(testsrcArgs("1"), codecs...), e.url("ff?key="+key))...); err != nil {
		t.Fatalf("ffmpeg with the key: %v\n%s", err, out)
	}
	e.waitPublished("live/ff", 1, 5*time.Second).Wait(t, 5*time.Second)
	if strings.Contains(e.logs.String(), key) {
		t.Errorf("the key was logged:\n%s", e.logs.String())
	}
}
