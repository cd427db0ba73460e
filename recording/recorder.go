// Package recording keeps what the live origin served: every rendition's
// init sections and CMAF segments of the streams it is told to record, with
// a small per-session index, handed to a spool (package spool) that uploads
// them to object storage (package objstore) without the live path ever
// waiting. From the recording it answers the origin's DVR requests
// (segments older than the live window) and renders VOD sessions.
//
// A recorder follows the store (package store), not the media: a session
// follower waits for each rendition's segments to complete (store.Rendition
// Wait) and writes the same bytes the origin serves. It never slows the
// packaging down; a follower that falls further behind than the store keeps
// segments (the live window plus its extra) records the segments it missed
// as gaps, counted.
package recording

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/objstore"
	"github.com/headwater-live/headwater/store"
)

// Writer is where a recorder puts objects: a spool.Spool, which stores
// them on local disk at once and uploads them later.
type Writer interface {
	// Add stores data under key (replacing an unsent object with that key)
	// without waiting for the backend.
	Add(key string, data []byte, contentType string) error
	// Open reads an object still waiting to be uploaded.
	Open(key string) (io.ReadCloser, bool)
	// Flush waits until everything under prefix added before the call has
	// been stored in the backend.
	Flush(ctx context.Context, prefix string) error
}

// Config configures a Recorder.
type Config struct {
	// Writer takes the recorded objects (required).
	Writer Writer
	// Backend is where the Writer's objects end up; sessions, VOD and DVR
	// objects are read from it (required).
	Backend objstore.Backend
	// Rules choose the streams recorded; an empty Rules records none.
	Rules Rules
	// Node is this node's id, written into each session's summary; on
	// start, sessions of this node still "recording" are interrupted.
	Node string
	// DVRWindow is how far back the DVR history of a live stream reaches;
	// 0 keeps no DVR history.
	DVRWindow time.Duration
	// ChunkEntries is the number of segment entries per index chunk.
	// It defaults to 256.
	ChunkEntries int
	// SummaryEvery bounds how stale a session's summary (duration, bytes)
	// may get while it records. It defaults to 5s.
	SummaryEvery time.Duration
	// IndexEvery bounds how stale the index chunk being filled may get
	// while a session records: it is written at most this often (and when
	// full, and at the end), not once per segment. Segments stored after
	// the last index write of a session cut short by a crash are indexed
	// again from their own boxes by Recover. It defaults to 2s.
	IndexEvery time.Duration
	// Notify, when set, is called with each recording event.
	Notify func(Event)
	// Encrypted, when set, reports whether a stream's media is served
	// with AES-128: its sessions get a key of their own, stored apart from
	// the media (KeysKey), to be played back with (SessionKey).
	Encrypted func(stream string) bool
	// Log is the recorder's logger.
	Log *slog.Logger
	// Registerer receives the recorder's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Event is a recording lifecycle event (docs/events.md).
type Event struct {
	// Kind is "recording.started", "recording.ready", "recording.failed"
	// or "recording.deleted".
	Kind    string
	Summary Summary
	// Error says why, for recording.failed.
	Error string
}

// Event kinds.
const (
	EventStarted = "recording.started"
	EventReady   = "recording.ready"
	EventFailed  = "recording.failed"
	EventDeleted = "recording.deleted"
)

// Recorder records sessions and answers DVR and VOD reads.
type Recorder struct {
	cfg Config
	log *slog.Logger
	m   *recorderMetrics

	wg sync.WaitGroup

	mu      sync.Mutex
	history map[string]*history // stream name -> DVR history of its live stream
	active  map[string]bool     // "<stream>/<session>" being recorded here
	vod     *sessionCache
}

// New returns a recorder.
func New(cfg Config) (*Recorder, error) {
	if cfg.Writer == nil || cfg.Backend == nil {
		return nil, errors.New("recording: a writer and a backend are required")
	}
	if cfg.ChunkEntries <= 0 {
		cfg.ChunkEntries = 256
	}
	if cfg.SummaryEvery <= 0 {
		cfg.SummaryEvery = 5 * time.Second
	}
	if cfg.IndexEvery <= 0 {
		cfg.IndexEvery = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Node == "" {
		cfg.Node = "local"
	}
	return &Recorder{
		cfg:     cfg,
		log:     cfg.Log,
		m:       newRecorderMetrics(cfg.Registerer),
		history: make(map[string]*history),
		active:  make(map[string]bool),
		vod:     newSessionCache(64),
	}, nil
}

// Records reports whether stream is to be recorded.
func (r *Recorder) Records(stream string) bool { return r.cfg.Rules.Match(stream) }

// Backend returns the backend recordings are read from.
func (r *Recorder) Backend() objstore.Backend { return r.cfg.Backend }

// Follow records one publish of st, whose epoch in the store is epoch, in
// its own goroutine, until every rendition of the publish has ended (or
// ctx ends: the session is then left interrupted). Call it when the
// publish begins in the store, before its first segment.
func (r *Recorder) Follow(ctx context.Context, st *store.Stream, epoch int) {
	started := time.Now()
	s := &session{
		rec: r,
		st:  st,
		sum: Summary{
			Stream:  st.Name(),
			Session: NewSessionID(started),
			Node:    r.cfg.Node,
			State:   StateRecording,
			Started: started,
			Epoch:   epoch,
		},
		log: r.log.With("stream", st.Name(), "recording", NewSessionID(started)),
	}
	if r.cfg.Encrypted != nil {
		s.sum.Encrypted = r.cfg.Encrypted(st.Name())
	}
	s.hist = r.historyFor(st)
	key := st.Name() + "/" + s.sum.Session
	r.mu.Lock()
	r.active[key] = true
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer func() {
			r.mu.Lock()
			delete(r.active, key)
			r.mu.Unlock()
		}()
		s.run(ctx)
	}()
}

// Wait blocks until every session follower has returned.
func (r *Recorder) Wait() { r.wg.Wait() }

// open reads a recorded object: from the writer while it waits there to be
// uploaded, else from the backend.
func (r *Recorder) open(ctx context.Context, key string) (io.ReadCloser, error) {
	if rc, ok := r.cfg.Writer.Open(key); ok {
		return rc, nil
	}
	rc, _, err := r.cfg.Backend.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("recording: %w", err)
	}
	return rc, nil
}

