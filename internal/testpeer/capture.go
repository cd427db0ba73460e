package testpeer

import (
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/headwater-live/headwater/media"
)

// Capture subscribes to a published stream and keeps every frame.
type Capture struct {
	// Stream is the captured stream.
	Stream *media.Stream

	sub  *media.Subscription
	done chan struct{}

	mu     sync.Mutex
	frames []*media.Frame
}

// NewCapture subscribes to st (with room for 100000 frames) and keeps its
// frames until it ends.
func NewCapture(st *media.Stream) *Capture {
	c := &Capture{Stream: st, sub: st.Subscribe(100000), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for f := range c.sub.Frames() {
			c.mu.Lock()
			c.frames = append(c.frames, f)
			c.mu.Unlock()
		}
	}()
	return c
}

// Frames returns the frames received so far.
func (c *Capture) Frames() []*media.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*media.Frame(nil), c.frames...)
}

// Count returns how many frames were received so far.
func (c *Capture) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.frames)
}

// Done is closed once the stream ended and all its frames were received.
func (c *Capture) Done() <-chan struct{} { return c.done }

// Wait waits for the stream to end and its frames to be drained, and fails
// t if the stream is still live after timeout.
func (c *Capture) Wait(t testing.TB, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("stream %s still live after %s", c.Stream.Name(), timeout)
	}
}

// WaitFrames waits until at least n frames arrived, and fails t once
// timeout has passed.
func (c *Capture) WaitFrames(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for c.Count() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d frames after %s, want %d", c.Stream.Name(), c.Count(), timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Captures captures every stream published to a registry whose
// media.RegistryConfig.OnPublish is its OnPublish method.
type Captures struct {
	mu       sync.Mutex
	captures map[string][]*Capture
	notify   chan struct{}
}

// NewCaptures returns an empty Captures.
func NewCaptures() *Captures {
	return &Captures{captures: make(map[string][]*Capture), notify: make(chan struct{}, 1)}
}

// OnPublish starts a Capture of st: a media.RegistryConfig.OnPublish.
func (cs *Captures) OnPublish(st *media.Stream) {
	c := NewCapture(st)
	cs.mu.Lock()
	cs.captures[st.Name()] = append(cs.captures[st.Name()], c)
	cs.mu.Unlock()
	select {
	case cs.notify <- struct{}{}:
	default:
	}
}

// WaitPublished waits for the n-th (1-based) publish of name and returns
// its capture; it fails t once timeout has passed.
func (cs *Captures) WaitPublished(t testing.TB, name string, n int, timeout time.Duration) *Capture {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		cs.mu.Lock()
		list := cs.captures[name]
		cs.mu.Unlock()
		if len(list) >= n {
			return list[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not published %d times after %s", name, n, timeout)
		}
		select {
		case <-cs.notify:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Publishes returns how many times name was published so far.
func (cs *Captures) Publishes(name string) int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.captures[name])
}

// FormatFrame describes a frame in one line, for test failures.
func FormatFrame(f *media.Frame) string {
	return fmt.Sprintf("track %d dts %d pts %d key %v size %d", f.Track.ID, f.DTS, f.PTS, f.Key, len(f.Payload))
}

// CheckAVCC fails t unless p is a sequence of 4-byte length-prefixed NAL
// units (an empty p is one).
func CheckAVCC(t testing.TB, p []byte) {
	t.Helper()
	sum := 0
	for rest := p; len(rest) > 0; {
		if len(rest) < 4 {
			t.Fatalf("payload has %d trailing bytes", len(rest))
		}
		l := int(binary.BigEndian.Uint32(rest))
		if l == 0 || l > len(rest)-4 {
			t.Fatalf("bad NAL unit length %d with %d bytes left", l, len(rest)-4)
		}
		sum += 4 + l
		rest = rest[4+l:]
	}
	if sum != len(p) {
		t.Fatalf("NAL units sum to %d, payload is %d", sum, len(p))
	}
}

// NALUTypes lists the NAL unit types of an AVCC payload, of H.265 when hevc
// is set and of H.264 otherwise.
func NALUTypes(p []byte, hevc bool) []int {
	var types []int
	for len(p) >= 5 {
		l := int(binary.BigEndian.Uint32(p))
		if hevc {
			types = append(types, int(p[4]>>1)&0x3f)
		} else {
			types = append(types, int(p[4])&0x1f)
		}
		p = p[min(len(p), 4+l):]
	}
	return types
}
