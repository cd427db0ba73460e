// Package eventhook delivers lifecycle events to an HTTP endpoint (the
// events.webhook setting): each event is one JSON POST, signed like the
// publish webhook (auth.SignWebhook), delivered in order by one goroutine,
// retried with backoff, and never waited for by the code that sends it.
package eventhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/metrics"
)

// Defaults of Config.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultBuffer      = 256
	DefaultMaxAttempts = 6
)

// HeaderEvent carries the event kind; HeaderEventID its id (the same in
// every delivery attempt, so that a receiver can deduplicate).
const (
	HeaderEvent   = "X-Headwater-Event"
	HeaderEventID = "X-Headwater-Event-Id"
)

// Config configures a Hook.
type Config struct {
	// URL receives the events.
	URL string
	// Secret, when set, signs each body (auth.HeaderSignature,
	// auth.HeaderTimestamp).
	Secret []byte
	// Timeout bounds one attempt; 0 means DefaultTimeout.
	Timeout time.Duration
	// Buffer is the number of events queued before Send drops; 0 means
	// DefaultBuffer.
	Buffer int
	// MaxAttempts bounds the deliveries of one event; 0 means
	// DefaultMaxAttempts. Attempts are spaced 1s, 2s, 4s ... up to 30s.
	MaxAttempts int
	// Client makes the requests; nil is a client with Timeout.
	Client *http.Client
}

// Body is the JSON object POSTed for each event.
type Body struct {
	// ID is unique per event.
	ID string `json:"id"`
	// Event is the kind ("recording.ready").
	Event string `json:"event"`
	// Time is when the event happened.
	Time time.Time `json:"time"`
	// Data is the event's payload (docs/events.md).
	Data any `json:"data"`
}

// Hook delivers events to one URL.
type Hook struct {
	cfg   Config
	log   *slog.Logger
	queue chan Body
	count *prometheus.CounterVec
	now   func() time.Time
	// backoff returns the wait before attempt n+1 (tests shorten it).
	backoff func(n int) time.Duration
}

// New returns a hook; it delivers once Run runs.
func New(cfg Config, log *slog.Logger, reg prometheus.Registerer) *Hook {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = DefaultBuffer
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Hook{
		cfg:   cfg,
		log:   log,
		queue: make(chan Body, cfg.Buffer),
		count: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_events_webhook_total",
			Help: "Events for events.webhook by result: delivered, failed (every attempt failed), dropped (queue full).",
		}, []string{"result"})),
		now: time.Now,
		backoff: func(n int) time.Duration {
			return min(time.Second<<min(n, 5), 30*time.Second)
		},
	}
}

// Send queues an event without waiting; when the queue is full the event
// is dropped, logged and counted.
func (h *Hook) Send(kind string, data any) {
	var id [12]byte
	_, _ = rand.Read(id[:])
	b := Body{ID: hex.EncodeToString(id[:]), Event: kind, Time: h.now().UTC(), Data: data}
	select {
	case h.queue <- b:
	default:
		h.count.WithLabelValues("dropped").Inc()
		h.log.Warn("events webhook: queue full, event dropped", "event", kind)
	}
}

// Run delivers queued events in order until ctx ends.
func (h *Hook) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case b := <-h.queue:
			h.deliver(ctx, b)
		}
	}
}

// deliver tries one event until it is accepted (2xx), attempts run out or
// ctx ends.
func (h *Hook) deliver(ctx context.Context, b Body) {
	body, err := json.Marshal(b)
	if err != nil {
		h.log.Error("events webhook: cannot encode event", "event", b.Event, "error", err)
		h.count.WithLabelValues("failed").Inc()
		return
	}
	var last error
	for n := 0; n < h.cfg.MaxAttempts; n++ {
		if n > 0 {
			t := time.NewTimer(h.backoff(n - 1))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		if last = h.post(ctx, b, body); last == nil {
			h.count.WithLabelValues("delivered").Inc()
			return
		}
		if ctx.Err() != nil {
			return
		}
	}
	h.count.WithLabelValues("failed").Inc()
	h.log.Error("events webhook: not delivered", "event", b.Event, "id", b.ID, "attempts", h.cfg.MaxAttempts, "error", last)
}

// post makes one attempt.
func (h *Hook) post(ctx context.Context, b Body, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("events webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderEvent, b.Event)
	req.Header.Set(HeaderEventID, b.ID)
	if len(h.cfg.Secret) > 0 {
		ts := strconv.FormatInt(h.now().Unix(), 10)
		req.Header.Set(auth.HeaderTimestamp, ts)
		req.Header.Set(auth.HeaderSignature, auth.SignWebhook(h.cfg.Secret, ts, body))
	}
	resp, err := h.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("events webhook %s: %w", b.Event, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("events webhook %s: status %d", b.Event, resp.StatusCode)
	}
	return nil
}