// readJSON reads and decodes the JSON object at key into v.
func (r *Recorder) readJSON(ctx context.Context, key string, v any) error {
	rc, err := r.open(ctx, key)
	if err != nil {
		return err
	}
	defer func() { _ = rc.Close() }()
	if err := json.NewDecoder(io.LimitReader(rc, 64<<20)).Decode(v); err != nil {
		return fmt.Errorf("recording: %s: %w", key, err)
	}
	return nil
}

// session is one publish being recorded.
type session struct {
	rec  *Recorder
	st   *store.Stream
	hist *history
	log  *slog.Logger

	mu          sync.Mutex
	sum         Summary
	chunk       []Entry
	lastSummary time.Time
	lastChunk   time.Time                // when the chunk being filled was last written
	durations   map[string]time.Duration // recorded per rendition
	failed      error                    // the first error writing to the spool
}

// run follows the publish's renditions until they have all ended.
func (s *session) run(ctx context.Context) {
	s.rec.m.active.Inc()
	defer s.rec.m.active.Dec()
	if s.sum.Encrypted {
		if err := s.writeKey(); err != nil {
			s.rec.m.writeErrors.Inc()
			s.failed = err
			s.log.Error("recording: cannot store the session key", "error", err)
		}
	}
	s.mu.Lock()
	s.writeSummaryLocked()
	sum := s.sum
	s.mu.Unlock()
	s.rec.notify(Event{Kind: EventStarted, Summary: sum})
	s.log.Info("recording: started")

	var wg sync.WaitGroup
	following := make(map[*store.Rendition]bool)
	ended := make(chan struct{})
	tick := time.NewTicker(sessionPoll)
	defer tick.Stop()
	for {
		for _, rend := range s.st.Renditions() {
			if following[rend] {
				continue
			}
			following[rend] = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.follow(ctx, rend, ended)
			}()
		}
		// New renditions (the ABR ladder's) appear while the publish is
		// live; once it has ended (or moved to a later epoch) none will.
		if !s.st.Live() || s.st.Epoch() != s.sum.Epoch {
			break
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
			continue
		}
		break
	}
	close(ended)
	wg.Wait()
	s.finish(ctx)
}

