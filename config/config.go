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
//
// # Who owns a default, who checks a value
//
// A default has one owner. A setting a component has a default for (a
// listen address, a timeout, a limit) is owned by that component, which
// exports it as a Default* constant (rtmp.DefaultAddress,
// segmenter.DefaultPartDuration, origin.DefaultBlockTimeout,
// transcoder.DefaultLadder, auth.DefaultJWTLeeway, ...) and fills zero
// fields with it when used as a library; [Default] references those
// constants and never repeats their values. Settings no component has a
// default for (server policy: log format, connection rates, the admin
// listener, shutdown) are owned by this package, as unexported constants
// beside [Default].
//
// User input is checked here, once: [Config.Validate] reports every problem
// as "key: reason" ([FieldError]) before any component is built, using the
// components' own parsers where they have one (ladders, reservations, fork
// server mode, static keys, playback key ids). Components take what they
// are given; their own checks only guard library use and what this package
// cannot see (the content of secret files, such as an SRT passphrase's
// length), and never refuse a value [Config.Validate] accepted.
package config

import (
	"time"

	"github.com/headwater-live/headwater/cluster"
	"github.com/headwater-live/headwater/dash"
	"github.com/headwater-live/headwater/ingest/rtmp"
	"github.com/headwater-live/headwater/ingest/rtsp"
	"github.com/headwater-live/headwater/ingest/srt"
	"github.com/headwater-live/headwater/origin"
	"github.com/headwater-live/headwater/origin/relay"
	"github.com/headwater-live/headwater/segmenter"
	"github.com/headwater-live/headwater/transcoder"
)

