// Package origin is Headwater's HTTP origin: it serves the HLS playlists, the
// DASH MPD, init segments, segments and LL-HLS parts held in a store.Store,
// with the headers a CDN in front of it needs (Cache-Control per object type,
// strong ETags, CORS, gzip for playlists and MPDs), LL-HLS blocking playlist
// reload and blocking part requests, and low-latency DASH delivery of the
// segment being written.
//
// URLs are /<stream>/index.m3u8 (multivariant playlist),
// /<stream>/manifest.mpd (MPD), /<stream>/time and /time (the origin's clock,
// for DASH UTCTiming) and /<stream>/<rendition>/{index.m3u8, init.mp4,
// init-N.mp4, segN.m4s, partN.P.m4s}, where <stream> is a '/'-separated name
// ("live/key") valid per media.ValidateName. /healthz answers "ok". With HLS
// encryption on, /keys/<stream>/<id>.key serves AES-128 keys (see
// Encryption below). Nothing is ever read from a file system.
//
// Response headers, for a CDN in front:
//
//	object                        Cache-Control                              Content-Type
//	init, segment, part           public, max-age=SegmentMaxAge, immutable   video/mp4 or audio/mp4
//	media playlist                public, max-age=PlaylistMaxAge             application/vnd.apple.mpegurl
//	media playlist with _HLS_msn  public, max-age=BlockingMaxAge             application/vnd.apple.mpegurl
//	multivariant playlist         public, max-age=MultivariantMaxAge         application/vnd.apple.mpegurl
//	playlists of ended streams    public, max-age=EndedMaxAge                application/vnd.apple.mpegurl
//	live MPD                      public, max-age=PlaylistMaxAge             application/dash+xml
//	final MPD (see below)         public, max-age=EndedMaxAge                application/dash+xml
//	404                           public, max-age=NotFoundMaxAge             text/plain
//	other errors (400, 405, 503)  no-cache                                   text/plain
//	/healthz, /time               no-store                                   text/plain
//	/keys/... (any status)        private, no-store                          application/octet-stream
//
// Parts are served as video/mp4 (audio/mp4), like segments, rather than
// video/iso.segment: a part is a byte range of its segment, players and MSE
// ignore the difference, and CDN rules keyed on Content-Type (compression,
// caching classes) then treat all media the same way.
//
// Media objects carry a strong ETag derived from the stream's start time,
// epoch, sequence number and part index, and a Last-Modified; playlists and
// MPDs an ETag hashed from the versions of the snapshots they are rendered
// from (their Last-Modified is informative only: they change within a
// second, so only If-None-Match revalidates them). Playlists and MPDs are
// gzipped when accepted (Vary: Accept-Encoding); media never are.
//
// # DASH
//
// The MPD is rendered by dash.MPD from the same renditions as the HLS
// playlists, with the stream's start as availabilityStartTime, one
// dash.History per stream (kept while the store holds the stream) and
// UTCTiming pointing at the relative URL "time", i.e. /<stream>/time: a
// relative URL resolves against the MPD's URL (dash.js and Shaka resolve it
// against the MPD's base URL), so it goes through the same CDN and keeps a
// playback-token path prefix (/t/<token>/<stream>/...), which /time at the
// root would not. An MPD is rendered once per content (the snapshot versions,
// and whether the stream's end has become final) and cached with its gzip
// encoding; its publishTime is when it was rendered. 404 (NotFoundMaxAge)
// while dash.MPD has no media to list. Once every rendition has ended and
// DASHEndGrace has passed, the MPD is final (no minimumUpdatePeriod) and
// gets EndedMaxAge; during that grace it stays a live MPD, with
// PlaylistMaxAge, so that players pick up a republish.
//
// # Segments being written
//
// A plain GET of segN.m4s while segment N is being written streams it: the
// response has no Content-Length (chunked transfer in HTTP/1.1, DATA frames
// in HTTP/2), its parts (CMAF chunks) are written and flushed as they are
// appended, and it ends when the segment is complete. Its headers are those
// of the complete segment (Cache-Control immutable, the same strong ETag;
// no Last-Modified): the bytes of a response that completes are the
// segment's bytes. If the segment stops growing for BlockTimeout the
// response is aborted (the connection is reset, no final chunk), never ended
// cleanly, so that a CDN does not cache a truncated object: caches discard
// an upstream response that ends without its terminating chunk (nginx, for
// one, does not store it). A client that goes away leaves nothing for a
// cache either. A request for segment N that does not exist yet but is the
// next one (N = the last segment + 1, or the open segment before its first
// part) waits, up to BlockTimeout, for its first part and then streams it;
// 503 if it does not come. Further in the future is 404 at once.
//
// # Encryption
//
// With Config.Encryption on, the segments and parts of the streams it
// covers (stream-name prefixes) are encrypted with HLS METHOD=AES-128
// (package hlsenc): every part is a resource of its own, encrypted with its
// segment's key and IV; init sections stay in the clear. Ciphertexts are
// kept in an hlsenc.Cache, so each object is encrypted about once however
// many players fetch it; they keep the media Cache-Control (public,
// immutable: a CDN may keep them, useless without the key) and get their
// own ETag ("...e"). Keys are random (crypto/rand), one timeline per
// rendition of each stream instance, rotated every RotateSegments segments
// of the rendition. Media playlists carry the EXT-X-KEY tags
// (playlist.Encryption) with relative key URIs, so that a playback token in
// the path carries to the key request. /keys/<stream>/<id>.key answers the
// 16 key bytes only to a request whose playback token (checked by
// playback.Middleware in front) covers the path, or that passed the CDN
// secret check (playback.ViaCDN); others get 403 whether or not the key
// exists. Key responses are "private, no-store" whatever their status.
// Segments of an encrypted stream are served complete only (a request for
// the segment being written waits for its end), and its MPD is 404: DASH
// would list the media in the clear. Keys and ciphertexts of a stream go
// once the store forgets it (checked every 10 s, on requests) or a new
// publish replaces it. Keys never appear in logs, errors or metrics.
//
// Range and conditional requests (If-None-Match, ...) for a segment being
// written wait for it to complete (up to BlockTimeout, else 503) and are
// then answered by http.ServeContent as for any complete segment: a 206
// needs the complete length, and such requests come from CDNs fetching or
// revalidating objects, not from players at the live edge. HEAD answers at
// once with the headers a GET would get (no Content-Length).
package origin

