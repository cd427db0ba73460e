package origin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/headwater-live/headwater/dash"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/origin/relay"
	"github.com/headwater-live/headwater/store"
)

var hvDASH = []string{"application/dash+xml"}

// utcTimingURL is the MPD's UTCTiming value: relative to the MPD's URL, i.e.
// /<stream>/time (see the package doc).
const utcTimingURL = "time"

// timeFormat is the body of /time: ISO 8601 UTC with milliseconds, as
// urn:mpeg:dash:utc:http-iso:2014 (and http-xsdate) expect.
const timeFormat = "2006-01-02T15:04:05.000Z"

// MPD cache key and content hash flags.
const (
	keyMPD       = 0x40
	flagMPDLL    = 0x01 // low latency
	flagMPDFinal = 0x02 // the stream has ended and its MPD is final
)

// serveTime answers the origin's clock, never cached.
func (h *handler) serveTime(w *respWriter, r *http.Request) object {
	var b [len(timeFormat) + 8]byte
	body := time.Now().UTC().AppendFormat(b[:0], timeFormat)
	hdr := w.Header()
	hdr["Content-Type"] = hvTextPlain
	hdr["Cache-Control"] = hvNoStore
	hdr[hvContentLength] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return objectTime
}

// serveMPD serves /<stream>/manifest.mpd. The MPD is rendered once per
// content (snapshot versions and finality) and cached with its gzip
// encoding, like the playlists; 404 while dash.MPD has nothing to list,
// and for streams whose HLS media is encrypted.
func (h *handler) serveMPD(w *respWriter, r *http.Request, t *target) object {
	const o = objectMPD
	if h.enc.covers(t.prefix) {
		// The MPD would list the CMAF objects in the clear.
		h.fail(w, http.StatusNotFound, "DASH is not available for this stream: its media is HLS AES-128 encrypted; play its HLS playlist (index.m3u8)\n")
		return o
	}
	st, ok := h.st.Stream(t.prefix)
	if u, remote := h.owner(t.prefix, st, ok); remote {
		return h.relayed(w, r, u, t.prefix, relay.KindMPD, o)
	}
	if !ok {
		// No owner now: a stream relayed recently has just lost its own.
		if h.relay != nil {
			if o, held := h.held(w, r, t.prefix, relay.KindMPD, o); held {
				return o
			}
		}
		return h.notFound(w, o)
	}
	tagStream(r, st)
	if outOfScope(r, st.Name()) {
		return h.forbidden(w, o)
	}
	all := st.Renditions()
	snaps := make([]*store.Snapshot, 0, len(all))
	var updated, endedAt time.Time
	listed, ended := false, true
	for _, x := range all {
		s := x.Snapshot()
		snaps = append(snaps, s)
		if s.Updated.After(updated) {
			updated = s.Updated
		}
		// What dash.MPD considers: renditions with an init, of a known kind.
		if len(s.Inits) == 0 || s.Info.Kind != media.KindVideo && s.Info.Kind != media.KindAudio {
			continue
		}
		listed = true
		if !s.Ended || s.Open != nil {
			ended = false
		}
		if s.Updated.After(endedAt) {
			endedAt = s.Updated
		}
	}
	if !listed {
		return h.notFound(w, o)
	}
	// With DVR, every rendition lists its whole DVR window (older
	// segments are served from the recording) and timeShiftBufferDepth
	// follows it.
	window, dvrLen := h.cfg.Window, 0
	if h.archive != nil {
		for i, x := range all {
			if v := h.archive.DVR(st, x.Name(), snaps[i]); len(v.Segments) > len(snaps[i].Segments) {
				snaps[i] = v
				dvrLen += len(v.Segments)
				window = max(window, len(v.Segments))
			}
		}
	}
	now := time.Now()
	// The MPD turns final EndGrace after the end (as dash.MPD decides it,
	// with the same clock reading as the PublishTime it is rendered with),
	// without any snapshot changing: part of the content.
	grace := h.cfg.DASHEndGrace
	if grace == 0 {
		grace = dash.DefaultEndGrace
	}
	final := ended && (grace < 0 || !now.Before(endedAt.Add(grace)))
	var flags uint8
	if h.cfg.DASHLowLatency {
		flags |= flagMPDLL
	}
	if final {
		flags |= flagMPDFinal
	}
	hash := contentHash(st, keyMPD|flags, snaps, -1) + uint64(dvrLen)
	e := h.cache.get(cacheKey{stream: st, flags: keyMPD}, hash)
	err := e.renderErr(func() ([]byte, error) {
		rs := make([]dash.Rendition, len(all))
		for i, x := range all {
			rs[i] = dash.Rendition{Name: x.Name(), Snap: snaps[i]}
		}
		return dash.MPD(rs, dash.Options{
			AvailabilityStart: st.Started(),
			PublishTime:       now,
			Window:            window,
			LowLatency:        h.cfg.DASHLowLatency,
			TargetLatency:     h.cfg.DASHTargetLatency,
			UTCTimingURL:      utcTimingURL,
			History:           h.histories.get(h.st, st, now),
			EndGrace:          grace,
		})
	})
	if err != nil {
		if errors.Is(err, dash.ErrNoMedia) {
			return h.notFound(w, o)
		}
		h.log.LogAttrs(r.Context(), slog.LevelError, "origin: MPD rendering failed",
			slog.String("stream", st.Name()), slog.String("err", err.Error()))
		h.fail(w, http.StatusInternalServerError, "MPD rendering failed\n")
		return o
	}
	cc := h.ccPlaylist
	if final {
		cc = h.ccEnded
	}
	h.servePlaylist(w, r, e, hvDASH, cc, updated)
	h.observeViewer(w, r, st)
	return o
}

