package recording

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/objstore"
	"github.com/headwater-live/headwater/store"
)

// ErrNoSession is returned (wrapped) for a session that is not recorded.
var ErrNoSession = errors.New("recording: no such session")

// ErrRecordingNow is returned (wrapped) by Delete for a session being recorded.
var ErrRecordingNow = errors.New("recording: session is being recorded")

// Session is a recorded session loaded for playback: its summary and one
// ended store.Snapshot per rendition, listing every recorded segment
// (without their bytes), so that the live playlist and MPD renderers
// (packages playlist and dash) render its VOD playlists.
type Session struct {
	Summary    Summary
	Renditions []Rendition
}

// Rendition is one recorded rendition of a Session.
type Rendition struct {
	Name string
	Snap *store.Snapshot
}

// Session loads a recorded session. Sessions that no longer record are
// cached (they never change); a session still recording is read afresh.
func (r *Recorder) Session(ctx context.Context, stream, id string) (*Session, error) {
	key := stream + "/" + id
	if s, ok := r.vod.get(key); ok {
		return s, nil
	}
	var sum Summary
	if err := r.readJSON(ctx, SummaryKey(stream, id), &sum); err != nil {
		if errors.Is(err, objstore.ErrNotFound) {
			return nil, fmt.Errorf("%w: %s %s", ErrNoSession, stream, id)
		}
		return nil, err
	}
	entries, _, err := r.readEntries(ctx, stream, id, sum.Chunks)
	if err != nil {
		return nil, err
	}
	s := buildSession(sum, entries)
	if sum.State != StateRecording {
		r.vod.put(key, s)
	}
	return s, nil
}

// readEntries reads the session's entry chunks: at least the first min
// (the summary's count), then any later ones found (a summary written
// before its last chunks, as a killed recorder leaves it).
func (r *Recorder) readEntries(ctx context.Context, stream, id string, min int) ([]Entry, int, error) {
	var entries []Entry
	n := 0
	for ; ; n++ {
		var c Chunk
		err := r.readJSON(ctx, ChunkKey(stream, id, n), &c)
		if errors.Is(err, objstore.ErrNotFound) && n >= min {
			break
		}
		if err != nil {
			return nil, n, err
		}
		entries = append(entries, c.Entries...)
	}
	return entries, n, nil
}

// buildSession makes the per-rendition snapshots of a session.
func buildSession(sum Summary, entries []Entry) *Session {
	by := make(map[string][]Entry)
	for _, e := range entries {
		by[e.Rendition] = append(by[e.Rendition], e)
	}
	s := &Session{Summary: sum}
	for _, m := range sum.Renditions {
		list := by[m.Name]
		if len(list) == 0 {
			continue
		}
		sort.SliceStable(list, func(i, j int) bool { return list[i].MSN < list[j].MSN })
		s.Renditions = append(s.Renditions, Rendition{Name: m.Name, Snap: snapshotOf(sum, m, list)})
	}
	return s
}

// snapshotOf builds an ended snapshot of one rendition from its entries.
func snapshotOf(sum Summary, m RenditionMeta, list []Entry) *store.Snapshot {
	info := m.info()
	snap := &store.Snapshot{Info: info, Ended: true, Version: 1, Updated: sum.Updated}
	fillMissed(list, m.Timescale)
	var seq uint64
	initSeen := make(map[string]bool)
	for i, e := range list {
		if i > 0 && list[i-1].MSN == e.MSN {
			continue // written twice (a chunk rewritten after a restart)
		}
		disc := e.Disc && i > 0
		if disc {
			seq++
		}
		d := store.TicksToDuration(e.Ticks, m.Timescale)
		seg := &store.Segment{
			MSN:                   e.MSN,
			Epoch:                 sum.Epoch,
			DiscontinuitySequence: seq,
			Discontinuity:         disc,
			Gap:                   e.Gap,
			InitName:              e.Init,
			ProgramDateTime:       e.PDT,
			BaseTime:              e.Time,
			DurationTicks:         e.Ticks,
			Duration:              d,
			Complete:              true,
			Size:                  e.Size,
		}
		snap.Segments = append(snap.Segments, seg)
		snap.MaxSegmentDuration = max(snap.MaxSegmentDuration, d)
		if e.Init != "" && !initSeen[e.Init] {
			initSeen[e.Init] = true
			snap.Inits = append(snap.Inits, &store.Init{Name: e.Init, Info: info})
		}
	}
	if n := len(snap.Segments); n > 0 {
		snap.Next = snap.Segments[n-1].MSN + 1
	}
	return snap
}

