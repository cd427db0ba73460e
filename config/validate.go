package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/headwater-live/headwater/media"
)

// Limits enforced by [Config.Validate].
const (
	// MinPartDuration is the smallest segmenter.part_duration.
	MinPartDuration = 20 * time.Millisecond
	// MinWindow is the smallest segmenter.window.
	MinWindow = 3
	// MinSubscriberBuffer is the smallest segmenter.subscriber_buffer.
	MinSubscriberBuffer = 16
	// MinChunkSize is the smallest rtmp.max_chunk_size.
	MinChunkSize = 128
	// MaxChunkSize is the largest rtmp.max_chunk_size, the RTMP limit 2^24-1.
	MaxChunkSize = 1<<24 - 1
	// MinUnassembledBytes is the smallest rtmp.max_unassembled_bytes.
	MinUnassembledBytes = 64 << 10
	// MinHeaderBytes is the smallest origin.max_header_bytes.
	MinHeaderBytes = 1024
	// MinEncryptionCacheBytes is the smallest hls.encryption.cache_bytes.
	MinEncryptionCacheBytes = 1 << 20
	// MinRelayCacheBytes is the smallest origin.relay.cache_bytes.
	MinRelayCacheBytes = 1 << 20
)

// Validate checks every key and the rules between keys. It returns nil or
// all problems joined with errors.Join, each a *[FieldError] whose text is
// "key: reason". TLS certificate and key files are checked for existence.
func (c *Config) Validate() error {
	v := &validator{}

	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "json", "text")

	v.address("rtmp.address", c.RTMP.Address, true)
	v.app("rtmp.app", c.RTMP.App)
	v.positive("rtmp.handshake_timeout", c.RTMP.HandshakeTimeout)
	v.positive("rtmp.idle_timeout", c.RTMP.IdleTimeout)
	v.atLeast("rtmp.max_publishers", c.RTMP.MaxPublishers, 0)
	if n := c.RTMP.MaxChunkSize; n < MinChunkSize || n > MaxChunkSize {
		v.add("rtmp.max_chunk_size", "must be between %d and %d bytes, got %d", MinChunkSize, MaxChunkSize, n)
	}
	v.atLeast("rtmp.max_chunk_streams", c.RTMP.MaxChunkStreams, 2)
	v.atLeast("rtmp.max_unassembled_bytes", c.RTMP.MaxUnassembledBytes, MinUnassembledBytes)
	for _, p := range []struct {
		name                     string
		maxConns, maxConnsPerAdr int
		deadline                 Duration
	}{
		{"rtmp", c.RTMP.MaxConnections, c.RTMP.MaxConnectionsPerAddress, c.RTMP.PublishDeadline},
		{"srt", c.SRT.MaxConnections, c.SRT.MaxConnectionsPerAddress, c.SRT.PublishDeadline},
		{"rtsp", c.RTSP.MaxConnections, c.RTSP.MaxConnectionsPerAddress, c.RTSP.PublishDeadline},
	} {
		v.atLeast(p.name+".max_connections", p.maxConns, 0)
		v.atLeast(p.name+".max_connections_per_address", p.maxConnsPerAdr, 0)
		v.positive(p.name+".publish_deadline", p.deadline)
	}

	v.atLeast("streams.max_streams", c.Streams.MaxStreams, 0)
	v.notNegative("streams.ended_grace", c.Streams.EndedGrace)
	c.validateStreams(v)

	seg, part := c.Segmenter.SegmentDuration, c.Segmenter.PartDuration
	v.positive("segmenter.segment_duration", seg)
	switch {
	case part.Duration() < MinPartDuration:
		v.add("segmenter.part_duration", "must be at least %s, got %s", Duration(MinPartDuration), part)
	case seg > 0 && part >= seg:
		v.add("segmenter.part_duration", "must be less than segmenter.segment_duration (%s), got %s", seg, part)
	}
	v.atLeast("segmenter.window", c.Segmenter.Window, MinWindow)
	v.atLeast("segmenter.keep_extra", c.Segmenter.KeepExtra, 0)
	v.atLeast("segmenter.subscriber_buffer", c.Segmenter.SubscriberBuffer, MinSubscriberBuffer)

	o := c.Origin
	if o.Address == "" {
		v.add("origin.address", "must be set; the origin cannot be disabled")
	} else {
		v.address("origin.address", o.Address, false)
	}
	switch {
	case o.TLSCert != "" && o.TLSKey == "":
		v.add("origin.tls_key", "must be set when origin.tls_cert is set")
	case o.TLSCert == "" && o.TLSKey != "":
		v.add("origin.tls_cert", "must be set when origin.tls_key is set")
	}
	v.file("origin.tls_cert", o.TLSCert)
	v.file("origin.tls_key", o.TLSKey)
	v.positive("origin.read_header_timeout", o.ReadHeaderTimeout)
	v.positive("origin.read_timeout", o.ReadTimeout)
	v.positive("origin.write_timeout", o.WriteTimeout)
	v.positive("origin.idle_timeout", o.IdleTimeout)
	v.atLeast("origin.max_header_bytes", o.MaxHeaderBytes, MinHeaderBytes)
	v.atLeast("origin.max_connections", o.MaxConnections, 0)
	v.atLeast("origin.max_connections_per_address", o.MaxConnectionsPerAddress, 0)
	v.positive("origin.block_timeout", o.BlockTimeout)
	if o.WriteTimeout > 0 && o.BlockTimeout > 0 && o.WriteTimeout <= o.BlockTimeout {
		v.add("origin.write_timeout", "must be greater than origin.block_timeout (%s) so blocking requests can be answered, got %s", o.BlockTimeout, o.WriteTimeout)
	}
	for i, origin := range o.CORS.AllowedOrigins {
		if err := checkOrigin(origin); err != nil {
			v.add("origin.cors.allowed_origins", "item %d: %v", i+1, err)
		}
	}
	v.notNegative("origin.dash.target_latency", o.DASH.TargetLatency)
	v.notNegative("origin.dash.end_grace", o.DASH.EndGrace)
	v.maxAge("origin.cache.segment_max_age", o.Cache.SegmentMaxAge)
	v.maxAge("origin.cache.playlist_max_age", o.Cache.PlaylistMaxAge)
	v.maxAge("origin.cache.multivariant_max_age", o.Cache.MultivariantMaxAge)
	v.maxAge("origin.cache.blocking_max_age", o.Cache.BlockingMaxAge)
	v.maxAge("origin.cache.not_found_max_age", o.Cache.NotFoundMaxAge)
	v.maxAge("origin.cache.ended_max_age", o.Cache.EndedMaxAge)
	v.atLeast("origin.relay.cache_bytes", o.Relay.CacheBytes, MinRelayCacheBytes)
	v.positive("origin.relay.cache_ttl", o.Relay.CacheTTL)
	v.atLeast("origin.relay.max_idle_conns_per_host", o.Relay.MaxIdleConnsPerHost, 1)
	v.positive("origin.relay.dial_timeout", o.Relay.DialTimeout)
	v.positive("origin.relay.response_timeout", o.Relay.ResponseTimeout)
	if o.Relay.ResponseTimeout > 0 && o.BlockTimeout > 0 && o.Relay.ResponseTimeout <= o.BlockTimeout {
		v.add("origin.relay.response_timeout", "must be greater than origin.block_timeout (%s) so relayed blocking requests can be answered, got %s", o.BlockTimeout, o.Relay.ResponseTimeout)
	}

	c.validateHLS(v)
	c.validateTranscoder(v)
	c.validateCluster(v)
	c.validateRecord(v)

	v.address("admin.address", c.Admin.Address, true)

	c.validateSecurity(v)

	v.address("srt.address", c.SRT.Address, true)
	v.positive("srt.latency", c.SRT.Latency)
	if k := c.SRT.PBKeyLen; k != 16 && k != 24 && k != 32 {
		v.add("srt.pbkeylen", "must be 16, 24 or 32, got %d", k)
	}
	v.file("srt.passphrase_file", c.SRT.PassphraseFile)
	for i, e := range c.SRT.PrefixPassphraseFiles {
		prefix, file, ok := strings.Cut(e, "=")
		if !ok || prefix == "" {
			v.add("srt.prefix_passphrase_files", "item %d: %q is not <prefix>=<file>", i+1, e)
			continue
		}
		v.file("srt.prefix_passphrase_files", file)
	}
	v.atLeast("srt.max_publishers", c.SRT.MaxPublishers, 1)
	v.atLeast("srt.max_readers", c.SRT.MaxReaders, 1)
	v.positive("srt.idle_timeout", c.SRT.IdleTimeout)
	v.atLeast("srt.max_connections_per_minute", c.SRT.MaxConnectionsPerMinute, 0)
	v.atLeast("rtsp.max_connections_per_minute", c.RTSP.MaxConnectionsPerMinute, 0)

	r := c.RTSP
	v.address("rtsp.address", r.Address, true)
	v.address("rtsp.udp_rtp_address", r.UDPRTPAddress, true)
	v.address("rtsp.udp_rtcp_address", r.UDPRTCPAddress, true)
	if (r.UDPRTPAddress == "") != (r.UDPRTCPAddress == "") {
		v.add("rtsp.udp_rtcp_address", "udp_rtp_address and udp_rtcp_address are set together or both \"\"")
	}
	v.positive("rtsp.read_timeout", r.ReadTimeout)
	v.positive("rtsp.write_timeout", r.WriteTimeout)
	v.atLeast("rtsp.max_publishers", r.MaxPublishers, 1)
	v.atLeast("rtsp.max_readers", r.MaxReaders, 1)
	v.oneOf("rtsp.source_transport", r.SourceTransport, "auto", "tcp", "udp")
	v.positive("rtsp.on_demand_linger", r.OnDemandLinger)
	seen := map[string]bool{}
	for _, list := range []struct {
		key   string
		items []string
	}{{"rtsp.sources", r.Sources}, {"rtsp.on_demand_sources", r.OnDemandSources}} {
		for i, e := range list.items {
			name, raw, ok := strings.Cut(e, "=")
			if !ok || name == "" || raw == "" {
				v.add(list.key, "item %d: is not <stream>=<rtsp URL>", i+1)
				continue
			}
			if err := media.ValidateName(name); err != nil {
				v.add(list.key, "item %d: %v", i+1, err)
			}
			if u, err := url.Parse(raw); err != nil || (u.Scheme != "rtsp" && u.Scheme != "rtsps") || u.Host == "" {
				v.add(list.key, "item %d: stream %s: not an rtsp:// or rtsps:// URL", i+1, name)
			}
			if seen[name] {
				v.add(list.key, "item %d: stream %s has two sources", i+1, name)
			}
			seen[name] = true
		}
	}

	v.notNegative("shutdown.drain", c.Shutdown.Drain)
	v.positive("shutdown.timeout", c.Shutdown.Timeout)
	if c.Shutdown.Timeout > 0 && c.Shutdown.Drain >= c.Shutdown.Timeout {
		v.add("shutdown.timeout", "must be greater than shutdown.drain (%s), got %s", c.Shutdown.Drain, c.Shutdown.Timeout)
	}

	v.distinct([]string{"rtmp.address", "origin.address", "admin.address", "rtsp.address", "rtmp.tls_address"},
		[]string{c.RTMP.Address, c.Origin.Address, c.Admin.Address, c.RTSP.Address, c.RTMP.TLSAddress})

	return errors.Join(v.errs...)
}

