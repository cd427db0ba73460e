package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/api"
	"github.com/headwater-live/headwater/cluster"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/eventhook"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/slate"
	"github.com/headwater-live/headwater/switcher"
)

// streamPolicy maps streams.* to the switcher's policy of a stream name.
func streamPolicy(c config.StreamsConfig) func(name string) switcher.Policy {
	window := c.ReconnectWindowFunc()
	return func(name string) switcher.Policy {
		return switcher.Policy{
			ReconnectWindow: window(name),
			FailoverAfter:   c.FailoverAfter.Duration(),
			Failback:        c.Failback,
			Slate:           c.Slate != "",
		}
	}
}

// newSwitcher builds the switcher the ingest protocols publish through: it
// keeps always-on streams (a reconnect window, backup publishers) on the
// air, publishing their sources one at a time to pub; the other streams go
// straight to pub.
func (s *Server) newSwitcher(pub switcher.Publisher) *switcher.Switcher {
	cfg := switcher.Config{
		Publisher:     pub,
		Policy:        streamPolicy(s.cfg.Streams),
		Buffer:        s.cfg.Segmenter.SubscriberBuffer,
		FramesDropped: s.dropped,
		OnEnd:         s.pipes.release,
		OnSwitch:      s.streamSwitched,
		Log:           s.log,
	}
	if s.slates != nil {
		cfg.Slates = s.slates
	}
	s.sw = switcher.New(cfg, s.reg)
	return s.sw
}

// streamSwitched sends a change of source of an always-on stream to
// events.webhook and, in a cluster, to the event stream.
func (s *Server) streamSwitched(sw switcher.Switch) {
	if s.hook != nil {
		s.hook.Send(cluster.KindStreamSwitched, sw)
	}
	if s.cl != nil {
		s.cl.publishEvent(cluster.KindStreamSwitched, sw)
	}
}

// newEventHook builds the events.webhook delivery, nil without one.
func newEventHook(cfg *config.Config, reg prometheus.Registerer, log *slog.Logger) (*eventhook.Hook, error) {
	if cfg.Events.Webhook == "" {
		return nil, nil
	}
	var secret []byte
	if f := cfg.Events.WebhookSecretFile; f != "" {
		var err error
		if secret, err = os.ReadFile(f); err != nil {
			return nil, fmt.Errorf("events.webhook_secret_file: %w", err)
		}
	}
	return eventhook.New(eventhook.Config{URL: cfg.Events.Webhook, Secret: secret,
		Timeout: cfg.Events.WebhookTimeout.Duration()}, log.With("component", "events-webhook"), reg), nil
}

// alwaysOnStatus is the switcher's state of a stream for the status API.
func (s *Server) alwaysOnStatus(name string) (api.AlwaysOn, bool) {
	st, ok := s.sw.Status(name)
	if !ok {
		return api.AlwaysOn{}, false
	}
	out := api.AlwaysOn{OnAir: string(st.OnAir), Primary: st.Primary, Backup: st.Backup, Switches: st.Switches}
	if !st.AwaitingUntil.IsZero() {
		at := st.AwaitingUntil
		out.AwaitingUntil = &at
	}
	if st.LastSwitch != nil {
		at := st.LastSwitch.At
		out.LastSwitchAt, out.LastSwitchReason = &at, st.LastSwitch.Reason
	}
	return out, true
}

// newSlates builds the slates of always-on streams (streams.slate), nil
// without one. Each parameter set is encoded once, with the transcoder's
// ffmpeg, its key frames every segment target.
func newSlates(cfg *config.Config, log *slog.Logger) (switcher.SlateSource, error) {
	if cfg.Streams.Slate == "" {
		return nil, nil
	}
	src, err := slate.ParseSource(cfg.Streams.Slate)
	if err != nil {
		return nil, fmt.Errorf("streams.slate: %w", err)
	}
	return slateLibrary{lib: slate.NewLibrary(slate.Config{
		Source: src,
		FFmpeg: cfg.Transcoder.FFmpeg,
		GOP:    cfg.Segmenter.SegmentDuration.Duration(),
		Log:    log.With("component", "slate"),
	})}, nil
}

// slateLibrary is a slate.Library as the switcher's SlateSource.
type slateLibrary struct{ lib *slate.Library }

func (l slateLibrary) Slate(ctx context.Context, video, audio *media.Track, frameDur time.Duration) (switcher.Slate, error) {
	p, err := slate.ParamsOf(video, audio, frameDur)
	if err != nil {
		return nil, err
	}
	c, err := l.lib.Clip(ctx, p)
	if err != nil {
		return nil, err
	}
	return slateClip{c}, nil
}

// slateClip is a slate.Clip as a switcher.Slate.
type slateClip struct{ c *slate.Clip }

func (s slateClip) Cursor() switcher.SlateCursor {
	var tracks []*media.Track
	for _, t := range []*media.Track{s.c.Video, s.c.Audio} {
		if t != nil {
			tracks = append(tracks, t)
		}
	}
	return slateCursor{cur: s.c.Cursor(), tracks: tracks}
}

// slateCursor is a slate.Cursor as a switcher.SlateCursor.
type slateCursor struct {
	cur    *slate.Cursor
	tracks []*media.Track
}

func (c slateCursor) Tracks() []*media.Track { return c.tracks }

func (c slateCursor) Next(until time.Duration, now time.Time) []*media.Frame {
	return c.cur.Next(until, now)
}