// Config is Headwater's complete configuration. Use [Default] or [Load] to
// obtain one; the zero value is not valid.
type Config struct {
	// Log configures the process logger. See [Config.Logger].
	Log LogConfig `yaml:"log" doc:"Process logging."`
	// RTMP configures the RTMP ingest listener.
	RTMP RTMPConfig `yaml:"rtmp" doc:"RTMP ingest."`
	// SRT configures the SRT ingest listener.
	SRT SRTConfig `yaml:"srt" doc:"SRT ingest (MPEG-TS over SRT) and read-out."`
	// RTSP configures the RTSP server and pull sources.
	RTSP RTSPConfig `yaml:"rtsp" doc:"RTSP ingest (ANNOUNCE/RECORD), RTSP read-out and pull sources (IP cameras)."`
	// Streams holds limits shared by every ingest protocol.
	Streams StreamsConfig `yaml:"streams" doc:"Stream limits shared by every ingest protocol."`
	// Segmenter configures HLS / LL-HLS / CMAF segmentation.
	Segmenter SegmenterConfig `yaml:"segmenter" doc:"HLS, LL-HLS and CMAF segmentation."`
	// Origin configures the HTTP origin serving playlists and media.
	Origin OriginConfig `yaml:"origin" doc:"HTTP origin serving playlists, segments and parts."`
	// HLS configures what the HLS playlists and media carry.
	HLS HLSConfig `yaml:"hls" doc:"HLS options."`
	// Transcoder configures the ABR ladder made by the ffmpeg worker pool.
	Transcoder TranscoderConfig `yaml:"transcoder" doc:"ABR ladder transcoding by a pre-started ffmpeg worker pool; off by default."`
	// Admin configures the admin listener (/metrics, /healthz, /readyz).
	Admin AdminConfig `yaml:"admin" doc:"Admin listener: /metrics, /healthz, /readyz."`
	// Auth configures publish authentication (docs/security.md).
	Auth AuthConfig `yaml:"auth" doc:"Publish authentication (docs/security.md); every mechanism is off by default."`
	// Playback guards the origin with tokens and a CDN secret (docs/security.md).
	Playback PlaybackConfig `yaml:"playback" doc:"Origin protection: playback tokens and the CDN shared secret (docs/security.md); off by default."`
	// Tracing configures OpenTelemetry tracing.
	Tracing TracingConfig `yaml:"tracing" doc:"OpenTelemetry tracing (OTLP/HTTP, configured by the standard OTEL_* variables)."`
	// Shutdown configures how SIGTERM/SIGINT stop the server.
	Shutdown ShutdownConfig `yaml:"shutdown" doc:"Graceful shutdown on SIGTERM/SIGINT."`
	// Cluster joins the node to a Headwater cluster on NATS JetStream
	// (docs/cluster.md); off by default.
	Cluster ClusterConfig `yaml:"cluster" doc:"Cluster on NATS JetStream: GOP workers, stream placement, origin relay (docs/cluster.md); off by default."`
	// Record configures recording to a directory or S3 (docs/recording.md).
	Record RecordConfig `yaml:"record" doc:"Recording to a directory or S3-compatible storage, VOD, posters and sprites (docs/recording.md); off by default."`
	// DVR configures rewinding recorded live streams.
	DVR DVRConfig `yaml:"dvr" doc:"Rewinding recorded live streams (DVR, start-over)."`
	// Events configures lifecycle events sent outside NATS.
	Events EventsConfig `yaml:"events" doc:"Lifecycle events delivered by webhook (docs/events.md)."`
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
	// MaxConnectionsPerMinute limits the connections one address (an IPv6
	// /64) may open per minute on the RTMP and RTMPS ports; 0 means no
	// limit. It defaults to 60.
	MaxConnectionsPerMinute int `yaml:"max_connections_per_minute" doc:"Connections one address (IPv6: one /64) may open per minute on the RTMP(S) ports; 0 = unlimited."`
	// MaxConnections caps concurrent RTMP and RTMPS connections, publishing
	// or not; 0 means unlimited. It defaults to 1000.
	MaxConnections int `yaml:"max_connections" doc:"Concurrent RTMP(S) connections, publishing or not; 0 = unlimited."`
	// MaxConnectionsPerAddress caps the concurrent RTMP(S) connections of one
	// address (an IPv6 /64); 0 means unlimited. It defaults to 50.
	MaxConnectionsPerAddress int `yaml:"max_connections_per_address" doc:"Concurrent RTMP(S) connections of one address (IPv6: one /64); 0 = unlimited."`
	// PublishDeadline is the time a connection has from accept to be
	// publishing. It defaults to 30s.
	PublishDeadline Duration `yaml:"publish_deadline" doc:"Time from accept by which an RTMP connection must be publishing."`
	// MaxChunkStreams caps the chunk stream ids of one connection. It
	// defaults to 64.
	MaxChunkStreams int `yaml:"max_chunk_streams" doc:"Chunk stream ids one RTMP connection may use."`
	// MaxUnassembledBytes caps the bytes one connection holds of messages
	// not yet complete (and so the largest message). It defaults to 8 MiB.
	MaxUnassembledBytes int `yaml:"max_unassembled_bytes" doc:"Bytes one RTMP connection may hold of incomplete messages; also the largest message."`
	// TLSAddress is the host:port of the RTMPS listener (RTMP over TLS,
	// same sessions); "" disables RTMPS. It defaults to "".
	TLSAddress string `yaml:"tls_address" doc:"RTMPS listen address, host:port (needs tls_cert and tls_key); \"\" disables RTMPS."`
	// TLSCert is the PEM certificate file of RTMPS. It defaults to "".
	TLSCert string `yaml:"tls_cert" doc:"PEM certificate file for RTMPS."`
	// TLSKey is the PEM private key file of RTMPS. It defaults to "".
	TLSKey string `yaml:"tls_key" doc:"PEM private key file for RTMPS."`
}

