package server

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/api"
	"github.com/headwater-live/headwater/cluster"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/eventhook"
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
