package server

import (
	"fmt"
	"os"
	"strings"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/ingest/rtsp"
	"github.com/headwater-live/headwater/ingest/srt"
)

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

		MaxConnectionsPerMinute: c.MaxConnectionsPerMinute,
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

// readSecret reads a secret from a file, trimming surrounding white space;
// "" names no file and gives "". Errors never contain the content.
func readSecret(key, file string) (string, error) {
	if file == "" {
		return "", nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
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

		MaxConnectionsPerMinute: c.MaxConnectionsPerMinute,
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
