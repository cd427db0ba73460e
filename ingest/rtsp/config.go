package rtsp

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

// Defaults applied by New to zero Config fields. UDP has no default in
// Config itself ("" disables it); DefaultUDPRTPAddress and
// DefaultUDPRTCPAddress are what a configuration file should default to.
const (
	DefaultAddress         = ":8554"
	DefaultUDPRTPAddress   = ":8000"
	DefaultUDPRTCPAddress  = ":8001"
	DefaultReadTimeout     = 10 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
	DefaultIdleTimeout     = 60 * time.Second
	DefaultMaxPublishers   = 100
	DefaultMaxReaders      = 100
	DefaultReadBuffer      = 512
	DefaultOnDemandLinger  = 10 * time.Second
	DefaultOnDemandTimeout = 10 * time.Second
	DefaultSourceTransport = TransportAuto
	// DefaultPublishDeadline is the default of Config.PublishDeadline.
	DefaultPublishDeadline  = 30 * time.Second
	writeQueueSize          = 1024 // packets per reader session (a power of two)
	minBackoff              = time.Second
	maxBackoff              = 30 * time.Second
	stableSession           = 10 * time.Second
	maxHeaderWait           = 15 * time.Second
	syncWait                = time.Second
	maxPendingFrames        = 1024
	onDemandPollInterval    = 50 * time.Millisecond
	sourceLingerCheckPeriod = time.Second
)

// Transports of a pull source.
const (
	TransportTCP  = "tcp"  // RTP interleaved in the RTSP TCP connection
	TransportUDP  = "udp"  // RTP over UDP, unicast
	TransportAuto = "auto" // UDP first, TCP when no UDP packet arrives (gortsplib's default)
)

// Config configures the RTSP server and its pull sources. Zero fields take
// their defaults.
type Config struct {
	// Address is the TCP address of the RTSP listener (RTSP requests and
	// RTP/RTCP interleaved in the connection). Default ":8554". Tests use
	// "127.0.0.1:0" and read the port back with Server.Addr.
	Address string
	// UDPRTPAddress and UDPRTCPAddress are the UDP addresses of the UDP
	// transport, both or neither; the RTP port must be even and the RTCP
	// port the next one (":8000" and ":8001"). "" disables UDP: clients
	// asking for it get 461 Unsupported Transport.
	UDPRTPAddress  string
	UDPRTCPAddress string
	// ReadTimeout ends a publisher (and a pull source) from which nothing
	// has been received for that long, and bounds every request. Default 10s.
	ReadTimeout time.Duration
	// WriteTimeout bounds every write to a peer. Default 10s.
	WriteTimeout time.Duration
	// IdleTimeout ends a connection or a reader session that sends no
	// request (or RTCP) for that long. Default 60s.
	IdleTimeout time.Duration
	// MaxPublishers limits concurrent RTSP publishers (ANNOUNCE/RECORD);
	// pull sources do not count. Default 100.
	MaxPublishers int
	// MaxReaders limits concurrent RTSP reader sessions (DESCRIBE/SETUP/PLAY).
	// Default 100.
	MaxReaders int
	// ReadBuffer is the number of frames a reader may fall behind before the
	// hub drops frames for it (until the next key frame). Default 512.
	ReadBuffer int
	// OnDemandLinger is how long an on-demand source stays connected
	// without readers (RTSP reader sessions or Server.Demand calls).
	// Default 10s.
	OnDemandLinger time.Duration
	// OnDemandTimeout is how long a DESCRIBE of an on-demand source that is
	// not connected waits for it to publish. Default 10s.
	OnDemandTimeout time.Duration
	// Sources are the streams pulled from other RTSP servers (IP cameras).
	Sources []Source
	// Auth, when set, authorises every ANNOUNCE with the URL query as
	// parameters and the HTTP Basic password, if any, as the static key: a
	// refusal answers 403 (ingest reason "unauthorized"), and Unpublished is
	// called when an authorised publish ends. Pull sources are not
	// authorised. Nil allows every publisher.
	Auth auth.Authenticator
	// AuthChallenge answers an ANNOUNCE that carries no credential at all
	// (no Authorization header, no key or token in the query) with 401 and
	// a Basic challenge, so that clients holding rtsp://user:KEY@host/...
	// send the key. Set it when static keys or tokens are configured.
	AuthChallenge bool
	// ReadAuthorizer, when set, authorises every reader at DESCRIBE and at
	// the first SETUP of its session, before the stream is looked up (a
	// refused reader learns nothing of which streams are live, nor starts
	// an on-demand source), with the URL's token query parameter
	// (rtsp://host:8554/live/x?token=…) or else the password of HTTP Basic
	// authentication (rtsp://viewer:TOKEN@host:8554/live/x), and the
	// client's address. A request without any credential is first answered
	// 401 with a Basic challenge (so that clients holding a password send
	// it); the reader is refused when it does not come back with one: 401,
	// or 403 for a credential the authorizer refuses, ingest reason
	// "unauthorized". Nil allows every reader.
	ReadAuthorizer ingest.ReadAuthorizer
	// MaxConnectionsPerMinute limits the connections one address (an IPv4
	// address or an IPv6 /64) may open a minute; more are closed at once.
	// 0 means no limit.
	MaxConnectionsPerMinute int
	// MaxConnections limits the concurrent RTSP connections, publishers,
	// readers and connections that are neither yet; one beyond it is
	// closed when it opens (ingest reason "too_many_connections"). 0 means
	// no limit.
	MaxConnections int
	// MaxConnectionsPerAddress limits the concurrent connections of one
	// address (an IPv6 /64), like MaxConnections. 0 means no limit.
	MaxConnectionsPerAddress int
	// PublishDeadline is the time from its opening by which a connection
	// must have started to RECORD or PLAY; one that has not is closed
	// (ingest reason "timeout"), however many requests it keeps sending.
	// Default 30s.
	PublishDeadline time.Duration
}

