package server

import (
	"fmt"
	"strings"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/cluster"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/ingest/rtmp"
	"github.com/headwater-live/headwater/ingest/rtsp"
	"github.com/headwater-live/headwater/ingest/srt"
	"github.com/headwater-live/headwater/origin"
	"github.com/headwater-live/headwater/segmenter"
	"github.com/headwater-live/headwater/store"
	"github.com/headwater-live/headwater/transcoder"
)

// This file is the one place where configuration sections become
// component configurations: one function per component, taking the
// validated section and returning what the component's constructor takes.
// Collaborators (authenticators, registries, metrics) are added by the
// builders in build.go; the admin listener's and the publish security's
// settings are read in admin.go and security.go, which own them.

// storeConfig maps the segmenter and streams sections onto the store's
// configuration.
func storeConfig(cfg *config.Config) store.Config {
	return store.Config{
		Window:     cfg.Segmenter.Window,
		KeepExtra:  cfg.Segmenter.KeepExtra,
		EndedGrace: cfg.Streams.EndedGrace.Duration(),
	}
}

// segmenterConfig maps the segmenter section onto the segmenter's
// configuration.
func segmenterConfig(c config.SegmenterConfig) segmenter.Config {
	return segmenter.Config{
		SegmentDuration: c.SegmentDuration.Duration(),
		PartDuration:    c.PartDuration.Duration(),
	}
}

// poolConfig is the worker pool's configuration from the transcoder
// section (the pool's keys are not reloadable: it is built once).
func poolConfig(cfg config.TranscoderConfig, ladders transcoder.Ladders) (transcoder.PoolConfig, error) {
	reserve, err := cfg.Reservations()
	if err != nil {
		return transcoder.PoolConfig{}, err
	}
	fork, err := transcoder.ParseForkServerMode(cfg.ForkServer)
	if err != nil {
		return transcoder.PoolConfig{}, fmt.Errorf("transcoder.fork_server: %w", err)
	}
	return transcoder.PoolConfig{
		FFmpeg:     cfg.FFmpeg,
		Size:       cfg.PoolSize,
		Warm:       cfg.PoolWarm,
		QueueSize:  cfg.QueueSize,
		MaxWait:    cfg.MaxWait,
		Reserve:    reserve,
		ForkServer: fork,
		Prewarm:    transcoder.PrewarmFor(ladders, 1080, 720),
	}, nil
}

// transcoderConfig is the transcoder's configuration for ladders (the
// reloadable part of the transcoder section).
func transcoderConfig(cfg config.TranscoderConfig, ladders transcoder.Ladders) transcoder.Config {
	return transcoder.Config{Ladders: ladders, Deadline: float64(cfg.Deadline)}
}

// rtmpConfig maps the rtmp section onto the RTMP server's configuration,
// loading the RTMPS certificate.
func rtmpConfig(c config.RTMPConfig) (rtmp.Config, error) {
	tc, err := loadTLS("rtmp", c.TLSCert, c.TLSKey)
	if err != nil {
		return rtmp.Config{}, err
	}
	return rtmp.Config{
		Address:          c.Address,
		App:              c.App,
		HandshakeTimeout: c.HandshakeTimeout.Duration(),
		IdleTimeout:      c.IdleTimeout.Duration(),
		MaxPublishers:    c.MaxPublishers,
		MaxChunkSize:     c.MaxChunkSize,

		MaxConnectionsPerMinute: c.MaxConnectionsPerMinute,
		TLSAddress:              c.TLSAddress,

		MaxConnections:           c.MaxConnections,
		MaxConnectionsPerAddress: c.MaxConnectionsPerAddress,
		PublishDeadline:          c.PublishDeadline.Duration(),
		MaxChunkStreams:          c.MaxChunkStreams,
		MaxUnassembledBytes:      c.MaxUnassembledBytes,

		TLSConfig: tc,
	}, nil
}

// srtConfig maps the srt section onto the SRT server's configuration,
// reading the passphrase files.
func srtConfig(c config.SRTConfig) (srt.Config, error) {
	out := srt.Config{
		Address:       c.Address,
		Latency:       c.Latency.Duration(),
		PBKeyLen:      c.PBKeyLen,
		MaxPublishers: c.MaxPublishers,
		MaxReaders:    c.MaxReaders,
		IdleTimeout:   c.IdleTimeout.Duration(),

		MaxConnectionsPerMinute:  c.MaxConnectionsPerMinute,
		MaxConnections:           c.MaxConnections,
		MaxConnectionsPerAddress: c.MaxConnectionsPerAddress,
		PublishDeadline:          c.PublishDeadline.Duration(),
	}
	var err error
	if out.Passphrase, err = readSecret("srt.passphrase_file", c.PassphraseFile); err != nil {
		return out, err
	}
	for _, e := range c.PrefixPassphraseFiles {
		prefix, file, _ := strings.Cut(e, "=")
		pass, err := readSecret("srt.prefix_passphrase_files", file)
		if err != nil {
			return out, err
		}
		if out.PrefixPassphrases == nil {
			out.PrefixPassphrases = map[string]string{}
		}
		out.PrefixPassphrases[prefix] = pass
	}
	return out, nil
}

