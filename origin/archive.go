package origin

import (
	"bytes"
	"context"
	"errors"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/headwater-live/headwater/auth/playback"
	"github.com/headwater-live/headwater/dash"
	"github.com/headwater-live/headwater/hlsenc"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/objstore"
	"github.com/headwater-live/headwater/origin/relay"
	"github.com/headwater-live/headwater/playlist"
	"github.com/headwater-live/headwater/recording"
	"github.com/headwater-live/headwater/store"
)

// Archive is the recording as the origin reads it (a *recording.Recorder):
// the DVR window of live streams and the recorded sessions (VOD).
type Archive interface {
	// DVR returns live with the recorded segments older than it in front.
	DVR(st *store.Stream, rendition string, live *store.Snapshot) *store.Snapshot
	// OpenDVR opens a media object of the DVR window the store no longer holds.
	OpenDVR(ctx context.Context, st *store.Stream, rendition, object string) (io.ReadCloser, bool, error)
	// Session loads a recorded session.
	Session(ctx context.Context, stream, id string) (*recording.Session, error)
	// OpenMedia opens a recorded object of a session ("video/seg3.m4s").
	OpenMedia(ctx context.Context, stream, session, object string) (io.ReadCloser, error)
	// SessionKey returns the AES-128 key a recorded session of an
	// encrypted stream is played back with.
	SessionKey(ctx context.Context, stream, session string) (hlsenc.Key, error)
}

// Posters gives the latest poster of a live stream.
type Posters interface {
	// Poster returns a JPEG of a recent key frame of stream and when it
	// was made, or false when there is none (yet).
	Poster(stream string) (jpeg []byte, made time.Time, ok bool)
}

// WithArchive serves DVR views and recorded sessions (VOD) from a.
func WithArchive(a Archive) Option {
	return func(h *handler) { h.archive = a }
}

// WithPosters serves /<stream>/poster.jpg from p.
func WithPosters(p Posters) Option {
	return func(h *handler) { h.posters = p }
}

// vodPrefix is the path namespace of recorded sessions:
// /vod/<stream>/<session>/...
const vodPrefix = "/vod/"

// maxArchiveObject bounds an object read from the archive into memory.
const maxArchiveObject = 64 << 20

// posterMaxAge is the Cache-Control max-age of posters: about their
// refresh period, so stream lists behind a CDN stay current.
const posterMaxAge = 2 * time.Second

// fnvBytes hashes a rendered VOD playlist for its ETag.
func fnvBytes(b []byte) uint64 {
	f := fnv.New64a()
	_, _ = f.Write(b)
	return f.Sum64()
}

// dvrFlag marks DVR renderings in the playlist cache key and content hash.
const dvrFlag = 0x10

// serveDVR serves <stream>/dvr.m3u8 (the DVR view's multivariant) and
// <stream>/<rendition>/dvr.m3u8 (a media playlist listing the whole DVR
// window: plain HLS, no parts, a CDN-cacheable sliding window).
func (h *handler) serveDVR(w *respWriter, r *http.Request, t *target) object {
	// Another node's stream: its owner records it and serves its DVR view.
	if u, stream, remote := h.remoteTarget(t); remote {
		return h.relayed(w, r, u, stream, relay.KindOther, objectDVR)
	}
	if h.archive == nil {
		return h.notFound(w, objectDVR)
	}
	if t.renditionOK() {
		if st, ok := h.st.Stream(t.stream()); ok {
			if rend, ok := st.Rendition(t.rendition()); ok {
				return h.serveDVRMedia(w, r, st, rend)
			}
		}
	}
	if t.multivariantOK() {
		if st, ok := h.st.Stream(t.prefix); ok {
			return h.serveDVRMultivariant(w, r, st)
		}
	}
	return h.notFound(w, objectDVR)
}

// remoteTarget returns the owner of the stream a stream-level or
// rendition-level path names, when another node owns it.
func (h *handler) remoteTarget(t *target) (ownerURL, stream string, remote bool) {
	if h.relay == nil {
		return "", "", false
	}
	if t.renditionOK() {
		st, ok := h.st.Stream(t.stream())
		if u, remote := h.owner(t.stream(), st, ok); remote {
			return u, t.stream(), true
		}
	}
	if t.multivariantOK() {
		st, ok := h.st.Stream(t.prefix)
		if u, remote := h.owner(t.prefix, st, ok); remote {
			return u, t.prefix, true
		}
	}
	return "", "", false
}