// historySweepEvery is how often dashHistories forgets the streams the
// store has forgotten.
const historySweepEvery = 10 * time.Second

// dashHistories keeps one dash.History per stream, as the dash package
// requires for stable Period timing. They are keyed by stream name and
// start time (not by *store.Stream, so that a forgotten stream's
// renditions are not kept alive) and dropped, at the next sweep, once the
// store no longer holds that stream.
type dashHistories struct {
	mu        sync.Mutex
	m         map[string]*streamHistory
	lastSweep time.Time
}

type streamHistory struct {
	started time.Time
	h       *dash.History
}

// get returns the History of st, creating it on first use.
func (d *dashHistories) get(s *store.Store, st *store.Stream, now time.Time) *dash.History {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = make(map[string]*streamHistory)
	}
	if now.Sub(d.lastSweep) >= historySweepEvery {
		d.lastSweep = now
		d.sweepLocked(s)
	}
	e := d.m[st.Name()]
	if e == nil || !e.started.Equal(st.Started()) {
		// A new stream, or a new one under the same name.
		e = &streamHistory{started: st.Started(), h: new(dash.History)}
		d.m[st.Name()] = e
	}
	return e.h
}

// sweepLocked forgets the Histories of streams the store no longer holds.
func (d *dashHistories) sweepLocked(s *store.Store) {
	for name, e := range d.m {
		if cur, ok := s.Stream(name); !ok || !cur.Started().Equal(e.started) {
			delete(d.m, name)
		}
	}
}

// len is the number of Histories kept (for tests).
func (d *dashHistories) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.m)
}

// segmentBlockable reports whether a segment that is not there, or has no
// part yet, is worth waiting for: it is the open segment or the next one to
// be opened, and the rendition is live.
func segmentBlockable(s *store.Snapshot, msn uint64) bool {
	if s.Ended {
		return false
	}
	return s.Open != nil && s.Open.MSN == msn || msn == s.NextMSN()
}

// streamSegment serves segment seg, which is being written and has at least
// one part, with chunked transfer: the parts so far, then each new part as
// it is appended (flushed at once), until the segment is complete. A
// segment that stops growing for BlockTimeout, or a shutdown, aborts the
// response (see the package doc) rather than end it: the client or CDN must
// see a truncated object as an error.
func (h *handler) streamSegment(w *respWriter, r *http.Request, st *store.Stream, rend *store.Rendition, seg *store.Segment, ctype []string) {
	hdr := w.Header()
	hdr["Content-Type"] = ctype
	hdr["Cache-Control"] = h.ccSegment
	var buf [96]byte
	hdr["Etag"] = []string{string(appendMediaTag(buf[:0], st, seg, -1))}
	hdr["Accept-Ranges"] = hvBytes
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	sent := 0
	for {
		for ; sent < len(seg.Parts); sent++ {
			if _, err := w.Write(seg.Parts[sent].Data); err != nil {
				w.abort = true // the client is gone
				return
			}
		}
		if seg.Complete {
			return
		}
		if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			w.abort = true
			return
		}
		next, err := h.nextChunk(r.Context(), rend, seg.MSN, sent)
		if err != nil {
			if r.Context().Err() == nil {
				h.log.LogAttrs(r.Context(), slog.LevelWarn, "origin: segment being served stopped growing; response aborted",
					slog.String("stream", st.Name()), slog.String("rendition", rend.Name()),
					slog.Uint64("msn", seg.MSN), slog.Int("parts", sent), slog.Duration("waited", h.cfg.BlockTimeout))
			}
			w.abort = true
			return
		}
		seg = next
	}
}

var errSegmentGone = errors.New("origin: segment no longer held")

// nextChunk waits, up to BlockTimeout and while ctx lasts, until segment msn
// has more than sent parts or is complete, and returns it.
func (h *handler) nextChunk(ctx context.Context, rend *store.Rendition, msn uint64, sent int) (*store.Segment, error) {
	var timeout <-chan time.Time
	for {
		// The channel first: a change after it is taken closes it, so
		// the snapshot read next is never older than the wait.
		ch := rend.Changed()
		seg, ok := rend.Snapshot().Segment(msn)
		if !ok {
			return nil, errSegmentGone
		}
		if seg.Complete || len(seg.Parts) > sent {
			return seg, nil
		}
		if timeout == nil {
			t := time.NewTimer(h.cfg.BlockTimeout)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ch:
		case <-timeout:
			return nil, context.DeadlineExceeded
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
