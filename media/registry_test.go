package media

import (
	"errors"
	"testing"
)

// TestPublishRefusesCollidingNames: a name that extends a live stream's, or
// that a live stream's extends, at a '/' boundary, or whose last element is
// a rendition or object name, is refused with ErrNameCollision (an
// ErrInvalidName); names free again once the other stream ends.
func TestPublishRefusesCollidingNames(t *testing.T) {
	r := NewRegistry(RegistryConfig{})
	v := &Track{ID: 1, Codec: &H264{}, ClockRate: 90000}
	a, err := r.Publish("live/a", PublishInfo{}, []*Track{v})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"live/a/x", "live/a/x/y", "live", "live/b/video", "live/b/audio", "live/b/index.m3u8", "live/b/seg1.m4s"} {
		_, err := r.Publish(name, PublishInfo{}, []*Track{v})
		if !errors.Is(err, ErrNameCollision) || !errors.Is(err, ErrInvalidName) {
			t.Errorf("Publish(%s) = %v, want ErrNameCollision", name, err)
		}
		if err := r.CheckName(name); !errors.Is(err, ErrNameCollision) {
			t.Errorf("CheckName(%s) = %v", name, err)
		}
	}
	b, err := r.Publish("live/ab", PublishInfo{}, []*Track{v}) // no '/' boundary
	if err != nil {
		t.Fatalf("live/ab: %v", err)
	}
	c, err := r.Publish("other/a/x", PublishInfo{}, []*Track{v})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Publish("other/a", PublishInfo{}, []*Track{v}); !errors.Is(err, ErrNameCollision) {
		t.Errorf("other/a under the live other/a/x: %v", err)
	}
	a.Close()
	c.Close()
	for _, name := range []string{"live/a/x", "other/a"} {
		s, err := r.Publish(name, PublishInfo{}, []*Track{v})
		if err != nil {
			t.Fatalf("%s after the colliding stream ended: %v", name, err)
		}
		s.Close()
	}
	b.Close()
	if len(r.nested) != 0 {
		t.Fatalf("nested counts left: %v", r.nested)
	}
}