func (h *handler) serveDVRMultivariant(w *respWriter, r *http.Request, st *store.Stream) object {
	const o = objectDVR
	tagStream(r, st)
	if outOfScope(r, st.Name()) {
		return h.forbidden(w, o)
	}
	var rs []playlist.Rendition
	var snaps []*store.Snapshot
	var updated time.Time
	for _, x := range st.Renditions() {
		s := x.Snapshot()
		if len(s.Inits) == 0 || len(s.Segments) == 0 {
			continue
		}
		snaps = append(snaps, s)
		rs = append(rs, playlist.Rendition{Name: x.Name(), Snap: s})
		if s.Updated.After(updated) {
			updated = s.Updated
		}
	}
	if len(rs) == 0 {
		return h.notFound(w, o)
	}
	hash := contentHash(st, dvrFlag|0x80, snaps, -1)
	e := h.cache.get(cacheKey{stream: st, flags: dvrFlag}, hash)
	e.render(func() []byte { return playlist.MultivariantOf(rs, "dvr.m3u8") })
	cc := h.ccMultivariant
	if !st.Live() {
		cc = h.ccEnded
	}
	h.servePlaylist(w, r, e, hvM3U8, cc, updated)
	return o
}

func (h *handler) serveDVRMedia(w *respWriter, r *http.Request, st *store.Stream, rend *store.Rendition) object {
	const o = objectDVR
	tagStream(r, st)
	if outOfScope(r, st.Name()) {
		return h.forbidden(w, o)
	}
	if h.enc.covers(st.Name()) {
		h.fail(w, http.StatusNotFound, "DVR is not available for this stream: its media is AES-128 encrypted\n")
		return o
	}
	live := rend.Snapshot()
	if len(live.Inits) == 0 || len(live.Segments) == 0 {
		return h.notFound(w, o)
	}
	view := h.archive.DVR(st, rend.Name(), live)
	hash := contentHash(st, dvrFlag, []*store.Snapshot{live}, 0)
	hash = hash*31 + uint64(len(view.Segments))
	e := h.cache.get(cacheKey{rend: rend, flags: dvrFlag}, hash)
	e.render(func() []byte {
		return playlist.Media(playlist.Rendition{Name: rend.Name(), Snap: view}, nil,
			playlist.MediaOptions{Window: len(view.Segments)})
	})
	cc := h.ccPlaylist
	if live.Ended {
		cc = h.ccEnded
	}
	h.servePlaylist(w, r, e, hvM3U8, cc, live.Updated)
	return o
}

// serveFromDVR serves a segment or init section that the store no longer
// holds but the DVR window does. It reports false when the window does not
// hold it either.
func (h *handler) serveFromDVR(w *respWriter, r *http.Request, st *store.Stream, rend *store.Rendition, t *target, o object) bool {
	if h.archive == nil || h.enc.covers(st.Name()) {
		return false
	}
	rc, held, err := h.archive.OpenDVR(r.Context(), st, rend.Name(), t.object)
	if !held {
		return false
	}
	if err != nil {
		h.archiveError(w, r, err, st.Name())
		return true
	}
	data, err := readAll(rc)
	if err != nil {
		h.archiveError(w, r, err, st.Name())
		return true
	}
	var buf [96]byte
	tag := append(buf[:0], '"')
	tag = appendStreamTag(tag, st)
	tag = append(tag, ".r."...)
	tag = append(tag, t.object...)
	tag = append(tag, '.')
	tag = strconv.AppendInt(tag, int64(len(data)), 36)
	tag = append(tag, '"')
	h.serveBytes(w, r, data, kindType(rend.Snapshot().Info.Kind), tag, time.Time{})
	return true
}

// archiveError answers a failed read of the archive: 404 for an object
// that is not there, 503 (logged) when storage fails.
func (h *handler) archiveError(w *respWriter, r *http.Request, err error, stream string) {
	if errors.Is(err, objstore.ErrNotFound) || errors.Is(err, recording.ErrNoSession) {
		h.fail(w, http.StatusNotFound, "not found\n")
		return
	}
	h.log.LogAttrs(r.Context(), slog.LevelWarn, "origin: recording unavailable",
		slog.String("stream", stream), slog.String("err", err.Error()))
	h.fail(w, http.StatusServiceUnavailable, "recording storage unavailable\n")
}

