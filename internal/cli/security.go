package cli

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/auth/playback"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/media"
)

// minGoodKey is the length under which hash-key warns that a key could be
// guessed from its hash.
const minGoodKey = 20

// newAuthCommand groups the publish authentication helpers ("auth hash-key").
func newAuthCommand() *cobra.Command {
	var fromStdin bool
	var stream string
	hashKey := &cobra.Command{
		Use:   "hash-key",
		Short: "Generate a stream key and print it with its hash, or hash the key read from standard input (--stdin)",
		Long: `Without --stdin, generates a random stream key and prints it with the
"sha256:" hash that goes in auth.publish.static_keys. With --stdin, reads one
key from standard input and prints its hash only. Give the key to the
publisher (rtmp://host/live/<name>?key=<key>), never the hash; put the hash,
never the key, in the configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			if stream != "" {
				if err := media.ValidateName(strings.TrimSuffix(stream, "*") + "x"); err != nil {
					return fmt.Errorf("--stream: %w", err)
				}
			}
			var key string
			if fromStdin {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), 64<<10))
				if err != nil {
					return err
				}
				key = strings.TrimSpace(string(b))
				if key == "" || strings.ContainsAny(key, "\r\n") {
					return errors.New("standard input must hold one key on one line")
				}
				if len(key) < minGoodKey {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: a %d-character key can be guessed from its hash; prefer a generated key (headwater auth hash-key)\n", len(key))
				}
			} else {
				key = auth.GenerateKey()
				fmt.Fprintf(out, "key:  %s\n", key)
			}
			hash := auth.HashKey(key)
			if !fromStdin {
				fmt.Fprintf(out, "hash: %s\n", hash)
			} else {
				fmt.Fprintln(out, hash)
			}
			if stream != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "auth.publish.static_keys entry: %q\n", stream+"="+hash)
			}
			return nil
		},
	}
	hashKey.Flags().BoolVar(&fromStdin, "stdin", false, "hash the key read from standard input instead of generating one")
	hashKey.Flags().StringVar(&stream, "stream", "", `also print the static_keys entry for this stream ("live/studio1", or a prefix "live/team-*")`)
	return newGroup("auth", "Publish authentication helpers (docs/security.md)", hashKey)
}

// newTokenCommand groups the playback token helpers ("token secret",
// "token issue").
func newTokenCommand() *cobra.Command {
	secret := newPrintCommand("secret", "Print a new random playback token secret (for a playback.tokens.keys secret file)",
		func() []byte { return []byte(playback.GenerateSecret() + "\n") })

	var (
		configPath, stream, ipFlag, base, keyID string
		ttl                                     time.Duration
	)
	issue := &cobra.Command{
		Use:   "issue --stream live/<key> [--ttl 5m] [--ip ADDR] [--base URL] [--config FILE]",
		Short: "Print a playback URL carrying a token for one stream, signed with the configured active key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stream = strings.Trim(stream, "/")
			if err := media.ValidateName(stream); err != nil {
				return fmt.Errorf("--stream: %w", err)
			}
			if ttl <= 0 {
				return errors.New("--ttl must be positive")
			}
			var ip netip.Addr
			if ipFlag != "" {
				var err error
				if ip, err = netip.ParseAddr(ipFlag); err != nil {
					return fmt.Errorf("--ip: %q is not an IP address", ipFlag)
				}
			}
			cfg, err := config.Load(configPath, os.Environ())
			if err != nil {
				return err
			}
			keys, active, err := cfg.Playback.Tokens.KeySettings()
			if err != nil {
				return err
			}
			if len(keys) == 0 {
				return errors.New("playback.tokens.keys is empty: there is no key to sign with (see docs/security.md)")
			}
			if keyID != "" {
				active = keyID
			}
			kr, err := playback.LoadKeyring(keys, active)
			if err != nil {
				return err
			}
			if base == "" {
				base = originBase(cfg)
			}
			url, err := kr.IssueURL(base, stream, ttl, ip)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), url)
			return err
		},
	}
	issue.Flags().StringVar(&stream, "stream", "", "stream the token plays, e.g. live/studio1 (required)")
	issue.Flags().DurationVar(&ttl, "ttl", 5*time.Minute, "token lifetime")
	issue.Flags().StringVar(&ipFlag, "ip", "", "bind the token to this client IP address")
	issue.Flags().StringVar(&base, "base", "", "URL prefix, e.g. https://cdn.example.com (default: the origin's address)")
	issue.Flags().StringVar(&keyID, "key", "", "key id to sign with (default: playback.tokens.active_key)")
	issue.Flags().StringVarP(&configPath, "config", "c", "", "YAML configuration file (HEADWATER_* variables apply too)")
	_ = issue.MarkFlagRequired("stream")
	return newGroup("token", "Playback token helpers (docs/security.md)", issue, secret)
}

// originBase is the origin's URL as seen from this host.
func originBase(cfg *config.Config) string {
	scheme := "http"
	if cfg.Origin.TLSEnabled() {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(cfg.Origin.Address)
	if err != nil {
		return scheme + "://localhost"
	}
	switch host {
	case "", "0.0.0.0", "::":
		host = "localhost"
	}
	return scheme + "://" + net.JoinHostPort(host, port)
}