// SRTConfig configures the SRT listener.
type SRTConfig struct {
	// Address is the UDP listen address; "" disables SRT. It defaults to ":8890".
	Address string `yaml:"address" doc:"SRT listen address (UDP), host:port; \"\" disables SRT."`
	// Latency is the SRT receiver latency. It defaults to 120ms.
	Latency Duration `yaml:"latency" doc:"SRT latency: how long the receiver waits for retransmissions."`
	// PassphraseFile names a file holding the passphrase (10 to 79
	// characters) every SRT connection must use; "" means no encryption.
	PassphraseFile string `yaml:"passphrase_file" doc:"File holding the SRT passphrase (10-79 characters); \"\" = no encryption."`
	// PBKeyLen is the AES key length in bytes: 16, 24 or 32. It defaults to 16.
	PBKeyLen int `yaml:"pbkeylen" doc:"SRT encryption key length in bytes: 16, 24 or 32."`
	// PrefixPassphraseFiles override the passphrase per stream-name prefix:
	// "<prefix>=<file>", the longest matching prefix wins; an empty file
	// name turns encryption off for that prefix.
	PrefixPassphraseFiles []string `yaml:"prefix_passphrase_files" doc:"Per stream-prefix passphrases: \"<prefix>=<file>\" (longest prefix wins; \"<prefix>=\" = no encryption)."`
	// MaxPublishers limits concurrent SRT publishers. It defaults to 100.
	MaxPublishers int `yaml:"max_publishers" doc:"Concurrent SRT publishers."`
	// MaxReaders limits concurrent SRT readers (m=request). It defaults to 100.
	MaxReaders int `yaml:"max_readers" doc:"Concurrent SRT readers (streamid m=request)."`
	// IdleTimeout drops a publisher that sends nothing for that long. It defaults to 10s.
	IdleTimeout Duration `yaml:"idle_timeout" doc:"Drop an SRT publisher silent for this long."`
	// MaxConnectionsPerMinute limits the connection requests one address
	// (an IPv6 /64) may make a minute. It defaults to 60; 0 = unlimited.
	MaxConnectionsPerMinute int `yaml:"max_connections_per_minute" doc:"Connection requests one address (IPv6: one /64) may make per minute; 0 = unlimited."`
	// MaxConnections caps concurrent SRT connections (publishers and
	// readers); 0 means unlimited. It defaults to 1000.
	MaxConnections int `yaml:"max_connections" doc:"Concurrent SRT connections; 0 = unlimited."`
	// MaxConnectionsPerAddress caps the concurrent SRT connections of one
	// address (an IPv6 /64); 0 means unlimited. It defaults to 50.
	MaxConnectionsPerAddress int `yaml:"max_connections_per_address" doc:"Concurrent SRT connections of one address (IPv6: one /64); 0 = unlimited."`
	// PublishDeadline is the time an SRT publisher has from the handshake
	// to get its stream published. It defaults to 30s.
	PublishDeadline Duration `yaml:"publish_deadline" doc:"Time from the handshake by which an SRT publisher's stream must be published."`
}

