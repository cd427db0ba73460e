package origin

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/fnv"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/headwater-live/headwater/origin/relay"
	"github.com/headwater-live/headwater/playlist"
	"github.com/headwater-live/headwater/store"
)

// playlistCacheEntries bounds the rendered-playlist cache (one entry per
// rendition and option set, plus one per stream for multivariants).
const playlistCacheEntries = 2048

// serveIndex resolves <prefix>/index.m3u8: the media playlist of rendition
// <last element> of stream <the rest> when that stream has it, else the
// multivariant playlist when prefix is a stream. A rendition comes first so
// that a stream named like another's rendition ("live/a/video") cannot
// take over its URL (media.Registry also refuses such names while live/a
// is live, and a reserved last element).
func (h *handler) serveIndex(w *respWriter, r *http.Request, t *target) object {
	var parent *store.Stream
	if t.renditionOK() {
		if st, ok := h.st.Stream(t.stream()); ok {
			parent = st
			if rend, ok := st.Rendition(t.rendition()); ok {
				if u, remote := h.owner(st.Name(), st, true); remote {
					return h.relayed(w, r, u, st.Name(), relay.KindPlaylist, objectMediaPlaylist)
				}
				tagStream(r, st)
				if outOfScope(r, st.Name()) {
					return h.forbidden(w, objectMediaPlaylist)
				}
				o := h.serveMediaPlaylist(w, r, st, rend)
				h.observeViewer(w, r, st)
				return o
			}
		}
	}
	if t.multivariantOK() {
		if st, ok := h.st.Stream(t.prefix); ok {
			if u, remote := h.owner(st.Name(), st, true); remote {
				return h.relayed(w, r, u, st.Name(), relay.KindPlaylist, objectMultivariant)
			}
			tagStream(r, st)
			if outOfScope(r, st.Name()) {
				return h.forbidden(w, objectMultivariant)
			}
			o := h.serveMultivariant(w, r, st)
			h.observeViewer(w, r, st)
			return o
		}
	}
	if h.relay != nil {
		if o, ok := h.relayIndex(w, r, t, parent); ok {
			return o
		}
	}
	if parent != nil {
		tagStream(r, parent)
		return h.notFound(w, objectMediaPlaylist)
	}
	return h.notFound(w, objectMultivariant)
}

// hlsQuery holds the LL-HLS delivery directives of a media playlist request.
type hlsQuery struct {
	msn    uint64
	hasMSN bool
	part   int // -1 when absent
	skip   bool
}

// parseHLSQuery parses _HLS_msn, _HLS_part and _HLS_skip. A malformed query,
// a repeated or malformed directive, or _HLS_part without _HLS_msn is an
// error (400). Other parameters, _HLS_* ones included, are ignored.
func parseHLSQuery(raw string) (hlsQuery, bool) {
	q := hlsQuery{part: -1}
	if raw == "" {
		return q, true
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, false
	}
	if v, ok := vals["_HLS_msn"]; ok {
		if len(v) != 1 {
			return q, false
		}
		n, err := strconv.ParseUint(v[0], 10, 64)
		if err != nil {
			return q, false
		}
		q.msn, q.hasMSN = n, true
	}
	if v, ok := vals["_HLS_part"]; ok {
		if len(v) != 1 || !q.hasMSN {
			return q, false
		}
		n, err := strconv.ParseUint(v[0], 10, 31)
		if err != nil {
			return q, false
		}
		q.part = int(n)
	}
	if v, ok := vals["_HLS_skip"]; ok && len(v) > 0 {
		// v2 also asks to skip date ranges, which the playlist package
		// does not distinguish.
		q.skip = v[0] == "YES" || v[0] == "v2"
	}
	return q, true
}

