package rtmp

import (
	"crypto/tls"
	"time"

	"github.com/headwater-live/headwater/auth"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultAddress          = ":1935"
	DefaultApp              = "live"
	DefaultHandshakeTimeout = 5 * time.Second
	DefaultIdleTimeout      = 10 * time.Second
	DefaultMaxPublishers    = 100
	DefaultMaxChunkSize     = 65536
	// DefaultPublishDeadline is the default of Config.PublishDeadline.
	DefaultPublishDeadline = 30 * time.Second
	// DefaultMaxChunkStreams is the default of Config.MaxChunkStreams.
	DefaultMaxChunkStreams = 64
	// DefaultMaxUnassembledBytes is the default of Config.MaxUnassembledBytes.
	DefaultMaxUnassembledBytes = 8 << 20
)

// Config configures the RTMP ingest server. Zero fields take their defaults.
type Config struct {
	// Address is the TCP address to listen on. Default ":1935". Tests use
	// "127.0.0.1:0" and read the port back with Server.Addr.
	Address string
	// App is the only RTMP application accepted: publishing to
	// rtmp://host/<App>/<key> creates the stream "<App>/<key>"; a connect to
	// any other application is refused. Default "live".
	App string
	// HandshakeTimeout bounds the whole RTMP handshake (C0C1, S0S1S2, C2).
	// Default 5s.
	HandshakeTimeout time.Duration
	// IdleTimeout drops a connection from which nothing has been read for
	// that long, before or after publishing. Default 10s.
	IdleTimeout time.Duration
	// MaxPublishers limits concurrent RTMP publishing sessions; a publish
	// beyond it is refused. 0 means no limit; negative takes the default,
	// 100.
	MaxPublishers int
	// MaxChunkSize is the largest chunk size a peer may announce with Set
	// Chunk Size; a larger one ends the session as a protocol error. Default
	// 65536 (OBS uses 4096, ffmpeg 4096).
	MaxChunkSize int
	// Auth, when set, authorises every publish before the stream is
	// registered: a refusal answers NetStream.Publish.Rejected and ends the
	// session (ingest reason "unauthorized"), and Unpublished is called when
	// an authorised publish ends. Nil allows every publisher.
	Auth auth.Authenticator
	// MaxConnectionsPerMinute limits the connections one address (an IPv6
	// /64) may open per minute, in bursts of as many, on both listeners;
	// others are closed at once. 0 means no limit.
	MaxConnectionsPerMinute int
	// MaxConnections limits the concurrent connections of both listeners,
	// publishing or not; a connection beyond it is closed at accept
	// (ingest reason "too_many_connections"). 0 means no limit.
	MaxConnections int
	// MaxConnectionsPerAddress limits the concurrent connections of one
	// address (an IPv6 /64) on both listeners, like MaxConnections. 0 means
	// no limit.
	MaxConnectionsPerAddress int
	// PublishDeadline is the time from accept by which a connection must
	// have been granted its publish; a connection still not publishing then
	// is closed (ingest reason "timeout"), however little it keeps sending.
	// Default 30s.
	PublishDeadline time.Duration
	// MaxChunkStreams limits the chunk stream ids a peer may use on one
	// connection (encoders use 3 to 8); one more ends the session (ingest
	// reason "resource_limit"). Default 64.
	MaxChunkStreams int
	// MaxUnassembledBytes limits the bytes one connection may have received
	// of messages not yet complete, summed over its chunk streams; beyond,
	// the session ends (ingest reason "resource_limit"). It bounds the
	// largest message (a key frame) too. Default 8 MiB.
	MaxUnassembledBytes int
	// TLSAddress, when set with TLSConfig, is the address of a second
	// listener serving RTMPS (RTMP over TLS) with the same sessions.
	TLSAddress string
	// TLSConfig is the TLS configuration of the RTMPS listener (its
	// certificate).
	TLSConfig *tls.Config
}

func (c Config) withDefaults() Config {
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	if c.App == "" {
		c.App = DefaultApp
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxPublishers < 0 {
		c.MaxPublishers = DefaultMaxPublishers
	}
	if c.MaxChunkSize <= 0 {
		c.MaxChunkSize = DefaultMaxChunkSize
	}
	if c.PublishDeadline <= 0 {
		c.PublishDeadline = DefaultPublishDeadline
	}
	if c.MaxChunkStreams <= 0 {
		c.MaxChunkStreams = DefaultMaxChunkStreams
	}
	if c.MaxUnassembledBytes <= 0 {
		c.MaxUnassembledBytes = DefaultMaxUnassembledBytes
	}
	return c
}