// sessionPoll is how often a session looks for new renditions and for the
// end of its publish (the stream no longer live in its epoch): a new
// rendition's first segments stay in the store for far longer, and a
// session's end waits at most that long for it.
const sessionPoll = time.Second

// segmentSlack is how long after its expected end a follower looks for
// an open segment to be complete: the segmenter finishes a segment when
// the next one's first frame arrives, a little after the segment's
// duration has elapsed since its first frame.
const segmentSlack = 150 * time.Millisecond

// segmentDue returns when the open segment of snap (of epoch) should be
// complete: its first frame's arrival (its PROGRAM-DATE-TIME) plus the
// time the segment before it took to arrive (the segment target for the
// first; at most 3 targets: a publisher faster than real time, or a
// burst, makes it shorter than the media's duration) and segmentSlack;
// zero when there is no such segment or nothing is known of its duration.
func segmentDue(snap *store.Snapshot, epoch int) time.Time {
	o := snap.Open
	target := snap.Info.SegmentTarget
	if o == nil || o.Epoch != epoch || o.ProgramDateTime.IsZero() || target <= 0 {
		return time.Time{}
	}
	d := target
	if n := len(snap.Segments); n > 0 {
		if last := snap.Segments[n-1]; last.Epoch == epoch && last.MSN+1 == o.MSN && !last.ProgramDateTime.IsZero() {
			d = min(max(o.ProgramDateTime.Sub(last.ProgramDateTime), 0), 3*target)
		}
	}
	return o.ProgramDateTime.Add(d + segmentSlack)
}

