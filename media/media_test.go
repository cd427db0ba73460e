package media

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
)

type countingCounter struct{ n int }

func (c *countingCounter) Inc() { c.n++ }

func testTracks() (*Track, *Track) {
	v := &Track{ID: 1, Codec: &H264{SPS: []byte{0x67, 0x64, 0x00, 0x1f}, PPS: []byte{0x68}}, ClockRate: 90000}
	a := &Track{ID: 2, Codec: &AAC{Config: mpeg4audio.AudioSpecificConfig{Type: 2, SampleRate: 48000, ChannelConfig: 2}}, ClockRate: 48000}
	return v, a
}

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"live/key", true},
		{"live/my-key_1.0", true},
		{"a", true},
		{"", false},
		{"live//key", false},
		{"/live/key", false},
		{"live/key/", false},
		{"live/../key", false},
		{"live/./key", false},
		{"live/key with space", false},
		{"live/ключ", false},
		{"live/key%2f", false},
		{strings.Repeat("a", MaxNameLength), true},
		{strings.Repeat("a", MaxNameLength+1), false},
	} {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) error %v is not ErrInvalidName", tc.name, err)
		}
	}
}

func TestRegistryPublish(t *testing.T) {
	v, a := testTracks()
	var published, unpublished []string
	r := NewRegistry(RegistryConfig{
		MaxStreams:  2,
		OnPublish:   func(s *Stream) { published = append(published, s.Name()) },
		OnUnpublish: func(s *Stream) { unpublished = append(unpublished, s.Name()) },
	})
	s1, err := r.Publish("live/a", PublishInfo{Protocol: "rtmp"}, []*Track{v, a})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Publish("live/a", PublishInfo{}, []*Track{v}); !errors.Is(err, ErrAlreadyPublishing) {
		t.Fatalf("second publisher: %v, want ErrAlreadyPublishing", err)
	}
	if _, err := r.Publish("live/b", PublishInfo{}, []*Track{v}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Publish("live/c", PublishInfo{}, []*Track{v}); !errors.Is(err, ErrTooManyStreams) {
		t.Fatalf("third stream: %v, want ErrTooManyStreams", err)
	}
	if _, err := r.Publish("live/../x", PublishInfo{}, []*Track{v}); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := r.Publish("live/d", PublishInfo{}, nil); err == nil {
		t.Fatal("publish without tracks accepted")
	}
	if got, ok := r.Get("live/a"); !ok || got != s1 {
		t.Fatal("Get live/a")
	}
	if n := len(r.List()); n != 2 {
		t.Fatalf("List has %d streams", n)
	}
	s1.Close()
	s1.Close()
	select {
	case <-s1.Done():
	default:
		t.Fatal("Done not closed")
	}
	if s1.Context().Err() == nil {
		t.Fatal("context not cancelled on close")
	}
	if _, ok := r.Get("live/a"); ok {
		t.Fatal("closed stream still registered")
	}
	if _, err := r.Publish("live/a", PublishInfo{}, []*Track{v}); err != nil {
		t.Fatalf("republish after close: %v", err)
	}
	if strings.Join(published, ",") != "live/a,live/b,live/a" || strings.Join(unpublished, ",") != "live/a" {
		t.Fatalf("hooks: published %v unpublished %v", published, unpublished)
	}
}

func TestFanOutSharesFrames(t *testing.T) {
	v, a := testTracks()
	r := NewRegistry(RegistryConfig{})
	s, err := r.Publish("live/a", PublishInfo{}, []*Track{v, a})
	if err != nil {
		t.Fatal(err)
	}
	sub1, sub2 := s.Subscribe(16), s.Subscribe(16)
	f := &Frame{Track: v, Key: true, Payload: []byte{0, 0, 0, 1, 0x65}}
	s.WriteFrame(f)
	if g1, g2 := <-sub1.Frames(), <-sub2.Frames(); g1 != f || g2 != f {
		t.Fatal("subscribers did not receive the same frame by reference")
	}
	sub2.Close()
	sub2.Close()
	if _, ok := <-sub2.Frames(); ok {
		t.Fatal("closed subscription still open")
	}
	s.WriteFrame(f)
	s.Close()
	if _, ok := <-sub1.Frames(); !ok {
		t.Fatal("buffered frame lost at close")
	}
	if _, ok := <-sub1.Frames(); ok {
		t.Fatal("subscription not closed at stream close")
	}
	if late := s.Subscribe(4); late != nil {
		if _, ok := <-late.Frames(); ok {
			t.Fatal("subscription to closed stream is open")
		}
	}
	if s.Frames() != 2 || s.Bytes() != 10 {
		t.Fatalf("counters frames=%d bytes=%d", s.Frames(), s.Bytes())
	}
}

func TestSlowSubscriberDropsUntilKeyFrame(t *testing.T) {
	v, a := testTracks()
	drops := &countingCounter{}
	r := NewRegistry(RegistryConfig{FramesDropped: drops})
	s, err := r.Publish("live/a", PublishInfo{}, []*Track{v, a})
	if err != nil {
		t.Fatal(err)
	}
	sub := s.Subscribe(2)
	key := &Frame{Track: v, Key: true}
	delta := &Frame{Track: v}
	audio := &Frame{Track: a, Key: true}
	done := make(chan struct{})
	go func() { // the publisher must never block
		s.WriteFrame(key)
		s.WriteFrame(delta)
		s.WriteFrame(delta) // dropped: buffer full, video waits for a key frame
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("publisher blocked on a slow subscriber")
	}
	<-sub.Frames()
	<-sub.Frames()
	s.WriteFrame(delta) // dropped: still waiting for a key frame
	s.WriteFrame(audio) // audio is unaffected
	s.WriteFrame(key)   // resumes
	s.WriteFrame(delta)
	got := []*Frame{<-sub.Frames(), <-sub.Frames()}
	if got[0] != audio || got[1] != key {
		t.Fatalf("after drop got %+v", got)
	}
	if sub.Dropped() != 3 || drops.n != 3 {
		t.Fatalf("dropped %d (metric %d), want 3", sub.Dropped(), drops.n)
	}
	s.Close()
}

func TestCodecStrings(t *testing.T) {
	v, a := testTracks()
	if got := v.Codec.RFC6381(); got != "avc1.64001f" {
		t.Errorf("h264 %s", got)
	}
	if got := a.Codec.RFC6381(); got != "mp4a.40.2" {
		t.Errorf("aac %s", got)
	}
	if (&Opus{ChannelCount: 2}).RFC6381() != "opus" {
		t.Error("opus")
	}
}

func TestTicks(t *testing.T) {
	for _, tc := range []struct {
		ticks int64
		rate  uint32
		d     time.Duration
	}{
		{90000, 90000, time.Second},
		{3003, 90000, 33366666 * time.Nanosecond},
		{1024, 48000, 21333333 * time.Nanosecond},
		{90000 * 86400 * 365, 90000, 365 * 24 * time.Hour},
	} {
		if got := TicksToDuration(tc.ticks, tc.rate); got != tc.d {
			t.Errorf("TicksToDuration(%d,%d) = %v want %v", tc.ticks, tc.rate, got, tc.d)
		}
	}
	if got := DurationToTicks(2*time.Second, 48000); got != 96000 {
		t.Errorf("DurationToTicks = %d", got)
	}
}

func TestAACChannels(t *testing.T) {
	for _, tc := range []struct {
		config uint8
		want   int
	}{{0, 0}, {1, 1}, {2, 2}, {6, 6}, {7, 8}, {8, 0}, {15, 0}} {
		c := &AAC{Config: mpeg4audio.AudioSpecificConfig{ChannelConfig: tc.config}}
		if got := c.Channels(); got != tc.want {
			t.Errorf("channel configuration %d: %d channels, want %d", tc.config, got, tc.want)
		}
	}
}
