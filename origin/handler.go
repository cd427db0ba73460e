package origin

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwater-live/headwater/origin/relay"
	"github.com/headwater-live/headwater/store"
)

var _ http.Handler = (*handler)(nil)

// handler is the origin. See NewHandler.
type handler struct {
	cfg   Config
	st    *store.Store
	m     *Metrics
	log   *slog.Logger
	cache *playlistCache

	histories dashHistories

	ccSegment, ccPlaylist, ccMultivariant, ccBlocking, ccNotFound, ccEnded, ccPoster, ccVOD []string

	corsAny      bool
	origins      map[string][]string // allowed origin -> its header value
	varyPlaylist []string

	idPrefix string
	idSeq    atomic.Uint64

	// writers pools the per-request *respWriter: ServeHTTP owns one for
	// the length of a request.
	writers sync.Pool
	// gzipWriters pools the *gzip.Writer that compress cached playlists.
	gzipWriters sync.Pool

	// waitHook, when set (by tests), runs as a request starts waiting.
	waitHook func()

	viewers *Viewers // nil: viewers are not counted

	enc *encryption // nil: every stream in the clear

	// relay and lookup serve the streams other nodes own (WithRelay);
	// nil: only local streams.
	relay  *relay.Relay
	lookup func(stream string) (ownerURL string, remote bool)

	archive Archive // nil: no DVR, no VOD (WithArchive)
	posters Posters // nil: no posters (WithPosters)
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
		ccPoster:       []string{"public, max-age=" + seconds(posterMaxAge)},
		ccVOD:          []string{"public, max-age=" + seconds(cfg.Cache.SegmentMaxAge)},
		origins:        make(map[string][]string),
	}
	h.writers.New = func() any { return new(respWriter) }
	h.gzipWriters.New = newGzipWriter
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

// ServeHTTP serves one request (see route) and records its metrics and log
// line.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := h.writers.Get().(*respWriter)
	*rw = respWriter{ResponseWriter: w, h: h, status: http.StatusOK}
	id := h.requestID(r)
	w.Header()["X-Request-Id"] = []string{id}

	obj := h.route(rw, r)

	status, n, abort := rw.status, rw.n, rw.abort
	*rw = respWriter{}
	h.writers.Put(rw)
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

// tagStream names the stream on the request's span (when tracing), linking
// origin requests to the stream's publish spans by attribute.
func tagStream(r *http.Request, st *store.Stream) {
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.SetAttributes(attribute.String("headwater.stream", st.Name()))
	}
}