// follow records one rendition's segments of the session's epoch, until
// the rendition has ended (or a later publish continues it) and its
// segments are recorded. ended is closed once the publish is no longer
// live in the session's epoch.
//
// It wakes about once a segment, not on each of the rendition's changes
// (every part): while a segment is open it sleeps until the segment
// should be complete (segmentDue), and waits for the rendition's changes
// only from then on, or when that time is unknown or past. Once ended
// is closed it waits for the changes only: the rendition's end is one.
func (s *session) follow(ctx context.Context, rend *store.Rendition, ended <-chan struct{}) {
	epoch := s.sum.Epoch
	snap := rend.Snapshot()
	next, started := snap.NextMSN(), false
	for _, seg := range snap.Segments {
		if seg.Epoch == epoch {
			next, started = seg.MSN, true
			break
		}
	}
	if !started && snap.Open != nil && snap.Open.Epoch == epoch {
		next, started = snap.Open.MSN, true
	}
	inits := make(map[string]bool)
	live := true // ended not closed yet
	sleep := time.NewTimer(time.Hour)
	sleep.Stop()
	defer sleep.Stop()
	for {
		// The channel first: a change after it is taken closes it.
		changed := rend.Changed()
		snap := rend.Snapshot()
		for _, seg := range snap.Segments {
			if seg.MSN < next || seg.Epoch < epoch {
				continue
			}
			if seg.Epoch > epoch {
				return // a later publish continues the rendition
			}
			if seg.MSN > next && started {
				s.missed(rend, snap, next, seg.MSN)
			}
			started = true
			s.record(rend, snap, seg, inits)
			next = seg.MSN + 1
		}
		if o := snap.Open; o != nil {
			if o.Epoch > epoch {
				return
			}
			if o.Epoch == epoch {
				started = true
			}
		}
		// A rendition carried over from an earlier publish is still
		// marked ended until this publish's segmenter reopens it: that
		// end is not this session's, as long as the stream is live in
		// this session's epoch.
		if snap.Ended && snap.Open == nil && (started || !s.st.Live() || s.st.Epoch() != epoch) {
			if last := len(snap.Segments); last == 0 || snap.Segments[last-1].MSN < next {
				return
			}
		}
		var wake <-chan time.Time
		if live {
			if d := time.Until(segmentDue(snap, epoch)); d > 0 {
				sleep.Reset(d)
				wake, changed = sleep.C, nil
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-wake:
		case <-ended:
			// The stream's liveness is not a change of the rendition:
			// look again, and from now on wait for its changes.
			live, ended = false, nil
			sleep.Stop()
		}
	}
}

// record writes one complete segment (and its init section the first time
// it is needed) and its index entry.
func (s *session) record(rend *store.Rendition, snap *store.Snapshot, seg *store.Segment, inits map[string]bool) {
	name := rend.Name()
	kind := contentType(snap.Info.Kind)
	if !seg.Gap && seg.InitName != "" && !inits[seg.InitName] {
		if in, ok := snap.Init(seg.InitName); ok {
			s.add(MediaKey(s.sum.Stream, s.sum.Session, name, in.Name), in.Data, kind)
			inits[seg.InitName] = true
		}
	}
	if !seg.Gap {
		s.add(MediaKey(s.sum.Stream, s.sum.Session, name, SegmentObject(seg.MSN)), seg.Data, kind)
		s.rec.m.bytes.Add(float64(len(seg.Data)))
	}
	s.rec.m.segments.Inc()
	e := Entry{
		Rendition: name,
		MSN:       seg.MSN,
		Time:      seg.BaseTime,
		Ticks:     seg.DurationTicks,
		PDT:       seg.ProgramDateTime,
		Init:      seg.InitName,
		Size:      len(seg.Data),
		Disc:      seg.Discontinuity,
		Gap:       seg.Gap,
	}
	s.hist.add(name, s.sum.Session, seg, s.rec.cfg.DVRWindow)
	s.append(snap.Info, e, seg.Duration)
}

// missed records the segments from..to-1 the follower could not get.
func (s *session) missed(rend *store.Rendition, snap *store.Snapshot, from, to uint64) {
	s.log.Warn("recording: fell behind the live window, segments lost", "rendition", rend.Name(), "from", from, "to", to-1)
	for msn := from; msn < to; msn++ {
		s.rec.m.missed.Inc()
		s.append(snap.Info, Entry{Rendition: rend.Name(), MSN: msn, Gap: true, Missed: true}, 0)
	}
}

// add hands one object to the writer; a failure (the spool's disk) is
// logged once per session and counted.
func (s *session) add(key string, data []byte, ctype string) {
	if err := s.rec.cfg.Writer.Add(key, data, ctype); err != nil {
		s.rec.m.writeErrors.Inc()
		s.mu.Lock()
		first := s.failed == nil
		if first {
			s.failed = err
		}
		s.mu.Unlock()
		if first {
			s.log.Error("recording: cannot spool", "key", key, "error", err)
		}
	}
}

// append adds an entry to the index and rewrites the current chunk (and,
// when due, the summary).
func (s *session) append(info store.RenditionInfo, e Entry, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noteRenditionLocked(info)
	s.chunk = append(s.chunk, e)
	s.sum.Segments++
	if e.Gap {
		s.sum.Gaps++
	}
	s.sum.Bytes += int64(e.Size)
	s.addDurationLocked(e.Rendition, d)
	if len(s.chunk) >= s.rec.cfg.ChunkEntries {
		s.writeChunkLocked()
		s.sum.Chunks++
		s.chunk = nil
		s.writeSummaryLocked()
		return
	}
	if time.Since(s.lastChunk) >= s.rec.cfg.IndexEvery {
		s.writeChunkLocked()
	}
	if time.Since(s.lastSummary) >= s.rec.cfg.SummaryEvery {
		s.writeSummaryLocked()
	}
}

// addDurationLocked adds d to the rendition's recorded duration; the
// summary's Duration is the longest rendition's.
func (s *session) addDurationLocked(rendition string, d time.Duration) {
	if s.durations == nil {
		s.durations = make(map[string]time.Duration)
	}
	s.durations[rendition] += d
	s.sum.Duration = Seconds(max(s.sum.Duration.D(), s.durations[rendition]))
}

// noteRenditionLocked adds or updates the rendition's description.
func (s *session) noteRenditionLocked(info store.RenditionInfo) {
	m := metaOf(info)
	for i := range s.sum.Renditions {
		if s.sum.Renditions[i].Name == m.Name {
			if s.sum.Renditions[i] != m {
				s.sum.Renditions[i] = m
				s.lastSummary = time.Time{}
			}
			return
		}
	}
	s.sum.Renditions = append(s.sum.Renditions, m)
	s.lastSummary = time.Time{}
}

func (s *session) writeChunkLocked() {
	s.lastChunk = time.Now()
	b, err := json.Marshal(Chunk{Entries: s.chunk})
	if err != nil {
		panic(err) // plain data
	}
	s.addLocked(ChunkKey(s.sum.Stream, s.sum.Session, s.sum.Chunks), b)
}

func (s *session) writeSummaryLocked() {
	s.sum.Updated = time.Now()
	s.lastSummary = s.sum.Updated
	b, err := marshalSummary(s.sum)
	if err != nil {
		panic(err) // plain data
	}
	s.addLocked(SummaryKey(s.sum.Stream, s.sum.Session), b)
}

// addLocked is add for index objects, with s.mu held.
func (s *session) addLocked(key string, data []byte) {
	if err := s.rec.cfg.Writer.Add(key, data, "application/json"); err != nil {
		s.rec.m.writeErrors.Inc()
		if s.failed == nil {
			s.failed = err
			s.log.Error("recording: cannot spool", "key", key, "error", err)
		}
	}
}

// finish closes the session: its last chunk and summary, then, once
// storage has everything, the recording.ready event.
func (s *session) finish(ctx context.Context) {
	s.mu.Lock()
	if ctx.Err() != nil {
		s.sum.State = StateInterrupted
	} else {
		s.sum.State = StateComplete
	}
	s.sum.Ended = time.Now()
	if len(s.chunk) > 0 {
		s.writeChunkLocked()
		s.sum.Chunks++
		s.chunk = nil
	}
	s.writeSummaryLocked()
	sum, failed := s.sum, s.failed
	s.mu.Unlock()
	if failed != nil {
		s.rec.notify(Event{Kind: EventFailed, Summary: sum, Error: failed.Error()})
		s.log.Error("recording: ended incomplete", "error", failed)
		return
	}
	if ctx.Err() != nil {
		s.log.Warn("recording: interrupted by shutdown; the spool keeps what was recorded")
		return
	}
	s.rec.finalise(ctx, sum, s.log)
}

// finaliseTimeout bounds the wait for a session's objects to be stored.
const finaliseTimeout = 30 * time.Minute

// finalise waits until the session's objects are stored, announces it
// ready and marks its summary so. When ctx ends first (a shutdown) the
// session stays unannounced, and Recover announces it after a restart.
func (r *Recorder) finalise(ctx context.Context, sum Summary, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, finaliseTimeout)
	defer cancel()
	for _, prefix := range []string{MediaPrefix(sum.Stream, sum.Session), SummaryKey(sum.Stream, sum.Session), "index/" + sum.Stream + "/" + sum.Session + "/"} {
		if err := r.cfg.Writer.Flush(ctx, prefix); err != nil {
			if errors.Is(err, context.Canceled) {
				log.Info("recording: stopped before it was stored; it is announced after the next start")
				return
			}
			r.notify(Event{Kind: EventFailed, Summary: sum, Error: "not stored in time: " + err.Error()})
			log.Error("recording: not stored in time", "error", err)
			return
		}
	}
	sum.Ready = true
	if b, err := marshalSummary(sum); err == nil {
		if err := r.cfg.Writer.Add(SummaryKey(sum.Stream, sum.Session), b, "application/json"); err != nil {
			log.Error("recording: cannot spool", "key", SummaryKey(sum.Stream, sum.Session), "error", err)
		}
	}
	r.vod.drop(sum.Stream + "/" + sum.Session)
	log.Info("recording: ready", "state", sum.State, "segments", sum.Segments, "gaps", sum.Gaps, "bytes", sum.Bytes, "duration", sum.Duration.D().Round(time.Millisecond))
	r.notify(Event{Kind: EventReady, Summary: sum})
}