// serveMediaPlaylist serves a media playlist, blocking for _HLS_msn/_HLS_part.
func (h *handler) serveMediaPlaylist(w *respWriter, r *http.Request, st *store.Stream, rend *store.Rendition) object {
	const o = objectMediaPlaylist
	q, ok := parseHLSQuery(r.URL.RawQuery)
	if !ok {
		h.fail(w, http.StatusBadRequest, "bad _HLS_ query\n")
		return o
	}
	snap := rend.Snapshot()
	if q.hasMSN {
		// RFC 8216bis 6.2.5.2: an _HLS_msn more than two past the last
		// segment is refused at once.
		if q.msn > snap.NextMSN()+1 || q.part > maxPartAdvance(snap) {
			h.fail(w, http.StatusBadRequest, "_HLS_msn/_HLS_part too far ahead\n")
			return o
		}
		if !snap.Has(q.msn, q.part) && !snap.Ended {
			if snap, ok = h.wait(r, rend, q.msn, q.part); !ok {
				return h.timeout(w, o)
			}
		}
	}
	if snap, ok = h.firstSegment(r, rend, snap); !ok {
		return h.notFound(w, o) // nothing to list yet
	}
	lowLatency := snap.Info.PartTarget > 0

	all := st.Renditions()
	snaps := make([]*store.Snapshot, len(all))
	self := -1
	for i, x := range all {
		if x == rend {
			snaps[i], self = snap, i
		} else {
			snaps[i] = x.Snapshot()
		}
	}
	if self < 0 { // cannot happen: renditions are never removed
		return h.notFound(w, o)
	}
	opts := playlist.MediaOptions{Window: h.cfg.Window, Skip: q.skip, LowLatency: lowLatency}
	var flags uint8
	if opts.Skip {
		flags |= 1
	}
	if opts.LowLatency {
		flags |= 2
	}
	var keyNS string // the rendition's key namespace, when encrypted
	encrypted := h.enc.covers(st.Name())
	if encrypted {
		if keyNS, _, ok = h.enc.namespaces(st, rend.Name()); !ok {
			return h.notFound(w, o) // the stream was replaced meanwhile
		}
	}
	hash := contentHash(st, flags, snaps, self)
	e := h.cache.get(cacheKey{rend: rend, flags: flags}, hash)
	err := e.renderErr(func() ([]byte, error) {
		me := playlist.Rendition{Name: rend.Name(), Snap: snap}
		siblings := make([]playlist.Rendition, 0, len(all)-1)
		for i, x := range all {
			if i != self {
				siblings = append(siblings, playlist.Rendition{Name: x.Name(), Snap: snaps[i]})
			}
		}
		if encrypted {
			opts.Encryption = h.enc.playlistEncryption(st.Name(), keyNS)
		}
		return playlist.RenderMedia(me, siblings, opts)
	})
	if err != nil {
		// Only keys fail: one the provider no longer holds (a rendition
		// far behind its siblings) or an external provider's error.
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "origin: media playlist without its keys",
			slog.String("stream", st.Name()), slog.String("rendition", rend.Name()), slog.String("err", err.Error()))
		h.fail(w, http.StatusServiceUnavailable, "encryption key unavailable\n")
		return o
	}
	cc := h.ccPlaylist
	switch {
	case snap.Ended:
		cc = h.ccEnded
	case q.hasMSN:
		cc = h.ccBlocking
	}
	h.servePlaylist(w, r, e, hvM3U8, cc, snap.Updated)
	return o
}

// serveMultivariant serves a stream's multivariant playlist, listing the
// renditions that have an init segment (their codecs are known). Until every
// such rendition has media to list (bandwidth can then be measured), it is
// 404 with a short max-age so that players and CDNs retry.
func (h *handler) serveMultivariant(w *respWriter, r *http.Request, st *store.Stream) object {
	const o = objectMultivariant
	all := st.Renditions()
	snaps := make([]*store.Snapshot, 0, len(all))
	names := make([]string, 0, len(all))
	var updated time.Time
	for _, x := range all {
		s := x.Snapshot()
		if len(s.Inits) == 0 {
			continue
		}
		if s.Open == nil && len(s.Segments) == 0 && !s.Ended {
			// Announced, no frame yet: wait while the stream is young.
			var listed bool
			if s, listed = h.firstFrame(r, st, x, s); !listed {
				continue
			}
		}
		var ok bool
		if s, ok = h.firstSegment(r, x, s); !ok {
			return h.notFound(w, o)
		}
		snaps = append(snaps, s)
		names = append(names, x.Name())
		if s.Updated.After(updated) {
			updated = s.Updated
		}
	}
	if len(snaps) == 0 {
		return h.notFound(w, o)
	}
	hash := contentHash(st, 0x80, snaps, -1)
	e := h.cache.get(cacheKey{stream: st}, hash)
	e.render(func() []byte {
		rs := make([]playlist.Rendition, len(snaps))
		for i := range snaps {
			rs[i] = playlist.Rendition{Name: names[i], Snap: snaps[i]}
		}
		return playlist.Multivariant(rs)
	})
	cc := h.ccMultivariant
	if !st.Live() {
		cc = h.ccEnded
	}
	h.servePlaylist(w, r, e, hvM3U8, cc, updated)
	return o
}