// validateHLS checks the hls section.
func (c *Config) validateHLS(v *validator) {
	e := c.HLS.Encryption
	for i, p := range e.Prefixes {
		if !validPrefix(p) {
			v.add("hls.encryption.prefixes", "item %d: %q is not the start of a stream name (letters, digits, '_', '.', '-' and '/')", i+1, p)
		}
	}
	v.atLeast("hls.encryption.rotate_segments", e.RotateSegments, 0)
	v.atLeast("hls.encryption.cache_bytes", e.CacheBytes, MinEncryptionCacheBytes)
	if e.Enabled && !c.Playback.Tokens.Enabled() && !c.Playback.CDN.Enabled() {
		v.add("hls.encryption.enabled", "needs playback.tokens.keys or playback.cdn.secret_file: "+
			"keys are served only to requests with a valid playback token or the CDN secret, "+
			"so without either no player could decrypt (and serving keys to anyone would make encryption pointless)")
	}
}

// validPrefix reports whether p can start a stream name.
func validPrefix(p string) bool {
	if p == "" {
		return false
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' || c == '/') {
			return false
		}
	}
	return true
}

// validator collects validation problems.
type validator struct {
	errs []error
	bad  map[string]bool // keys already reported
}

func (v *validator) add(path, format string, args ...any) {
	if v.bad == nil {
		v.bad = map[string]bool{}
	}
	v.bad[path] = true
	v.errs = append(v.errs, &FieldError{Path: path, Reason: fmt.Sprintf(format, args...)})
}