import "time"

// CacheConfig sets the Cache-Control max-age of each kind of response. A
// zero field takes its default; a negative one means max-age=0.
type CacheConfig struct {
	// SegmentMaxAge is for init segments, segments and parts, which never
	// change once served ("immutable"). Default 24h.
	SegmentMaxAge time.Duration
	// PlaylistMaxAge is for live media playlists requested without
	// _HLS_msn. Default 1s.
	PlaylistMaxAge time.Duration
	// MultivariantMaxAge is for multivariant playlists of live streams.
	// Default 2s.
	MultivariantMaxAge time.Duration
	// BlockingMaxAge is for media playlists answering a blocking reload
	// (_HLS_msn): the URL names the content so a CDN may keep it. Default 6s.
	BlockingMaxAge time.Duration
	// NotFoundMaxAge is for 404 responses. Default 1s.
	NotFoundMaxAge time.Duration
	// EndedMaxAge is for playlists of streams whose publisher has gone, and
	// for final MPDs. Default 60s.
	EndedMaxAge time.Duration
}

// Config configures the origin handler and server.
type Config struct {
	// Address is the listen address. Default ":8080".
	Address string
	// TLSCert and TLSKey are PEM files; when both are set the server speaks
	// HTTPS, with HTTP/2 negotiated through ALPN.
	TLSCert, TLSKey string
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the
	// http.Server timeouts. Defaults 5s, 10s, 30s, 120s. WriteTimeout must
	// exceed BlockTimeout or blocking requests are cut.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxHeaderBytes bounds request headers. Default 16384.
	MaxHeaderBytes int
	// BlockTimeout is the longest an LL-HLS blocking playlist reload or a
	// blocking part request waits before answering 503. Default 6s.
	BlockTimeout time.Duration
	// Gzip compresses playlists for clients that accept it; media objects
	// are never compressed. DefaultConfig sets it (WithDefaults cannot: false
	// is a valid choice).
	Gzip bool
	// CORSAllowedOrigins lists the origins allowed to read responses from a
	// browser; "*" allows any. Default (nil) ["*"]; an empty, non-nil list
	// sends no CORS headers.
	CORSAllowedOrigins []string
	// Cache sets Cache-Control max-ages.
	Cache CacheConfig
	// Window is the number of segments a media playlist lists, and the
	// number of complete segments per Representation an MPD lists. Default 6.
	Window int
	// DASHLowLatency makes /<stream>/manifest.mpd a low-latency MPD (the
	// segment being written is listed and served with chunked transfer; see
	// the dash package). DefaultConfig sets it (WithDefaults cannot: false is
	// a valid choice).
	DASHLowLatency bool
	// DASHTargetLatency is the low-latency MPD's ServiceDescription latency
	// target; zero lets the dash package derive it from the part target
	// (three parts, within [1.5s, 3s]).
	DASHTargetLatency time.Duration
	// DASHEndGrace is how long the MPD of a stream that has ended stays a
	// live MPD, so that players keep reloading it and follow a republish
	// (dash.Options.EndGrace). Zero means dash.DefaultEndGrace (10s); a
	// negative value makes the MPD final as soon as the stream ends.
	DASHEndGrace time.Duration
	// MaxConnections bounds the server's concurrent connections; further
	// connections wait in the listen backlog until one closes. 0 means no
	// limit.
	MaxConnections int
	// MaxConnectionsPerAddress bounds the concurrent connections of one
	// client address (an IPv6 /64 counts as one): a connection beyond it is
	// closed at accept, counted in headwater_origin_connections_refused_total
	// and logged at most once per address a minute. 0 means no limit, which
	// suits an origin behind a CDN (its edges hold many connections each).
	MaxConnectionsPerAddress int
	// Encryption configures HLS AES-128 encryption; off by default.
	Encryption EncryptionConfig
}

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config {
	c := Config{Gzip: true, DASHLowLatency: true}
	return c.WithDefaults()
}

