// Package origin is Headwater's HTTP origin: it serves the HLS playlists,
// init segments, segments and LL-HLS parts held in a store.Store, with the
// headers a CDN in front of it needs (Cache-Control per object type, strong
// ETags, CORS, gzip for playlists) and LL-HLS blocking playlist reload and
// blocking part requests.
//
// URLs are /<stream>/index.m3u8 (multivariant playlist) and
// /<stream>/<rendition>/{index.m3u8, init.mp4, init-N.mp4, segN.m4s,
// partN.P.m4s}, where <stream> is a '/'-separated name ("live/key") valid
// per media.ValidateName. /healthz answers "ok". Nothing is ever read from
// a file system.
//
// Response headers, for a CDN in front:
//
//	object                        Cache-Control                              Content-Type
//	init, segment, part           public, max-age=SegmentMaxAge, immutable   video/mp4 or audio/mp4
//	media playlist                public, max-age=PlaylistMaxAge             application/vnd.apple.mpegurl
//	media playlist with _HLS_msn  public, max-age=BlockingMaxAge             application/vnd.apple.mpegurl
//	multivariant playlist         public, max-age=MultivariantMaxAge         application/vnd.apple.mpegurl
//	playlists of ended streams    public, max-age=EndedMaxAge                application/vnd.apple.mpegurl
//	404                           public, max-age=NotFoundMaxAge             text/plain
//	other errors (400, 405, 503)  no-cache                                   text/plain
//	/healthz                      no-store                                   text/plain
//
// Parts are served as video/mp4 (audio/mp4), like segments, rather than
// video/iso.segment: a part is a byte range of its segment, players and MSE
// ignore the difference, and CDN rules keyed on Content-Type (compression,
// caching classes) then treat all media the same way.
//
// Media objects carry a strong ETag derived from the stream's start time,
// epoch, sequence number and part index, and a Last-Modified; playlists an
// ETag hashed from the versions of the snapshots they are rendered from
// (their Last-Modified is informative only: they change within a second, so
// only If-None-Match revalidates them). Playlists are gzipped when accepted
// (Vary: Accept-Encoding); media never are.
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
	// EndedMaxAge is for playlists of streams whose publisher has gone.
	// Default 60s.
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
	// browser; "*" allows any. Default ["*"].
	CORSAllowedOrigins []string
	// Cache sets Cache-Control max-ages.
	Cache CacheConfig
	// Window is the number of segments a media playlist lists. Default 6.
	Window int
}

// DefaultConfig returns the configuration with every default filled in.
func DefaultConfig() Config {
	c := Config{Gzip: true}
	return c.WithDefaults()
}

// WithDefaults returns c with zero fields replaced by their defaults (Gzip
// is left as it is).
func (c Config) WithDefaults() Config {
	if c.Address == "" {
		c.Address = ":8080"
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.ReadHeaderTimeout, 5*time.Second)
	def(&c.ReadTimeout, 10*time.Second)
	def(&c.WriteTimeout, 30*time.Second)
	def(&c.IdleTimeout, 120*time.Second)
	def(&c.BlockTimeout, 6*time.Second)
	if c.MaxHeaderBytes <= 0 {
		c.MaxHeaderBytes = 16 << 10
	}
	if len(c.CORSAllowedOrigins) == 0 {
		c.CORSAllowedOrigins = []string{"*"}
	}
	age := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	age(&c.Cache.SegmentMaxAge, 24*time.Hour)
	age(&c.Cache.PlaylistMaxAge, time.Second)
	age(&c.Cache.MultivariantMaxAge, 2*time.Second)
	age(&c.Cache.BlockingMaxAge, 6*time.Second)
	age(&c.Cache.NotFoundMaxAge, time.Second)
	age(&c.Cache.EndedMaxAge, 60*time.Second)
	if c.Window <= 0 {
		c.Window = 6
	}
	return c
}