// readAll reads an archive object, bounded, into a buffer of its size when
// the reader tells it (a file: the spool's, the local backend's).
func readAll(rc io.ReadCloser) ([]byte, error) {
	defer func() { _ = rc.Close() }()
	if f, ok := rc.(interface{ Stat() (fs.FileInfo, error) }); ok {
		if st, err := f.Stat(); err == nil && st.Size() <= maxArchiveObject {
			b := make([]byte, st.Size())
			if _, err := io.ReadFull(rc, b); err != nil {
				return nil, err
			}
			return b, nil
		}
	}
	b, err := io.ReadAll(io.LimitReader(rc, maxArchiveObject+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxArchiveObject {
		return nil, errors.New("origin: recorded object too large")
	}
	return b, nil
}

// vodTarget is a parsed /vod/ path.
type vodTarget struct {
	stream, session string
	rendition       string // "" for session-level objects; "thumbs" for sprites
	object          string
}

// parseVODPath parses /vod/<stream>/<session>/<object> and
// /vod/<stream>/<session>/<rendition>/<object>; the session is the element
// in session-id form (recording.IsSessionID). It returns false for any
// other path.
func parseVODPath(p string) (vodTarget, bool) {
	rest, ok := strings.CutPrefix(p, vodPrefix)
	if !ok || len(rest) > 2*media.MaxNameLength {
		return vodTarget{}, false
	}
	elems := strings.Split(rest, "/")
	n := len(elems)
	if n < 3 {
		return vodTarget{}, false
	}
	for _, e := range elems {
		if e == "" || e == "." || e == ".." {
			return vodTarget{}, false
		}
		for i := 0; i < len(e); i++ {
			if !nameByte(e[i]) {
				return vodTarget{}, false
			}
		}
	}
	var t vodTarget
	switch {
	case recording.IsSessionID(elems[n-2]):
		t = vodTarget{stream: strings.Join(elems[:n-2], "/"), session: elems[n-2], object: elems[n-1]}
		switch t.object {
		case "index.m3u8", "manifest.mpd", "thumbnails.vtt":
		default:
			return vodTarget{}, false
		}
	case n >= 4 && recording.IsSessionID(elems[n-3]):
		t = vodTarget{stream: strings.Join(elems[:n-3], "/"), session: elems[n-3], rendition: elems[n-2], object: elems[n-1]}
		if len(t.rendition) > maxRenditionName || len(t.object) > maxObjectName {
			return vodTarget{}, false
		}
		if t.rendition == "thumbs" {
			if !strings.HasPrefix(t.object, "sprite-") || !strings.HasSuffix(t.object, ".jpg") {
				return vodTarget{}, false
			}
			if _, ok := parseUint(strings.TrimSuffix(strings.TrimPrefix(t.object, "sprite-"), ".jpg")); !ok {
				return vodTarget{}, false
			}
			break
		}
		var ot target
		ot.object = t.object
		if !parseObject(&ot) {
			return vodTarget{}, false
		}
		switch ot.kind {
		case objIndex, objInit, objSegment:
		default:
			return vodTarget{}, false
		}
	default:
		return vodTarget{}, false
	}
	if media.ValidateName(t.stream) != nil {
		return vodTarget{}, false
	}
	return t, true
}

// serveVOD serves a recorded session under /vod/.
func (h *handler) serveVOD(w *respWriter, r *http.Request) object {
	const o = objectVOD
	t, ok := parseVODPath(r.URL.Path)
	if !ok {
		return h.notFound(w, o)
	}
	if outOfScope(r, "vod/"+t.stream) {
		return h.forbidden(w, o)
	}
	ctx := r.Context()
	sess, err := h.archive.Session(ctx, t.stream, t.session)
	if err != nil {
		h.archiveError(w, r, err, t.stream)
		return o
	}
	// A session of an encrypted stream is played back encrypted with its
	// own key (recording.Recorder.SessionKey); one recorded in the clear
	// of a stream encrypted now is not served at all.
	var key hlsenc.Key
	switch {
	case sess.Summary.Encrypted:
		if t.object == "manifest.mpd" {
			h.fail(w, http.StatusNotFound, "DASH is not available for this recording: its stream is HLS AES-128 encrypted; play index.m3u8\n")
			return o
		}
		if key, err = h.archive.SessionKey(ctx, t.stream, t.session); err != nil {
			h.archiveError(w, r, err, t.stream)
			return o
		}
	case h.enc.covers(t.stream):
		h.fail(w, http.StatusForbidden, "this recording was made in the clear and its stream is encrypted now: it is not served\n")
		return o
	}
	final := sess.Summary.State != recording.StateRecording
	switch t.object {
	case "index.m3u8", "manifest.mpd":
		clip, ok := h.vodClip(w, r, sess)
		if !ok {
			return o
		}
		h.serveVODPlaylist(w, r, clip, t, final, key)
		return o
	default:
		object := t.object
		if t.rendition != "" {
			object = t.rendition + "/" + t.object
		}
		rc, err := h.archive.OpenMedia(ctx, t.stream, t.session, object)
		if err != nil {
			h.archiveError(w, r, err, t.stream)
			return o
		}
		data, err := readAll(rc)
		if err != nil {
			h.archiveError(w, r, err, t.stream)
			return o
		}
		ctype := hvVideoMP4
		switch {
		case strings.HasSuffix(object, ".jpg"):
			ctype = hvJPEG
		case strings.HasSuffix(object, ".vtt"):
			ctype = hvVTT
		default:
			for _, rr := range sess.Renditions {
				if rr.Name == t.rendition {
					ctype = kindType(rr.Snap.Info.Kind)
				}
			}
		}
		tag := `"v.` + t.session + "." + strings.ReplaceAll(object, "/", ".") + "." + strconv.FormatInt(int64(len(data)), 36)
		if !key.IsZero() && strings.HasPrefix(t.object, "seg") {
			msn, _ := parseUint(strings.TrimSuffix(strings.TrimPrefix(t.object, "seg"), ".m4s"))
			data = hlsenc.EncryptSegment(key, key.IV(msn), data)
			tag += "e"
		}
		tag += `"`
		h.serveBytes(w, r, data, ctype, []byte(tag), sess.Summary.Ended)
		return o
	}
}

// vodClip applies a clip query (start and end: seconds from the session's
// start, or RFC 3339 wall-clock times) to sess; without one it returns
// sess. A bad query is answered 400.
func (h *handler) vodClip(w *respWriter, r *http.Request, sess *recording.Session) (*recording.Session, bool) {
	if r.URL.RawQuery == "" {
		return sess, true
	}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		h.fail(w, http.StatusBadRequest, "bad query\n")
		return nil, false
	}
	from, err1 := clipTime(sess, q.Get("start"))
	to, err2 := clipTime(sess, q.Get("end"))
	if err1 != nil || err2 != nil || to > 0 && to <= from {
		h.fail(w, http.StatusBadRequest, "bad clip range: start and end are seconds from the recording's start or RFC 3339 times, start before end\n")
		return nil, false
	}
	if from == 0 && to == 0 {
		return sess, true
	}
	clip, ok := sess.Clip(from, to)
	if !ok {
		h.fail(w, http.StatusNotFound, "the clip range holds no media\n")
		return nil, false
	}
	return clip, true
}

// clipTime parses one bound of a clip.
func clipTime(sess *recording.Session, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 || secs > 1e7 {
			return 0, errors.New("out of range")
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return 0, err
	}
	return max(sess.Offset(t), 0), nil
}

// serveVODPlaylist renders a recorded session's multivariant, media
// playlist or static MPD.
func (h *handler) serveVODPlaylist(w *respWriter, r *http.Request, sess *recording.Session, t vodTarget, final bool, key hlsenc.Key) {
	var body []byte
	ctype := hvM3U8
	switch {
	case t.object == "manifest.mpd":
		rs := make([]dash.Rendition, len(sess.Renditions))
		for i, x := range sess.Renditions {
			rs[i] = dash.Rendition{Name: x.Name, Snap: x.Snap}
		}
		window := 0
		for _, x := range sess.Renditions {
			window = max(window, len(x.Snap.Segments))
		}
		b, err := dash.MPD(rs, dash.Options{
			AvailabilityStart: sess.Summary.Started,
			PublishTime:       sess.Summary.Updated,
			Window:            window,
			Static:            final,
			EndGrace:          -1,
		})
		if err != nil {
			h.fail(w, http.StatusNotFound, "no media to list\n")
			return
		}
		body, ctype = b, hvDASH
	case t.rendition == "":
		rs := make([]playlist.Rendition, len(sess.Renditions))
		for i, x := range sess.Renditions {
			rs[i] = playlist.Rendition{Name: x.Name, Snap: x.Snap}
		}
		body = playlist.Multivariant(rs)
	default:
		var snap *store.Snapshot
		for _, x := range sess.Renditions {
			if x.Name == t.rendition {
				snap = x.Snap
			}
		}
		if snap == nil {
			h.fail(w, http.StatusNotFound, "not found\n")
			return
		}
		if !final {
			// Still recording: an EVENT playlist that grows; no ENDLIST yet.
			view := *snap
			view.Ended = false
			snap = &view
		}
		typ := "VOD"
		if !final {
			typ = "EVENT"
		}
		opts := playlist.MediaOptions{Window: len(snap.Segments), PlaylistType: typ}
		if !key.IsZero() {
			opts.Encryption = &playlist.Encryption{Stream: vodKeyStream(t.stream, t.session),
				KeyFor: func(uint64) (hlsenc.Key, error) { return key, nil }}
		}
		body = playlist.Media(playlist.Rendition{Name: t.rendition, Snap: snap}, nil, opts)
	}
	if body == nil {
		h.fail(w, http.StatusNotFound, "not found\n")
		return
	}
	// A finished session's playlists never change (only its deletion
	// ends them): they are cached like media, without "immutable".
	cc := h.ccVOD
	if !final {
		cc = h.ccPlaylist
	}
	e := &cacheEntry{hash: fnvBytes(body)}
	e.render(func() []byte { return body })
	h.servePlaylist(w, r, e, ctype, cc, sess.Summary.Updated)
}

// servePoster serves <stream>/poster.jpg.
func (h *handler) servePoster(w *respWriter, r *http.Request, t *target) object {
	const o = objectPoster
	if u, stream, remote := h.remoteTarget(t); remote && stream == t.prefix {
		return h.relayed(w, r, u, stream, relay.KindOther, o)
	}
	if h.posters == nil {
		return h.notFound(w, o)
	}
	if outOfScope(r, t.prefix) {
		return h.forbidden(w, o)
	}
	jpeg, made, ok := h.posters.Poster(t.prefix)
	if !ok {
		return h.notFound(w, o)
	}
	hdr := w.Header()
	hdr["Content-Type"] = hvJPEG
	hdr["Cache-Control"] = h.ccPoster
	tag := `"p.` + strconv.FormatInt(made.UnixMilli(), 36) + `"`
	hdr["Etag"] = []string{tag}
	hdr["Last-Modified"] = []string{httpTime(made)}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(jpeg))
	return o
}

