package origin

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/headwater-live/headwater/auth/playback"
	"github.com/headwater-live/headwater/hlsenc"
	"github.com/headwater-live/headwater/origin/relay"
	"github.com/headwater-live/headwater/playlist"
	"github.com/headwater-live/headwater/store"
)

// EncryptionConfig configures HLS AES-128 encryption (package hlsenc,
// docs/security.md). The zero value leaves every stream in the clear.
type EncryptionConfig struct {
	// Enabled encrypts the segments and parts of the streams Prefixes
	// selects; their media playlists carry EXT-X-KEY tags, their keys are
	// served at /keys/<stream>/<id>.key and their MPD is refused.
	Enabled bool
	// Prefixes are stream-name prefixes ("live/premium-"): a stream whose
	// name starts with one of them is encrypted. Empty means every stream.
	Prefixes []string
	// RotateSegments is the number of segments sharing a key (the key
	// changes at every multiple of it); 0 keeps one key per rendition for
	// the stream's life.
	RotateSegments int
	// SequenceIV uses each segment's Media Sequence Number as its IV (no
	// IV attribute) instead of a random IV per key.
	SequenceIV bool
	// CacheBytes bounds the ciphertexts kept (hlsenc.Cache), so that each
	// segment and part is encrypted about once however many players fetch
	// it. Default 64 MiB.
	CacheBytes int64
}

