package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeFile writes content to dir/name and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// errorTexts returns the text of each error joined in err.
func errorTexts(err error) []string {
	var out []string
	for _, e := range splitErrors(err) {
		out = append(out, e.Error())
	}
	return out
}

// loadIn writes content as headwater.yaml in a temporary directory, changes
// into it so error messages carry the bare name, and loads it.
func loadIn(t *testing.T, content string, env []string, overrides ...Override) (*Config, error) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, dir, "headwater.yaml", content)
	t.Chdir(dir)
	return Load("headwater.yaml", env, overrides...)
}

const fullFile = `# every key, none at its default
log:
  level: debug
  format: text
rtmp:
  address: "127.0.0.1:1936"
  app: studio.main
  handshake_timeout: 3s
  idle_timeout: 15s
  max_publishers: 10
  max_chunk_size: 4096
  max_connections: 200
  max_connections_per_address: 4
  publish_deadline: 20s
  max_chunk_streams: 16
  max_unassembled_bytes: 4194304
srt:
  address: "127.0.0.1:8891"
  latency: 200ms
  passphrase_file: "key.pem"
  pbkeylen: 32
  prefix_passphrase_files: ["live/open=", "live/team-=cert.pem"]
  max_publishers: 5
  max_readers: 6
  idle_timeout: 7s
  max_connections_per_minute: 9
  max_connections: 300
  max_connections_per_address: 5
  publish_deadline: 25s
rtsp:
  address: "127.0.0.1:8555"
  udp_rtp_address: "127.0.0.1:8002"
  udp_rtcp_address: "127.0.0.1:8003"
  read_timeout: 11s
  write_timeout: 12s
  max_publishers: 7
  max_readers: 8
  sources: ["live/cam1=rtsp://cam1.example/stream1"]
  on_demand_sources: ["live/cam2=rtsp://user:pw@cam2.example:554/s"]
  source_transport: tcp
  on_demand_linger: 20s
  max_connections_per_minute: 11
  max_connections: 400
  max_connections_per_address: 6
  publish_deadline: 35s
streams:
  max_streams: 50
  ended_grace: 30s
  reconnect_window: 5s
  reconnect_windows: [live/=10s, test/=0s]
  failover_after: 1500ms
  failback: false
  slate: builtin
segmenter:
  segment_duration: 4s
  part_duration: 500ms
  window: 8
  keep_extra: 2
  subscriber_buffer: 256
origin:
  address: "[::1]:8443"
  tls_cert: cert.pem
  tls_key: key.pem
  read_header_timeout: 2s
  read_timeout: 20s
  write_timeout: 1m
  idle_timeout: 90s
  max_header_bytes: 8192
  max_connections: 500
  block_timeout: 12s
  gzip: false
  dash:
    low_latency: false
    target_latency: 2500ms
    end_grace: 30s
  cors:
    allowed_origins: ["https://a.example", "http://b.example:8080"]
  cache:
    segment_max_age: 3600s
    playlist_max_age: 2s
    multivariant_max_age: 5s
    blocking_max_age: 12s
    not_found_max_age: 0s
    ended_max_age: 10m
  relay:
    cache_bytes: 33554432
    cache_ttl: 30s
    max_idle_conns_per_host: 64
    dial_timeout: 1s
    response_timeout: 15s
hls:
  encryption:
    enabled: true
    prefixes: ["live/premium-", "paid/"]
    rotate_segments: 10
    sequence_iv: true
    cache_bytes: 16777216
transcoder:
  enabled: true
  ffmpeg: /opt/ffmpeg/bin/ffmpeg
  fork_server: off
  pool_size: 6
  pool_warm: -1
  queue_size: 40
  max_wait: 1.5
  reserve: ["live/premium/=1:1080p;720p", "=2:270p"]
  deadline: 4
  ladder: ["540p=540:2000k", "270p=270:500k:libx264:faster"]
  prefix_ladders: ["live/premium/=1080p=1080:6000k;720p=720:3000k"]
  local_workers: 2
admin:
  address: "127.0.0.1:9191"
  max_connections: 8
auth:
  publish:
    static_keys: ["live/studio1=sha256:0000000000000000000000000000000000000000000000000000000000000001", "live/team-*=sha256:00000000000000000000000000000000000000000000000000000000000000ff"]
    jwt:
      issuer: https://issuer.example
      audience: headwater
      leeway: 5s
    webhook:
      url: https://auth.example/hook
      timeout: 3s
      on_unpublish: true
      unpublish_in_flight: 4
    rate_limit:
      failures: 5
      window: 30s
      max_addresses: 100
playback:
  cdn:
    header: X-CDN-Key
    # hls.encryption.enabled needs tokens or the CDN secret.
    secret_file: key.pem
tracing:
  enabled: true
shutdown:
  drain: 500ms
  timeout: 5s
cluster:
  name: hw
  routes: ["nats-route://10.0.0.6:6222"]
  replicas: 3
  node_id: node-a
  origin_url: "http://10.0.0.5:8080"
  placement_ttl: 5s
record:
  enabled: true
  prefixes: ["live/"]
  exclude: ["live/test/"]
  backend: dir
  dir: /var/lib/headwater/recordings
  spool_dir: /var/lib/headwater/spool
  spool_max_bytes: 1073741824
  s3:
    endpoint: "https://s3.example"
    region: eu-west-1
    bucket: rec
    prefix: hw/
    path_style: true
    sse: AES256
  retention: ["live/=168h", "live/big/=0:500GB"]
  retention_interval: 5m
  poster_interval: 3s
  sprite_interval: 20s
dvr:
  window: 2h
events:
  webhook: "https://hooks.example/headwater"
  webhook_timeout: 3s
`

