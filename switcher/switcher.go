// Package switcher keeps a live stream on the air across its publishers:
// a reconnect window, a hot backup publisher and a slate between them.
//
// Without it, a stream is its publisher: the publish ends, the stream ends
// (ENDLIST). A Switcher sits between the ingest protocols and the registry
// of live streams, for the names whose Policy turns it on. Each ingest
// session then publishes an input (a media.Stream of its own, in a private
// registry: one primary and one backup per name), and the Switcher's feed
// of that name publishes outputs to the registry, one at a time, from
// whichever source is on the air:
//
//	primary input ──┐
//	backup input  ──┼─► feed (one goroutine per name) ──► output publish ──► pipeline (store.Stream, held)
//	slate         ──┘    picks the source, switches at key frames
//
// Every switch of source ends the output and publishes a new one starting
// at a key frame of the new source: for the packaging that follows it is a
// republish, which continues the same playlists (EXT-X-DISCONTINUITY, a new
// DASH Period, rising sequence numbers, the timeline going on where it
// stopped). The server holds the stream's store entry while the feed lives,
// so that the end of an output between two sources is not the stream's end
// (no ENDLIST); the feed's end (OnEnd) releases it.
//
// When the on-air publisher disconnects, or sends nothing for
// Policy.FailoverAfter, the feed switches to the backup at its next key
// frame, or to the slate, or (without either) waits. A publisher of the
// name that arrives within Policy.ReconnectWindow of the last one leaving
// goes on the air at its first key frame; after the window with no
// publisher, the feed ends. A primary that comes back while the backup is
// on the air takes over again at a key frame (Policy.Failback).
package switcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/metrics"
)

// Publisher is where outputs are published: the registry of live streams
// (through whatever guards it). ingest.Registry has the same methods.
type Publisher interface {
	Publish(name string, info media.PublishInfo, tracks []*media.Track) (*media.Stream, error)
	Get(name string) (*media.Stream, bool)
}

// Policy is what the Switcher does for one stream name.
type Policy struct {
	// ReconnectWindow is how long the stream stays on the air without a
	// publisher; 0 ends it when its last publisher leaves.
	ReconnectWindow time.Duration
	// FailoverAfter is how long the on-air publisher may send nothing
	// before the backup (or the slate) takes over; 0 accepts no backup
	// publisher and never treats a silent publisher as gone.
	FailoverAfter time.Duration
	// Failback puts the primary back on the air (at a key frame) when it
	// returns while the backup is on the air.
	Failback bool
	// Slate fills the time without a publisher with the slate.
	Slate bool
}

// On reports whether the Switcher keeps streams of this policy on the
// air; with neither a window nor failover, publishes go straight to the
// registry.
func (p Policy) On() bool { return p.ReconnectWindow > 0 || p.FailoverAfter > 0 }

// SlateSource makes slates: stand-by media matching a stream's tracks.
type SlateSource interface {
	// Slate returns the slate for streams of these tracks (video or audio
	// may be nil) whose video frames last frameDur. It may take a while
	// (an encode) and is called off the live path.
	Slate(ctx context.Context, video, audio *media.Track, frameDur time.Duration) (Slate, error)
}

// Slate is one prepared slate, shared by the streams it matches.
type Slate interface {
	// Cursor starts playing the slate from its beginning.
	Cursor() SlateCursor
}

// SlateCursor plays a slate on and on.
type SlateCursor interface {
	// Tracks are the slate's tracks.
	Tracks() []*media.Track
	// Next returns the frames from where the cursor stands up to (not
	// including) media time until, with timestamps from 0, received at now.
	Next(until time.Duration, now time.Time) []*media.Frame
}

// Source names what is on the air.
type Source string

// The sources of a feed.
const (
	SourceNone    Source = "none"
	SourcePrimary Source = "primary"
	SourceBackup  Source = "backup"
	SourceSlate   Source = "slate"
)

// Reasons of a switch (the reason label of headwater_stream_failovers_total).
const (
	// ReasonDisconnect: the on-air publisher left.
	ReasonDisconnect = "disconnect"
	// ReasonStall: the on-air publisher sent nothing for FailoverAfter.
	ReasonStall = "stall"
	// ReasonFailback: the primary took over again from the backup.
	ReasonFailback = "failback"
	// ReasonResume: a publisher took over from the slate or from nothing.
	ReasonResume = "resume"
)

// SlateProtocol is the media.PublishInfo.Protocol of the slate's outputs.
const SlateProtocol = "slate"