func (v *validator) oneOf(path, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		v.add(path, "%q is not one of %s", value, strings.Join(allowed, ", "))
	}
}

func (v *validator) positive(path string, d Duration) {
	if d <= 0 {
		v.add(path, "must be greater than 0, got %s", d)
	}
}

func (v *validator) notNegative(path string, d Duration) {
	if d < 0 {
		v.add(path, "must not be negative, got %s", d)
	}
}

func (v *validator) atLeast(path string, n, least int) {
	if n < least {
		v.add(path, "must be at least %d, got %d", least, n)
	}
}

// maxAge checks a Cache-Control max-age: whole seconds, not negative.
func (v *validator) maxAge(path string, d Duration) {
	switch {
	case d < 0:
		v.add(path, "must not be negative, got %s", d)
	case d.Duration()%time.Second != 0:
		v.add(path, "must be a whole number of seconds (Cache-Control max-age), got %s", d)
	}
}

// address checks a host:port listen address; "" is accepted when
// disableable.
func (v *validator) address(path, addr string, disableable bool) {
	if addr == "" {
		if !disableable {
			v.add(path, "must be set")
		}
		return
	}
	if err := checkAddress(addr); err != nil {
		hint := ""
		if disableable {
			hint = `; use "" to disable`
		}
		v.add(path, "%q is not host:port (%v)%s", addr, err, hint)
	}
}

