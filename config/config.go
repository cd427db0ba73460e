// Package config loads, defaults, overrides and validates Headwater's single
// YAML configuration file.
//
// Settings are resolved in this order, each layer overriding the previous one:
//
//	defaults < configuration file < HEADWATER_* environment variables < command-line flags
//
// Every key has a default (see [Default] and [DefaultYAML]), so Headwater runs
// with no file at all. Keys are written in snake_case and addressed by their
// dotted path, e.g. "segmenter.part_duration"; the matching environment
// variable is the path upper-cased with dots replaced by underscores and the
// HEADWATER_ prefix, e.g. HEADWATER_SEGMENTER_PART_DURATION (see [EnvName]).
//
// The doc struct tags on Config's fields are the single source of the per-key comments
// printed by [DefaultYAML] and of the flag usage strings returned by [Flags].
package config

import "time"

// Config is Headwater's complete configuration. Use [Default] or [Load] to
// obtain one; the zero value is not valid.
type Config struct {
	// Log configures the process logger. See [Config.Logger].
	Log LogConfig `yaml:"log" doc:"Process logging."`
	// RTMP configures the RTMP ingest listener.
	RTMP RTMPConfig `yaml:"rtmp" doc:"RTMP ingest."`
	// Streams holds limits shared by every ingest protocol.
	Streams StreamsConfig `yaml:"streams" doc:"Stream limits shared by every ingest protocol."`
	// Segmenter configures HLS / LL-HLS / CMAF segmentation.
	Segmenter SegmenterConfig `yaml:"segmenter" doc:"HLS, LL-HLS and CMAF segmentation."`
	// Origin configures the HTTP origin serving playlists and media.
	Origin OriginConfig `yaml:"origin" doc:"HTTP origin serving playlists, segments and parts."`
	// Admin configures the admin listener (/metrics, /healthz, /readyz).
	Admin AdminConfig `yaml:"admin" doc:"Admin listener: /metrics, /healthz, /readyz."`
	// Tracing configures OpenTelemetry tracing.
	Tracing TracingConfig `yaml:"tracing" doc:"OpenTelemetry tracing (OTLP/HTTP, configured by the standard OTEL_* variables)."`
	// Shutdown configures how SIGTERM/SIGINT stop the server.
	Shutdown ShutdownConfig `yaml:"shutdown" doc:"Graceful shutdown on SIGTERM/SIGINT."`
}

// LogConfig configures the process logger.
type LogConfig struct {
	// Level is the minimum level logged: debug, info, warn or error.
	// It defaults to "info".
	Level string `yaml:"level" doc:"Minimum level logged: debug, info, warn or error."`
	// Format is the log line format: json or text. It defaults to "json".
	Format string `yaml:"format" doc:"Log line format: json or text."`
}

// RTMPConfig configures RTMP ingest.
type RTMPConfig struct {
	// Address is the host:port the RTMP listener binds; "" disables RTMP.
	// It defaults to ":1935".
	Address string `yaml:"address" doc:"RTMP listen address, host:port; \"\" disables RTMP."`
	// App is the RTMP application name publishers connect to; the stream
	// name is <app>/<stream key>. It defaults to "live".
	App string `yaml:"app" doc:"RTMP application name; a stream is named <app>/<stream key>."`
	// HandshakeTimeout bounds the RTMP handshake and connect/publish
	// exchange. It defaults to 5s.
	HandshakeTimeout Duration `yaml:"handshake_timeout" doc:"Time allowed for the RTMP handshake."`
	// IdleTimeout is the read timeout on a publishing connection.
	// It defaults to 10s.
	IdleTimeout Duration `yaml:"idle_timeout" doc:"Read timeout on a publishing connection."`
	// MaxPublishers caps concurrent RTMP publishers; 0 means unlimited.
	// It defaults to 100.
	MaxPublishers int `yaml:"max_publishers" doc:"Concurrent RTMP publishers; 0 = unlimited."`
	// MaxChunkSize is the largest chunk size (bytes) a peer may announce,
	// 128..16777215. It defaults to 65536.
	MaxChunkSize int `yaml:"max_chunk_size" doc:"Largest chunk size a peer may announce, bytes (128..16777215)."`
}

// StreamsConfig holds limits shared by every ingest protocol.
type StreamsConfig struct {
	// MaxStreams caps concurrent live streams across all protocols; 0 means
	// unlimited. It defaults to 0.
	MaxStreams int `yaml:"max_streams" doc:"Concurrent streams across all protocols; 0 = unlimited."`
	// EndedGrace is how long an ended stream's playlists stay readable (with
	// EXT-X-ENDLIST) and during which a republish continues the same
	// playlists. It defaults to 60s.
	EndedGrace Duration `yaml:"ended_grace" doc:"How long an ended stream stays readable (ENDLIST) and a republish continues it."`
}

