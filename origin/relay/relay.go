// Package relay fetches a stream's objects from the node that owns it,
// collapsed and cached: the origin tier of a Headwater cluster, where any
// node's origin serves any stream.
//
// An edge node's origin hands a request for a stream it does not hold to
// Relay.Serve with the owner's origin URL. The relay keeps one keep-alive
// connection pool (one http.Transport, HTTP/1.1) to every owner, and:
//
//   - collapses: concurrent requests for the same upstream object (the same
//     owner, path and, for playlists, the same LL-HLS directives
//     _HLS_msn/_HLS_part/_HLS_skip and encoding) share one upstream request;
//     every waiter gets the same bytes and headers. Blocking playlist reloads
//     and part requests are forwarded as they are, so they block on the
//     owner, which answers the moment the part is published: nothing polls.
//   - caches the immutable objects (init sections, segments, parts) in a
//     bytes-bounded LRU with a time to live, served from memory with their
//     ETag, Content-Type, Cache-Control and Last-Modified. Playlists, MPDs
//     and key files are never kept past the upstream request in flight.
//   - streams: a segment the owner is still writing comes with chunked
//     transfer (no Content-Length); the relay reads it as it arrives and fans
//     each chunk out to every waiter as soon as it is read (they all write
//     the same slice), and caches it once complete. If the owner aborts it,
//     every waiter's response is aborted too (Serve returns ErrAborted), so
//     that no cache keeps a truncated object.
//
// Responses keep the owner's Content-Type, Cache-Control, ETag,
// Last-Modified, Content-Encoding and Vary; Content-Length is this node's.
// Range and conditional requests are answered here, from the complete
// object (http.ServeContent), as the origin answers them for its own
// objects. An owner that cannot be reached, or answers an unexpected status,
// gets the viewer a 502; the owner's 400, 404 and 503 are passed on.
//
// Playlists go through ServePlaylist, which rides out the loss of an owner
// (a takeover after it died): a recently relayed stream's playlist requests
// are held, collapsed, while the owner is unreachable or gone, and relayed
// to the next owner as soon as it answers.
package relay

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Kind is the kind of object a relayed request asks for: it decides
// whether the object may be cached and labels the metrics.
type Kind uint8

// Object kinds.
const (
	KindOther    Kind = iota
	KindInit          // init.mp4, init-N.mp4: immutable
	KindSegment       // segN.m4s: immutable, streamed while being written
	KindPart          // partN.P.m4s: immutable
	KindPlaylist      // index.m3u8, multivariant or media: collapsed only
	KindMPD           // manifest.mpd: collapsed only
	KindKey           // /keys/...: collapsed only, private
	numKinds
)

var kindNames = [numKinds]string{"other", "init", "segment", "part", "playlist", "mpd", "key"}

// String is the metric label of k.
func (k Kind) String() string {
	if k >= numKinds {
		return kindNames[KindOther]
	}
	return kindNames[k]
}

// immutable reports whether objects of kind k never change once served,
// and may therefore be cached.
func (k Kind) immutable() bool { return k == KindInit || k == KindSegment || k == KindPart }

// ErrAborted is returned by Serve when it had started a streamed response
// it could not complete (the owner aborted the segment, or the client went
// away): the caller must abort the response (panic(http.ErrAbortHandler))
// rather than end it, so that no cache keeps the truncated object.
var ErrAborted = errors.New("relay: streamed response aborted")

// Errors behind a flight's cancellation.
var (
	errNoWaiters = errors.New("relay: every waiter left")
	errIdle      = errors.New("relay: upstream body idle past the response timeout")
)

const (
	// maxBody bounds an upstream body kept in memory.
	maxBody = 64 << 20
	// maxErrorBody bounds the body of an upstream error passed on.
	maxErrorBody = 4 << 10
	// streamChunk is the read size of a streamed body.
	streamChunk = 32 << 10
	// logEvery bounds the upstream failure log lines to one per period.
	logEvery = time.Second
)