func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return errors.New(ae.Err)
		}
		return err
	}
	if strings.ContainsAny(host, " \t/") {
		return fmt.Errorf("bad host %q", host)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || port == "" {
		return fmt.Errorf("port %q is not a number in 0-65535", port)
	}
	return nil
}

// app checks an RTMP application name: [A-Za-z0-9_.-]+.
func (v *validator) app(path, app string) {
	if app == "" {
		v.add(path, "must be set")
		return
	}
	for _, r := range app {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-') {
			v.add(path, "%q may only contain letters, digits, '_', '.' and '-'", app)
			return
		}
	}
}

// file checks that a configured file exists and is not a directory.
func (v *validator) file(path, name string) {
	if name == "" {
		return
	}
	info, err := os.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.add(path, "file %q does not exist", name)
	case err != nil:
		v.add(path, "%v", err)
	case info.IsDir():
		v.add(path, "%q is a directory, not a file", name)
	}
}

// checkOrigin checks one CORS allowed origin: "*" or scheme://host[:port].
func checkOrigin(origin string) error {
	if origin == "*" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Opaque != "" {
		return fmt.Errorf("%q is not \"*\" or an origin such as https://player.example", origin)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q must start with http:// or https:// (or be \"*\")", origin)
	case u.Host == "":
		return fmt.Errorf("%q has no host", origin)
	case u.User != nil:
		return fmt.Errorf("%q must not contain user information", origin)
	case u.Path == "/" && u.RawQuery == "" && u.Fragment == "":
		return fmt.Errorf("%q must not end with '/'; an origin has no path", origin)
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return fmt.Errorf("%q must not have a path, query or fragment; an origin is scheme://host[:port]", origin)
	case strings.ToLower(origin) != origin:
		return fmt.Errorf("%q must be lower case, as browsers send it", origin)
	}
	if u.Port() != "" {
		if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q has a bad port", origin)
		}
	}
	return nil
}

// distinct reports listen addresses that would collide: the same non-zero
// port on the same host, or on a wildcard host. Addresses already reported
// invalid are skipped.
func (v *validator) distinct(paths, addrs []string) {
	for j := range addrs {
		for i := range j {
			if addrs[i] == "" || addrs[j] == "" || v.bad[paths[i]] || v.bad[paths[j]] {
				continue
			}
			if sameListener(addrs[i], addrs[j]) {
				v.add(paths[j], "%q conflicts with %s (%q); each listener needs its own address", addrs[j], paths[i], addrs[i])
				break
			}
		}
	}
}

func sameListener(a, b string) bool {
	if a == b {
		return !strings.HasSuffix(a, ":0")
	}
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb || pa == "0" {
		return false
	}
	wild := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return ha == hb || wild(ha) || wild(hb)
}