// Defaults of Config (and of config.Default's origin section).
const (
	DefaultAddress            = ":8080"
	DefaultReadHeaderTimeout  = 5 * time.Second
	DefaultReadTimeout        = 10 * time.Second
	DefaultWriteTimeout       = 30 * time.Second
	DefaultIdleTimeout        = 120 * time.Second
	DefaultBlockTimeout       = 6 * time.Second
	DefaultMaxHeaderBytes     = 16 << 10
	DefaultWindow             = 6
	DefaultSegmentMaxAge      = 24 * time.Hour
	DefaultPlaylistMaxAge     = time.Second
	DefaultMultivariantMaxAge = 2 * time.Second
	DefaultBlockingMaxAge     = 6 * time.Second
	DefaultNotFoundMaxAge     = time.Second
	DefaultEndedMaxAge        = 60 * time.Second
)

// WithDefaults returns c with zero fields replaced by their defaults (Gzip
// and DASHLowLatency are left as they are).
func (c Config) WithDefaults() Config {
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&c.ReadTimeout, DefaultReadTimeout)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.BlockTimeout, DefaultBlockTimeout)
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.CORSAllowedOrigins == nil {
		c.CORSAllowedOrigins = []string{"*"}
	}
	age := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	age(&c.Cache.SegmentMaxAge, DefaultSegmentMaxAge)
	age(&c.Cache.PlaylistMaxAge, DefaultPlaylistMaxAge)
	age(&c.Cache.MultivariantMaxAge, DefaultMultivariantMaxAge)
	age(&c.Cache.BlockingMaxAge, DefaultBlockingMaxAge)
	age(&c.Cache.NotFoundMaxAge, DefaultNotFoundMaxAge)
	age(&c.Cache.EndedMaxAge, DefaultEndedMaxAge)
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	return c
}
