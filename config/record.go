package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/headwater-live/headwater/thumbnail"
)

// Recording defaults owned by this package (the recording packages take
// what they are given).
const (
	defaultRecordDir          = "./recordings"
	defaultRecordSpoolBytes   = 10 << 30
	defaultRetentionInterval  = time.Minute
	defaultPosterInterval     = 5 * time.Second
	defaultSpriteInterval     = thumbnail.DefaultInterval
	defaultWebhookTimeout     = 5 * time.Second
	recordBackendDir          = "dir"
	recordBackendS3           = "s3"
	minRecordSpoolBytes       = 64 << 20
	minPosterIntervalDuration = time.Second
)

// RecordConfig configures recording (docs/recording.md).
type RecordConfig struct {
	// Enabled turns recording on. It defaults to false.
	Enabled bool `yaml:"enabled" doc:"Record streams (docs/recording.md)."`
	// Prefixes are the stream-name prefixes recorded ("" = every stream);
	// the longest matching prefix of prefixes and exclude decides. It
	// defaults to [""].
	Prefixes []string `yaml:"prefixes" doc:"Stream-name prefixes recorded (\"\" = all); the longest matching prefix of prefixes and exclude decides."`
	// Exclude are stream-name prefixes not recorded. It defaults to [].
	Exclude []string `yaml:"exclude" doc:"Stream-name prefixes not recorded."`
	// Backend is where recordings are stored: dir or s3. It defaults to "dir".
	Backend string `yaml:"backend" doc:"Where recordings are stored: dir (record.dir) or s3 (record.s3)."`
	// Dir is the recordings directory of the dir backend. It defaults to
	// "./recordings".
	Dir string `yaml:"dir" doc:"Recordings directory (backend dir)."`
	// SpoolDir is the local spool every recorded object passes through
	// before it is stored; "" is <dir>/.spool with backend dir and
	// ./recordings-spool with s3. It defaults to "".
	SpoolDir string `yaml:"spool_dir" doc:"Local spool directory recorded objects wait in until stored (\"\" = <dir>/.spool for dir, ./recordings-spool for s3)."`
	// SpoolMaxBytes caps the spool; past it the oldest unsent objects are
	// dropped (counted). It defaults to 10 GiB.
	SpoolMaxBytes int `yaml:"spool_max_bytes" doc:"Spool size cap in bytes; past it the oldest unsent objects are dropped and counted (never ingest)."`
	// S3 configures the s3 backend.
	S3 RecordS3Config `yaml:"s3" doc:"S3-compatible object storage (backend s3)."`
	// Retention lists "<prefix>=<max age>[:<max bytes>]" rules (the
	// longest prefix wins; max age 0 = no age limit). It defaults to [].
	Retention []string `yaml:"retention" doc:"Retention rules \"<prefix>=<max age>[:<max bytes>]\", e.g. \"live/=168h:500GB\" (longest prefix wins; age 0 = none)."`
	// RetentionInterval is how often retention runs. It defaults to 1m.
	RetentionInterval Duration `yaml:"retention_interval" doc:"How often retention is applied."`
	// PosterInterval is how often a live stream's poster is refreshed.
	// It defaults to 5s.
	PosterInterval Duration `yaml:"poster_interval" doc:"How often /<stream>/poster.jpg is refreshed from a new key frame; 0 = no posters."`
	// SpriteInterval is the time between thumbnails in a recording's
	// sprites. It defaults to 10s.
	SpriteInterval Duration `yaml:"sprite_interval" doc:"Time between thumbnails of a recording's sprite sheets and thumbnails.vtt; 0 = none."`
}