// fillMissed gives the gaps the recorder missed (which it could not
// measure) the time between their neighbours, and their init.
func fillMissed(list []Entry, timescale uint32) {
	for i := range list {
		e := &list[i]
		if !e.Missed {
			continue
		}
		if i > 0 {
			p := list[i-1]
			e.Time = p.Time + p.Ticks
			e.Init = p.Init
			e.PDT = p.PDT.Add(store.TicksToDuration(p.Ticks, timescale))
		}
		// The missed run ends at the next segment that was recorded.
		j := i + 1
		for j < len(list) && list[j].Missed {
			j++
		}
		if j < len(list) && list[j].Time > e.Time {
			e.Ticks = (list[j].Time - e.Time) / uint64(j-i)
		}
	}
}

// info rebuilds the rendition's store description from its meta.
func (m RenditionMeta) info() store.RenditionInfo {
	kind := media.KindVideo
	if m.Kind == media.KindAudio.String() {
		kind = media.KindAudio
	}
	return store.RenditionInfo{
		Name:          m.Name,
		Kind:          kind,
		Codec:         recordedCodec{kind: kind, rfc6381: m.Codec},
		Timescale:     m.Timescale,
		Width:         m.Width,
		Height:        m.Height,
		FrameRate:     m.FrameRate,
		SampleRate:    m.SampleRate,
		Channels:      m.Channels,
		SegmentTarget: m.SegmentTarget.D(),
		PartTarget:    m.PartTarget.D(),
	}
}

// recordedCodec is a codec known by its RFC 6381 string only, which is
// all playlists and MPDs need of it.
type recordedCodec struct {
	kind    media.Kind
	rfc6381 string
}

func (c recordedCodec) Kind() media.Kind { return c.kind }
func (c recordedCodec) Name() string {
	name, _, _ := strings.Cut(c.rfc6381, ".")
	return name
}
func (c recordedCodec) RFC6381() string { return c.rfc6381 }

// Clip returns the part of the session between from and to (offsets from
// its start; to <= 0 means its end), cut at segment boundaries: every
// segment that overlaps the range is kept, so a clip starts at the key
// frame at or before from. Segments are the unit because the clip serves
// the recorded segments byte for byte (a finer cut at part boundaries would
// need new segments starting at a part without a key frame, which players
// cannot start from). It returns false when no segment overlaps.
func (s *Session) Clip(from, to time.Duration) (*Session, bool) {
	c := &Session{Summary: s.Summary}
	for _, r := range s.Renditions {
		segs := r.Snap.Segments
		if len(segs) == 0 {
			continue
		}
		start := segs[0].BaseTime
		ts := r.Snap.Info.Timescale
		var kept []*store.Segment
		for _, seg := range segs {
			t0 := store.TicksToDuration(seg.BaseTime-start, ts)
			t1 := t0 + seg.Duration
			if t1 <= from || to > 0 && t0 >= to {
				continue
			}
			kept = append(kept, seg)
		}
		if len(kept) == 0 {
			continue
		}
		if kept[0].Discontinuity {
			first := *kept[0]
			first.Discontinuity = false
			kept[0] = &first
		}
		view := *r.Snap
		view.Segments = kept
		c.Renditions = append(c.Renditions, Rendition{Name: r.Name, Snap: &view})
	}
	return c, len(c.Renditions) > 0
}

// Offset converts a wall-clock time to an offset from the session's start
// (from the first segment's program date-time of its first rendition).
func (s *Session) Offset(t time.Time) time.Duration {
	for _, r := range s.Renditions {
		if len(r.Snap.Segments) > 0 {
			return t.Sub(r.Snap.Segments[0].ProgramDateTime)
		}
	}
	return t.Sub(s.Summary.Started)
}