// readSecret reads a secret from a file with auth.ReadSecret (surrounding
// white space trimmed; an empty file is an error, not "no secret"); ""
// names no file and gives "". Errors never contain the content.
func readSecret(key, file string) (string, error) {
	if file == "" {
		return "", nil
	}
	b, err := auth.ReadSecret(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	return string(b), nil
}

// rtspConfig maps the rtsp section onto the RTSP server's configuration.
func rtspConfig(c config.RTSPConfig) rtsp.Config {
	out := rtsp.Config{
		Address:        c.Address,
		UDPRTPAddress:  c.UDPRTPAddress,
		UDPRTCPAddress: c.UDPRTCPAddress,
		ReadTimeout:    c.ReadTimeout.Duration(),
		WriteTimeout:   c.WriteTimeout.Duration(),
		MaxPublishers:  c.MaxPublishers,
		MaxReaders:     c.MaxReaders,
		OnDemandLinger: c.OnDemandLinger.Duration(),

		MaxConnectionsPerMinute:  c.MaxConnectionsPerMinute,
		MaxConnections:           c.MaxConnections,
		MaxConnectionsPerAddress: c.MaxConnectionsPerAddress,
		PublishDeadline:          c.PublishDeadline.Duration(),
	}
	for _, list := range []struct {
		items    []string
		onDemand bool
	}{{c.Sources, false}, {c.OnDemandSources, true}} {
		for _, e := range list.items {
			name, url, _ := strings.Cut(e, "=")
			out.Sources = append(out.Sources, rtsp.Source{Name: name, URL: url, Transport: c.SourceTransport, OnDemand: list.onDemand})
		}
	}
	return out
}

// originConfig maps the origin section (with the segmenter's window and
// the HLS encryption section) onto the origin's configuration.
func originConfig(cfg *config.Config) origin.Config {
	oc, enc := cfg.Origin, cfg.HLS.Encryption
	return origin.Config{
		Address:            oc.Address,
		TLSCert:            oc.TLSCert,
		TLSKey:             oc.TLSKey,
		ReadHeaderTimeout:  oc.ReadHeaderTimeout.Duration(),
		ReadTimeout:        oc.ReadTimeout.Duration(),
		WriteTimeout:       oc.WriteTimeout.Duration(),
		IdleTimeout:        oc.IdleTimeout.Duration(),
		MaxHeaderBytes:     oc.MaxHeaderBytes,
		BlockTimeout:       oc.BlockTimeout.Duration(),
		Gzip:               oc.Gzip,
		CORSAllowedOrigins: corsOrigins(oc.CORS.AllowedOrigins),
		Window:             cfg.Segmenter.Window,
		DASHLowLatency:     oc.DASH.LowLatency,
		DASHTargetLatency:  oc.DASH.TargetLatency.Duration(),
		DASHEndGrace:       oc.DASH.EndGrace.Duration(),
		MaxConnections:     oc.MaxConnections,

		MaxConnectionsPerAddress: oc.MaxConnectionsPerAddress,
		Encryption: origin.EncryptionConfig{
			Enabled:        enc.Enabled,
			Prefixes:       enc.Prefixes,
			RotateSegments: enc.RotateSegments,
			SequenceIV:     enc.SequenceIV,
			CacheBytes:     int64(enc.CacheBytes),
		},
		Cache: origin.CacheConfig{
			SegmentMaxAge:      oc.Cache.SegmentMaxAge.Duration(),
			PlaylistMaxAge:     oc.Cache.PlaylistMaxAge.Duration(),
			MultivariantMaxAge: oc.Cache.MultivariantMaxAge.Duration(),
			BlockingMaxAge:     oc.Cache.BlockingMaxAge.Duration(),
			NotFoundMaxAge:     oc.Cache.NotFoundMaxAge.Duration(),
			EndedMaxAge:        oc.Cache.EndedMaxAge.Duration(),
		},
	}
}

// corsOrigins is origin.cors.allowed_origins for the origin: never nil, as
// the origin takes nil for its default ["*"], while the configuration's []
// means no CORS headers at all.
func corsOrigins(allowed []string) []string {
	if allowed == nil {
		return []string{}
	}
	return allowed
}

// clusterConfig maps the cluster section onto the cluster node's
// configuration (the node id, when "", is filled by newClustering).
func clusterConfig(c config.ClusterConfig) cluster.Config {
	return cluster.Config{
		NATSURL:      c.NATSURL,
		CredsFile:    c.CredsFile,
		NKeyFile:     c.NKeyFile,
		TLSCA:        c.TLSCA,
		TLSCert:      c.TLSCert,
		TLSKey:       c.TLSKey,
		Embedded:     c.Embedded,
		StoreDir:     c.StoreDir,
		Listen:       c.Listen,
		ClusterName:  c.Name,
		RouteListen:  c.RouteListen,
		Routes:       c.Routes,
		Replicas:     c.Replicas,
		NodeID:       c.NodeID,
		OriginURL:    c.OriginURL,
		PlacementTTL: c.PlacementTTL.Duration(),
	}
}

// localWorkers is how many of the pool's slots serve the cluster's GOP
// queue on a serve node (transcoder.local_workers; -1: the whole pool with
// an embedded NATS, none with nats_url).
func localWorkers(cfg *config.Config, poolSize int) int {
	n := cfg.Transcoder.LocalWorkers
	if n == config.LocalWorkersAuto {
		if cfg.Cluster.Embedded {
			return poolSize
		}
		return 0
	}
	return min(n, poolSize)
}
