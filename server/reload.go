package server

import (
	"fmt"
	"strings"

	"github.com/headwater-live/headwater/config"
)

// applyInPlace applies the value of key in c when key is one a running
// server changes in place, and reports whether it was; every other change
// is reported as needing a restart and left as it was. (Publish auth and
// the ladders are rebuilt as a whole by Reload.)
func (s *Server) applyInPlace(key string, c *config.Config) bool {
	switch key {
	case "rtmp.max_publishers":
		if s.rtmp != nil {
			s.rtmp.SetMaxPublishers(c.RTMP.MaxPublishers)
		}
	case "streams.max_streams":
		s.registry.SetMaxStreams(c.Streams.MaxStreams)
	default:
		return false
	}
	return true
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
// others are reported.
func (s *Server) Reload(next *config.Config) (ReloadResult, error) {
	if err := next.Validate(); err != nil {
		return ReloadResult{}, fmt.Errorf("reload: %w", err)
	}
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	var res ReloadResult
	changes := config.Diff(s.cfg, next)
	// Publish authentication (keys, JWT, webhook, rate limit) is rebuilt as
	// a whole and swapped in; live publishes are not affected.
	authChanged := false
	for _, ch := range changes {
		authChanged = authChanged || strings.HasPrefix(ch.Key, "auth.publish.")
	}
	if authChanged {
		if err := s.sec.reloadPublishAuth(next, s.reg, s.log); err != nil {
			return res, fmt.Errorf("reload: %w", err)
		}
	}
	// Ladders apply to publishes that start after the reload.
	ladderChanged := false
	for _, ch := range changes {
		ladderChanged = ladderChanged || ch.Key == "transcoder.ladder" || ch.Key == "transcoder.prefix_ladders"
	}
	if ladderChanged && s.abr != nil {
		if err := s.abr.reloadLadders(next.Transcoder); err != nil {
			return res, fmt.Errorf("reload: %w", err)
		}
	} else {
		ladderChanged = false
	}
	for _, ch := range changes {
		if ladderChanged && (ch.Key == "transcoder.ladder" || ch.Key == "transcoder.prefix_ladders") {
			if err := s.cfg.Set(ch.Key, ch.New); err != nil {
				return res, fmt.Errorf("reload %s: %w", ch.Key, err)
			}
			res.Applied = append(res.Applied, ch)
			continue
		}
		if authChanged && strings.HasPrefix(ch.Key, "auth.publish.") {
			if err := s.cfg.Set(ch.Key, ch.New); err != nil {
				return res, fmt.Errorf("reload %s: %w", ch.Key, err)
			}
			res.Applied = append(res.Applied, ch)
			continue
		}
		if !s.applyInPlace(ch.Key, next) {
			res.NeedRestart = append(res.NeedRestart, ch)
			continue
		}
		if err := s.cfg.Set(ch.Key, ch.New); err != nil {
			return res, fmt.Errorf("reload %s: %w", ch.Key, err)
		}
		res.Applied = append(res.Applied, ch)
	}
	return res, nil
}