// vodKeyStream names a recorded session in key URIs and paths:
// /keys/vod/<stream>/<session>/<id>.key.
func vodKeyStream(stream, session string) string { return "vod/" + stream + "/" + session }

// serveVODKey serves /keys/vod/<stream>/<session>/<id>.key, the key of an
// encrypted recording, to requests whose playback token covers the
// recording (vod/<stream>) or that passed the CDN secret check; others get
// 403. "private, no-store" whatever the answer.
func (h *handler) serveVODKey(w *respWriter, r *http.Request, t *target) object {
	const o = objectKey
	w.private = true
	hdr := w.Header()
	hdr["Cache-Control"] = hvPrivate
	ctx := r.Context()
	c, tokened := playback.ClaimsFromContext(ctx)
	if !(tokened && playback.Covers(c.Prefix, r.URL.Path) && playback.CoversStream(c.Prefix, t.prefix)) && !playback.ViaCDN(ctx) {
		hdr["X-Headwater-Token"] = hvNoToken
		h.fail(w, http.StatusForbidden, "forbidden\n")
		return o
	}
	rest := strings.TrimPrefix(t.prefix, "vod/")
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 || !recording.IsSessionID(rest[i+1:]) {
		return h.notFound(w, o)
	}
	key, err := h.archive.SessionKey(ctx, rest[:i], rest[i+1:])
	if err != nil || key.ID() != t.keyID() {
		return h.notFound(w, o)
	}
	writeKey(w, r, key)
	return o
}