// fullConfig is what fullFile decodes to.
func fullConfig() *Config {
	return &Config{
		Log: LogConfig{Level: "debug", Format: "text"},
		RTMP: RTMPConfig{
			Address:          "127.0.0.1:1936",
			App:              "studio.main",
			HandshakeTimeout: Duration(3 * time.Second),
			IdleTimeout:      Duration(15 * time.Second),
			MaxPublishers:    10,
			MaxChunkSize:     4096,
			// Security keys are not in fullFile: see security_test.go.
			MaxConnectionsPerMinute: 60,
			MaxConnections:          200, MaxConnectionsPerAddress: 4, PublishDeadline: Duration(20 * time.Second),
			MaxChunkStreams: 16, MaxUnassembledBytes: 4 << 20,
		},
		SRT: SRTConfig{
			Address: "127.0.0.1:8891", Latency: Duration(200 * time.Millisecond), PassphraseFile: "key.pem", PBKeyLen: 32,
			PrefixPassphraseFiles: []string{"live/open=", "live/team-=cert.pem"},
			MaxPublishers:         5, MaxReaders: 6, IdleTimeout: Duration(7 * time.Second), MaxConnectionsPerMinute: 9,
			MaxConnections: 300, MaxConnectionsPerAddress: 5, PublishDeadline: Duration(25 * time.Second),
		},
		RTSP: RTSPConfig{
			Address: "127.0.0.1:8555", UDPRTPAddress: "127.0.0.1:8002", UDPRTCPAddress: "127.0.0.1:8003",
			ReadTimeout: Duration(11 * time.Second), WriteTimeout: Duration(12 * time.Second),
			MaxPublishers: 7, MaxReaders: 8,
			Sources:         []string{"live/cam1=rtsp://cam1.example/stream1"},
			OnDemandSources: []string{"live/cam2=rtsp://user:pw@cam2.example:554/s"},
			SourceTransport: "tcp", OnDemandLinger: Duration(20 * time.Second), MaxConnectionsPerMinute: 11,
			MaxConnections: 400, MaxConnectionsPerAddress: 6, PublishDeadline: Duration(35 * time.Second),
		},
		Streams: StreamsConfig{MaxStreams: 50, EndedGrace: Duration(30 * time.Second),
			ReconnectWindow: Duration(5 * time.Second), ReconnectWindows: []string{"live/=10s", "test/=0s"},
			FailoverAfter: Duration(1500 * time.Millisecond), Failback: false, Slate: "builtin"},
		Segmenter: SegmenterConfig{
			SegmentDuration:  Duration(4 * time.Second),
			PartDuration:     Duration(500 * time.Millisecond),
			Window:           8,
			KeepExtra:        2,
			SubscriberBuffer: 256,
		},
		Origin: OriginConfig{
			Address:           "[::1]:8443",
			TLSCert:           "cert.pem",
			TLSKey:            "key.pem",
			ReadHeaderTimeout: Duration(2 * time.Second),
			ReadTimeout:       Duration(20 * time.Second),
			WriteTimeout:      Duration(time.Minute),
			IdleTimeout:       Duration(90 * time.Second),
			MaxHeaderBytes:    8192,
			MaxConnections:    500,
			BlockTimeout:      Duration(12 * time.Second),
			Gzip:              false,
			DASH:              DASHConfig{LowLatency: false, TargetLatency: Duration(2500 * time.Millisecond), EndGrace: Duration(30 * time.Second)},
			CORS:              CORSConfig{AllowedOrigins: []string{"https://a.example", "http://b.example:8080"}},
			Cache: CacheConfig{
				SegmentMaxAge:      Duration(time.Hour),
				PlaylistMaxAge:     Duration(2 * time.Second),
				MultivariantMaxAge: Duration(5 * time.Second),
				BlockingMaxAge:     Duration(12 * time.Second),
				NotFoundMaxAge:     0,
				EndedMaxAge:        Duration(10 * time.Minute),
			},
			Relay: OriginRelayConfig{
				CacheBytes: 32 << 20, CacheTTL: Duration(30 * time.Second), MaxIdleConnsPerHost: 64,
				DialTimeout: Duration(time.Second), ResponseTimeout: Duration(15 * time.Second),
			},
		},
		HLS: HLSConfig{Encryption: HLSEncryptionConfig{
			Enabled: true, Prefixes: []string{"live/premium-", "paid/"}, RotateSegments: 10, SequenceIV: true, CacheBytes: 16 << 20,
		}},
		Transcoder: TranscoderConfig{
			Enabled: true, FFmpeg: "/opt/ffmpeg/bin/ffmpeg", ForkServer: "off", PoolSize: 6, PoolWarm: -1,
			QueueSize: 40, MaxWait: 1.5, Reserve: []string{"live/premium/=1:1080p;720p", "=2:270p"}, Deadline: 4,
			Ladder:        []string{"540p=540:2000k", "270p=270:500k:libx264:faster"},
			PrefixLadders: []string{"live/premium/=1080p=1080:6000k;720p=720:3000k"},
			LocalWorkers:  2,
		},
		Admin: AdminConfig{Address: "127.0.0.1:9191", MaxConnections: 8},
		// The *_file keys and what needs them are in security_test.go.
		Auth: AuthConfig{Publish: PublishAuthConfig{
			StaticKeys: []string{
				"live/studio1=sha256:0000000000000000000000000000000000000000000000000000000000000001",
				"live/team-*=sha256:00000000000000000000000000000000000000000000000000000000000000ff",
			},
			JWT:       JWTAuthConfig{Issuer: "https://issuer.example", Audience: "headwater", Leeway: Duration(5 * time.Second)},
			Webhook:   WebhookAuthConfig{URL: "https://auth.example/hook", Timeout: Duration(3 * time.Second), OnUnpublish: true, UnpublishInFlight: 4},
			RateLimit: RateLimitAuthConfig{Failures: 5, Window: Duration(30 * time.Second), MaxAddresses: 100},
		}},
		Playback: PlaybackConfig{Tokens: PlaybackTokensConfig{Keys: []string{}}, CDN: PlaybackCDNConfig{Header: "X-CDN-Key", SecretFile: "key.pem"}},
		Tracing:  TracingConfig{Enabled: true},
		Shutdown: ShutdownConfig{Drain: Duration(500 * time.Millisecond), Timeout: Duration(5 * time.Second)},
		// The cluster stays off: its files and NATS URL are checked in cluster_test.go.
		Cluster: ClusterConfig{Name: "hw", Routes: []string{"nats-route://10.0.0.6:6222"}, Replicas: 3, NodeID: "node-a",
			OriginURL: "http://10.0.0.5:8080", PlacementTTL: Duration(5 * time.Second), Role: RoleAll},
		Record: RecordConfig{Enabled: true, Prefixes: []string{"live/"}, Exclude: []string{"live/test/"}, Backend: "dir",
			Dir: "/var/lib/headwater/recordings", SpoolDir: "/var/lib/headwater/spool", SpoolMaxBytes: 1 << 30,
			S3:        RecordS3Config{Endpoint: "https://s3.example", Region: "eu-west-1", Bucket: "rec", Prefix: "hw/", PathStyle: true, SSE: "AES256"},
			Retention: []string{"live/=168h", "live/big/=0:500GB"}, RetentionInterval: Duration(5 * time.Minute),
			PosterInterval: Duration(3 * time.Second), SpriteInterval: Duration(20 * time.Second)},
		DVR:    DVRConfig{Window: Duration(2 * time.Hour)},
		Events: EventsConfig{Webhook: "https://hooks.example/headwater", WebhookTimeout: Duration(3 * time.Second)},
	}
}

// withTLSFiles creates cert.pem and key.pem in the current directory.
func withTLSFiles(t *testing.T) {
	t.Helper()
	writeFile(t, ".", "cert.pem", "cert")
	writeFile(t, ".", "key.pem", "key")
}

func TestDefaultsValid(t *testing.T) {
	if err := Default().Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	for _, tc := range []struct {
		name string
		path string
		file string
	}{
		{name: "no file", path: ""},
		{name: "empty file", path: "empty.yaml", file: ""},
		{name: "comments only", path: "comments.yaml", file: "# nothing here\n"},
		{name: "empty sections", path: "sections.yaml", file: "log:\nrtmp: {}\norigin:\n  cors:\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path != "" {
				path = writeFile(t, t.TempDir(), path, tc.file)
			}
			c, err := Load(path, []string{"HOME=/root", "PATH=/bin"})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(c, Default()) {
				t.Errorf("Load = %+v, want defaults %+v", c, Default())
			}
		})
	}
	if a, b := Default(), Default(); &a.Origin.CORS.AllowedOrigins[0] == &b.Origin.CORS.AllowedOrigins[0] {
		t.Error("Default shares list storage between calls")
	}
}

func TestLoadFullFile(t *testing.T) {
	_, err := loadIn(t, fullFile, nil)
	withTLSFiles(t) // created after Load: the files must exist, so Load must fail (key.pem is the CDN secret too)
	want := []string{
		`headwater.yaml:62: origin.tls_cert: file "cert.pem" does not exist`,
		`headwater.yaml:63: origin.tls_key: file "key.pem" does not exist`,
		`headwater.yaml:134: playback.cdn.secret_file: file "key.pem" does not exist`,
		`headwater.yaml:20: srt.passphrase_file: file "key.pem" does not exist`,
		`headwater.yaml:22: srt.prefix_passphrase_files: file "cert.pem" does not exist`,
	}
	if got := errorTexts(err); !slices.Equal(got, want) {
		t.Fatalf("Load with missing TLS files: %v, want %v", got, want)
	}
	c, err := Load("headwater.yaml", nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if want := fullConfig(); !reflect.DeepEqual(c, want) {
		t.Errorf("Load =\n%+v\nwant\n%+v", c, want)
	}
	if !c.Origin.TLSEnabled() || Default().Origin.TLSEnabled() {
		t.Error("TLSEnabled wrong")
	}

	// The effective configuration prints and reads back unchanged.
	out, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, ".", "effective.yaml", string(out))
	again, err := Load("effective.yaml", nil)
	if err != nil {
		t.Fatalf("Load(YAML()): %v\n%s", err, out)
	}
	if !reflect.DeepEqual(again, c) {
		t.Errorf("YAML round trip =\n%+v\nwant\n%+v", again, c)
	}
}

func TestLoadFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		want []string // every error, in order
	}{
		{
			name: "unknown key",
			file: "rtmp:\n  adress: \":1936\"\n",
			want: []string{`headwater.yaml:2: rtmp.adress: unknown key (did you mean address?)`},
		},
		{
			name: "unknown nested key",
			file: "origin:\n  cors:\n    allowed_origin: [\"*\"]\n",
			want: []string{`headwater.yaml:3: origin.cors.allowed_origin: unknown key (did you mean allowed_origins?)`},
		},
		{
			name: "unknown section",
			file: "recording:\n  window: 3\n",
			want: []string{`headwater.yaml:1: recording: unknown key`},
		},
		{
			name: "bad duration",
			file: "segmenter:\n  part_duration: abc\n",
			want: []string{`headwater.yaml:2: segmenter.part_duration: "abc" is not a duration (e.g. 200ms, 2s)`},
		},
		{
			name: "duration without unit",
			file: "rtmp:\n  idle_timeout: 10\n",
			want: []string{`headwater.yaml:2: rtmp.idle_timeout: "10" is not a duration (e.g. 200ms, 2s)`},
		},
		{
			name: "duration as list",
			file: "rtmp:\n  idle_timeout: [1s]\n",
			want: []string{`headwater.yaml:2: rtmp.idle_timeout: must be a duration (e.g. 200ms, 2s), not a list`},
		},
		{
			name: "bad integer",
			file: "segmenter:\n  window: six\n",
			want: []string{`headwater.yaml:2: segmenter.window: "six" is not an integer`},
		},
		{
			name: "quoted integer",
			file: "segmenter:\n  window: \"6\"\n",
			want: []string{`headwater.yaml:2: segmenter.window: "6" is not an integer (remove the quotes)`},
		},
		{
			name: "fractional integer",
			file: "rtmp:\n  max_publishers: 1.5\n",
			want: []string{`headwater.yaml:2: rtmp.max_publishers: "1.5" is not an integer`},
		},
		{
			name: "bad number",
			file: "transcoder:\n  max_wait: soon\n",
			want: []string{`headwater.yaml:2: transcoder.max_wait: "soon" is not a number`},
		},
		{
			name: "quoted number",
			file: "transcoder:\n  max_wait: \"1.5\"\n",
			want: []string{`headwater.yaml:2: transcoder.max_wait: "1.5" is not a number (remove the quotes)`},
		},
		{
			name: "infinite number",
			file: "transcoder:\n  max_wait: .inf\n",
			want: []string{`headwater.yaml:2: transcoder.max_wait: ".inf" is not a number`},
		},
		{
			name: "number as list",
			file: "transcoder:\n  max_wait: [1]\n",
			want: []string{`headwater.yaml:2: transcoder.max_wait: must be a single value, not a list`},
		},
		{
			name: "fractional number without value",
			file: "transcoder:\n  max_wait:\n",
			want: []string{`headwater.yaml:2: transcoder.max_wait: no value; remove the key for the default (1)`},
		},
		{
			name: "bad transcoder pool keys",
			file: "transcoder:\n  fork_server: sometimes\n  pool_size: 4\n  queue_size: -1\n  max_wait: 0\n  reserve: [\"live/=1:720p\", \"live/vip/=x:480p\"]\n",
			want: []string{
				`headwater.yaml:2: transcoder.fork_server: "sometimes": want auto, on or off`,
				`headwater.yaml:4: transcoder.queue_size: must be at least 0, got -1`,
				`headwater.yaml:5: transcoder.max_wait: must be greater than 0, got 0`,
				`headwater.yaml:6: transcoder.reserve: item 2: "live/vip/=x:480p": workers "x" is not an integer`,
			},
		},
		{
			name: "reserve every worker",
			file: "transcoder:\n  pool_size: 2\n  reserve:\n    - live/vip/=1:720p,480p\n    - =1\n",
			want: []string{`headwater.yaml:3: transcoder.reserve: 2 workers reserved of 2 (transcoder.pool_size 2): leave at least one unreserved`},
		},
		{
			name: "bad boolean",
			file: "origin:\n  gzip: maybe\n",
			want: []string{`headwater.yaml:2: origin.gzip: "maybe" is not a boolean (true or false)`},
		},
		{
			name: "list given as string",
			file: "origin:\n  cors:\n    allowed_origins: \"*\"\n",
			want: []string{`headwater.yaml:3: origin.cors.allowed_origins: must be a list, e.g. ["a", "b"], not "*"`},
		},
		{
			name: "list of mappings",
			file: "origin:\n  cors:\n    allowed_origins: [{a: b}]\n",
			want: []string{`headwater.yaml:3: origin.cors.allowed_origins: list items must be strings`},
		},
		{
			name: "string given as list",
			file: "rtmp:\n  app: [live]\n",
			want: []string{`headwater.yaml:2: rtmp.app: must be a single value, not a list`},
		},
		{
			name: "string without value",
			file: "rtmp:\n  address:\n",
			want: []string{`headwater.yaml:2: rtmp.address: no value; write "" for an empty string, or remove the key for the default (":1935")`},
		},
		{
			name: "number without value",
			file: "segmenter:\n  window: ~\n",
			want: []string{`headwater.yaml:2: segmenter.window: no value; remove the key for the default (6)`},
		},
		{
			name: "section given as value",
			file: "rtmp: on\n",
			want: []string{`headwater.yaml:1: rtmp: must be a section of keys, not "on"`},
		},
		{
			name: "not a mapping",
			file: "- log\n",
			want: []string{`headwater.yaml:1: the file must be a mapping of sections (log, rtmp, streams, segmenter, origin, admin), not a list`},
		},
		{
			name: "duplicate key",
			file: "log:\n  level: info\n  level: debug\n",
			want: []string{`headwater.yaml:3: log.level: duplicate key (first set on line 2)`},
		},
		{
			name: "syntax error",
			file: "log:\n  level: info\n format: text\n",
			want: []string{`headwater.yaml:2: did not find expected key`},
		},
		{
			name: "two documents",
			file: "log:\n  level: info\n---\nlog:\n  level: debug\n",
			want: []string{`headwater.yaml:3: more than one YAML document; a configuration file holds exactly one`},
		},
		{
			name: "bad enum",
			file: "log:\n  level: verbose\n",
			want: []string{`headwater.yaml:2: log.level: "verbose" is not one of debug, info, warn, error`},
		},
		{
			name: "bad address",
			file: "rtmp:\n  address: \"1935\"\n",
			want: []string{`headwater.yaml:2: rtmp.address: "1935" is not host:port (missing port in address); use "" to disable`},
		},
		{
			name: "port out of range",
			file: "\n\norigin:\n  address: \":80800\"\n",
			want: []string{`headwater.yaml:4: origin.address: ":80800" is not host:port (port "80800" is not a number in 0-65535)`},
		},
		{
			name: "validation error on a default names the file only",
			file: "segmenter:\n  segment_duration: 100ms\n",
			want: []string{`headwater.yaml: segmenter.part_duration: must be less than segmenter.segment_duration (100ms), got 200ms`},
		},
		{
			name: "several errors reported together",
			file: "log:\n  level: loud\n  colour: true\nrtmp:\n  idle_timeout: soon\nsegmenter:\n  window: 1\n  keep_extra: x\n",
			want: []string{
				`headwater.yaml:3: log.colour: unknown key`,
				`headwater.yaml:5: rtmp.idle_timeout: "soon" is not a duration (e.g. 200ms, 2s)`,
				`headwater.yaml:8: segmenter.keep_extra: "x" is not an integer`,
			},
		},
		{
			name: "several validation errors reported together",
			file: "log:\n  level: loud\n  format: xml\nsegmenter:\n  window: 1\nadmin:\n  address: \":8080\"\n",
			want: []string{
				`headwater.yaml:2: log.level: "loud" is not one of debug, info, warn, error`,
				`headwater.yaml:3: log.format: "xml" is not one of json, text`,
				`headwater.yaml:5: segmenter.window: must be at least 3, got 1`,
				`headwater.yaml:7: admin.address: ":8080" conflicts with origin.address (":8080"); each listener needs its own address`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadIn(t, tc.file, nil)
			if err == nil {
				t.Fatalf("Load succeeded: %+v", c)
			}
			if c != nil {
				t.Error("Load returned a Config with an error")
			}
			if got := errorTexts(err); !slices.Equal(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Source != "headwater.yaml" {
				t.Errorf("error is not a *FieldError from headwater.yaml: %#v", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("Load(missing) = %v, want a not-exist error naming the file", err)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	cert := writeFile(t, dir, "cert.pem", "c")
	key := writeFile(t, dir, "key.pem", "k")
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		want   string // the single error, or "" for valid
	}{
		{"log level", func(c *Config) { c.Log.Level = "INFO" }, `log.level: "INFO" is not one of debug, info, warn, error`},
		{"log format", func(c *Config) { c.Log.Format = "logfmt" }, `log.format: "logfmt" is not one of json, text`},
		{"rtmp disabled", func(c *Config) { c.RTMP.Address = "" }, ""},
		{"rtmp any host", func(c *Config) { c.RTMP.Address = "0.0.0.0:1935" }, ""},
		{"rtmp ipv6", func(c *Config) { c.RTMP.Address = "[::]:1935" }, ""},
		{"rtmp no port", func(c *Config) { c.RTMP.Address = "localhost" }, `rtmp.address: "localhost" is not host:port (missing port in address); use "" to disable`},
		{"rtmp named port", func(c *Config) { c.RTMP.Address = ":rtmp" }, `rtmp.address: ":rtmp" is not host:port (port "rtmp" is not a number in 0-65535); use "" to disable`},
		{"rtmp empty port", func(c *Config) { c.RTMP.Address = "host:" }, `rtmp.address: "host:" is not host:port (port "" is not a number in 0-65535); use "" to disable`},
		{"app chars", func(c *Config) { c.RTMP.App = "live/stream" }, `rtmp.app: "live/stream" may only contain letters, digits, '_', '.' and '-'`},
		{"app empty", func(c *Config) { c.RTMP.App = "" }, `rtmp.app: must be set`},
		{"app ok", func(c *Config) { c.RTMP.App = "Live_1.0-x" }, ""},
		{"handshake zero", func(c *Config) { c.RTMP.HandshakeTimeout = 0 }, `rtmp.handshake_timeout: must be greater than 0, got 0s`},
		{"idle negative", func(c *Config) { c.RTMP.IdleTimeout = Duration(-time.Second) }, `rtmp.idle_timeout: must be greater than 0, got -1s`},
		{"publishers unlimited", func(c *Config) { c.RTMP.MaxPublishers = 0 }, ""},
		{"publishers negative", func(c *Config) { c.RTMP.MaxPublishers = -1 }, `rtmp.max_publishers: must be at least 0, got -1`},
		{"chunk too small", func(c *Config) { c.RTMP.MaxChunkSize = 127 }, `rtmp.max_chunk_size: must be between 128 and 16777215 bytes, got 127`},
		{"chunk smallest", func(c *Config) { c.RTMP.MaxChunkSize = 128 }, ""},
		{"chunk largest", func(c *Config) { c.RTMP.MaxChunkSize = 16777215 }, ""},
		{"chunk too large", func(c *Config) { c.RTMP.MaxChunkSize = 1 << 24 }, `rtmp.max_chunk_size: must be between 128 and 16777215 bytes, got 16777216`},
		{"chunk streams 1", func(c *Config) { c.RTMP.MaxChunkStreams = 1 }, `rtmp.max_chunk_streams: must be at least 2, got 1`},
		{"unassembled too small", func(c *Config) { c.RTMP.MaxUnassembledBytes = 1000 }, `rtmp.max_unassembled_bytes: must be at least 65536, got 1000`},
		{"unassembled smallest", func(c *Config) { c.RTMP.MaxUnassembledBytes = 65536 }, ""},
		{"rtmp connections unlimited", func(c *Config) { c.RTMP.MaxConnections, c.RTMP.MaxConnectionsPerAddress = 0, 0 }, ""},
		{"rtmp connections negative", func(c *Config) { c.RTMP.MaxConnections = -1 }, `rtmp.max_connections: must be at least 0, got -1`},
		{"srt connections per address negative", func(c *Config) { c.SRT.MaxConnectionsPerAddress = -1 }, `srt.max_connections_per_address: must be at least 0, got -1`},
		{"rtsp connections negative", func(c *Config) { c.RTSP.MaxConnections = -3 }, `rtsp.max_connections: must be at least 0, got -3`},
		{"origin connections per address", func(c *Config) { c.Origin.MaxConnectionsPerAddress = 64 }, ""},
		{"origin connections per address negative", func(c *Config) { c.Origin.MaxConnectionsPerAddress = -1 }, `origin.max_connections_per_address: must be at least 0, got -1`},
		{"rtmp publish deadline zero", func(c *Config) { c.RTMP.PublishDeadline = 0 }, `rtmp.publish_deadline: must be greater than 0, got 0s`},
		{"srt publish deadline negative", func(c *Config) { c.SRT.PublishDeadline = Duration(-time.Second) }, `srt.publish_deadline: must be greater than 0, got -1s`},
		{"rtsp publish deadline zero", func(c *Config) { c.RTSP.PublishDeadline = 0 }, `rtsp.publish_deadline: must be greater than 0, got 0s`},
		{"streams negative", func(c *Config) { c.Streams.MaxStreams = -2 }, `streams.max_streams: must be at least 0, got -2`},
		{"grace zero", func(c *Config) { c.Streams.EndedGrace = 0 }, ""},
		{"grace negative", func(c *Config) { c.Streams.EndedGrace = Duration(-time.Second) }, `streams.ended_grace: must not be negative, got -1s`},
		{"window negative", func(c *Config) { c.Streams.ReconnectWindow = Duration(-time.Second) }, `streams.reconnect_window: must not be negative, got -1s`},
		{"window rules", func(c *Config) { c.Streams.ReconnectWindows = []string{"live/=10s", "li ve=1s"} }, `streams.reconnect_windows: "li ve=1s": "li ve" is not a stream-name prefix`},
		{"window rule duration", func(c *Config) { c.Streams.ReconnectWindows = []string{"live/=soon"} }, `streams.reconnect_windows: "live/=soon": "soon" is not a duration such as 10s`},
		{"failover tiny", func(c *Config) { c.Streams.FailoverAfter = Duration(10 * time.Millisecond) }, `streams.failover_after: must be 0 or at least 100ms, got 10ms`},
		{"slate missing", func(c *Config) { c.Streams.Slate = "/nonexistent/slate.png" }, `streams.slate: file "/nonexistent/slate.png" does not exist`},
		{"slate builtin", func(c *Config) { c.Streams.Slate = "builtin" }, ""},
		{"segment zero", func(c *Config) { c.Segmenter.SegmentDuration = 0 }, `segmenter.segment_duration: must be greater than 0, got 0s`},
		{"part equals segment", func(c *Config) { c.Segmenter.PartDuration = c.Segmenter.SegmentDuration }, `segmenter.part_duration: must be less than segmenter.segment_duration (2s), got 2s`},
		{"part too small", func(c *Config) { c.Segmenter.PartDuration = Duration(19 * time.Millisecond) }, `segmenter.part_duration: must be at least 20ms, got 19ms`},
		{"part smallest", func(c *Config) { c.Segmenter.PartDuration = Duration(20 * time.Millisecond) }, ""},
		{"window 2", func(c *Config) { c.Segmenter.Window = 2 }, `segmenter.window: must be at least 3, got 2`},
		{"window 3", func(c *Config) { c.Segmenter.Window = 3 }, ""},
		{"keep_extra 0", func(c *Config) { c.Segmenter.KeepExtra = 0 }, ""},
		{"keep_extra negative", func(c *Config) { c.Segmenter.KeepExtra = -1 }, `segmenter.keep_extra: must be at least 0, got -1`},
		{"buffer 15", func(c *Config) { c.Segmenter.SubscriberBuffer = 15 }, `segmenter.subscriber_buffer: must be at least 16, got 15`},
		{"buffer 16", func(c *Config) { c.Segmenter.SubscriberBuffer = 16 }, ""},
		{"origin disabled", func(c *Config) { c.Origin.Address = "" }, `origin.address: must be set; the origin cannot be disabled`},
		{"origin bad", func(c *Config) { c.Origin.Address = "::8080" }, `origin.address: "::8080" is not host:port (too many colons in address)`},
		{"tls both", func(c *Config) { c.Origin.TLSCert, c.Origin.TLSKey = cert, key }, ""},
		{"tls cert only", func(c *Config) { c.Origin.TLSCert = cert }, `origin.tls_key: must be set when origin.tls_cert is set`},
		{"tls key only", func(c *Config) { c.Origin.TLSKey = key }, `origin.tls_cert: must be set when origin.tls_key is set`},
		{"tls missing file", func(c *Config) { c.Origin.TLSCert, c.Origin.TLSKey = cert, filepath.Join(dir, "none.pem") }, `origin.tls_key: file "` + filepath.Join(dir, "none.pem") + `" does not exist`},
		{"tls directory", func(c *Config) { c.Origin.TLSCert, c.Origin.TLSKey = dir, key }, `origin.tls_cert: "` + dir + `" is a directory, not a file`},
		{"read header zero", func(c *Config) { c.Origin.ReadHeaderTimeout = 0 }, `origin.read_header_timeout: must be greater than 0, got 0s`},
		{"read zero", func(c *Config) { c.Origin.ReadTimeout = 0 }, `origin.read_timeout: must be greater than 0, got 0s`},
		{"idle zero", func(c *Config) { c.Origin.IdleTimeout = 0 }, `origin.idle_timeout: must be greater than 0, got 0s`},
		{"header bytes", func(c *Config) { c.Origin.MaxHeaderBytes = 1000 }, `origin.max_header_bytes: must be at least 1024, got 1000`},
		{"block zero", func(c *Config) { c.Origin.BlockTimeout = 0 }, `origin.block_timeout: must be greater than 0, got 0s`},
		{"connections unlimited", func(c *Config) { c.Origin.MaxConnections = 0 }, ""},
		{"connections negative", func(c *Config) { c.Origin.MaxConnections = -1 }, `origin.max_connections: must be at least 0, got -1`},
		{"write not above block", func(c *Config) { c.Origin.WriteTimeout = Duration(6 * time.Second) }, `origin.write_timeout: must be greater than origin.block_timeout (6s) so blocking requests can be answered, got 6s`},
		{"cors empty", func(c *Config) { c.Origin.CORS.AllowedOrigins = nil }, ""},
		{"cors origins", func(c *Config) {
			c.Origin.CORS.AllowedOrigins = []string{"https://a.example", "http://localhost:3000", "https://[::1]:8443"}
		}, ""},
		{"cors path", func(c *Config) { c.Origin.CORS.AllowedOrigins = []string{"*", "https://a.example/player"} }, `origin.cors.allowed_origins: item 2: "https://a.example/player" must not have a path, query or fragment; an origin is scheme://host[:port]`},
		{"cors slash", func(c *Config) { c.Origin.CORS.AllowedOrigins = []string{"https://a.example/"} }, `origin.cors.allowed_origins: item 1: "https://a.example/" must not end with '/'; an origin has no path`},
		{"cors scheme", func(c *Config) { c.Origin.CORS.AllowedOrigins = []string{"ftp://a.example"} }, `origin.cors.allowed_origins: item 1: "ftp://a.example" must start with http:// or https:// (or be "*")`},
		{"cors bare host", func(c *Config) { c.Origin.CORS.AllowedOrigins = []string{"a.example"} }, `origin.cors.allowed_origins: item 1: "a.example" must start with http:// or https:// (or be "*")`},
		{"cors no host", func(c *Config) { c.Origin.CORS.AllowedOrigins = []string{"https://"} }, `origin.cors.allowed_origins: item 1: "https://" has no host`},
		{"cors query", func(c *Config) { c.Origin.CORS.AllowedOrigins = []string{"https://a.example?x=1"} }, `origin.cors.allowed_origins: item 1: "https://a.example?x=1" must not have a path, query or fragment; an origin is scheme://host[:port]`},
		{"cors user", func(c *Config) { c.Origin.CORS.AllowedOrigins = []string{"https://u@a.example"} }, `origin.cors.allowed_origins: item 1: "https://u@a.example" must not contain user information`},
		{"cors upper case", func(c *Config) { c.Origin.CORS.AllowedOrigins = []string{"https://A.example"} }, `origin.cors.allowed_origins: item 1: "https://A.example" must be lower case, as browsers send it`},
		{"cors bad port", func(c *Config) { c.Origin.CORS.AllowedOrigins = []string{"https://a.example:99999"} }, `origin.cors.allowed_origins: item 1: "https://a.example:99999" has a bad port`},
		{"cors empty item", func(c *Config) { c.Origin.CORS.AllowedOrigins = []string{""} }, `origin.cors.allowed_origins: item 1: "" must start with http:// or https:// (or be "*")`},
		{"cache zero", func(c *Config) { c.Origin.Cache.NotFoundMaxAge = 0 }, ""},
		{"cache fraction", func(c *Config) { c.Origin.Cache.PlaylistMaxAge = Duration(500 * time.Millisecond) }, `origin.cache.playlist_max_age: must be a whole number of seconds (Cache-Control max-age), got 500ms`},
		{"cache negative", func(c *Config) { c.Origin.Cache.EndedMaxAge = Duration(-time.Second) }, `origin.cache.ended_max_age: must not be negative, got -1s`},
		{"relay cache small", func(c *Config) { c.Origin.Relay.CacheBytes = 1000 }, `origin.relay.cache_bytes: must be at least 1048576, got 1000`},
		{"relay no idle conns", func(c *Config) { c.Origin.Relay.MaxIdleConnsPerHost = 0 }, `origin.relay.max_idle_conns_per_host: must be at least 1, got 0`},
		{"relay response timeout", func(c *Config) { c.Origin.Relay.ResponseTimeout = Duration(5 * time.Second) }, `origin.relay.response_timeout: must be greater than origin.block_timeout (6s) so relayed blocking requests can be answered, got 5s`},
		{"admin disabled", func(c *Config) { c.Admin.Address = "" }, ""},
		{"admin bad", func(c *Config) { c.Admin.Address = ":-1" }, `admin.address: ":-1" is not host:port (port "-1" is not a number in 0-65535); use "" to disable`},
		{"admin same as origin", func(c *Config) { c.Admin.Address = c.Origin.Address }, `admin.address: ":8080" conflicts with origin.address (":8080"); each listener needs its own address`},
		{"origin same as rtmp on wildcard", func(c *Config) { c.Origin.Address = "127.0.0.1:1935" }, `origin.address: "127.0.0.1:1935" conflicts with rtmp.address (":1935"); each listener needs its own address`},
		{"same port other hosts", func(c *Config) { c.RTMP.Address, c.Admin.Address = "127.0.0.1:7000", "10.0.0.1:7000" }, ""},
		{"port zero twice", func(c *Config) { c.RTMP.Address, c.Admin.Address = ":0", ":0" }, ""},
		{"both disabled", func(c *Config) { c.RTMP.Address, c.Admin.Address = "", "" }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if got := errorTexts(err); !slices.Equal(got, []string{tc.want}) {
				t.Errorf("Validate() errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), tc.want)
			}
		})
	}
}

func TestValidateReportsAllErrors(t *testing.T) {
	c := Default()
	c.Log.Level = "trace"
	c.Segmenter.Window = 0
	c.Origin.CORS.AllowedOrigins = []string{"https://ok.example", "bad", "http://x.example/y"}
	c.Admin.Address = ":1935"
	want := []string{
		`log.level: "trace" is not one of debug, info, warn, error`,
		`segmenter.window: must be at least 3, got 0`,
		`origin.cors.allowed_origins: item 2: "bad" must start with http:// or https:// (or be "*")`,
		`origin.cors.allowed_origins: item 3: "http://x.example/y" must not have a path, query or fragment; an origin is scheme://host[:port]`,
		`admin.address: ":1935" conflicts with rtmp.address (":1935"); each listener needs its own address`,
	}
	err := c.Validate()
	if got := errorTexts(err); !slices.Equal(got, want) {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := err.Error(); got != strings.Join(want, "\n") {
		t.Errorf("Error() = %q, want one line per problem", got)
	}
}

func TestEnvOverrides(t *testing.T) {
	for _, tc := range []struct {
		name  string
		file  string
		env   []string
		check func(c *Config) bool
	}{
		{
			name:  "scalar string",
			env:   []string{"HEADWATER_RTMP_ADDRESS=:1936"},
			check: func(c *Config) bool { return c.RTMP.Address == ":1936" },
		},
		{
			name:  "empty disables",
			env:   []string{"HEADWATER_ADMIN_ADDRESS="},
			check: func(c *Config) bool { return c.Admin.Address == "" },
		},
		{
			name:  "duration",
			env:   []string{"HEADWATER_SEGMENTER_PART_DURATION=300ms"},
			check: func(c *Config) bool { return c.Segmenter.PartDuration.Duration() == 300*time.Millisecond },
		},
		{
			name:  "enum",
			env:   []string{"HEADWATER_LOG_FORMAT=text"},
			check: func(c *Config) bool { return c.Log.Format == "text" },
		},
		{
			name: "list",
			env:  []string{"HEADWATER_ORIGIN_CORS_ALLOWED_ORIGINS=https://a.example, https://b.example,"},
			check: func(c *Config) bool {
				return slices.Equal(c.Origin.CORS.AllowedOrigins, []string{"https://a.example", "https://b.example"})
			},
		},
		{
			name:  "empty list",
			env:   []string{"HEADWATER_ORIGIN_CORS_ALLOWED_ORIGINS="},
			check: func(c *Config) bool { return len(c.Origin.CORS.AllowedOrigins) == 0 },
		},
		{
			name:  "integer and boolean",
			env:   []string{"HEADWATER_SEGMENTER_WINDOW=10", "HEADWATER_ORIGIN_GZIP=false"},
			check: func(c *Config) bool { return c.Segmenter.Window == 10 && !c.Origin.Gzip },
		},
		{
			name:  "number",
			env:   []string{"HEADWATER_TRANSCODER_MAX_WAIT= 0.25 "},
			check: func(c *Config) bool { return c.Transcoder.MaxWait == 0.25 },
		},
		{
			name:  "number without fraction",
			file:  "transcoder:\n  max_wait: 0.5\n",
			env:   []string{"HEADWATER_TRANSCODER_MAX_WAIT=2"},
			check: func(c *Config) bool { return c.Transcoder.MaxWait == 2 },
		},
		{
			name: "transcoder pool keys",
			env: []string{
				"HEADWATER_TRANSCODER_POOL_SIZE=4", "HEADWATER_TRANSCODER_QUEUE_SIZE=32", "HEADWATER_TRANSCODER_FORK_SERVER=off",
				"HEADWATER_TRANSCODER_RESERVE=live/vip/=1:720p;480p,=1:360p",
			},
			check: func(c *Config) bool {
				rs, err := c.Transcoder.Reservations()
				return c.Transcoder.QueueSize == 32 && c.Transcoder.ForkServer == "off" && err == nil &&
					slices.Equal(c.Transcoder.Reserve, []string{"live/vip/=1:720p;480p", "=1:360p"}) &&
					len(rs) == 2 && slices.Equal(rs[0].Renditions, []string{"720p", "480p"}) && rs[1].Streams == "" && rs[1].Workers == 1
			},
		},
		{
			name:  "environment beats file",
			file:  "rtmp:\n  address: \":2000\"\n  app: studio\n",
			env:   []string{"HEADWATER_RTMP_ADDRESS=:3000"},
			check: func(c *Config) bool { return c.RTMP.Address == ":3000" && c.RTMP.App == "studio" },
		},
		{
			name:  "environment fixes an invalid file value",
			file:  "segmenter:\n  window: 1\n",
			env:   []string{"HEADWATER_SEGMENTER_WINDOW=4"},
			check: func(c *Config) bool { return c.Segmenter.Window == 4 },
		},
		{
			name:  "last duplicate wins",
			env:   []string{"HEADWATER_LOG_LEVEL=debug", "HEADWATER_LOG_LEVEL=warn"},
			check: func(c *Config) bool { return c.Log.Level == "warn" },
		},
		{
			name:  "other variables ignored",
			env:   []string{"HEADWATER=1", "XHEADWATER_FOO=1", "PATH=/bin", "headwater_log_level=bad"},
			check: func(c *Config) bool { return reflect.DeepEqual(c, Default()) },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := loadIn(t, tc.file, tc.env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !tc.check(c) {
				t.Errorf("override not applied: %+v", c)
			}
		})
	}
}

func TestEnvOverridesEveryKey(t *testing.T) {
	t.Chdir(t.TempDir())
	withTLSFiles(t)
	want := fullConfig()
	var env []string
	names := map[string]string{}
	for _, key := range Keys() {
		name := EnvName(key)
		if other, dup := names[name]; dup {
			t.Fatalf("keys %s and %s share variable %s", other, key, name)
		}
		names[name] = key
		v, ok := want.get(key)
		if !ok {
			t.Fatalf("get(%q) failed", key)
		}
		env = append(env, name+"="+v)
	}
	c, err := Load("", env)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("every key via environment =\n%+v\nwant\n%+v", c, want)
	}
}

func TestEnvErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		env  []string
		want []string
	}{
		{
			name: "unknown variable",
			env:  []string{"HEADWATER_RTMP_ADRESS=:1936"},
			want: []string{`HEADWATER_RTMP_ADRESS: unknown configuration variable (did you mean HEADWATER_RTMP_ADDRESS?)`},
		},
		{
			name: "section variable",
			env:  []string{"HEADWATER_ORIGIN_CORS=*"},
			want: []string{`HEADWATER_ORIGIN_CORS: unknown configuration variable`},
		},
		{
			name: "bad duration",
			env:  []string{"HEADWATER_SEGMENTER_PART_DURATION=abc"},
			want: []string{`HEADWATER_SEGMENTER_PART_DURATION: segmenter.part_duration: "abc" is not a duration (e.g. 200ms, 2s)`},
		},
		{
			name: "bad integer and boolean together",
			env:  []string{"HEADWATER_ORIGIN_GZIP=yes please", "HEADWATER_RTMP_MAX_PUBLISHERS=many"},
			want: []string{
				`HEADWATER_ORIGIN_GZIP: origin.gzip: "yes please" is not a boolean (true or false)`,
				`HEADWATER_RTMP_MAX_PUBLISHERS: rtmp.max_publishers: "many" is not an integer`,
			},
		},
		{
			name: "bad number",
			env:  []string{"HEADWATER_TRANSCODER_MAX_WAIT=NaN"},
			want: []string{`HEADWATER_TRANSCODER_MAX_WAIT: transcoder.max_wait: "NaN" is not a number`},
		},
		{
			name: "reserve renditions separated by a comma",
			env:  []string{"HEADWATER_TRANSCODER_POOL_SIZE=4", "HEADWATER_TRANSCODER_RESERVE=live/vip/=1:720p,480p"},
			want: []string{`HEADWATER_TRANSCODER_RESERVE: transcoder.reserve: item 2: "480p": want <stream prefix>=<workers>[:<rendition>,<rendition>...]`},
		},
		{
			name: "validation names the variable",
			file: "segmenter:\n  window: 5\n",
			env:  []string{"HEADWATER_SEGMENTER_WINDOW=2", "HEADWATER_LOG_LEVEL=loud"},
			want: []string{
				`HEADWATER_LOG_LEVEL: log.level: "loud" is not one of debug, info, warn, error`,
				`HEADWATER_SEGMENTER_WINDOW: segmenter.window: must be at least 3, got 2`,
			},
		},
		{
			name: "file and environment errors together",
			file: "rtmp:\n  app: [x]\n",
			env:  []string{"HEADWATER_NOPE=1"},
			want: []string{
				`headwater.yaml:2: rtmp.app: must be a single value, not a list`,
				`HEADWATER_NOPE: unknown configuration variable`,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadIn(t, tc.file, tc.env)
			if got := errorTexts(err); !slices.Equal(got, tc.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestSet(t *testing.T) {
	for _, tc := range []struct {
		path, value string
		want        string // error text, or "" for success
		check       func(c *Config) bool
	}{
		{path: "rtmp.address", value: ":1936", check: func(c *Config) bool { return c.RTMP.Address == ":1936" }},
		{path: "origin.address", value: "127.0.0.1:8081", check: func(c *Config) bool { return c.Origin.Address == "127.0.0.1:8081" }},
		{path: "admin.address", value: "", check: func(c *Config) bool { return c.Admin.Address == "" }},
		{path: "log.level", value: "debug", check: func(c *Config) bool { return c.Log.Level == "debug" }},
		{path: "log.format", value: "text", check: func(c *Config) bool { return c.Log.Format == "text" }},
		{path: "origin.cache.segment_max_age", value: " 1h ", check: func(c *Config) bool { return c.Origin.Cache.SegmentMaxAge.Duration() == time.Hour }},
		{path: "rtmp.max_chunk_size", value: "4096", check: func(c *Config) bool { return c.RTMP.MaxChunkSize == 4096 }},
		{path: "rtmp.max_connections_per_address", value: "7", check: func(c *Config) bool { return c.RTMP.MaxConnectionsPerAddress == 7 }},
		{path: "srt.publish_deadline", value: "45s", check: func(c *Config) bool { return c.SRT.PublishDeadline == Duration(45*time.Second) }},
		{path: "rtsp.max_connections", value: "12", check: func(c *Config) bool { return c.RTSP.MaxConnections == 12 }},
		{path: "origin.gzip", value: "0", check: func(c *Config) bool { return !c.Origin.Gzip }},
		{path: "rtmp.adress", value: ":1", want: `rtmp.adress: unknown key (did you mean rtmp.address?)`},
		{path: "origin.cors", value: "*", want: `origin.cors: is a section, not a key; set one of its keys instead`},
		{path: "segmenter.window", value: "6.5", want: `segmenter.window: "6.5" is not an integer`},
		{path: "rtmp.idle_timeout", value: "10", want: `rtmp.idle_timeout: "10" is not a duration (e.g. 200ms, 2s)`},
		{path: "transcoder.max_wait", value: " 0.5 ", check: func(c *Config) bool { return c.Transcoder.MaxWait == 0.5 }},
		{path: "transcoder.max_wait", value: "3", check: func(c *Config) bool { return c.Transcoder.MaxWait == 3 }},
		{path: "transcoder.max_wait", value: "2e-1", check: func(c *Config) bool { return c.Transcoder.MaxWait == 0.2 }},
		{path: "transcoder.max_wait", value: "fast", want: `transcoder.max_wait: "fast" is not a number`},
		{path: "transcoder.max_wait", value: "inf", want: `transcoder.max_wait: "inf" is not a number`},
		{path: "transcoder.max_wait", value: "1e999", want: `transcoder.max_wait: "1e999" is not a number`},
		{path: "transcoder.max_wait", value: "", want: `transcoder.max_wait: "" is not a number`},
	} {
		t.Run(tc.path+"="+tc.value, func(t *testing.T) {
			c := Default()
			err := c.Set(tc.path, tc.value)
			if tc.want != "" {
				if err == nil || err.Error() != tc.want {
					t.Fatalf("Set error = %v, want %q", err, tc.want)
				}
				if !reflect.DeepEqual(c, Default()) {
					t.Error("failed Set changed the Config")
				}
				return
			}
			if err != nil {
				t.Fatalf("Set: %v", err)
			}
			if !tc.check(c) {
				t.Errorf("Set not applied: %+v", c)
			}
		})
	}
}

func TestFlagOverrides(t *testing.T) {
	t.Run("flags beat environment and file", func(t *testing.T) {
		c, err := loadIn(t, "rtmp:\n  address: \":2000\"\nlog:\n  level: warn\n",
			[]string{"HEADWATER_RTMP_ADDRESS=:3000", "HEADWATER_LOG_LEVEL=error"},
			Override{Path: "rtmp.address", Value: ":4000", Source: "--rtmp-address"})
		if err != nil {
			t.Fatal(err)
		}
		if c.RTMP.Address != ":4000" || c.Log.Level != "error" {
			t.Errorf("rtmp.address=%q log.level=%q, want :4000 and error", c.RTMP.Address, c.Log.Level)
		}
	})
	t.Run("flag errors name the flag", func(t *testing.T) {
		_, err := loadIn(t, "", nil,
			Override{Path: "log.level", Value: "noisy", Source: "--log-level"},
			Override{Path: "admin.address", Value: ":8080", Source: "--admin-address"},
			Override{Path: "no.such", Value: "1"})
		want := []string{`flag no.such: no.such: unknown key`}
		if got := errorTexts(err); !slices.Equal(got, want) {
			t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		_, err = loadIn(t, "", nil,
			Override{Path: "log.level", Value: "noisy", Source: "--log-level"},
			Override{Path: "admin.address", Value: ":8080", Source: "--admin-address"})
		want = []string{
			`--log-level: log.level: "noisy" is not one of debug, info, warn, error`,
			`--admin-address: admin.address: ":8080" conflicts with origin.address (":8080"); each listener needs its own address`,
		}
		if got := errorTexts(err); !slices.Equal(got, want) {
			t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
	t.Run("Flags", func(t *testing.T) {
		var names []string
		for _, f := range Flags() {
			names = append(names, f.Name)
			if err := Default().Set(f.Path, "x"); err != nil && strings.Contains(err.Error(), "unknown key") {
				t.Errorf("flag %s sets unknown key %s", f.Name, f.Path)
			}
			if !strings.Contains(f.Usage, EnvName(f.Path)) {
				t.Errorf("flag %s usage %q does not name its variable", f.Name, f.Usage)
			}
		}
		want := []string{"rtmp-address", "origin-address", "admin-address", "log-level", "log-format"}
		if !slices.Equal(names, want) {
			t.Errorf("Flags() = %v, want %v", names, want)
		}
	})
}

func TestDefaultYAMLRoundTrip(t *testing.T) {
	out := DefaultYAML()
	p := writeFile(t, t.TempDir(), "defaults.yaml", string(out))
	c, err := Load(p, nil)
	if err != nil {
		t.Fatalf("Load(DefaultYAML()): %v\n%s", err, out)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("Load(DefaultYAML()) =\n%+v\nwant\n%+v", c, Default())
	}

	// Every key has a comment line directly above it, and durations read
	// as durations, not nanoseconds.
	lines := strings.Split(string(out), "\n")
	for _, key := range Keys() {
		parts := strings.Split(key, ".")
		leaf := strings.Repeat("  ", len(parts)-1) + parts[len(parts)-1] + ":"
		i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, leaf) })
		if i < 1 || !strings.HasPrefix(strings.TrimSpace(lines[i-1]), "# ") {
			t.Errorf("key %s has no comment above it in DefaultYAML", key)
		}
	}
	for _, want := range []string{"  part_duration: 200ms\n", "  segment_max_age: 86400s\n", "  max_wait: 1\n", "  reserve: []\n", `  fork_server: "auto"` + "\n", `  address: ":1935"` + "\n", `    allowed_origins: ["*"]` + "\n"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("DefaultYAML lacks %q:\n%s", want, out)
		}
	}

	// YAML() of the defaults reads back the same too.
	plain, err := Default().YAML()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(plain, []byte("#")) {
		t.Errorf("YAML() has comments:\n%s", plain)
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		str  string
	}{
		{"2s", 2 * time.Second, "2s"},
		{"200ms", 200 * time.Millisecond, "200ms"},
		{"1m30s", 90 * time.Second, "90s"},
		{"24h", 24 * time.Hour, "86400s"},
		{"1.5s", 1500 * time.Millisecond, "1.5s"},
		{"0", 0, "0s"},
		{"-1s", -time.Second, "-1s"},
	} {
		d, err := ParseDuration(tc.in)
		if err != nil || d.Duration() != tc.want || d.String() != tc.str {
			t.Errorf("ParseDuration(%q) = %v (%s), %v; want %v (%s)", tc.in, d.Duration(), d, err, tc.want, tc.str)
		}
	}
	if _, err := ParseDuration("2 seconds"); err == nil || err.Error() != `"2 seconds" is not a duration (e.g. 200ms, 2s)` {
		t.Errorf("ParseDuration error = %v", err)
	}
	// Text (un)marshalling for other encodings.
	b, err := json.Marshal(struct{ D Duration }{Duration(1500 * time.Millisecond)})
	if err != nil || string(b) != `{"D":"1.5s"}` {
		t.Errorf("json.Marshal = %s, %v", b, err)
	}
	var v struct{ D Duration }
	if err := json.Unmarshal([]byte(`{"D":"250ms"}`), &v); err != nil || v.D.Duration() != 250*time.Millisecond {
		t.Errorf("json.Unmarshal = %v, %v", v.D, err)
	}
}

func TestLogger(t *testing.T) {
	for _, tc := range []struct {
		level, format string
		want          string // substring of the output for a warning
		debugLogged   bool
		err           string
	}{
		{level: "info", format: "json", want: `"level":"WARN","msg":"hello"`},
		{level: "debug", format: "text", want: `level=WARN msg=hello`, debugLogged: true},
		{level: "error", format: "json"},
		{level: "loud", format: "json", err: `log.level: "loud" is not one of debug, info, warn, error`},
		{level: "info", format: "xml", err: `log.format: "xml" is not one of json, text`},
	} {
		t.Run(tc.level+"/"+tc.format, func(t *testing.T) {
			c := Default()
			c.Log.Level, c.Log.Format = tc.level, tc.format
			var buf bytes.Buffer
			l, err := c.Logger(&buf)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("Logger error = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l.Debug("dbg")
			l.Warn("hello")
			out := buf.String()
			if !strings.Contains(out, tc.want) || (tc.want == "" && out != "") {
				t.Errorf("output %q, want %q", out, tc.want)
			}
			if strings.Contains(out, "dbg") != tc.debugLogged {
				t.Errorf("debug logged = %v, want %v", !tc.debugLogged, tc.debugLogged)
			}
		})
	}
}

// TestKeyTypes guards that every key has a type Set, the file walk and the
// encoder support, and a doc comment.
func TestKeyTypes(t *testing.T) {
	for _, f := range fields() {
		if f.doc == "" {
			t.Errorf("%s has no doc tag", f.path)
		}
		if f.section {
			continue
		}
		v := reflect.New(f.typ).Elem()
		if err := setString(v, ""); err != nil && strings.Contains(err.Error(), "cannot be set") {
			t.Errorf("%s: %v", f.path, err)
		}
	}
}

// TestDocs checks that docs/configuration.md covers every key, variable and
// flag.
func TestDocs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, key := range Keys() {
		for _, want := range []string{"`" + key + "`", "`" + EnvName(key) + "`"} {
			if !strings.Contains(doc, want) {
				t.Errorf("docs/configuration.md does not mention %s", want)
			}
		}
	}
	for _, f := range Flags() {
		if !strings.Contains(doc, "--"+f.Name) {
			t.Errorf("docs/configuration.md does not mention --%s", f.Name)
		}
	}
	for _, want := range []string{"headwater config check", "headwater config defaults", "--config"} {
		if !strings.Contains(doc, want) {
			t.Errorf("docs/configuration.md does not mention %q", want)
		}
	}
}

func TestDiff(t *testing.T) {
	a, b := Default(), Default()
	if d := Diff(a, b); len(d) != 0 {
		t.Fatalf("defaults differ: %v", d)
	}
	b.RTMP.MaxPublishers = 5
	b.Origin.CORS.AllowedOrigins = []string{"https://a.example"}
	b.Shutdown.Drain = Duration(time.Second)
	b.Transcoder.MaxWait = 2.5
	b.Transcoder.Reserve = []string{"live/vip/=1:720p;480p"}
	want := []Change{
		{Key: "rtmp.max_publishers", Old: "100", New: "5"},
		{Key: "origin.cors.allowed_origins", Old: "*", New: "https://a.example"},
		{Key: "transcoder.max_wait", Old: "1", New: "2.5"},
		{Key: "transcoder.reserve", Old: "", New: "live/vip/=1:720p;480p"},
		{Key: "shutdown.drain", Old: "2s", New: "1s"},
	}
	if got := Diff(a, b); !reflect.DeepEqual(got, want) {
		t.Fatalf("Diff = %v, want %v", got, want)
	}
}

func TestDiffMasksURLPasswords(t *testing.T) {
	a, b := Default(), Default()
	b.RTSP.Sources = []string{"live/cam=rtsp://admin:s3cret@10.0.0.5:554/stream1"}
	d := Diff(a, b)
	if len(d) != 1 || strings.Contains(d[0].New, "s3cret") || d[0].New != "live/cam=rtsp://admin:xxxxx@10.0.0.5:554/stream1" {
		t.Fatalf("Diff = %+v", d)
	}
}

func TestParseRetention(t *testing.T) {
	got, err := ParseRetention([]string{"live/=168h", "big/=0:2TiB", "=24h:500GB", "x/=1h:1048576"})
	if err != nil {
		t.Fatal(err)
	}
	want := []RetentionRule{
		{Prefix: "live/", MaxAge: 168 * time.Hour},
		{Prefix: "big/", MaxBytes: 2 << 40},
		{Prefix: "", MaxAge: 24 * time.Hour, MaxBytes: 500e9},
		{Prefix: "x/", MaxAge: time.Hour, MaxBytes: 1 << 20},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseRetention = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"live/", "live/=0", "live/=abc", "live/=1h:12XB", "live/=-1h", "a/=1h\x00", "live/=1h,live/=2h"} {
		rules := []string{bad}
		if bad == "live/=1h,live/=2h" {
			rules = []string{"live/=1h", "live/=2h"}
		}
		if _, err := ParseRetention(rules); err == nil {
			t.Errorf("ParseRetention(%q) accepted", bad)
		}
	}
}

func TestRecordValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(c *Config)
		key  string
	}{
		{"dvr without recording", func(c *Config) { c.DVR.Window = Duration(time.Hour) }, "dvr.window"},
		{"s3 without bucket", func(c *Config) {
			c.Record.Enabled, c.Record.Backend, c.Record.S3.Endpoint = true, "s3", "http://127.0.0.1:7070"
		}, "record.s3.bucket"},
		{"s3 bad endpoint", func(c *Config) {
			c.Record.Enabled, c.Record.Backend, c.Record.S3.Endpoint, c.Record.S3.Bucket = true, "s3", "ftp://x", "b"
		}, "record.s3.endpoint"},
		{"kms without key", func(c *Config) {
			c.Record.Enabled, c.Record.Backend, c.Record.S3.Endpoint, c.Record.S3.Bucket, c.Record.S3.SSE = true, "s3", "http://h", "b", "aws:kms"
		}, "record.s3.kms_key_id"},
		{"unknown backend", func(c *Config) { c.Record.Backend = "ftp" }, "record.backend"},
		{"small spool", func(c *Config) { c.Record.SpoolMaxBytes = 1 << 20 }, "record.spool_max_bytes"},
		{"bad retention", func(c *Config) { c.Record.Retention = []string{"live/=soon"} }, "record.retention"},
		{"bad exclude", func(c *Config) { c.Record.Exclude = []string{""} }, "record.exclude"},
		{"webhook credentials", func(c *Config) { c.Events.Webhook = "https://u:p@h.example/x" }, "events.webhook"},
		{"fast posters", func(c *Config) { c.Record.PosterInterval = Duration(100 * time.Millisecond) }, "record.poster_interval"},
	} {
		c := Default()
		tc.set(c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.key+":") {
			t.Errorf("%s: Validate = %v, want an error for %s", tc.name, err, tc.key)
		}
	}
}
