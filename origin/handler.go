package origin

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwater-live/headwater/auth/playback"
	"github.com/headwater-live/headwater/hlsenc"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// Header values shared by every response. net/http only reads header value
// slices, and this package never appends to one it did not allocate, so the
// same slice can sit in any number of responses.
var (
	hvM3U8         = []string{"application/vnd.apple.mpegurl"}
	hvVideoMP4     = []string{"video/mp4"}
	hvAudioMP4     = []string{"audio/mp4"}
	hvTextPlain    = []string{"text/plain; charset=utf-8"}
	hvNoSniff      = []string{"nosniff"}
	hvNoCache      = []string{"no-cache"}
	hvNoStore      = []string{"no-store"}
	hvPrivate      = []string{"private, no-store"}
	hvOctets       = []string{hlsenc.KeyFileContentType}
	hvKeyLength    = []string{strconv.Itoa(hlsenc.KeySize)}
	hvNoToken      = []string{string(playback.ReasonMissingToken)}
	hvBytes        = []string{"bytes"}
	hvGzip         = []string{"gzip"}
	hvAllow        = []string{"GET, HEAD, OPTIONS"}
	hvAllowHeaders = []string{"Range"}
	hvExpose       = []string{"Content-Length, Content-Range, ETag, Age"}
	hvPreflightAge = []string{"86400"}
	hvStar         = []string{"*"}
	hvVaryOrigin   = []string{"Origin"}
	hvVaryAE       = []string{"Accept-Encoding"}
	hvVaryOriginAE = []string{"Origin, Accept-Encoding"}
)

const hvContentLength = "Content-Length"

// handler is the origin. See NewHandler.
type handler struct {
	cfg   Config
	st    *store.Store
	m     *Metrics
	log   *slog.Logger
	cache *playlistCache

	histories dashHistories

	ccSegment, ccPlaylist, ccMultivariant, ccBlocking, ccNotFound, ccEnded []string

	corsAny      bool
	origins      map[string][]string // allowed origin -> its header value
	varyPlaylist []string

	idPrefix string
	idSeq    atomic.Uint64

	// waitHook, when set (by tests), runs as a request starts waiting.
	waitHook func()

	viewers *Viewers // nil: viewers are not counted

	enc *encryption // nil: every stream in the clear
}

// Option adds an optional collaborator to the origin handler.
type Option func(*handler)

// WithViewers makes the origin count viewers from playlist requests.
func WithViewers(v *Viewers) Option {
	return func(h *handler) { h.viewers = v }
}