// Source is a stream pulled from an RTSP server and published under Name.
type Source struct {
	// Name is the stream name, e.g. "live/cam1".
	Name string
	// URL is the rtsp:// (or rtsps://) URL of the stream; it may carry
	// credentials (rtsp://user:pass@host/path), which are never logged.
	URL string
	// Transport is "tcp", "udp" or "auto" (UDP, falling back to TCP when no
	// packet arrives). Default "auto".
	Transport string
	// OnDemand sources connect only while the stream has readers; the
	// others connect at Start and reconnect forever.
	OnDemand bool
}

func (c Config) withDefaults() Config {
	if c.Address == "" {
		c.Address = DefaultAddress
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxPublishers <= 0 {
		c.MaxPublishers = DefaultMaxPublishers
	}
	if c.MaxReaders <= 0 {
		c.MaxReaders = DefaultMaxReaders
	}
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = DefaultReadBuffer
	}
	if c.OnDemandLinger <= 0 {
		c.OnDemandLinger = DefaultOnDemandLinger
	}
	if c.OnDemandTimeout <= 0 {
		c.OnDemandTimeout = DefaultOnDemandTimeout
	}
	if c.PublishDeadline <= 0 {
		c.PublishDeadline = DefaultPublishDeadline
	}
	c.Sources = append([]Source(nil), c.Sources...)
	for i := range c.Sources {
		if c.Sources[i].Transport == "" {
			c.Sources[i].Transport = DefaultSourceTransport
		}
	}
	return c
}

// Validate checks the UDP addresses and the sources. Start calls it.
func (c Config) Validate() error {
	var errs []error
	switch {
	case (c.UDPRTPAddress == "") != (c.UDPRTCPAddress == ""):
		errs = append(errs, errors.New("udp_rtp_address and udp_rtcp_address must be set together"))
	case c.UDPRTPAddress != "":
		rtp, err1 := portOf(c.UDPRTPAddress)
		rtcp, err2 := portOf(c.UDPRTCPAddress)
		switch {
		case err1 != nil:
			errs = append(errs, fmt.Errorf("udp_rtp_address: %w", err1))
		case err2 != nil:
			errs = append(errs, fmt.Errorf("udp_rtcp_address: %w", err2))
		case rtp%2 != 0:
			errs = append(errs, fmt.Errorf("udp_rtp_address: port %d must be even", rtp))
		case rtcp != rtp+1:
			errs = append(errs, fmt.Errorf("udp_rtcp_address: port %d must be udp_rtp_address's plus one (%d)", rtcp, rtp+1))
		}
	}
	names := make(map[string]bool)
	for i, s := range c.Sources {
		if err := media.ValidateName(s.Name); err != nil {
			errs = append(errs, fmt.Errorf("sources[%d]: name: %w", i, err))
		} else if names[s.Name] {
			errs = append(errs, fmt.Errorf("sources[%d]: name %q used twice", i, s.Name))
		}
		names[s.Name] = true
		if _, err := parseSourceURL(s.URL); err != nil {
			errs = append(errs, fmt.Errorf("sources[%d] (%s): %w", i, s.Name, err))
		}
		switch s.Transport {
		case "", TransportTCP, TransportUDP, TransportAuto:
		default:
			errs = append(errs, fmt.Errorf("sources[%d] (%s): transport %q: want tcp, udp or auto", i, s.Name, s.Transport))
		}
	}
	return errors.Join(errs...)
}

func portOf(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("port %q: %w", p, err)
	}
	return int(n), nil
}

// parseSourceURL checks a source URL: rtsp or rtsps, with a host.
func parseSourceURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error repeats the URL, credentials included: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid url: %w", err)
	}
	if u.Scheme != "rtsp" && u.Scheme != "rtsps" {
		return nil, fmt.Errorf("url %s: scheme must be rtsp or rtsps", redactURL(u))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("url %s: no host", redactURL(u))
	}
	return u, nil
}

// redactURL is a URL as it may be logged: without the password, and with
// the values of its query hidden (they may be credentials: the token of a
// Headwater read-out, a camera's password).
func redactURL(u *url.URL) string {
	c := *u
	if c.RawQuery != "" {
		items := strings.Split(c.RawQuery, "&")
		for i, item := range items {
			if k, _, found := strings.Cut(item, "="); found {
				items[i] = k + "=xxxxx"
			}
		}
		c.RawQuery = strings.Join(items, "&")
	}
	return c.Redacted()
}