// SegmenterConfig configures HLS / LL-HLS / CMAF segmentation.
type SegmenterConfig struct {
	// SegmentDuration is the target segment duration; segments are cut on
	// the first key frame at or after it. It defaults to 2s.
	SegmentDuration Duration `yaml:"segment_duration" doc:"Target segment duration; segments are cut on key frames at or after it."`
	// PartDuration is the LL-HLS part / CMAF chunk target; at least 20ms and
	// less than SegmentDuration. It defaults to 200ms.
	PartDuration Duration `yaml:"part_duration" doc:"LL-HLS part / CMAF chunk target (>= 20ms, < segment_duration)."`
	// Window is the number of segments listed in a media playlist, at
	// least 3. It defaults to 6.
	Window int `yaml:"window" doc:"Segments listed in a media playlist (>= 3)."`
	// KeepExtra is the number of segments kept past the window for late
	// readers. It defaults to 4.
	KeepExtra int `yaml:"keep_extra" doc:"Segments kept past the window for late readers."`
	// SubscriberBuffer is the number of frames buffered per pipeline before
	// frames are dropped, at least 16. It defaults to 1024.
	SubscriberBuffer int `yaml:"subscriber_buffer" doc:"Frames buffered per pipeline before dropping (>= 16)."`
}

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
	// BlockTimeout is the longest an LL-HLS blocking playlist reload or
	// preload-hint request waits (the spec suggests three target
	// durations). It defaults to 6s.
	BlockTimeout Duration `yaml:"block_timeout" doc:"Longest LL-HLS blocking reload / preload hint wait."`
	// Gzip enables gzip for playlists when the client accepts it.
	// It defaults to true.
	Gzip bool `yaml:"gzip" doc:"Gzip playlists when the client accepts it."`
	// CORS configures Cross-Origin Resource Sharing headers.
	CORS CORSConfig `yaml:"cors" doc:"Cross-origin (CORS) headers."`
	// Cache configures Cache-Control max-age values.
	Cache CacheConfig `yaml:"cache" doc:"Cache-Control max-age per response kind (whole seconds)."`
}

// TLSEnabled reports whether the origin serves HTTPS (both TLSCert and TLSKey
// are set).
func (o OriginConfig) TLSEnabled() bool { return o.TLSCert != "" && o.TLSKey != "" }

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

// AdminConfig configures the admin listener.
type AdminConfig struct {
	// Address is the host:port serving /metrics, /healthz and /readyz; ""
	// disables the admin listener. It defaults to ":9090".
	Address string `yaml:"address" doc:"Admin listen address, host:port; \"\" disables it."`
}

// TracingConfig configures OpenTelemetry tracing.
type TracingConfig struct {
	// Enabled turns tracing on: spans for publish sessions, segments and
	// origin requests are exported over OTLP/HTTP to the endpoint the
	// standard OTEL_EXPORTER_OTLP_* variables name. It defaults to false.
	Enabled bool `yaml:"enabled" doc:"Export traces over OTLP/HTTP (endpoint from OTEL_EXPORTER_OTLP_ENDPOINT)."`
}

// ShutdownConfig configures graceful shutdown.
type ShutdownConfig struct {
	// Drain is how long the origin keeps serving after the streams have
	// ended, so players and CDNs fetch the playlists with EXT-X-ENDLIST. It
	// defaults to 2s.
	Drain Duration `yaml:"drain" doc:"How long the origin keeps serving ended playlists (ENDLIST) before it closes."`
	// Timeout bounds the whole shutdown; what is still running then is cut
	// off. It defaults to 15s.
	Timeout Duration `yaml:"timeout" doc:"Deadline for the whole shutdown (> drain)."`
}

// Default returns a new Config holding every default. Each call returns a
// fresh value the caller may modify.
func Default() *Config {
	return &Config{
		Log: LogConfig{
			Level:  "info",
			Format: "json",
		},
		RTMP: RTMPConfig{
			Address:          ":1935",
			App:              "live",
			HandshakeTimeout: Duration(5 * time.Second),
			IdleTimeout:      Duration(10 * time.Second),
			MaxPublishers:    100,
			MaxChunkSize:     65536,
		},
		Streams: StreamsConfig{
			MaxStreams: 0,
			EndedGrace: Duration(60 * time.Second),
		},
		Segmenter: SegmenterConfig{
			SegmentDuration:  Duration(2 * time.Second),
			PartDuration:     Duration(200 * time.Millisecond),
			Window:           6,
			KeepExtra:        4,
			SubscriberBuffer: 1024,
		},
		Origin: OriginConfig{
			Address:           ":8080",
			ReadHeaderTimeout: Duration(5 * time.Second),
			ReadTimeout:       Duration(10 * time.Second),
			WriteTimeout:      Duration(30 * time.Second),
			IdleTimeout:       Duration(120 * time.Second),
			MaxHeaderBytes:    16384,
			BlockTimeout:      Duration(6 * time.Second),
			Gzip:              true,
			CORS: CORSConfig{
				AllowedOrigins: []string{"*"},
			},
			Cache: CacheConfig{
				SegmentMaxAge:      Duration(86400 * time.Second),
				PlaylistMaxAge:     Duration(1 * time.Second),
				MultivariantMaxAge: Duration(2 * time.Second),
				BlockingMaxAge:     Duration(6 * time.Second),
				NotFoundMaxAge:     Duration(1 * time.Second),
				EndedMaxAge:        Duration(60 * time.Second),
			},
		},
		Admin: AdminConfig{
			Address: ":9090",
		},
		Shutdown: ShutdownConfig{
			Drain:   Duration(2 * time.Second),
			Timeout: Duration(15 * time.Second),
		},
	}
}