// NewHandler returns the origin: every route, with CORS, metrics (m may be
// nil), request ids and logging (log may be nil). cfg's zero fields take
// their defaults; Gzip is used as given.
func NewHandler(cfg Config, st *store.Store, m *Metrics, log *slog.Logger, opts ...Option) http.Handler {
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &handler{
		cfg:            cfg,
		st:             st,
		m:              m,
		log:            log,
		cache:          newPlaylistCache(playlistCacheEntries),
		ccSegment:      []string{"public, max-age=" + seconds(cfg.Cache.SegmentMaxAge) + ", immutable"},
		ccPlaylist:     []string{"public, max-age=" + seconds(cfg.Cache.PlaylistMaxAge)},
		ccMultivariant: []string{"public, max-age=" + seconds(cfg.Cache.MultivariantMaxAge)},
		ccBlocking:     []string{"public, max-age=" + seconds(cfg.Cache.BlockingMaxAge)},
		ccNotFound:     []string{"public, max-age=" + seconds(cfg.Cache.NotFoundMaxAge)},
		ccEnded:        []string{"public, max-age=" + seconds(cfg.Cache.EndedMaxAge)},
		origins:        make(map[string][]string),
	}
	for _, o := range cfg.CORSAllowedOrigins {
		if o == "*" {
			h.corsAny = true
		}
		h.origins[o] = []string{o}
	}
	h.varyPlaylist = hvVaryAE
	if !h.corsAny {
		h.varyPlaylist = hvVaryOriginAE
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	h.idPrefix = hex.EncodeToString(b[:]) + "-"
	h.enc = newEncryption(cfg.Encryption, st.Config())
	if h.enc != nil {
		streams := "all"
		if len(cfg.Encryption.Prefixes) > 0 {
			streams = strings.Join(cfg.Encryption.Prefixes, ",")
		}
		log.Info("origin: HLS AES-128 encryption on (DASH refused for encrypted streams)", "streams", streams,
			"rotate_segments", cfg.Encryption.RotateSegments, "sequence_iv", cfg.Encryption.SequenceIV)
	}
	for _, o := range opts {
		o(h)
	}
	return h
}

// seconds formats a max-age: whole seconds, rounded down, never negative.
func seconds(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return strconv.FormatInt(int64(d/time.Second), 10)
}

// respWriter records the status and body size of a response and applies the
// cache policy of error responses, whoever writes them (http.ServeContent's
// own 412/416 included): 404 is cacheable for NotFoundMaxAge, any other
// error is no-cache. Pooled: ServeHTTP owns it for one request.
type respWriter struct {
	http.ResponseWriter
	h           *handler
	status      int
	n           int64
	wroteHeader bool
	// abort makes ServeHTTP abort the response (panic with
	// http.ErrAbortHandler) instead of ending it: set when a streamed
	// segment cannot be completed.
	abort bool
	// private makes every response, errors included, "private, no-store"
	// (key files).
	private bool
}

var respWriterPool = sync.Pool{New: func() any { return new(respWriter) }}

func (w *respWriter) WriteHeader(code int) {
	if w.wroteHeader || code < 200 {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	if code >= 400 {
		hdr := w.ResponseWriter.Header()
		if w.private {
			hdr["Cache-Control"] = hvPrivate
		} else if code == http.StatusNotFound {
			hdr["Cache-Control"] = w.h.ccNotFound
		} else {
			hdr["Cache-Control"] = hvNoCache
		}
		delete(hdr, "Etag")
		delete(hdr, "Last-Modified")
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *respWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// ReadFrom keeps the underlying writer's io.ReaderFrom (net/http's avoids a
// copy buffer) visible to http.ServeContent's io.CopyN.
func (w *respWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := respWriterPool.Get().(*respWriter)
	*rw = respWriter{ResponseWriter: w, h: h, status: http.StatusOK}
	id := h.requestID(r)
	w.Header()["X-Request-Id"] = []string{id}

	obj := h.route(rw, r)

	status, n, abort := rw.status, rw.n, rw.abort
	*rw = respWriter{}
	respWriterPool.Put(rw)
	elapsed := time.Since(start)
	if h.enc != nil {
		h.enc.maybeSweep(h.st, start)
	}
	h.m.observe(obj, status, elapsed.Seconds(), n)
	if status >= 500 {
		h.log.LogAttrs(r.Context(), slog.LevelWarn, "origin request failed",
			slog.String("request_id", id), slog.String("method", r.Method), slog.String("path", logPath(r)),
			slog.Int("status", status), slog.String("object", obj.String()), slog.Duration("duration", elapsed))
	} else if h.log.Enabled(r.Context(), slog.LevelDebug) {
		h.log.LogAttrs(r.Context(), slog.LevelDebug, "origin request",
			slog.String("request_id", id), slog.String("method", r.Method), slog.String("path", logPath(r)),
			slog.Int("status", status), slog.String("object", obj.String()), slog.Int64("bytes", n),
			slog.Duration("duration", elapsed))
	}
	if abort {
		// net/http resets the connection (HTTP/2: the stream) without
		// ending the body, and logs nothing.
		panic(http.ErrAbortHandler)
	}
}

// logPath is the request path for logs, bounded: garbage paths can be long.
func logPath(r *http.Request) string {
	const max = 256
	p := r.URL.EscapedPath()
	if len(p) > max {
		return p[:max] + "..."
	}
	return p
}

// maxRequestID bounds an X-Request-Id taken from a request.
const maxRequestID = 64

// requestID returns the request's X-Request-Id, sanitised (characters
// outside [A-Za-z0-9._:-] dropped, at most 64 kept), or a new one.
func (h *handler) requestID(r *http.Request) string {
	if v := r.Header["X-Request-Id"]; len(v) > 0 {
		if id := sanitizeID(v[0]); id != "" {
			return id
		}
	}
	var buf [32]byte
	return string(strconv.AppendUint(append(buf[:0], h.idPrefix...), h.idSeq.Add(1), 36))
}

func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':'
}

func sanitizeID(s string) string {
	clean := len(s) <= maxRequestID
	for i := 0; clean && i < len(s); i++ {
		clean = idByte(s[i])
	}
	if clean {
		return s
	}
	b := make([]byte, 0, maxRequestID)
	for i := 0; i < len(s) && len(b) < maxRequestID; i++ {
		if idByte(s[i]) {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// route serves one request and returns the object label for metrics.
func (h *handler) route(w *respWriter, r *http.Request) object {
	hdr := w.Header()
	h.setCORS(hdr, r)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		h.preflight(w, r)
		return objectOther
	default:
		hdr["Allow"] = hvAllow
		h.fail(w, http.StatusMethodNotAllowed, "method not allowed\n")
		return objectOther
	}
	// A RawPath means the request spelt the path with escapes that decode
	// to something else ("%2e%2e", "%2F"): names never need escaping.
	if r.URL.RawPath != "" {
		h.fail(w, http.StatusBadRequest, "bad path\n")
		return objectOther
	}
	t, status := parsePath(r.URL.Path)
	if status != 0 {
		if status == http.StatusNotFound {
			h.fail(w, status, "not found\n")
		} else {
			h.fail(w, status, "bad path\n")
		}
		return objectOther
	}
	switch t.kind {
	case objHealth:
		hdr["Content-Type"] = hvTextPlain
		hdr["Cache-Control"] = hvNoStore
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok\n")
		return objectHealth
	case objIndex:
		return h.serveIndex(w, r, &t)
	case objMPD:
		return h.serveMPD(w, r, &t)
	case objTime:
		return h.serveTime(w, r)
	case objKey:
		return h.serveKey(w, r, &t)
	}
	return h.serveObject(w, r, &t)
}

// setCORS adds the CORS response headers of a simple request.
func (h *handler) setCORS(hdr http.Header, r *http.Request) {
	if h.corsAny {
		hdr["Access-Control-Allow-Origin"] = hvStar
		hdr["Access-Control-Expose-Headers"] = hvExpose
		return
	}
	// The response depends on Origin whether or not this one is allowed.
	hdr["Vary"] = hvVaryOrigin
	if o := r.Header["Origin"]; len(o) > 0 {
		if v, ok := h.origins[o[0]]; ok {
			hdr["Access-Control-Allow-Origin"] = v
			hdr["Access-Control-Expose-Headers"] = hvExpose
		}
	}
}

// preflight answers OPTIONS: a CORS preflight when the origin is allowed
// (setCORS already put Access-Control-Allow-Origin), a plain 204 with Allow
// otherwise (the browser then refuses the request).
func (h *handler) preflight(w *respWriter, r *http.Request) {
	hdr := w.Header()
	hdr["Allow"] = hvAllow
	if _, ok := hdr["Access-Control-Allow-Origin"]; ok && r.Header.Get("Access-Control-Request-Method") != "" {
		hdr["Access-Control-Allow-Methods"] = hvAllow
		hdr["Access-Control-Allow-Headers"] = hvAllowHeaders
		hdr["Access-Control-Max-Age"] = hvPreflightAge
	}
	delete(hdr, "Access-Control-Expose-Headers")
	w.WriteHeader(http.StatusNoContent)
}

// fail writes a short text error; respWriter sets its Cache-Control.
func (h *handler) fail(w *respWriter, code int, msg string) {
	hdr := w.Header()
	delete(hdr, "Content-Encoding")
	delete(hdr, "Accept-Ranges")
	hdr["Content-Type"] = hvTextPlain
	hdr["X-Content-Type-Options"] = hvNoSniff
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

func (h *handler) notFound(w *respWriter, o object) object {
	h.fail(w, http.StatusNotFound, "not found\n")
	return o
}

func (h *handler) timeout(w *respWriter, o object) object {
	h.fail(w, http.StatusServiceUnavailable, "timed out waiting for the object\n")
	return o
}

// wait blocks until rend holds part index of segment msn (the whole segment
// when index < 0), for at most BlockTimeout and while the client is there.
func (h *handler) wait(r *http.Request, rend *store.Rendition, msn uint64, index int) (*store.Snapshot, bool) {
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.BlockTimeout)
	t0 := time.Now()
	if h.waitHook != nil {
		h.waitHook()
	}
	snap, err := rend.Wait(ctx, msn, index)
	cancel()
	h.m.observeWait(time.Since(t0).Seconds())
	return snap, err == nil
}

// maxPartAdvance bounds the part index of a request: about twice the parts
// of the longest segment seen or configured, so that an index no segment of
// this rendition can reach is refused instead of waited for.
func maxPartAdvance(s *store.Snapshot) int {
	const fallback = 64
	pt := s.Info.PartTarget
	seg := max(s.Info.SegmentTarget, s.MaxSegmentDuration)
	if pt <= 0 || seg <= 0 {
		return fallback
	}
	n := int((seg + pt - 1) / pt)
	return min(max(2*n+2, 8), maxPartIndexURL)
}

// serveObject serves init segments, segments and parts.
func (h *handler) serveObject(w *respWriter, r *http.Request, t *target) object {
	var o object
	switch t.kind {
	case objInit:
		o = objectInit
	case objSegment:
		o = objectSegment
	default:
		o = objectPart
	}
	st, ok := h.st.Stream(t.stream())
	if ok {
		tagStream(r, st)
	}
	if !ok {
		return h.notFound(w, o)
	}
	rend, ok := st.Rendition(t.rendition())
	if !ok {
		return h.notFound(w, o)
	}
	encrypted := h.enc.covers(st.Name())
	snap := rend.Snapshot()
	var buf [96]byte
	switch t.kind {
	case objInit:
		in, ok := snap.Init(t.object)
		if !ok {
			return h.notFound(w, o)
		}
		tag := append(buf[:0], '"')
		tag = appendStreamTag(tag, st)
		tag = append(tag, ".i."...)
		tag = append(tag, t.object...)
		tag = append(tag, '.')
		tag = strconv.AppendInt(tag, int64(len(in.Data)), 36)
		tag = append(tag, '"')
		// An init name is never reused for other bytes by a stream, so the
		// stream's start is a safe (if early) modification time.
		h.serveBytes(w, r, in.Data, kindType(in.Info.Kind), tag, st.Started())
		return o

	case objSegment:
		seg, ok := snap.Segment(t.msn)
		if !ok || !seg.Complete && len(seg.Parts) == 0 {
			// The next segment, or the open one before its first part:
			// wait for its first part (low-latency DASH players ask for it
			// about a part after it starts).
			if !segmentBlockable(snap, t.msn) {
				return h.notFound(w, o)
			}
			if snap, ok = h.wait(r, rend, t.msn, 0); !ok {
				return h.timeout(w, o)
			}
			if seg, ok = snap.Segment(t.msn); !ok {
				return h.notFound(w, o)
			}
		}
		if !seg.Complete {
			// An encrypted segment is one CBC ciphertext with its padding
			// at the end: it is only served complete.
			if !conditional(r) && !encrypted {
				// Being written: stream its parts as they come.
				h.streamSegment(w, r, st, rend, seg, kindType(snap.Info.Kind))
				return o
			}
			// Ranges and preconditions need the complete object.
			if snap, ok = h.wait(r, rend, t.msn, -1); !ok {
				return h.timeout(w, o)
			}
			seg, ok = snap.Segment(t.msn)
		}
		if !ok || !seg.Complete || seg.Gap || len(seg.Data) == 0 {
			return h.notFound(w, o)
		}
		var mod time.Time
		if n := len(seg.Parts); n > 0 {
			mod = seg.Parts[n-1].Published
		}
		tag := appendMediaTag(buf[:0], st, seg, -1)
		data := seg.Data
		if encrypted {
			if data, ok = h.enc.encrypt(st, rend.Name(), seg.MSN, -1, data); !ok {
				return h.notFound(w, o) // its key is gone: the segment left the window long ago
			}
			tag = encryptedTag(tag)
		}
		h.serveBytes(w, r, data, kindType(snap.Info.Kind), tag, mod)
		return o

	default:
		seg, p := findPart(snap, t.msn, t.part)
		if p == nil {
			if !partBlockable(snap, t.msn, t.part) {
				return h.notFound(w, o)
			}
			if snap, ok = h.wait(r, rend, t.msn, t.part); !ok {
				return h.timeout(w, o)
			}
			if seg, p = findPart(snap, t.msn, t.part); p == nil {
				return h.notFound(w, o)
			}
		}
		tag := appendMediaTag(buf[:0], st, seg, p.Index)
		data := p.Data
		if encrypted {
			// A part is a resource of its own, encrypted on its own with
			// its segment's key and IV.
			if data, ok = h.enc.encrypt(st, rend.Name(), seg.MSN, p.Index, data); !ok {
				return h.notFound(w, o)
			}
			tag = encryptedTag(tag)
		}
		h.serveBytes(w, r, data, kindType(snap.Info.Kind), tag, p.Published)
		return o
	}
}

func findPart(s *store.Snapshot, msn uint64, index int) (*store.Segment, *store.Part) {
	seg, ok := s.Segment(msn)
	if !ok || index < 0 || index >= len(seg.Parts) {
		return nil, nil
	}
	return seg, seg.Parts[index]
}

// partBlockable reports whether a part that is not there yet is worth
// waiting for: it belongs to the segment the next part goes into (the
// preload hint's) or to the one after, and its index is sane.
func partBlockable(s *store.Snapshot, msn uint64, index int) bool {
	if s.Ended || index > maxPartAdvance(s) {
		return false
	}
	last, _, ok := s.LastMSN()
	var next uint64 // the segment the next part will be in
	switch {
	case !ok:
		next = 0
	case s.Open != nil:
		next = last
	default:
		next = last + 1
	}
	return msn == next || msn == next+1
}

func kindType(k media.Kind) []string {
	if k == media.KindAudio {
		return hvAudioMP4
	}
	return hvVideoMP4
}

// appendStreamTag identifies the stream instance: a stream replaced after
// its grace time restarts its sequence numbers but not its start time.
func appendStreamTag(b []byte, st *store.Stream) []byte {
	return strconv.AppendInt(b, st.Started().UnixNano(), 36)
}

// appendMediaTag is a segment's or part's strong ETag:
// "<stream start>.<epoch>.<msn>.<part|s>".
func appendMediaTag(b []byte, st *store.Stream, seg *store.Segment, part int) []byte {
	b = append(b, '"')
	b = appendStreamTag(b, st)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(seg.Epoch), 36)
	b = append(b, '.')
	b = strconv.AppendUint(b, seg.MSN, 36)
	b = append(b, '.')
	if part < 0 {
		b = append(b, 's')
	} else {
		b = strconv.AppendInt(b, int64(part), 36)
	}
	return append(b, '"')
}

// encryptedTag turns a media ETag into the ETag of its ciphertext:
// "<stream start>.<epoch>.<msn>.<part|s>.e".
func encryptedTag(tag []byte) []byte {
	return append(append(tag[:len(tag)-1], ".e"...), '"')
}

// conditional reports whether a request needs http.ServeContent's
// precondition or range handling.
func conditional(r *http.Request) bool {
	h := r.Header
	return len(h["Range"]) > 0 || len(h["If-None-Match"]) > 0 || len(h["If-Modified-Since"]) > 0 ||
		len(h["If-Match"]) > 0 || len(h["If-Unmodified-Since"]) > 0
}

// serveBytes serves an immutable media object from memory. The common plain
// GET/HEAD writes the store's slice directly (no copy); conditional and
// range requests go through http.ServeContent (304, 206, 412, 416,
// multipart ranges). tag is the strong ETag, quotes included.
func (h *handler) serveBytes(w *respWriter, r *http.Request, data []byte, ctype []string, tag []byte, mod time.Time) {
	hdr := w.Header()
	hdr["Content-Type"] = ctype
	hdr["Cache-Control"] = h.ccSegment
	if conditional(r) {
		hdr["Etag"] = []string{string(tag)}
		http.ServeContent(w, r, "", mod, bytes.NewReader(data))
		return
	}
	// One string holds the ETag, Last-Modified and Content-Length values,
	// one array their slices: two allocations for three headers.
	var buf [160]byte
	b := append(buf[:0], tag...)
	nTag := len(b)
	if !mod.IsZero() {
		b = mod.UTC().AppendFormat(b, http.TimeFormat)
	}
	nMod := len(b)
	b = strconv.AppendInt(b, int64(len(data)), 10)
	str := string(b)
	vals := new([3]string)
	vals[0], vals[1], vals[2] = str[:nTag], str[nTag:nMod], str[nMod:]
	hdr["Etag"] = vals[0:1:1]
	if nMod > nTag {
		hdr["Last-Modified"] = vals[1:2:2]
	}
	hdr[hvContentLength] = vals[2:3:3]
	hdr["Accept-Ranges"] = hvBytes
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(data)
	}
}

func httpTime(t time.Time) string {
	var b [len(http.TimeFormat) + 4]byte
	return string(t.UTC().AppendFormat(b[:0], http.TimeFormat))
}

// acceptsGzip reports whether Accept-Encoding allows gzip: gzip or x-gzip
// listed with a non-zero q, or else "*" with a non-zero q.
func acceptsGzip(r *http.Request) bool {
	explicit, star := 0, 0 // 0 unlisted, 1 accepted, -1 refused (q=0)
	for _, v := range r.Header["Accept-Encoding"] {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			coding, params, _ := strings.Cut(item, ";")
			coding = strings.TrimSpace(coding)
			res := 1
			if qZero(params) {
				res = -1
			}
			switch {
			case strings.EqualFold(coding, "gzip") || strings.EqualFold(coding, "x-gzip"):
				if explicit == 0 {
					explicit = res
				}
			case coding == "*":
				if star == 0 {
					star = res
				}
			}
		}
	}
	if explicit != 0 {
		return explicit > 0
	}
	return star > 0
}

// qZero reports whether content-coding parameters carry q=0 (0, 0.0, 0.000).
func qZero(params string) bool {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		v = strings.TrimSpace(v)
		if v == "" || v[0] != '0' {
			return false
		}
		return strings.Trim(v[1:], ".0") == ""
	}
	return false
}

// tagStream names the stream on the request's span (when tracing), linking
// origin requests to the stream's publish spans by attribute.
func tagStream(r *http.Request, st *store.Stream) {
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.SetAttributes(attribute.String("headwater.stream", st.Name()))
	}
}