func (r *Recorder) notify(e Event) {
	if r.cfg.Notify != nil {
		r.cfg.Notify(e)
	}
}

// SegmentObject is the object name of segment msn ("seg42.m4s"), as the
// live origin names it.
func SegmentObject(msn uint64) string { return "seg" + strconv.FormatUint(msn, 10) + ".m4s" }

func contentType(k media.Kind) string {
	if k == media.KindAudio {
		return "audio/mp4"
	}
	return "video/mp4"
}

// metaOf describes a rendition for the summary.
func metaOf(info store.RenditionInfo) RenditionMeta {
	m := RenditionMeta{
		Name:          info.Name,
		Kind:          info.Kind.String(),
		Timescale:     info.Timescale,
		Width:         info.Width,
		Height:        info.Height,
		FrameRate:     info.FrameRate,
		SampleRate:    info.SampleRate,
		Channels:      info.Channels,
		SegmentTarget: Seconds(info.SegmentTarget),
		PartTarget:    Seconds(info.PartTarget),
	}
	if info.Codec != nil {
		m.Codec = info.Codec.RFC6381()
		if info.Kind == 0 {
			m.Kind = info.Codec.Kind().String()
		}
	}
	return m
}

// marshalSummary encodes a summary.
func marshalSummary(sum Summary) ([]byte, error) {
	b, err := json.Marshal(sum)
	if err != nil {
		return nil, fmt.Errorf("recording: summary: %w", err)
	}
	return b, nil
}