// RTSPConfig configures the RTSP server.
type RTSPConfig struct {
	// Address is the TCP listen address; "" disables RTSP. It defaults to ":8554".
	Address string `yaml:"address" doc:"RTSP listen address (TCP), host:port; \"\" disables RTSP."`
	// UDPRTPAddress and UDPRTCPAddress enable the UDP transport (an even RTP
	// port and RTP+1 for RTCP); both "" disable it. They default to ":8000"
	// and ":8001".
	UDPRTPAddress  string `yaml:"udp_rtp_address" doc:"UDP address for RTP (even port); \"\" with udp_rtcp_address \"\" disables UDP transport."`
	UDPRTCPAddress string `yaml:"udp_rtcp_address" doc:"UDP address for RTCP (the RTP port + 1)."`
	// ReadTimeout ends a publisher or source silent for that long. It defaults to 10s.
	ReadTimeout Duration `yaml:"read_timeout" doc:"Drop an RTSP publisher or source silent for this long."`
	// WriteTimeout bounds writes to RTSP clients. It defaults to 10s.
	WriteTimeout Duration `yaml:"write_timeout" doc:"Time allowed for a write to an RTSP client."`
	// MaxPublishers limits concurrent RTSP publishers (pull sources do not
	// count). It defaults to 100.
	MaxPublishers int `yaml:"max_publishers" doc:"Concurrent RTSP publishers (pull sources not counted)."`
	// MaxReaders limits concurrent RTSP readers. It defaults to 100.
	MaxReaders int `yaml:"max_readers" doc:"Concurrent RTSP readers (DESCRIBE/PLAY)."`
	// Sources are always-on pull sources, "<stream name>=<rtsp URL>":
	// connected at start and reconnected with backoff forever.
	Sources []string `yaml:"sources" doc:"Always-on pull sources: \"<stream>=<rtsp://[user:pass@]host/path>\"."`
	// OnDemandSources are pull sources connected only while the stream has
	// readers (an RTSP reader or origin requests).
	OnDemandSources []string `yaml:"on_demand_sources" doc:"Pull sources connected only while read: \"<stream>=<rtsp URL>\"."`
	// SourceTransport is the transport of pull sources: auto, tcp or udp. It
	// defaults to auto (UDP, falling back to TCP).
	SourceTransport string `yaml:"source_transport" doc:"Pull source transport: auto (UDP, then TCP), tcp or udp."`
	// OnDemandLinger keeps an on-demand source connected after its last
	// reader. It defaults to 10s.
	OnDemandLinger Duration `yaml:"on_demand_linger" doc:"Keep an on-demand source connected this long after its last reader."`
	// MaxConnectionsPerMinute limits the connections one address (an IPv6
	// /64) may open a minute. It defaults to 60; 0 = unlimited.
	MaxConnectionsPerMinute int `yaml:"max_connections_per_minute" doc:"Connections one address (IPv6: one /64) may open per minute; 0 = unlimited."`
	// MaxConnections caps concurrent RTSP connections; 0 means unlimited.
	// It defaults to 1000.
	MaxConnections int `yaml:"max_connections" doc:"Concurrent RTSP connections; 0 = unlimited."`
	// MaxConnectionsPerAddress caps the concurrent RTSP connections of one
	// address (an IPv6 /64); 0 means unlimited. It defaults to 50.
	MaxConnectionsPerAddress int `yaml:"max_connections_per_address" doc:"Concurrent RTSP connections of one address (IPv6: one /64); 0 = unlimited."`
	// PublishDeadline is the time an RTSP connection has from its opening
	// to RECORD or PLAY. It defaults to 30s.
	PublishDeadline Duration `yaml:"publish_deadline" doc:"Time from its opening by which an RTSP connection must RECORD or PLAY."`
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
	// ReconnectWindow is how long a stream stays live (no ENDLIST) after
	// its publisher leaves, waiting for it to come back; 0 ends it at once.
	// It defaults to 0s.
	ReconnectWindow Duration `yaml:"reconnect_window" doc:"How long a stream stays live after its publisher leaves, for it to come back (0 = ENDLIST at once)."`
	// ReconnectWindows override ReconnectWindow per stream-name prefix:
	// "<prefix>=<duration>", the longest matching prefix wins. It defaults
	// to [].
	ReconnectWindows []string `yaml:"reconnect_windows" doc:"Per-prefix reconnect windows \"<prefix>=<duration>\", e.g. \"live/=10s\" (longest prefix wins)."`
	// FailoverAfter is how long the on-air publisher may send nothing
	// before a backup publisher (role=backup) or the slate takes over; 0
	// accepts no backup publishers. It defaults to 0s.
	FailoverAfter Duration `yaml:"failover_after" doc:"Silence of the on-air publisher after which the backup publisher or the slate takes over (0 = no backup publishers)."`
	// Failback puts the primary publisher back on the air when it returns
	// while the backup is on the air. It defaults to true.
	Failback bool `yaml:"failback" doc:"Whether the primary publisher takes over again from the backup when it returns."`
	// Slate is what fills the air while a stream has no publisher: "" (nothing),
	// "builtin" (a stand-by card) or an image or short media file. It
	// defaults to "".
	Slate string `yaml:"slate" doc:"What is on the air while an always-on stream has no publisher: \"\" = nothing, \"builtin\" = a stand-by card, or an image / short media file."`
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

// TranscoderConfig configures the ABR ladder (package transcoder): every
// GOP of a stream's video is transcoded by a pool of pre-started ffmpeg
// processes into the ladder's renditions below the source's height, listed
// after the source ("video") in the multivariant playlist.
type TranscoderConfig struct {
	// Enabled transcodes every stream's video into the ladder. It defaults
	// to false.
	Enabled bool `yaml:"enabled" doc:"Transcode every stream's video into the ABR ladder (needs ffmpeg with the ladder's encoders)."`
	// FFmpeg is the ffmpeg binary, a path or a name looked up in PATH. It
	// defaults to "ffmpeg".
	FFmpeg string `yaml:"ffmpeg" doc:"ffmpeg binary (path or name in PATH)."`
	// ForkServer is how ffmpeg processes are started
	// (transcoder.ParseForkServerMode): "auto" forks them from a fork
	// server (one pre-linked ffmpeg) when it can be built and started and
	// executes ffmpeg otherwise, "on" fails start without it, "off"
	// executes ffmpeg for every process. It defaults to "auto".
	ForkServer string `yaml:"fork_server" doc:"How ffmpeg processes are started: auto (forked from a pre-linked ffmpeg when possible), on (fork server required) or off (execute ffmpeg)."`
	// PoolSize is the number of GOP jobs run at once; 0 means one per CPU.
	// It defaults to 0.
	PoolSize int `yaml:"pool_size" doc:"GOP jobs run at once; 0 = number of CPUs."`
	// PoolWarm is the number of idle pre-started ffmpeg processes kept; 0
	// means pool_size, -1 none. It defaults to 0.
	PoolWarm int `yaml:"pool_warm" doc:"Idle pre-started ffmpeg processes; 0 = pool_size, -1 = none."`
	// QueueSize bounds the job queue in rendition-GOPs; past it the
	// lowest-priority renditions of queued GOPs are shed. 0 means 16 ×
	// the pool size. It defaults to 0.
	QueueSize int `yaml:"queue_size" doc:"Rendition-GOPs queued before the lowest-priority renditions of queued GOPs are shed; 0 = 16 x pool size."`
	// MaxWait is how long a GOP may wait for a worker, in GOP durations
	// (> 0): a job taken after waiting n × MaxWait drops its n
	// lowest-priority renditions (it keeps at least one). It defaults to 1.
	MaxWait float64 `yaml:"max_wait" doc:"A GOP taken after waiting n x max_wait GOP durations drops its n lowest-priority renditions (> 0)."`
	// Reserve reserves workers, one reservation per item written
	// "<stream prefix>=<workers>[:<rendition>,<rendition>...]" (renditions
	// may also be separated by ";", which the environment variable needs):
	// the workers run only jobs of streams under the prefix ("" for any)
	// that include one of the renditions (any when none is listed), and
	// those renditions are shed last. See [TranscoderConfig.Reservations].
	// It defaults to [].
	Reserve []string `yaml:"reserve" doc:"Reserved workers: <stream prefix>=<workers>[:<rendition>,<rendition>...] (renditions also separated by ';')."`
	// Deadline is how long after its GOP closed a job may finish, in GOP
	// durations (at least 1): a run still going is killed and the GOP
	// becomes a gap (EXT-X-GAP). It defaults to 3.
	Deadline int `yaml:"deadline" doc:"Time a GOP's job may take after the GOP closed, in GOP durations (>= 1)."`
	// Ladder is the default ladder, one rendition per item:
	// name=height:bitrate[:encoder[:preset]], highest first. A rendition is
	// made only for sources taller than its height. It defaults to
	// ["720p=720:3000k", "480p=480:1400k", "360p=360:800k"].
	Ladder []string `yaml:"ladder" doc:"Default ladder: name=height:bitrate[:encoder[:preset]] per rendition, highest first."`
	// PrefixLadders give streams whose name starts with a prefix their own
	// ladder (the longest prefix wins): prefix=rendition;rendition;... (";" since "," separates list items) with
	// renditions written as in ladder, e.g.
	// "live/premium/=1080p=1080:6000k;720p=720:3000k". It defaults to [].
	PrefixLadders []string `yaml:"prefix_ladders" doc:"Per stream-name prefix ladders: prefix=name=height:bitrate;name=height:bitrate... (longest prefix wins)."`
	// LocalWorkers is, in a cluster, how many of this node's pool slots
	// take GOP jobs from the cluster's queue; 0 none (jobs go to `headwater
	// worker` processes), -1 (auto) all of the pool with cluster.embedded
	// and none with cluster.nats_url. They also run this node's jobs
	// directly while NATS is unreachable. Unused without a cluster. It
	// defaults to -1.
	LocalWorkers int `yaml:"local_workers" doc:"In a cluster: pool slots of this node serving the cluster's GOP queue (and its own jobs while NATS is down); 0 = none, -1 = auto (all with cluster.embedded, none with cluster.nats_url)."`
}

// AdminConfig configures the admin listener.
type AdminConfig struct {
	// Address is the host:port serving /metrics, /healthz and /readyz; ""
	// disables the admin listener. It defaults to ":9090".
	Address string `yaml:"address" doc:"Admin listen address, host:port; \"\" disables it."`
	// BearerTokenFile names a file holding a token that every admin
	// request except /healthz and /readyz must present ("Authorization:
	// Bearer <token>", or as the password of HTTP Basic). It defaults to ""
	// (the admin listener is open).
	BearerTokenFile string `yaml:"bearer_token_file" doc:"File holding the token required on every admin path except /healthz and /readyz (Authorization: Bearer); \"\" = open."`
	// InsecureRemoteMutations lets clients other than loopback use the
	// admin API's mutating requests (DELETE /api/v1/streams/..., any
	// method but GET, HEAD and OPTIONS) without a token when
	// BearerTokenFile is "". It defaults to false: without a token only
	// loopback clients may mutate.
	InsecureRemoteMutations bool `yaml:"insecure_remote_mutations" doc:"Without bearer_token_file, let non-loopback clients use mutating admin requests (DELETE ...) with no credential; false = loopback only."`
	// MaxConnections caps the concurrent connections of the admin
	// listener; 0 means no limit. It defaults to 64.
	MaxConnections int `yaml:"max_connections" doc:"Concurrent connections of the admin listener (health probes have a small reserve beyond it); 0 = unlimited."`
	// TLSCert is a PEM certificate file; with TLSKey set too the admin
	// listener serves HTTPS. It defaults to "".
	TLSCert string `yaml:"tls_cert" doc:"PEM certificate file; with tls_key set, the admin listener serves HTTPS."`
	// TLSKey is the PEM private key file for TLSCert. It defaults to "".
	TLSKey string `yaml:"tls_key" doc:"PEM private key file for admin.tls_cert."`
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

// Defaults of keys no component has a default for: server policy rather
// than a component's behaviour (see the package doc on who owns a default).
const (
	defaultMaxConnectionsPerMinute = 60    // rtmp, srt, rtsp: per address
	defaultIngestMaxConnections    = 1000  // rtmp, srt, rtsp: max_connections
	defaultIngestMaxConnsPerAddr   = 50    // rtmp, srt, rtsp: max_connections_per_address
	defaultOriginMaxConnections    = 10000 // origin.max_connections
	defaultAdminMaxConnections     = 64    // admin.max_connections
	defaultRotateSegments          = 30    // hls.encryption.rotate_segments
	defaultEndedGrace              = 60 * time.Second
)

// Default returns a new Config holding every default. Each call returns a
// fresh value the caller may modify. Defaults of component settings are the
// components' own exported Default* values.
func Default() *Config {
	return &Config{
		Log: LogConfig{
			Level:  "info",
			Format: "json",
		},
		RTMP: RTMPConfig{
			Address:          rtmp.DefaultAddress,
			App:              rtmp.DefaultApp,
			HandshakeTimeout: Duration(rtmp.DefaultHandshakeTimeout),
			IdleTimeout:      Duration(rtmp.DefaultIdleTimeout),
			MaxPublishers:    rtmp.DefaultMaxPublishers,
			MaxChunkSize:     rtmp.DefaultMaxChunkSize,

			MaxConnectionsPerMinute:  defaultMaxConnectionsPerMinute,
			MaxConnections:           defaultIngestMaxConnections,
			MaxConnectionsPerAddress: defaultIngestMaxConnsPerAddr,
			PublishDeadline:          Duration(rtmp.DefaultPublishDeadline),
			MaxChunkStreams:          rtmp.DefaultMaxChunkStreams,
			MaxUnassembledBytes:      rtmp.DefaultMaxUnassembledBytes,
		},
		SRT: SRTConfig{
			Address:                 srt.DefaultAddress,
			Latency:                 Duration(srt.DefaultLatency),
			PBKeyLen:                srt.DefaultPBKeyLen,
			MaxPublishers:           srt.DefaultMaxPublishers,
			MaxReaders:              srt.DefaultMaxReaders,
			IdleTimeout:             Duration(srt.DefaultIdleTimeout),
			PrefixPassphraseFiles:   []string{},
			MaxConnectionsPerMinute: defaultMaxConnectionsPerMinute,
			MaxConnections:          defaultIngestMaxConnections,
			PublishDeadline:         Duration(srt.DefaultPublishDeadline),

			MaxConnectionsPerAddress: defaultIngestMaxConnsPerAddr,
		},
		RTSP: RTSPConfig{
			Address:                 rtsp.DefaultAddress,
			UDPRTPAddress:           rtsp.DefaultUDPRTPAddress,
			UDPRTCPAddress:          rtsp.DefaultUDPRTCPAddress,
			ReadTimeout:             Duration(rtsp.DefaultReadTimeout),
			WriteTimeout:            Duration(rtsp.DefaultWriteTimeout),
			MaxPublishers:           rtsp.DefaultMaxPublishers,
			MaxReaders:              rtsp.DefaultMaxReaders,
			Sources:                 []string{},
			OnDemandSources:         []string{},
			SourceTransport:         rtsp.DefaultSourceTransport,
			OnDemandLinger:          Duration(rtsp.DefaultOnDemandLinger),
			MaxConnectionsPerMinute: defaultMaxConnectionsPerMinute,
			MaxConnections:          defaultIngestMaxConnections,
			PublishDeadline:         Duration(rtsp.DefaultPublishDeadline),

			MaxConnectionsPerAddress: defaultIngestMaxConnsPerAddr,
		},
		Streams: StreamsConfig{
			MaxStreams:       0,
			EndedGrace:       Duration(defaultEndedGrace),
			ReconnectWindows: []string{},
			Failback:         true,
		},
		Segmenter: SegmenterConfig{
			SegmentDuration:  Duration(segmenter.DefaultSegmentDuration),
			PartDuration:     Duration(segmenter.DefaultPartDuration),
			Window:           origin.DefaultWindow,
			KeepExtra:        4,
			SubscriberBuffer: 1024,
		},
		Origin: OriginConfig{
			Address:           origin.DefaultAddress,
			ReadHeaderTimeout: Duration(origin.DefaultReadHeaderTimeout),
			ReadTimeout:       Duration(origin.DefaultReadTimeout),
			WriteTimeout:      Duration(origin.DefaultWriteTimeout),
			IdleTimeout:       Duration(origin.DefaultIdleTimeout),
			MaxHeaderBytes:    origin.DefaultMaxHeaderBytes,
			MaxConnections:    defaultOriginMaxConnections,
			BlockTimeout:      Duration(origin.DefaultBlockTimeout),
			Gzip:              true,
			DASH: DASHConfig{
				LowLatency: true,
				EndGrace:   Duration(dash.DefaultEndGrace),
			},
			CORS: CORSConfig{
				AllowedOrigins: []string{"*"},
			},
			Cache: CacheConfig{
				SegmentMaxAge:      Duration(origin.DefaultSegmentMaxAge),
				PlaylistMaxAge:     Duration(origin.DefaultPlaylistMaxAge),
				MultivariantMaxAge: Duration(origin.DefaultMultivariantMaxAge),
				BlockingMaxAge:     Duration(origin.DefaultBlockingMaxAge),
				NotFoundMaxAge:     Duration(origin.DefaultNotFoundMaxAge),
				EndedMaxAge:        Duration(origin.DefaultEndedMaxAge),
			},
			Relay: OriginRelayConfig{
				CacheBytes:          relay.DefaultCacheBytes,
				CacheTTL:            Duration(relay.DefaultCacheTTL),
				MaxIdleConnsPerHost: relay.DefaultMaxIdleConnsPerHost,
				DialTimeout:         Duration(relay.DefaultDialTimeout),
				ResponseTimeout:     Duration(relay.DefaultResponseTimeout),
			},
		},
		HLS: HLSConfig{
			Encryption: HLSEncryptionConfig{
				Prefixes:       []string{},
				RotateSegments: defaultRotateSegments,
				CacheBytes:     origin.DefaultEncryptionCacheBytes,
			},
		},
		Transcoder: TranscoderConfig{
			FFmpeg:        transcoder.DefaultFFmpeg,
			ForkServer:    string(transcoder.ForkServerAuto),
			MaxWait:       transcoder.DefaultMaxWait,
			Reserve:       []string{},
			Deadline:      transcoder.DefaultDeadline,
			Ladder:        formatLadder(transcoder.DefaultLadder()),
			PrefixLadders: []string{},
			LocalWorkers:  LocalWorkersAuto,
		},
		Admin: AdminConfig{
			Address:        ":9090",
			MaxConnections: defaultAdminMaxConnections,
		},
		Auth:     defaultAuth(),
		Playback: defaultPlayback(),
		Shutdown: ShutdownConfig{
			Drain:   Duration(2 * time.Second),
			Timeout: Duration(15 * time.Second),
		},
		Cluster: ClusterConfig{
			Name:         defaultClusterName,
			Routes:       []string{},
			Replicas:     cluster.DefaultReplicas,
			PlacementTTL: Duration(cluster.DefaultPlacementTTL),
			Role:         RoleAll,
		},
		Record: RecordConfig{
			Prefixes:          []string{""},
			Exclude:           []string{},
			Backend:           recordBackendDir,
			Dir:               defaultRecordDir,
			SpoolMaxBytes:     defaultRecordSpoolBytes,
			S3:                RecordS3Config{Region: "us-east-1"},
			Retention:         []string{},
			RetentionInterval: Duration(defaultRetentionInterval),
			PosterInterval:    Duration(defaultPosterInterval),
			SpriteInterval:    Duration(defaultSpriteInterval),
		},
		Events: EventsConfig{WebhookTimeout: Duration(defaultWebhookTimeout)},
	}
}
