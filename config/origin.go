package config

import (
	"time"

	"github.com/headwater-live/headwater/origin/relay"
)

// OriginConfig configures the HTTP origin.
type OriginConfig struct {
	// Address is the host:port the origin binds. The origin cannot be
	// disabled. It defaults to ":8080".
	Address string `yaml:"address" doc:"Origin listen address, host:port."`
	// TLSCert is a PEM certificate file; with TLSKey set too the origin
	// serves HTTPS and HTTP/2. It defaults to "" (plain HTTP).
	TLSCert string `yaml:"tls_cert" doc:"PEM certificate file; with tls_key set, the origin serves HTTPS and HTTP/2."`
	// TLSKey is the PEM private key file for TLSCert. It defaults to "".
	TLSKey string `yaml:"tls_key" doc:"PEM private key file for tls_cert."`
	// ReadHeaderTimeout is http.Server.ReadHeaderTimeout. It defaults to 5s.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout" doc:"Time allowed to read request headers."`
	// ReadTimeout is http.Server.ReadTimeout. It defaults to 10s.
	ReadTimeout Duration `yaml:"read_timeout" doc:"Time allowed to read a whole request."`
	// WriteTimeout is http.Server.WriteTimeout; it must exceed BlockTimeout.
	// It defaults to 30s.
	WriteTimeout Duration `yaml:"write_timeout" doc:"Time allowed to write a response (> block_timeout)."`
	// IdleTimeout is http.Server.IdleTimeout. It defaults to 120s.
	IdleTimeout Duration `yaml:"idle_timeout" doc:"Keep-alive idle timeout."`
	// MaxHeaderBytes is http.Server.MaxHeaderBytes, at least 1024.
	// It defaults to 16384.
	MaxHeaderBytes int `yaml:"max_header_bytes" doc:"Largest request header accepted, bytes (>= 1024)."`
	// MaxConnections caps the origin's concurrent connections (further
	// ones wait in the listen backlog); 0 means no limit. It defaults to
	// 10000.
	MaxConnections int `yaml:"max_connections" doc:"Concurrent connections of the origin; 0 = unlimited."`
	// MaxConnectionsPerAddress caps the concurrent connections of one
	// client address (an IPv6 /64 counts as one); a connection beyond it is
	// closed at accept. It defaults to 0 (no limit): behind a CDN a few
	// edge addresses hold most connections.
	MaxConnectionsPerAddress int `yaml:"max_connections_per_address" doc:"Concurrent origin connections of one address (IPv6: one /64), closed at accept beyond; 0 = unlimited (the default; behind a CDN leave it 0 or above what one edge holds)."`
	// BlockTimeout is the longest an LL-HLS blocking playlist reload or
	// preload-hint request waits (the spec suggests three target
	// durations). It defaults to 6s.
	BlockTimeout Duration `yaml:"block_timeout" doc:"Longest LL-HLS blocking reload / preload hint wait."`
	// Gzip enables gzip for playlists when the client accepts it.
	// It defaults to true.
	Gzip bool `yaml:"gzip" doc:"Gzip playlists when the client accepts it."`
	// CORS configures Cross-Origin Resource Sharing headers.
	DASH DASHConfig `yaml:"dash" doc:"DASH and low-latency DASH (manifest.mpd) from the same CMAF segments."`
	CORS CORSConfig `yaml:"cors" doc:"Cross-origin (CORS) headers."`
	// Cache configures Cache-Control max-age values.
	Cache CacheConfig `yaml:"cache" doc:"Cache-Control max-age per response kind (whole seconds)."`
	// Relay configures how this node's origin fetches the streams other
	// nodes of a cluster own (package origin/relay); unused on one node.
	Relay OriginRelayConfig `yaml:"relay" doc:"Fetching streams other cluster nodes own: upstream pool, timeouts and the cache of immutable objects."`
}

// OriginRelayConfig configures the origin relay (origin/relay.Config).
type OriginRelayConfig struct {
	// CacheBytes bounds the memory for relayed init sections, segments and
	// parts. It defaults to 268435456 (256 MiB).
	CacheBytes int `yaml:"cache_bytes" doc:"Memory for relayed init sections, segments and parts, bytes (>= 1048576)."`
	// CacheTTL is the longest a relayed object stays cached. It defaults
	// to 1m.
	CacheTTL Duration `yaml:"cache_ttl" doc:"Longest a relayed object stays cached."`
	// MaxIdleConnsPerHost is the number of idle keep-alive connections
	// kept to each owner. It defaults to 256.
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host" doc:"Idle keep-alive connections kept to each owner node (>= 1)."`
	// DialTimeout bounds connecting to an owner. It defaults to 2s.
	DialTimeout Duration `yaml:"dial_timeout" doc:"Time allowed to connect to an owner node."`
	// ResponseTimeout bounds the wait for an owner's response headers and
	// each gap in its body; it must exceed origin.block_timeout. It
	// defaults to 10s.
	ResponseTimeout Duration `yaml:"response_timeout" doc:"Wait for an owner's response headers and each gap in its body (> origin.block_timeout)."`
}

