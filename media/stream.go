package media

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// PublishInfo describes the session that publishes a stream.
type PublishInfo struct {
	// Protocol is the ingest protocol ("rtmp", "srt", "rtsp").
	Protocol string
	// RemoteAddr is the publisher's address.
	RemoteAddr string
	// SessionID identifies the ingest session in logs.
	SessionID string
	// Backup is set when the publisher asked to be the stream's backup
	// (role=backup): it feeds the stream only while the primary cannot.
	Backup bool
}

// Role names the publisher's role, "primary" or "backup".
func (i PublishInfo) Role() string {
	if i.Backup {
		return "backup"
	}
	return "primary"
}

// Counter is the part of a metric counter the hub needs.
type Counter interface {
	Inc()
}

// Stream is one live publish: its name, its tracks and its subscribers.
//
// The publisher calls WriteFrame from a single goroutine; each subscriber
// receives the same *Frame values. A subscriber that does not keep up loses
// frames (counted) instead of slowing the publisher down; a video track that
// lost a frame resumes at its next key frame so decoders never see a broken
// reference chain.
type Stream struct {
	name     string
	info     PublishInfo
	tracks   []*Track
	started  time.Time
	registry *Registry

	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.RWMutex
	subs   []*Subscription
	closed bool
	done   chan struct{}

	frames atomic.Uint64
	bytes  atomic.Uint64
}

// Name is the stream's name, e.g. "live/key".
func (s *Stream) Name() string { return s.name }

// Info describes the publishing session.
func (s *Stream) Info() PublishInfo { return s.info }

// Tracks are the tracks announced at publish time. Frames may later point to
// newer versions of these tracks (same ID, new parameters).
func (s *Stream) Tracks() []*Track { return s.tracks }

// Started is when the stream was published.
func (s *Stream) Started() time.Time { return s.started }

// Context is cancelled when the stream is kicked or closed; the ingest
// session watches it to drop the publisher.
func (s *Stream) Context() context.Context { return s.ctx }

// Done is closed once Close has run: subscriptions are closed (they may
// still hold buffered frames) and the name is free again.
func (s *Stream) Done() <-chan struct{} { return s.done }

// Frames is the number of frames written so far.
func (s *Stream) Frames() uint64 { return s.frames.Load() }

// Bytes is the number of payload bytes written so far.
func (s *Stream) Bytes() uint64 { return s.bytes.Load() }

// Kick asks the publisher to stop; the ingest session closes the stream.
func (s *Stream) Kick() { s.cancel() }

// WriteFrame hands a frame to every subscriber without blocking. It must be
// called from one goroutine at a time; frames written after Close are ignored.
func (s *Stream) WriteFrame(f *Frame) {
	s.frames.Add(1)
	s.bytes.Add(uint64(len(f.Payload)))

	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return
	}
	for _, sub := range s.subs {
		sub.offer(f)
	}
}

// Subscribe attaches a subscriber with room for buffer frames. Subscribing to
// a closed stream returns a subscription whose channel is already closed.
func (s *Stream) Subscribe(buffer int) *Subscription {
	if buffer < 1 {
		buffer = 1
	}
	sub := &Subscription{
		stream:  s,
		ch:      make(chan *Frame, buffer),
		waiting: make(map[int]bool),
		dropped: s.registry.cfg.FramesDropped,
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		close(sub.ch)
		return sub
	}
	s.subs = append(s.subs, sub)
	return sub
}

func (s *Stream) unsubscribe(sub *Subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, x := range s.subs {
		if x == sub {
			s.subs = append(s.subs[:i:i], s.subs[i+1:]...)
			close(sub.ch)
			return
		}
	}
}

// Close ends the publish: subscribers see their channels closed after the
// frames already buffered, the name becomes free, and OnUnpublish runs.
// Close is idempotent.
func (s *Stream) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, sub := range s.subs {
		close(sub.ch)
	}
	s.subs = nil
	s.mu.Unlock()

	s.cancel()
	s.registry.remove(s)
	close(s.done)
}

// Subscription receives the frames of one stream.
type Subscription struct {
	stream  *Stream
	ch      chan *Frame
	waiting map[int]bool // track ID -> dropping until the next key frame; publisher goroutine only
	dropped Counter
	lost    atomic.Uint64
	once    sync.Once
}

// Frames delivers the stream's frames in order; it is closed when the stream
// ends or the subscription is closed.
func (sub *Subscription) Frames() <-chan *Frame { return sub.ch }

// Dropped is the number of frames this subscriber lost for being slow.
func (sub *Subscription) Dropped() uint64 { return sub.lost.Load() }

// Close detaches the subscriber. It is safe to call more than once and after
// the stream ended.
func (sub *Subscription) Close() {
	sub.once.Do(func() { sub.stream.unsubscribe(sub) })
}

// offer runs with the stream's read lock held, on the publisher goroutine.
func (sub *Subscription) offer(f *Frame) {
	id := f.Track.ID
	if sub.waiting[id] && !f.Key {
		sub.drop()
		return
	}
	select {
	case sub.ch <- f:
		if sub.waiting[id] {
			delete(sub.waiting, id)
		}
	default:
		sub.drop()
		if f.Track.Kind() == KindVideo {
			sub.waiting[id] = true
		}
	}
}

func (sub *Subscription) drop() {
	sub.lost.Add(1)
	if sub.dropped != nil {
		sub.dropped.Inc()
	}
}