// RecordS3Config configures the S3 backend of recordings.
type RecordS3Config struct {
	// Endpoint is the S3 endpoint URL (http or https). It defaults to "".
	Endpoint string `yaml:"endpoint" doc:"S3 endpoint URL, e.g. https://s3.eu-west-1.amazonaws.com or http://127.0.0.1:7070."`
	// Region is the bucket's region. It defaults to "us-east-1".
	Region string `yaml:"region" doc:"Bucket region."`
	// Bucket is the bucket recordings go to. It defaults to "".
	Bucket string `yaml:"bucket" doc:"Bucket recordings are stored in."`
	// Prefix is prepended to every key. It defaults to "".
	Prefix string `yaml:"prefix" doc:"Key prefix inside the bucket."`
	// PathStyle addresses the bucket in the path rather than the host
	// name. It defaults to false.
	PathStyle bool `yaml:"path_style" doc:"Path-style bucket addressing (most self-hosted S3 servers need it)."`
	// AccessKeyFile and SecretKeyFile hold the credentials; without them
	// the usual AWS environment is used. They default to "".
	AccessKeyFile string `yaml:"access_key_file" doc:"File holding the access key id; \"\" = the AWS environment (AWS_ACCESS_KEY_ID, AWS_PROFILE...)."`
	SecretKeyFile string `yaml:"secret_key_file" doc:"File holding the secret access key."`
	// SSE is server-side encryption: "", "AES256" or "aws:kms". It
	// defaults to "".
	SSE string `yaml:"sse" doc:"Server-side encryption: \"\" (none), AES256 or aws:kms."`
	// KMSKeyID is the KMS key of SSE aws:kms. It defaults to "".
	KMSKeyID string `yaml:"kms_key_id" doc:"KMS key id for sse aws:kms."`
}

// DVRConfig configures rewinding live streams.
type DVRConfig struct {
	// Window is how far back players can seek in a recorded live stream;
	// 0 turns DVR off. It needs record.enabled. It defaults to 0.
	Window Duration `yaml:"window" doc:"How far back players can seek in a recorded live stream (dvr.m3u8, the MPD's timeShiftBufferDepth); 0 = off. Needs record.enabled."`
}

// EventsConfig configures the delivery of lifecycle events outside NATS.
type EventsConfig struct {
	// Webhook is the URL recording events are POSTed to. It defaults to "".
	Webhook string `yaml:"webhook" doc:"URL recording events (recording.started, .ready, .failed, .deleted) are POSTed to as JSON; \"\" = none."`
	// WebhookSecretFile holds the HMAC-SHA256 key of the signature header.
	// It defaults to "".
	WebhookSecretFile string `yaml:"webhook_secret_file" doc:"File holding the HMAC-SHA256 key that signs webhook bodies (X-Headwater-Signature: sha256=<hex>); \"\" = unsigned."`
	// WebhookTimeout bounds one delivery attempt. It defaults to 5s.
	WebhookTimeout Duration `yaml:"webhook_timeout" doc:"Time allowed for one webhook delivery attempt."`
}

// RetentionRule is one parsed record.retention rule.
type RetentionRule struct {
	Prefix   string
	MaxAge   time.Duration
	MaxBytes int64
}

// ParseRetention parses record.retention.
func ParseRetention(rules []string) ([]RetentionRule, error) {
	out := make([]RetentionRule, 0, len(rules))
	seen := make(map[string]bool)
	for _, s := range rules {
		prefix, rest, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf("%q: want <prefix>=<max age>[:<max bytes>]", s)
		}
		if seen[prefix] {
			return nil, fmt.Errorf("%q: prefix %q given twice", s, prefix)
		}
		seen[prefix] = true
		if prefix != "" && !validPrefix(prefix) {
			return nil, fmt.Errorf("%q: %q is not a stream-name prefix", s, prefix)
		}
		ageText, bytesText, hasBytes := strings.Cut(rest, ":")
		r := RetentionRule{Prefix: prefix}
		if ageText != "0" && ageText != "" {
			d, err := time.ParseDuration(ageText)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("%q: max age %q is not a duration such as 168h", s, ageText)
			}
			r.MaxAge = d
		}
		if hasBytes {
			n, err := parseBytes(bytesText)
			if err != nil {
				return nil, fmt.Errorf("%q: max bytes %q: %w", s, bytesText, err)
			}
			r.MaxBytes = n
		}
		if r.MaxAge == 0 && r.MaxBytes == 0 {
			return nil, fmt.Errorf("%q: sets neither a max age nor max bytes", s)
		}
		out = append(out, r)
	}
	return out, nil
}