// RelayConfig returns the relay.Config of r (its Header, the cluster's
// shared secret, is left to the caller).
func (r OriginRelayConfig) RelayConfig() relay.Config {
	return relay.Config{
		CacheBytes:          int64(r.CacheBytes),
		CacheTTL:            time.Duration(r.CacheTTL),
		MaxIdleConnsPerHost: r.MaxIdleConnsPerHost,
		DialTimeout:         time.Duration(r.DialTimeout),
		ResponseTimeout:     time.Duration(r.ResponseTimeout),
	}
}

// TLSEnabled reports whether the origin serves HTTPS (both TLSCert and TLSKey
// are set).
func (o OriginConfig) TLSEnabled() bool { return o.TLSCert != "" && o.TLSKey != "" }

// DASHConfig configures the MPD.
type DASHConfig struct {
	// LowLatency makes manifest.mpd a low-latency MPD: the segment being
	// written is listed and served with chunked transfer. It defaults to true.
	LowLatency bool `yaml:"low_latency" doc:"Low-latency DASH: list the segment being written and serve it chunk by chunk."`
	// TargetLatency is the ServiceDescription latency target; 0 derives it
	// from the part duration (three parts, within 1.5s..3s).
	TargetLatency Duration `yaml:"target_latency" doc:"Low-latency DASH target latency; 0s = three parts, within 1.5s..3s."`
	// EndGrace keeps an ended stream's MPD live (minimumUpdatePeriod) so
	// players follow a republish. It defaults to 10s.
	EndGrace Duration `yaml:"end_grace" doc:"How long an ended stream's MPD stays live so players follow a republish."`
}

// CORSConfig configures Cross-Origin Resource Sharing on the origin.
type CORSConfig struct {
	// AllowedOrigins lists the origins allowed to read responses: "*" for
	// any, or origins such as "https://player.example" (scheme, host and
	// optional port; no path). An empty list sends no CORS headers.
	// It defaults to ["*"].
	AllowedOrigins []string `yaml:"allowed_origins" doc:"\"*\" or origins like https://player.example (no path); [] sends no CORS headers."`
}

// CacheConfig holds Cache-Control max-age values for origin responses. Each
// is a whole number of seconds; 0 means "max-age=0".
type CacheConfig struct {
	// SegmentMaxAge applies to segments, parts and init sections, which are
	// also marked public and immutable. It defaults to 86400s (one day).
	SegmentMaxAge Duration `yaml:"segment_max_age" doc:"Segments, parts and init sections (public, immutable)."`
	// PlaylistMaxAge applies to live media playlists. It defaults to 1s.
	PlaylistMaxAge Duration `yaml:"playlist_max_age" doc:"Live media playlists."`
	// MultivariantMaxAge applies to multivariant playlists. It defaults to 2s.
	MultivariantMaxAge Duration `yaml:"multivariant_max_age" doc:"Multivariant playlists."`
	// BlockingMaxAge applies to LL-HLS blocking-reload responses, which are
	// cacheable per URL. It defaults to 6s.
	BlockingMaxAge Duration `yaml:"blocking_max_age" doc:"LL-HLS blocking-reload responses (cacheable per URL)."`
	// NotFoundMaxAge applies to 404 responses. It defaults to 1s.
	NotFoundMaxAge Duration `yaml:"not_found_max_age" doc:"404 responses."`
	// EndedMaxAge applies to playlists carrying EXT-X-ENDLIST.
	// It defaults to 60s.
	EndedMaxAge Duration `yaml:"ended_max_age" doc:"Playlists with EXT-X-ENDLIST."`
}

// HLSConfig configures HLS delivery.
type HLSConfig struct {
	// Encryption configures AES-128 encryption of segments and parts.
	Encryption HLSEncryptionConfig `yaml:"encryption" doc:"AES-128 encryption of HLS segments and parts (docs/security.md); off by default."`
}

// HLSEncryptionConfig configures HLS AES-128 (METHOD=AES-128) encryption.
type HLSEncryptionConfig struct {
	// Enabled encrypts the segments and parts of the streams Prefixes
	// selects, serves their keys to playback token (or CDN secret) holders
	// and refuses their DASH MPD. It needs playback.tokens.keys or
	// playback.cdn.secret_file. It defaults to false.
	Enabled bool `yaml:"enabled" doc:"Encrypt HLS segments and parts (AES-128); needs playback tokens or the CDN secret; DASH is refused for encrypted streams."`
	// Prefixes are stream-name prefixes ("live/premium-"); a stream whose
	// name starts with one is encrypted. Empty means every stream. It
	// defaults to [].
	Prefixes []string `yaml:"prefixes" doc:"Stream-name prefixes to encrypt (\"live/premium-\"); [] = every stream."`
	// RotateSegments is the number of segments sharing a key; 0 keeps one
	// key per rendition for the stream's life. It defaults to 30.
	RotateSegments int `yaml:"rotate_segments" doc:"Segments per key: a new random key every N segments; 0 = one key per stream."`
	// SequenceIV uses the segment's Media Sequence Number as IV instead of
	// a random IV per key. It defaults to false.
	SequenceIV bool `yaml:"sequence_iv" doc:"IV = media sequence number (no IV attribute) instead of a random IV per key."`
	// CacheBytes bounds the encrypted segments and parts kept in memory so
	// that each is encrypted about once. It defaults to 67108864 (64 MiB).
	CacheBytes int `yaml:"cache_bytes" doc:"Memory for encrypted segments and parts, bytes (>= 1048576)."`
}