// servePlaylist writes a rendered playlist or MPD (of Content-Type ctype),
// gzipped when the client takes it. Its strong ETag is the content hash
// (+"g" for the gzip encoding). Last-Modified is informative only: playlists change several times a
// second, so If-Modified-Since is not honoured (http.ServeContent gets no
// modification time) and revalidation goes through If-None-Match.
func (h *handler) servePlaylist(w *respWriter, r *http.Request, e *cacheEntry, ctype, cc []string, updated time.Time) {
	hdr := w.Header()
	hdr["Content-Type"] = ctype
	hdr["Cache-Control"] = cc
	hdr["Vary"] = h.varyPlaylist
	body := e.body
	var tag [24]byte
	t := append(tag[:0], '"')
	t = strconv.AppendUint(t, e.hash, 36)
	if h.cfg.Gzip && acceptsGzip(r) {
		body = e.gzipped(&h.gzipWriters)
		hdr["Content-Encoding"] = hvGzip
		t = append(t, 'g')
	}
	t = append(t, '"')
	hdr["Etag"] = []string{string(t)}
	if !updated.IsZero() {
		hdr["Last-Modified"] = []string{httpTime(updated)}
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// contentHash identifies what a playlist is rendered from: the stream
// instance, the options and the version of every snapshot involved
// (siblings feed rendition reports). self is the index of the playlist's own
// rendition in snaps, or -1.
func contentHash(st *store.Stream, flags uint8, snaps []*store.Snapshot, self int) uint64 {
	f := fnv.New64a()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(st.Started().UnixNano()))
	_, _ = f.Write(b[:])
	binary.LittleEndian.PutUint64(b[:], uint64(int64(self))<<8|uint64(flags))
	_, _ = f.Write(b[:])
	for _, s := range snaps {
		binary.LittleEndian.PutUint64(b[:], s.Version)
		_, _ = f.Write(b[:])
	}
	return f.Sum64()
}

// cacheKey names a cached playlist: a rendition with option flags, or a
// stream's multivariant (flags 0) or MPD (flags keyMPD).
type cacheKey struct {
	rend   *store.Rendition
	stream *store.Stream
	flags  uint8
}

// cacheEntry is one rendered playlist or MPD and, lazily, its gzip
// encoding. All requests seeing the same content hash share it, so a crowd
// released by the same part renders and compresses once.
type cacheEntry struct {
	hash   uint64
	once   sync.Once
	body   []byte
	err    error // from renderErr
	gzOnce sync.Once
	gz     []byte
}

func (e *cacheEntry) render(f func() []byte) { e.once.Do(func() { e.body = f() }) }

// renderErr is render for a renderer that may fail; the error is cached too
// (the same content fails the same way).
func (e *cacheEntry) renderErr(f func() ([]byte, error)) error {
	e.once.Do(func() { e.body, e.err = f() })
	return e.err
}

// playlistCache keeps the latest rendering per key. It is bounded: when
// full it starts over, which only costs re-rendering.
type playlistCache struct {
	mu  sync.Mutex
	max int
	m   map[cacheKey]*cacheEntry
}

func newPlaylistCache(max int) *playlistCache {
	return &playlistCache{max: max, m: make(map[cacheKey]*cacheEntry)}
}

func (c *playlistCache) get(k cacheKey, hash uint64) *cacheEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[k]
	if e == nil || e.hash != hash {
		if e == nil && len(c.m) >= c.max {
			clear(c.m)
		}
		e = &cacheEntry{hash: hash}
		c.m[k] = e
	}
	return e
}

// firstSegment makes a request that arrives while a rendition's first
// segment is being written wait (up to BlockTimeout) until it is complete:
// players and playlist parsers expect at least one EXTINF segment, and a
// player starting then is a part away from the live edge anyway. It reports
// false when there is still nothing to list.
func (h *handler) firstSegment(r *http.Request, rend *store.Rendition, snap *store.Snapshot) (*store.Snapshot, bool) {
	if len(snap.Inits) == 0 {
		return snap, false
	}
	if len(snap.Segments) > 0 {
		return snap, true
	}
	if snap.Open == nil || snap.Ended {
		return snap, false
	}
	snap, _ = h.wait(r, rend, snap.Open.MSN, -1)
	return snap, len(snap.Segments) > 0
}

// announcedWait is how long after a stream's start the multivariant
// playlist waits for a rendition announced by the publisher but without a
// frame yet, in segment targets: the first frames of every track a
// publisher announces come within its first segments (OBS's audio may
// come after the first video segment is complete); a track that never
// sends is left out after it.
const announcedWait = 2

// firstFrame waits, until announcedWait segment targets after the stream
// started (at most BlockTimeout), for the first part of a rendition that
// has an init but no frame yet. It reports false when the rendition is
// to be left out of the multivariant playlist.
func (h *handler) firstFrame(r *http.Request, st *store.Stream, rend *store.Rendition, snap *store.Snapshot) (*store.Snapshot, bool) {
	until := st.Started().Add(announcedWait * snap.Info.SegmentTarget)
	d := time.Until(until)
	if d <= 0 || snap.Info.SegmentTarget <= 0 {
		return snap, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), min(d, h.cfg.BlockTimeout))
	defer cancel()
	s, err := rend.Wait(ctx, 0, 0)
	return s, err == nil && !s.Ended
}

// observeViewer counts the client of a successful playlist response as a
// viewer of the stream while it is live: the state of an ended stream is
// freed (Viewers.Forget) and not rebuilt by players reading its ENDLIST.
func (h *handler) observeViewer(w *respWriter, r *http.Request, st *store.Stream) {
	if h.viewers != nil && w.status < 300 && st.Live() {
		h.viewers.Observe(st.Name(), r, time.Now())
	}
}