// Switch is one change of source, for logs, events and the status API.
type Switch struct {
	Stream string    `json:"stream"`
	From   Source    `json:"from"`
	To     Source    `json:"to"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Errors of Publish.
var (
	// ErrEnding: the stream's feed is ending (it was kicked or the server
	// is closing).
	ErrEnding = errors.New("the stream is ending")
)

// Config configures a Switcher.
type Config struct {
	// Publisher receives the outputs.
	Publisher Publisher
	// Policy gives the policy of a stream name.
	Policy func(name string) Policy
	// Slates makes the slates; nil runs without.
	Slates SlateSource
	// Buffer is the frames buffered per input before frames are dropped.
	Buffer int
	// FramesDropped counts frames an input's feed did not keep up with.
	FramesDropped media.Counter
	// OnEnd is told, synchronously and once, that the feed of name has
	// ended: no publisher came back within the window (or it was kicked,
	// or the Switcher closed). Any output is closed before.
	OnEnd func(name string)
	// OnSwitch is told of every change of source, on the feed's goroutine.
	OnSwitch func(Switch)
	Log      *slog.Logger
}

// Switcher keeps streams on the air across their publishers. It satisfies
// ingest.Registry. Safe for concurrent use.
type Switcher struct {
	cfg      Config
	log      *slog.Logger
	m        *switchMetrics
	inputs   [2]*media.Registry // primary, backup
	slateCtx context.Context    // cancelled by Close
	stop     context.CancelFunc

	mu     sync.Mutex
	feeds  map[string]*feed
	closed bool
	wg     sync.WaitGroup
}

// New returns a Switcher publishing to cfg.Publisher; its metrics are
// registered on reg.
func New(cfg Config, reg prometheus.Registerer) *Switcher {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Buffer < 16 {
		cfg.Buffer = 16
	}
	ctx, stop := context.WithCancel(context.Background())
	sw := &Switcher{
		cfg:      cfg,
		log:      cfg.Log.With("component", "switcher"),
		slateCtx: ctx,
		stop:     stop,
		feeds:    make(map[string]*feed),
	}
	for i := range sw.inputs {
		sw.inputs[i] = media.NewRegistry(media.RegistryConfig{FramesDropped: cfg.FramesDropped})
	}
	sw.m = newSwitchMetrics(reg, sw)
	return sw
}

type switchMetrics struct {
	switches *prometheus.CounterVec
}

func newSwitchMetrics(reg prometheus.Registerer, sw *Switcher) *switchMetrics {
	m := &switchMetrics{
		switches: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_stream_failovers_total",
			Help: "Changes of the source on the air of always-on streams, by reason: disconnect, stall (the on-air publisher went silent), failback (the primary back from the backup), resume (a publisher back from the slate or from nothing).",
		}, []string{"reason"})),
	}
	for _, r := range []string{ReasonDisconnect, ReasonStall, ReasonFailback, ReasonResume} {
		m.switches.WithLabelValues(r)
	}
	metrics.Register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "headwater_streams_on_slate",
		Help: "Always-on streams whose slate is on the air.",
	}, func() float64 { return float64(sw.count(SourceSlate)) }))
	metrics.Register(reg, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "headwater_streams_awaiting_publisher",
		Help: "Always-on streams inside their reconnect window with no publisher connected.",
	}, func() float64 { return float64(sw.countWaiting()) }))
	return m
}

// Get returns the stream on the air under name (the output, for readers).
func (sw *Switcher) Get(name string) (*media.Stream, bool) { return sw.cfg.Publisher.Get(name) }

// CheckName checks a name as the publisher does, when it can.
func (sw *Switcher) CheckName(name string) error {
	if c, ok := sw.cfg.Publisher.(interface{ CheckName(string) error }); ok {
		return c.CheckName(name)
	}
	return media.ValidateName(name)
}

// Busy reports whether a publish of name with info would be refused as
// already publishing: the role's place is taken (or, for a name the
// Switcher does not handle, the name is live). The ingest protocols ask
// before any media flows; Publish stays the authority.
func (sw *Switcher) Busy(name string, info media.PublishInfo) bool {
	if !sw.cfg.Policy(name).On() {
		_, live := sw.cfg.Publisher.Get(name)
		return live
	}
	_, taken := sw.inputs[roleIndex(info)].Get(name)
	return taken
}

func roleIndex(info media.PublishInfo) int {
	if info.Backup {
		return 1
	}
	return 0
}

// Publish starts a publisher's input under name. For a name whose policy
// is off it publishes straight to the Publisher. Otherwise the publisher
// takes its role's place (a second one of a role is refused with
// media.ErrAlreadyPublishing) and the feed of the name decides when it is
// on the air; the first publisher of a name goes on the air at once, and
// its refusal by the Publisher (too many streams, a name collision) is
// returned. A backup publisher of a name that is not live is the feed's
// first publisher: it goes on the air, and a primary arriving later takes
// over at a key frame when Failback is on.
func (sw *Switcher) Publish(name string, info media.PublishInfo, tracks []*media.Track) (*media.Stream, error) {
	pol := sw.cfg.Policy(name)
	if !pol.On() {
		return sw.cfg.Publisher.Publish(name, info, tracks)
	}
	if info.Backup && pol.FailoverAfter <= 0 {
		info.Backup = false // no backups under this policy: an ordinary publisher
	}
	sw.mu.Lock()
	if sw.closed {
		sw.mu.Unlock()
		return nil, fmt.Errorf("publish %s: %w", name, ErrEnding)
	}
	in, err := sw.inputs[roleIndex(info)].Publish(name, info, tracks)
	if err != nil {
		sw.mu.Unlock()
		return nil, err
	}
	x := &input{st: in, sub: in.Subscribe(sw.cfg.Buffer), role: info.Role(), silence: pol.FailoverAfter}
	if x.silence <= 0 {
		x.silence = time.Second
	}
	if f := sw.feeds[name]; f != nil {
		defer sw.mu.Unlock()
		// Never blocks: the feed takes joins in its loop (once it runs),
		// and it ends (under mu) only with none waiting.
		select {
		case f.joins <- x:
			return in, nil
		default:
			x.sub.Close()
			in.Close()
			return nil, fmt.Errorf("publish %s: %w", name, ErrEnding)
		}
	}
	// The name's feed, reserved: the first output is published outside
	// the lock (a cluster's placement claim is a round trip to NATS), and
	// publishers of the name arriving meanwhile queue to join it.
	f := newFeed(sw, name, pol, x)
	sw.feeds[name] = f
	sw.mu.Unlock()

	out, err := sw.cfg.Publisher.Publish(name, info, tracks)

	sw.mu.Lock()
	defer sw.mu.Unlock()
	if err != nil || sw.closed {
		if sw.feeds[name] == f {
			delete(sw.feeds, name)
		}
		f.ended = true
		f.cancel()
		f.dropJoins()
		x.sub.Close()
		in.Close()
		if err != nil {
			return nil, err
		}
		out.Close()
		if sw.cfg.OnEnd != nil {
			sw.cfg.OnEnd(name)
		}
		return nil, fmt.Errorf("publish %s: %w", name, ErrEnding)
	}
	f.out = out
	sw.wg.Add(1)
	go func() {
		defer sw.wg.Done()
		f.run()
	}()
	return in, nil
}

// end removes f and tells OnEnd, once. Unless forced, it reports false
// and does nothing when a publisher is waiting to join f (the feed goes
// on).
func (sw *Switcher) end(f *feed, force bool) bool {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if f.ended {
		return true
	}
	if !force && len(f.joins) > 0 && !sw.closed && f.ctx.Err() == nil {
		return false
	}
	f.ended = true
	f.cancel()
	if sw.feeds[f.name] == f {
		delete(sw.feeds, f.name)
	}
	if sw.cfg.OnEnd != nil {
		sw.cfg.OnEnd(f.name)
	}
	return true
}

// Close ends every feed at once (no reconnect window): their outputs end,
// their publishers are dropped, OnEnd is told; it waits for the feeds.
func (sw *Switcher) Close() {
	sw.mu.Lock()
	sw.closed = true
	for _, f := range sw.feeds {
		f.cancel()
	}
	sw.mu.Unlock()
	sw.stop()
	sw.wg.Wait()
}

// Status is what the status API shows of an always-on stream.
type Status struct {
	// OnAir is the source on the air now.
	OnAir Source `json:"on_air"`
	// Primary and Backup tell which publishers are connected.
	Primary bool `json:"primary"`
	Backup  bool `json:"backup"`
	// AwaitingUntil is when the reconnect window ends, while no publisher
	// is connected.
	AwaitingUntil time.Time `json:"awaiting_until,omitzero"`
	// Switches counts the changes of source; LastSwitch is the latest.
	Switches   int     `json:"switches"`
	LastSwitch *Switch `json:"last_switch,omitempty"`
}

// Status returns the state of the feed of name, if the Switcher keeps it.
func (sw *Switcher) Status(name string) (Status, bool) {
	sw.mu.Lock()
	f := sw.feeds[name]
	sw.mu.Unlock()
	if f == nil {
		return Status{}, false
	}
	return f.status(), true
}

// Names lists the streams the Switcher keeps, sorted.
func (sw *Switcher) Names() []string {
	sw.mu.Lock()
	out := make([]string, 0, len(sw.feeds))
	for name := range sw.feeds {
		out = append(out, name)
	}
	sw.mu.Unlock()
	sort.Strings(out)
	return out
}

func (sw *Switcher) count(src Source) int {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	n := 0
	for _, f := range sw.feeds {
		if f.status().OnAir == src {
			n++
		}
	}
	return n
}

func (sw *Switcher) countWaiting() int {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	n := 0
	for _, f := range sw.feeds {
		if !f.status().AwaitingUntil.IsZero() {
			n++
		}
	}
	return n
}