// Covers reports whether the stream called name is encrypted under c.
func (c EncryptionConfig) Covers(name string) bool {
	if !c.Enabled {
		return false
	}
	if len(c.Prefixes) == 0 {
		return true
	}
	for _, p := range c.Prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// DefaultEncryptionCacheBytes is EncryptionConfig.CacheBytes' default.
const DefaultEncryptionCacheBytes = 64 << 20

// encSweepEvery is how often the keys and ciphertexts of streams the store
// no longer holds are forgotten.
const encSweepEvery = 10 * time.Second

// WithKeyProvider makes the origin take its content keys from p (an
// external key service, say) instead of an hlsenc.MemoryProvider. p sees
// one stream name per rendition and stream instance (opaque strings, not
// the stream's name); if p has a Forget(string) method, it is called when
// the store forgets the stream. Encryption must be enabled in Config.
func WithKeyProvider(p hlsenc.KeyProvider) Option {
	return func(h *handler) {
		if h.enc != nil {
			h.enc.provider = p
		}
	}
}

// encryption is the origin's AES-128 state: which streams are encrypted,
// their keys and the ciphertext cache.
//
// Keys are kept per rendition of a stream instance, not per stream: the
// store numbers each rendition's segments on its own (a rendition added by
// a republish or a transcoder starts at 0 while the others are far ahead),
// and a provider keeps only the latest key periods of a name, so a shared
// key timeline would lose the keys of a lagging rendition. Each instance of
// a stream name (a publish after the ended grace replaces the stream and
// restarts its sequence numbers) gets fresh names, so that no key, IV or
// cached ciphertext of one instance is ever used for another.
type encryption struct {
	prefixes []string
	provider hlsenc.KeyProvider
	cache    *hlsenc.Cache

	lastSweep atomic.Int64 // unix nanoseconds

	mu      sync.Mutex
	streams map[string]*encStream // by stream name
	seq     uint64
}

// encStream is the state of one stream instance.
type encStream struct {
	started time.Time
	ns      string            // cache namespace: "<name>#<seq>"
	rends   map[string]string // rendition -> provider namespace "<ns>/<rendition>"
}

// newEncryption returns the encryption state of cfg, nil when it is off.
// The provider keeps the key periods a playlist may list (window and
// the extra segments kept, plus the open and next segment), with room for
// a rendition running behind its siblings.
func newEncryption(cfg EncryptionConfig, scfg store.Config) *encryption {
	if !cfg.Enabled {
		return nil
	}
	rotate := uint64(max(cfg.RotateSegments, 0))
	keep := hlsenc.DefaultKeepPeriods
	if rotate > 0 {
		segs := uint64(scfg.Window+scfg.KeepExtra) + 2
		keep = max(keep, 2*int((segs+rotate-1)/rotate)+1)
	}
	cacheBytes := cfg.CacheBytes
	if cacheBytes <= 0 {
		cacheBytes = DefaultEncryptionCacheBytes
	}
	return &encryption{
		prefixes: append([]string(nil), cfg.Prefixes...),
		provider: hlsenc.NewMemoryProvider(hlsenc.MemoryConfig{RotateEvery: rotate, Keep: keep, SequenceIV: cfg.SequenceIV}),
		cache:    hlsenc.NewCache(cacheBytes),
		streams:  make(map[string]*encStream),
	}
}

// covers reports whether stream name is encrypted. A nil *encryption
// covers nothing.
func (e *encryption) covers(name string) bool {
	if e == nil {
		return false
	}
	return EncryptionConfig{Enabled: true, Prefixes: e.prefixes}.Covers(name)
}

// stateLocked returns the state of st, creating it on first use. A stream
// that replaced an earlier instance of its name gets a new state (the old
// one is returned in gone, to be forgotten); ok is false for a stream that
// has itself been replaced since the request found it.
func (e *encryption) stateLocked(st *store.Stream) (es, gone *encStream, ok bool) {
	es = e.streams[st.Name()]
	switch {
	case es != nil && es.started.Equal(st.Started()):
		return es, nil, true
	case es != nil && st.Started().Before(es.started):
		return nil, nil, false
	}
	gone = es
	e.seq++
	es = &encStream{
		started: st.Started(),
		ns:      st.Name() + "#" + strconv.FormatUint(e.seq, 36),
		rends:   make(map[string]string, 2),
	}
	e.streams[st.Name()] = es
	return es, gone, true
}

// namespaces returns the provider namespace of rendition rend of st and
// the cache namespace of st; ok is false for a replaced stream.
func (e *encryption) namespaces(st *store.Stream, rend string) (keyNS, cacheNS string, ok bool) {
	e.mu.Lock()
	es, gone, ok := e.stateLocked(st)
	if ok {
		keyNS = es.rends[rend]
		if keyNS == "" {
			keyNS = es.ns + "/" + rend
			es.rends[rend] = keyNS
		}
		cacheNS = es.ns
	}
	e.mu.Unlock()
	e.forget(gone)
	return keyNS, cacheNS, ok
}

// staleError is keyFor's error for a stream replaced during the request.
type staleError struct{}

func (staleError) Error() string { return "origin: stream replaced" }

// keyFor returns the key of segment msn of rendition rend of st, and the
// cache namespace of st.
func (e *encryption) keyFor(st *store.Stream, rend string, msn uint64) (hlsenc.Key, string, error) {
	keyNS, cacheNS, ok := e.namespaces(st, rend)
	if !ok {
		return hlsenc.Key{}, "", staleError{}
	}
	key, err := e.provider.KeyFor(keyNS, msn)
	return key, cacheNS, err
}

// encrypt returns the ciphertext of data, object part of segment msn of
// rendition rend (part -1: the whole segment), from the cache when it is
// there. ok is false when the segment's key is gone.
func (e *encryption) encrypt(st *store.Stream, rend string, msn uint64, part int, data []byte) ([]byte, bool) {
	key, cacheNS, err := e.keyFor(st, rend, msn)
	if err != nil {
		return nil, false
	}
	id := hlsenc.ObjectID{Stream: cacheNS, Rendition: rend, MSN: msn, Part: part}
	return e.cache.Encrypt(id, key, key.IV(msn), data), true
}

// playlistEncryption returns the playlist.Encryption of stream name whose
// rendition's keys are in namespace keyNS (from namespaces).
func (e *encryption) playlistEncryption(name, keyNS string) *playlist.Encryption {
	p := e.provider
	return &playlist.Encryption{
		Stream: name,
		KeyFor: func(msn uint64) (hlsenc.Key, error) { return p.KeyFor(keyNS, msn) },
	}
}

// lookup finds key id of stream st, whichever rendition it belongs to.
func (e *encryption) lookup(st *store.Stream, id string) (hlsenc.Key, bool) {
	e.mu.Lock()
	es, gone, ok := e.stateLocked(st)
	var nss []string
	if ok {
		nss = make([]string, 0, len(es.rends))
		for _, ns := range es.rends {
			nss = append(nss, ns)
		}
	}
	e.mu.Unlock()
	e.forget(gone)
	for _, ns := range nss {
		if key, ok := e.provider.Lookup(ns, id); ok {
			return key, true
		}
	}
	return hlsenc.Key{}, false
}

// forget drops the keys and ciphertexts of a stream instance (nil: none).
func (e *encryption) forget(es *encStream) {
	if es == nil {
		return
	}
	if f, ok := e.provider.(interface{ Forget(string) }); ok {
		for _, ns := range es.rends {
			f.Forget(ns)
		}
	}
	e.cache.Forget(es.ns)
}

// maybeSweep forgets, at most every encSweepEvery, the keys and
// ciphertexts of the stream instances the store no longer holds (ended
// past their grace, or replaced). It runs on the origin's requests, which
// load balancers' /healthz probes keep coming.
func (e *encryption) maybeSweep(s *store.Store, now time.Time) {
	last := e.lastSweep.Load()
	if now.UnixNano()-last < int64(encSweepEvery) || !e.lastSweep.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	var gone []*encStream
	e.mu.Lock()
	for name, es := range e.streams {
		if cur, ok := s.Stream(name); !ok || !cur.Started().Equal(es.started) {
			delete(e.streams, name)
			gone = append(gone, es)
		}
	}
	e.mu.Unlock()
	for _, es := range gone {
		e.forget(es)
	}
}

// streamCount is the number of stream instances with encryption state (for
// tests).
func (e *encryption) streamCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.streams)
}