// OpenMedia opens a recorded media object of a session ("video/seg3.m4s",
// "video/init.mp4", "thumbs/sprite-0.jpg").
func (r *Recorder) OpenMedia(ctx context.Context, stream, session, object string) (io.ReadCloser, error) {
	return r.open(ctx, MediaPrefix(stream, session)+object)
}

// Sessions lists the recorded sessions of stream, or of every stream when
// stream is "", oldest first per stream.
func (r *Recorder) Sessions(ctx context.Context, stream string) ([]Summary, error) {
	prefix := "index/"
	if stream != "" {
		prefix = IndexPrefix(stream)
	}
	var keys []string
	err := r.cfg.Backend.List(ctx, prefix, func(in objstore.Info) error {
		st, _, ok := parseSummaryKey(in.Key)
		if ok && (stream == "" || st == stream) {
			keys = append(keys, in.Key)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("recording: list %s: %w", prefix, err)
	}
	out := make([]Summary, 0, len(keys))
	for _, k := range keys {
		var sum Summary
		if err := r.readJSON(ctx, k, &sum); err != nil {
			if errors.Is(err, objstore.ErrNotFound) {
				continue // deleted meanwhile
			}
			return nil, err
		}
		out = append(out, sum)
	}
	return out, nil
}

// Delete removes a recorded session: its media, index and keys. reason
// labels the metric ("api", "retention_age", "retention_bytes").
func (r *Recorder) Delete(ctx context.Context, stream, id, reason string) (int64, error) {
	var sum Summary
	if err := r.readJSON(ctx, SummaryKey(stream, id), &sum); err != nil {
		if errors.Is(err, objstore.ErrNotFound) {
			return 0, fmt.Errorf("%w: %s %s", ErrNoSession, stream, id)
		}
		return 0, err
	}
	if sum.State == StateRecording && r.recordingNow(stream, id) {
		return 0, fmt.Errorf("%w: %s %s", ErrRecordingNow, stream, id)
	}
	var keys []string
	var bytes int64
	for _, prefix := range []string{MediaPrefix(stream, id), "index/" + stream + "/" + id + "/"} {
		err := r.cfg.Backend.List(ctx, prefix, func(in objstore.Info) error {
			keys = append(keys, in.Key)
			bytes += in.Size
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("recording: list %s: %w", prefix, err)
		}
	}
	// The summary goes last: a deletion cut short is found again.
	keys = append(keys, KeysKey(stream, id), SummaryKey(stream, id))
	for _, k := range keys {
		if err := r.cfg.Backend.Delete(ctx, k); err != nil {
			return bytes, fmt.Errorf("recording: delete %s: %w", k, err)
		}
	}
	r.vod.drop(stream + "/" + id)
	r.m.deleted.WithLabelValues(reason).Inc()
	r.m.deletedB.Add(float64(bytes))
	r.log.Info("recording: deleted", "stream", stream, "recording", id, "reason", reason, "objects", len(keys), "bytes", bytes)
	sum.State = "deleted"
	r.notify(Event{Kind: EventDeleted, Summary: sum})
	return bytes, nil
}

// KeysKey is the key of a session's AES-128 keys.
func KeysKey(stream, session string) string { return "keys/" + stream + "/" + session + ".json" }

// recordingNow reports whether this recorder is writing the session now.
func (r *Recorder) recordingNow(stream, id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active[stream+"/"+id]
}

// sessionCache keeps loaded sessions that no longer change.
type sessionCache struct {
	mu    sync.Mutex
	max   int
	order []string
	m     map[string]*Session
}

func newSessionCache(n int) *sessionCache {
	return &sessionCache{max: n, m: make(map[string]*Session)}
}

func (c *sessionCache) get(k string) (*Session, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.m[k]
	return s, ok
}

func (c *sessionCache) put(k string, s *Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		return
	}
	if len(c.order) >= c.max {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
	c.order = append(c.order, k)
	c.m[k] = s
}

func (c *sessionCache) drop(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
	for i, o := range c.order {
		if o == k {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
}
