package recording

import (
	"context"
	"errors"
	"sort"
	"strings"
	"time"
)

// RetentionRule bounds the recordings of the streams under Prefix (the
// longest matching rule applies to a stream): sessions that ended more
// than MaxAge ago are deleted, and the oldest sessions go while the
// prefix's sessions hold more than MaxBytes. A zero bound is no bound.
type RetentionRule struct {
	Prefix   string
	MaxAge   time.Duration
	MaxBytes int64
}

// ApplyRetention deletes what the rules say must go, now. Sessions being
// recorded are never deleted (an interrupted one may be). It returns the
// number of sessions deleted. It is idempotent: run it on any node, as
// often as wanted (each deletion is logged and counted once, by the run
// that did it).
func (r *Recorder) ApplyRetention(ctx context.Context, rules []RetentionRule, now time.Time) (int, error) {
	if len(rules) == 0 {
		return 0, nil
	}
	sums, err := r.Sessions(ctx, "")
	if err != nil {
		return 0, err
	}
	groups := make(map[int][]Summary) // rule index -> its sessions
	for _, s := range sums {
		if i := ruleFor(rules, s.Stream); i >= 0 {
			groups[i] = append(groups[i], s)
		}
	}
	deleted := 0
	for i, list := range groups {
		rule := rules[i]
		sort.Slice(list, func(a, b int) bool { return list[a].Started.Before(list[b].Started) })
		var total int64
		for _, s := range list {
			total += s.Bytes
		}
		for _, s := range list {
			if s.State == StateRecording {
				continue
			}
			end := s.Ended
			if end.IsZero() {
				end = s.Updated
			}
			reason := ""
			switch {
			case rule.MaxAge > 0 && now.Sub(end) > rule.MaxAge:
				reason = "retention_age"
			case rule.MaxBytes > 0 && total > rule.MaxBytes:
				reason = "retention_bytes"
			default:
				continue
			}
			if _, err := r.Delete(ctx, s.Stream, s.Session, reason); err != nil {
				if errors.Is(err, ErrNoSession) {
					continue // another node's retention deleted it meanwhile
				}
				return deleted, err
			}
			deleted++
			total -= s.Bytes
		}
	}
	return deleted, nil
}

// ruleFor returns the index of the longest rule whose prefix starts name, or -1.
func ruleFor(rules []RetentionRule, name string) int {
	best, at := -1, -1
	for i, rule := range rules {
		if len(rule.Prefix) > best && strings.HasPrefix(name, rule.Prefix) {
			best, at = len(rule.Prefix), i
		}
	}
	return at
}

// RunRetention applies the rules every interval until ctx ends, logging
// (not returning) failures: the next run tries again.
func (r *Recorder) RunRetention(ctx context.Context, rules []RetentionRule, interval time.Duration) {
	if len(rules) == 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if _, err := r.ApplyRetention(ctx, rules, now); err != nil && ctx.Err() == nil {
				r.log.Error("recording: retention", "error", err)
			}
		}
	}
}