// Header values shared by every response (read-only).
var (
	hvGzip      = []string{"gzip"}
	hvBytes     = []string{"bytes"}
	hvTextPlain = []string{"text/plain; charset=utf-8"}
	hvNoSniff   = []string{"nosniff"}
)

// Relay fetches objects from their owners' origins. Create it with New,
// end it with Close.
type Relay struct {
	cfg    Config
	log    *slog.Logger
	m      *relayMetrics
	client *http.Client
	cache  *lru

	// ctx parents every upstream request; Close cancels it and waits for
	// the flights' goroutines through wg.
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.Mutex
	flights map[string]*flight // in flight, by key
	closed  bool

	// relayed holds when each stream was last relayed (ServePlaylist):
	// only those relayed recently are held when they lose their owner.
	rmu     sync.Mutex
	relayed map[string]time.Time
	swept   time.Time

	lastLog   atomic.Int64 // unix nanoseconds of the last failure logged
	mutedLogs atomic.Int64 // failures not logged since
}

// New returns a relay with cfg (zero fields take their defaults; cfg must
// pass Validate), logging to log (nil: nowhere) and registering its metrics
// on reg (nil: unregistered).
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) *Relay {
	cfg = cfg.WithDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := newMetrics(reg)
	tr := &http.Transport{
		Proxy:                 nil, // owners are cluster-internal addresses
		DialContext:           (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          0, // no global bound: MaxIdleConnsPerHost bounds each owner
		MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: cfg.ResponseTimeout,
		TLSHandshakeTimeout:   cfg.DialTimeout,
		// The relay asks for gzip itself (playlists only) and passes the
		// encoded body on: Transport must not decode it.
		DisableCompression: true,
		// HTTP/1.1 keep-alive: a blocking request holds its connection,
		// and one TCP connection per request in flight keeps a slow
		// object from holding up others.
		// (With DialContext set, HTTP/2 is off unless forced.)
		ForceAttemptHTTP2: false,
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Relay{
		cfg:     cfg,
		log:     log,
		m:       m,
		client:  &http.Client{Transport: tr, CheckRedirect: noRedirect},
		cache:   newLRU(cfg.CacheBytes, cfg.CacheTTL, m),
		ctx:     ctx,
		stop:    stop,
		flights: make(map[string]*flight),
	}
}

// noRedirect makes the client return redirects as they are (the relay
// then answers 502): an origin never redirects.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Close cancels the upstream requests in flight (their waiters get 502, or
// an aborted stream), waits for their goroutines and closes the idle
// connections. Serve answers 503 afterwards.
func (rl *Relay) Close() {
	rl.mu.Lock()
	rl.closed = true
	rl.mu.Unlock()
	rl.stop()
	rl.wg.Wait()
	rl.client.CloseIdleConnections()
}

// Serve answers r, a GET or HEAD whose path (without playback token) names
// an object of kind kind of a stream owned by the node whose origin is at
// owner ("http://10.0.0.2:8080"), with that object, fetched through the
// collapsed and cached upstream path. gzip says whether the client may get
// a gzip-encoded playlist or MPD (the caller's Accept-Encoding and gzip
// policy). Serve writes the whole response, errors included, and returns
// nil, or ErrAborted when the caller must abort a response it had started.
// The caller has checked tokens and scopes, and sets its own CORS headers
// and request id; w's error statuses get the caller's cache policy.
func (rl *Relay) Serve(w http.ResponseWriter, r *http.Request, owner string, kind Kind, gzip bool) error {
	if kind >= numKinds {
		kind = KindOther
	}
	gzip = gzip && (kind == KindPlaylist || kind == KindMPD)
	target := upstreamURL(owner, r.URL, kind)
	key := target
	if gzip {
		key += "\x00gzip"
	}
	if kind.immutable() {
		if obj, ok := rl.cache.get(key, time.Now()); ok {
			rl.m.hits.Inc()
			serveObject(w, r, obj, kind)
			return nil
		}
	}
	f, obj := rl.join(key, target, kind, gzip, w.Header().Get("X-Request-Id"))
	if obj != nil {
		serveObject(w, r, obj, kind)
		return nil
	}
	if f == nil {
		fail(w, http.StatusServiceUnavailable, "relay shutting down\n")
		return nil
	}
	return rl.wait(w, r, f, kind)
}

// wait answers r from flight f, which it has joined, and leaves it.
func (rl *Relay) wait(w http.ResponseWriter, r *http.Request, f *flight, kind Kind) error {
	defer rl.leave(f)
	select {
	case <-f.ready:
	case <-r.Context().Done():
		// The client left while waiting, as the origin's own blocking
		// requests answer when their wait ends in vain.
		fail(w, http.StatusServiceUnavailable, "timed out waiting for the object\n")
		return nil
	}
	if f.held {
		if f.timedOut {
			rl.m.held[heldTimeout].Inc()
		} else {
			rl.m.held[heldResumed].Inc()
		}
	}
	if f.err != nil {
		fail(w, http.StatusBadGateway, "owner of the stream unreachable\n")
		return nil
	}
	if f.streaming && !conditional(r) {
		return rl.stream(w, r, f)
	}
	obj, err := f.complete(r.Context())
	if err != nil {
		fail(w, http.StatusBadGateway, "owner of the stream unreachable\n")
		return nil
	}
	serveObject(w, r, obj, kind)
	return nil
}

// upstreamURL is the owner's URL of the object r asks for. Media objects
// and keys drop the query (the origin ignores it); playlists and MPDs keep
// only the LL-HLS directives, in a fixed order, so that other parameters
// (player session ids, cache busters) do not defeat collapsing. A query
// that does not parse is passed on as is: the owner answers 400.
func upstreamURL(owner string, u *url.URL, kind Kind) string {
	owner = strings.TrimSuffix(owner, "/")
	if u.RawQuery == "" || kind != KindPlaylist && kind != KindMPD && kind != KindOther {
		return owner + u.Path
	}
	vals, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return owner + u.Path + "?" + u.RawQuery
	}
	var b strings.Builder
	b.WriteString(owner)
	b.WriteString(u.Path)
	sep := byte('?')
	for _, name := range [...]string{"_HLS_msn", "_HLS_part", "_HLS_skip"} {
		for _, v := range vals[name] {
			b.WriteByte(sep)
			b.WriteString(name)
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(v))
			sep = '&'
		}
	}
	return b.String()
}

// stream writes a streamed object to w as its bytes arrive, flushing
// after each read.
func (rl *Relay) stream(w http.ResponseWriter, r *http.Request, f *flight) error {
	hdr := w.Header()
	f.hdr.set(hdr)
	hdr["Accept-Ranges"] = hvBytes
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	rc := http.NewResponseController(w)
	sent := 0
	for {
		f.mu.Lock()
		data, obj, err, ch := f.data, f.obj, f.bodyErr, f.changed
		f.mu.Unlock()
		if len(data) > sent {
			if _, werr := w.Write(data[sent:]); werr != nil {
				return ErrAborted
			}
			sent = len(data)
		}
		switch {
		case obj != nil:
			return nil
		case err != nil:
			return ErrAborted
		}
		if ferr := rc.Flush(); ferr != nil && !errors.Is(ferr, http.ErrNotSupported) {
			return ErrAborted
		}
		select {
		case <-ch:
		case <-r.Context().Done():
			return ErrAborted
		}
	}
}

// fail writes a short text error.
func fail(w http.ResponseWriter, code int, msg string) {
	hdr := w.Header()
	hdr["Content-Type"] = hvTextPlain
	hdr["X-Content-Type-Options"] = hvNoSniff
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}