// serveKey serves /keys/<stream>/<id>.key: the 16 bytes of an AES-128 key,
// "private, no-store" whatever the answer, to requests that carried a
// playback token valid for the stream (checked by playback.Middleware,
// which put its claims in the context) or came through the CDN secret
// check (whose edge verified the token). Others get 403, whether or not
// the key exists. Without encryption the path is 404, as it always was.
func (h *handler) serveKey(w *respWriter, r *http.Request, t *target) object {
	const o = objectKey
	if h.archive != nil && strings.HasPrefix(t.prefix, "vod/") {
		return h.serveVODKey(w, r, t)
	}
	if h.enc == nil && h.relay == nil {
		return h.notFound(w, o)
	}
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
	if h.relay != nil {
		// Another node's stream: its keys are that node's. The check
		// above ran here; the relay's header makes the owner trust it.
		st, ok := h.st.Stream(t.prefix)
		if u, remote := h.owner(t.prefix, st, ok); remote {
			return h.relayed(w, r, u, t.prefix, relay.KindKey, o)
		}
		if h.enc == nil {
			return h.notFound(w, o)
		}
	}
	if !h.enc.covers(t.prefix) {
		return h.notFound(w, o)
	}
	st, ok := h.st.Stream(t.prefix)
	if !ok {
		return h.notFound(w, o)
	}
	tagStream(r, st)
	key, ok := h.enc.lookup(st, t.keyID())
	if !ok {
		return h.notFound(w, o)
	}
	writeKey(w, r, key)
	return o
}

// writeKey answers a key file: its 16 bytes (the headers only for HEAD).
func writeKey(w *respWriter, r *http.Request, key hlsenc.Key) {
	hdr := w.Header()
	hdr["Content-Type"] = hvOctets
	hdr["X-Content-Type-Options"] = hvNoSniff
	hdr[hvContentLength] = hvKeyLength
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = key.WriteTo(w)
	}
}