// Payload is the JSON body of a recording event, on NATS and the events
// webhook alike (docs/events.md).
type Payload struct {
	Stream     string    `json:"stream"`
	Session    string    `json:"session"`
	Node       string    `json:"node"`
	State      string    `json:"state"`
	Started    time.Time `json:"started"`
	Ended      time.Time `json:"ended,omitzero"`
	Duration   Seconds   `json:"duration"`
	Segments   int       `json:"segments"`
	Gaps       int       `json:"gaps"`
	Bytes      int64     `json:"bytes"`
	Renditions []string  `json:"renditions,omitempty"`
	// Ready is true once every object of the session is stored.
	Ready bool `json:"ready"`
	// HLS, DASH and Thumbnails are the origin paths of the VOD
	// (recording.ready); thumbnails.vtt exists once the sprite job has run.
	HLS        string `json:"hls,omitempty"`
	DASH       string `json:"dash,omitempty"`
	Thumbnails string `json:"thumbnails,omitempty"`
	// Error says why, for recording.failed.
	Error string `json:"error,omitempty"`
}

// VODPath is the origin path of a recorded session's object
// ("/vod/live/key/<session>/index.m3u8").
func VODPath(stream, session, object string) string {
	return "/vod/" + stream + "/" + session + "/" + object
}

// Payload returns the event's JSON body.
func (e Event) Payload() Payload {
	s := e.Summary
	p := Payload{
		Stream: s.Stream, Session: s.Session, Node: s.Node, State: s.State,
		Started: s.Started, Ended: s.Ended, Duration: s.Duration,
		Segments: s.Segments, Gaps: s.Gaps, Bytes: s.Bytes, Ready: s.Ready || e.Kind == EventReady, Error: e.Error,
	}
	for _, m := range s.Renditions {
		p.Renditions = append(p.Renditions, m.Name)
	}
	if e.Kind == EventReady {
		p.HLS = VODPath(s.Stream, s.Session, "index.m3u8")
		p.DASH = VODPath(s.Stream, s.Session, "manifest.mpd")
		p.Thumbnails = VODPath(s.Stream, s.Session, "thumbnails.vtt")
	}
	return p
}