// validateRecord checks record.*, dvr.* and events.*.
func (c *Config) validateRecord(v *validator) {
	r := c.Record
	v.oneOf("record.backend", r.Backend, recordBackendDir, recordBackendS3)
	for _, p := range r.Prefixes {
		if p != "" && !validPrefix(p) {
			v.add("record.prefixes", "%q is not a stream-name prefix", p)
		}
	}
	for _, p := range r.Exclude {
		if p == "" || !validPrefix(p) {
			v.add("record.exclude", "%q is not a stream-name prefix", p)
		}
	}
	if r.SpoolMaxBytes < minRecordSpoolBytes {
		v.add("record.spool_max_bytes", "must be at least %d bytes, got %d", minRecordSpoolBytes, r.SpoolMaxBytes)
	}
	if _, err := ParseRetention(r.Retention); err != nil {
		v.add("record.retention", "%v", err)
	}
	v.positive("record.retention_interval", r.RetentionInterval)
	if d := time.Duration(r.PosterInterval); d != 0 && d < minPosterIntervalDuration {
		v.add("record.poster_interval", "must be 0 (off) or at least %s, got %s", minPosterIntervalDuration, d)
	}
	if d := time.Duration(r.SpriteInterval); d != 0 && (d < thumbnail.MinInterval || d > thumbnail.MaxInterval || d%time.Millisecond != 0) {
		v.add("record.sprite_interval", "must be 0 (off) or whole milliseconds between %s and %s, got %s", thumbnail.MinInterval, thumbnail.MaxInterval, d)
	}
	if r.Enabled {
		switch r.Backend {
		case recordBackendDir:
			if r.Dir == "" {
				v.add("record.dir", "must be set with record.backend dir")
			}
		case recordBackendS3:
			s := r.S3
			if s.Endpoint == "" {
				v.add("record.s3.endpoint", "must be set with record.backend s3")
			} else if err := checkHTTPURL(s.Endpoint); err != nil {
				v.add("record.s3.endpoint", "%v", err)
			}
			if s.Bucket == "" {
				v.add("record.s3.bucket", "must be set with record.backend s3")
			}
			if (s.AccessKeyFile == "") != (s.SecretKeyFile == "") {
				v.add("record.s3.access_key_file", "access_key_file and secret_key_file go together")
			}
			v.file("record.s3.access_key_file", s.AccessKeyFile)
			v.file("record.s3.secret_key_file", s.SecretKeyFile)
			v.oneOf("record.s3.sse", s.SSE, "", "AES256", "aws:kms")
			if s.SSE == "aws:kms" && s.KMSKeyID == "" {
				v.add("record.s3.kms_key_id", "must be set with sse aws:kms")
			}
		}
	}
	v.notNegative("dvr.window", c.DVR.Window)
	if c.DVR.Window > 0 && !r.Enabled {
		v.add("dvr.window", "needs record.enabled: true (DVR serves older segments from the recording)")
	}
	if c.Events.Webhook != "" {
		if err := checkHTTPURL(c.Events.Webhook); err != nil {
			v.add("events.webhook", "%v", err)
		}
	}
	v.file("events.webhook_secret_file", c.Events.WebhookSecretFile)
	v.positive("events.webhook_timeout", c.Events.WebhookTimeout)
}

// checkHTTPURL accepts an absolute http:// or https:// URL without
// credentials (URLs are logged).
func checkHTTPURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return fmt.Errorf("must be an absolute http:// or https:// URL")
	case u.User != nil:
		return fmt.Errorf("must not contain credentials (user:password@): the URL is logged")
	}
	return nil
}

// parseBytes reads a byte count with an optional unit: 500GB, 2TiB, 1048576.
func parseBytes(s string) (int64, error) {
	// The suffixes accepted, each before any suffix of it.
	units := []struct {
		suffix string
		n      int64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	}
	mult := int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = rest, u.n
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("not a byte count such as 500GB, 2TiB or 1048576")
	}
	return n * mult, nil
}
