package srt

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/ingest"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultAddress       = ":8890"
	DefaultLatency       = 120 * time.Millisecond
	DefaultPBKeyLen      = 16
	DefaultMaxPublishers = 100
	DefaultMaxReaders    = 100
	DefaultIdleTimeout   = 10 * time.Second
	DefaultReadBuffer    = 1024
	// DefaultPublishDeadline is the default of Config.PublishDeadline.
	DefaultPublishDeadline = 30 * time.Second
)

// Passphrase length limits of the SRT specification (SRTO_PASSPHRASE).
const (
	MinPassphraseLength = 10
	MaxPassphraseLength = 79
)

// Config configures the SRT server. Zero fields take their defaults.
type Config struct {
	// Address is the UDP address to listen on. Default ":8890". Tests use
	// "127.0.0.1:0" and read the port back with Server.Addr.
	Address string
	// Latency is the SRT receiver latency (TSBPD delay) offered to peers;
	// the larger of it and the peer's wins. Default 120ms.
	Latency time.Duration
	// Passphrase encrypts every stream unless PrefixPassphrases says
	// otherwise: a caller without it, or with another one, is refused at the
	// handshake. "" means no encryption (and encrypting callers are refused).
	// 10 to 79 characters.
	Passphrase string
	// PBKeyLen is the key length in bytes (16, 24 or 32; 0 means 16). With
	// SRT the caller, which always initiates the handshake, chooses the key
	// length and the listener follows it (as libsrt does in its default
	// mode), so this only matters for the gosrt listener configuration; it is
	// validated so that configurations stay portable.
	PBKeyLen int
	// PrefixPassphrases overrides Passphrase for the streams whose name
	// starts with a prefix; the longest matching prefix wins. An empty
	// passphrase value turns encryption off for those streams.
	PrefixPassphrases map[string]string
	// MaxPublishers limits concurrent SRT publishers. Default 100.
	MaxPublishers int
	// MaxReaders limits concurrent read-out (m=request) connections.
	// Default 100.
	MaxReaders int
	// IdleTimeout ends a publisher from which no data has arrived for that
	// long (SRT keep-alives do not count). Default 10s.
	IdleTimeout time.Duration
	// PublishDeadline is the time from the handshake by which a publisher
	// must have published its stream (a program, and a key frame with its
	// parameter sets, or the tracks it has); one that has not is closed
	// (ingest reason "timeout"), however much it keeps sending. Default 30s.
	PublishDeadline time.Duration
	// MaxConnections limits the concurrent SRT connections, publishers and
	// readers; a connection request beyond it is rejected at the handshake
	// with REJX_OVERLOAD (ingest reason "too_many_connections"). 0 means no
	// limit.
	MaxConnections int
	// MaxConnectionsPerAddress limits the concurrent connections of one
	// address (an IPv6 /64), like MaxConnections. 0 means no limit.
	MaxConnectionsPerAddress int
	// ReadBuffer is the number of frames a read-out connection may fall
	// behind before it loses frames (counted by the registry). Default 1024.
	ReadBuffer int
	// Auth, when set, authorises every publish at the handshake with the
	// streamid's extra keys as parameters (#!::r=live/x,m=publish,token=…):
	// a refusal rejects the connection with REJX_UNAUTHORIZED (ingest reason
	// "unauthorized"), and Unpublished is called when an authorised publish
	// ends. Nil allows every publisher.
	Auth auth.Authenticator
	// ReadAuthorizer, when set, authorises every read-out (m=request) at
	// the handshake, before the stream is looked up, with the streamid's
	// token key (#!::r=live/x,m=request,token=…; "" without it) and the
	// caller's address: a refusal rejects the connection as a refused
	// publish is, with REJX_UNAUTHORIZED (ingest reason and rejection reason
	// "unauthorized"). Nil allows every reader.
	ReadAuthorizer ingest.ReadAuthorizer
	// MaxConnectionsPerMinute limits the connection requests one address
	// (an IPv4 address or an IPv6 /64) may make a minute; more are refused
	// at the handshake. 0 means no limit.
	MaxConnectionsPerMinute int
}

func (c Config) withDefaults() Config {
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	if c.Latency <= 0 {
		c.Latency = DefaultLatency
	}
	if c.PBKeyLen == 0 {
		c.PBKeyLen = DefaultPBKeyLen
	}
	if c.MaxPublishers <= 0 {
		c.MaxPublishers = DefaultMaxPublishers
	}
	if c.MaxReaders <= 0 {
		c.MaxReaders = DefaultMaxReaders
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.PublishDeadline <= 0 {
		c.PublishDeadline = DefaultPublishDeadline
	}
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = DefaultReadBuffer
	}
	return c
}

// Validate checks the passphrases and key length. Start calls it.
func (c Config) Validate() error {
	var errs []error
	if err := checkPassphrase(c.Passphrase); err != nil {
		errs = append(errs, fmt.Errorf("passphrase: %w", err))
	}
	for prefix, p := range c.PrefixPassphrases {
		if prefix == "" {
			errs = append(errs, errors.New("prefix passphrases: empty prefix (use Passphrase)"))
			continue
		}
		if err := checkPassphrase(p); err != nil {
			errs = append(errs, fmt.Errorf("passphrase of prefix %q: %w", prefix, err))
		}
	}
	switch c.PBKeyLen {
	case 0, 16, 24, 32:
	default:
		errs = append(errs, fmt.Errorf("pbkeylen %d: must be 16, 24 or 32", c.PBKeyLen))
	}
	if c.Latency < 0 {
		errs = append(errs, fmt.Errorf("latency %s is negative", c.Latency))
	}
	return errors.Join(errs...)
}

func checkPassphrase(p string) error {
	if p == "" {
		return nil
	}
	if n := len(p); n < MinPassphraseLength || n > MaxPassphraseLength {
		return fmt.Errorf("%d characters, want %d to %d", n, MinPassphraseLength, MaxPassphraseLength)
	}
	return nil
}

// passphraseFor returns the passphrase of a stream: the one of the longest
// matching prefix, else the server's.
func (c *Config) passphraseFor(name string) string {
	best, pass := -1, c.Passphrase
	for prefix, p := range c.PrefixPassphrases {
		if len(prefix) > best && strings.HasPrefix(name, prefix) {
			best, pass = len(prefix), p
		}
	}
	return pass
}
