package server

import (
	"fmt"
	"strings"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/transcoder"
)

// inPlace returns the setter of key when key is one a running server
// changes in place; every other change is reported as needing a restart
// and left as it was. (Publish auth and the ladders are rebuilt as a
// whole by Reload.) A setter cannot fail: Reload calls them only once
// everything the reload needs is built.
func (s *Server) inPlace(key string) (set func(c *config.Config), ok bool) {
	switch key {
	case "rtmp.max_publishers":
		return func(c *config.Config) {
			if s.rtmp != nil {
				s.rtmp.SetMaxPublishers(c.RTMP.MaxPublishers)
			}
		}, true
	case "streams.max_streams":
		return func(c *config.Config) { s.registry.SetMaxStreams(c.Streams.MaxStreams) }, true
	}
	return nil, false
}

// isLadderKey reports whether key is one of the ladders' keys.
func isLadderKey(key string) bool {
	return key == "transcoder.ladder" || key == "transcoder.prefix_ladders"
}

// ReloadResult says what a Reload did.
type ReloadResult struct {
	// Applied are the changes now in effect.
	Applied []config.Change
	// NeedRestart are changes to keys a running server cannot apply
	// (listen addresses, TLS files, timeouts); the old values stay in effect.
	NeedRestart []config.Change
}

// Reload applies a new, already validated configuration to the running
// server without touching live streams: reloadable keys take effect, the
// others are reported. A secret file whose content changed under the same
// path counts as a change of its key. Reload is all or nothing: it first
// builds everything the new configuration needs (the publish auth chain,
// the ladders' transcoder, the running configuration's new values), and
// only when all of that succeeded swaps them in; on error nothing changed.
func (s *Server) Reload(next *config.Config) (ReloadResult, error) {
	if err := next.Validate(); err != nil {
		return ReloadResult{}, fmt.Errorf("reload: %w", err)
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	sums, err := readSecretFiles(next, s.secrets, s.log)
	if err != nil {
		return ReloadResult{}, fmt.Errorf("reload: %w", err)
	}
	changes := config.Diff(s.cfg, next)
	contents := rotated(s.secrets, sums, next, changes)

	// Sort the changes: applied (rebuilt or set in place) or needing a restart.
	var res ReloadResult
	var setters []func(*config.Config)
	authChanged, ladderChanged := false, false
	restart := map[string]bool{}
	for _, ch := range append(changes, contents...) {
		switch set, ok := s.inPlace(ch.Key); {
		case strings.HasPrefix(ch.Key, "auth.publish."):
			authChanged = true
		case isLadderKey(ch.Key) && s.abr != nil:
			ladderChanged = true
		case ok:
			setters = append(setters, set)
		default:
			res.NeedRestart = append(res.NeedRestart, ch)
			restart[ch.Key] = true
			continue
		}
		res.Applied = append(res.Applied, ch)
	}

	// Build everything first; any error refuses the whole reload.
	var chain *auth.Chain
	if authChanged {
		if chain, err = buildPublishAuth(next, s.reg, s.log); err != nil {
			return ReloadResult{}, fmt.Errorf("reload: %w", err)
		}
	}
	var tc *transcoder.Transcoder
	if ladderChanged {
		if tc, err = s.abr.buildLadders(next.Transcoder); err != nil {
			closeChain(chain)
			return ReloadResult{}, fmt.Errorf("reload: %w", err)
		}
	}
	// The running configuration's new values, set on a copy first (only
	// the keys of changes found by Diff: a content change keeps its path).
	staged := *s.cfg
	var sets []config.Change
	for _, ch := range changes {
		if !restart[ch.Key] {
			if err := staged.Set(ch.Key, ch.New); err != nil {
				closeChain(chain)
				return ReloadResult{}, fmt.Errorf("reload %s: %w", ch.Key, err)
			}
			sets = append(sets, ch)
		}
	}

	// Swap everything in; nothing fails from here on.
	if chain != nil {
		s.sec.swapPublishAuth(chain)
		if next.Auth.Publish.Webhook.URL != s.cfg.Auth.Publish.Webhook.URL {
			warnPlainWebhook(next, s.log)
		}
	}
	if tc != nil {
		s.abr.tc.Store(tc)
	}
	for _, set := range setters {
		set(next)
	}
	for _, ch := range sets {
		_ = s.cfg.Set(ch.Key, ch.New) // set on staged above without error
	}
	// The sums of the files now in use: those of keys needing a restart
	// stay the running ones, so that their change is reported again.
	for ref := range sums {
		if restart[ref.key] {
			delete(sums, ref)
		}
	}
	for ref, sum := range s.secrets {
		if restart[ref.key] {
			sums[ref] = sum
		}
	}
	s.secrets = sums
	return res, nil
}

// closeChain closes a chain built for a reload that was refused.
func closeChain(c *auth.Chain) {
	if c != nil {
		c.Close()
	}
}
