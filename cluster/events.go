package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Event kinds: the last token of an event's subject
// (headwater.events.<kind>). docs/events.md documents each payload.
const (
	// KindStreamStarted is published with a [StreamStarted].
	KindStreamStarted = "stream_started"
	// KindStreamEnded is published with a [StreamEnded].
	KindStreamEnded = "stream_ended"
	// KindPublishRefused is published with a [PublishRefused].
	KindPublishRefused = "publish_refused"
	// KindTranscodeGap is published with a [TranscodeGap].
	KindTranscodeGap = "transcode_gap"
	// KindNodeJoined is published with a [NodeJoined].
	KindNodeJoined = "node_joined"
	// KindNodeLeft is published with a [NodeLeft].
	KindNodeLeft = "node_left"
	// KindStreamSwitched is published with a switcher.Switch: the source
	// on the air of an always-on stream changed (docs/always-on.md).
	KindStreamSwitched = "stream_switched"
	// KindRecordingStarted, KindRecordingReady, KindRecordingFailed and
	// KindRecordingDeleted are published with a recording.Payload.
	KindRecordingStarted = "recording_started"
	KindRecordingReady   = "recording_ready"
	KindRecordingFailed  = "recording_failed"
	KindRecordingDeleted = "recording_deleted"
)

// EventsBuffer is the number of events [Events.Publish] queues before it
// drops.
const EventsBuffer = 1024

// eventPublishTimeout bounds one event's publish and acknowledgement.
const eventPublishTimeout = 5 * time.Second

// ErrEventDropped is returned (wrapped) by [Events.Publish] when the event
// is not queued: the buffer is full or the node is closing.
var ErrEventDropped = errors.New("cluster: event dropped")

// Reasons counted by headwater_cluster_events_dropped_total.
const (
	dropBufferFull    = "buffer_full"
	dropPublishFailed = "publish_failed"
	dropClosed        = "closed"
)

// StreamStarted says a publish was accepted: the stream is live on Node.
type StreamStarted struct {
	// Stream is the stream name ("live/a").
	Stream string `json:"stream"`
	// Node is the id of the node that accepted the publish (the owner).
	Node string `json:"node"`
	// OriginURL is the owner's origin base URL.
	OriginURL string `json:"origin_url,omitempty"`
	// Protocol is the ingest protocol: rtmp, srt, rtsp or rtsp-pull.
	Protocol string `json:"protocol,omitempty"`
	// Remote is the publisher's address (host:port), if any.
	Remote string `json:"remote,omitempty"`
	// Tracks describe the published tracks ("h264 1920x1080", "aac 48000Hz 2ch").
	Tracks []string `json:"tracks,omitempty"`
	// Time is when the publish was accepted.
	Time time.Time `json:"time"`
}

// StreamEnded says a stream stopped being live on Node.
type StreamEnded struct {
	// Stream is the stream name.
	Stream string `json:"stream"`
	// Node is the id of the node that owned it.
	Node string `json:"node"`
	// Started is when the publish was accepted.
	Started time.Time `json:"started"`
	// Time is when it ended.
	Time time.Time `json:"time"`
	// Reason says why: "publisher_closed", "idle_timeout", "kicked",
	// "shutdown", "error" (free text may follow after ": ").
	Reason string `json:"reason,omitempty"`
	// Segments is the number of source segments written.
	Segments int64 `json:"segments,omitempty"`
	// Bytes is the number of media bytes received.
	Bytes int64 `json:"bytes,omitempty"`
}

// PublishRefused says a publish was refused.
type PublishRefused struct {
	// Stream is the stream name asked for.
	Stream string `json:"stream"`
	// Node is the id of the node that refused it.
	Node string `json:"node"`
	// Protocol is the ingest protocol.
	Protocol string `json:"protocol,omitempty"`
	// Remote is the publisher's address.
	Remote string `json:"remote,omitempty"`
	// Reason is the refusal reason, the reason label of
	// headwater_ingest_errors_total ("already_publishing",
	// "owned_elsewhere", "unauthorized", "invalid_name", ...).
	Reason string `json:"reason"`
	// Owner is the node owning the name, for "owned_elsewhere".
	Owner string `json:"owner,omitempty"`
	// Time is when it was refused.
	Time time.Time `json:"time"`
}

// TranscodeGap says a rendition of a GOP was not made (shed, late, failed):
// the rendition's segment carries a gap.
type TranscodeGap struct {
	// Stream is the stream name.
	Stream string `json:"stream"`
	// Node is the id of the node owning the stream.
	Node string `json:"node"`
	// Rendition is the rendition name ("720p").
	Rendition string `json:"rendition"`
	// Sequence is the GOP's sequence number in the stream.
	Sequence uint64 `json:"sequence"`
	// Start is the GOP's start on the stream's timeline, seconds.
	Start float64 `json:"start"`
	// Duration is the GOP's duration, seconds.
	Duration float64 `json:"duration"`
	// Reason says why: the reason label of headwater_transcoder_gaps_total
	// ("shed", "late", "failed", "timeout", "oversized").
	Reason string `json:"reason"`
	// Time is when the gap was decided.
	Time time.Time `json:"time"`
}

// NodeJoined says a node started (published by [Start]).
type NodeJoined struct {
	// Node is the node's id.
	Node string `json:"node"`
	// OriginURL is the node's origin base URL, if it has one.
	OriginURL string `json:"origin_url,omitempty"`
	// Role is the node's role ("serve", "origin", "worker"), if set.
	Role string `json:"role,omitempty"`
	// Time is when it started.
	Time time.Time `json:"time"`
}

// NodeLeft says a node stopped (published by [Node.Close]; a node that dies
// publishes nothing: its placement entries expire instead).
type NodeLeft struct {
	// Node is the node's id.
	Node string `json:"node"`
	// Reason says why ("shutdown").
	Reason string `json:"reason,omitempty"`
	// Time is when it stopped.
	Time time.Time `json:"time"`
}

// Events publishes lifecycle events on JetStream subjects
// headwater.events.<kind> (stream [EventsStream]). Publish never waits on
// the network: events are queued (up to [EventsBuffer]) and published in
// order by one goroutine of the node.
type Events struct {
	n     *Node
	queue chan event

	mu     sync.Mutex // guards closed against sends on queue
	closed bool
	done   chan struct{} // closed when run ends
}

// event is one queued event.
type event struct {
	kind string
	data []byte
	id   string
}

func newEvents(n *Node) *Events {
	return &Events{n: n, queue: make(chan event, EventsBuffer), done: make(chan struct{})}
}

// validKind reports whether kind is one subject token of [a-z0-9_].
func validKind(kind string) bool {
	if kind == "" {
		return false
	}
	for _, c := range []byte(kind) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Publish queues v, encoded as JSON, for the subject
// headwater.events.<kind> and returns at once. kind is one subject token
// ([a-z0-9_]); the Kind* constants name the documented ones. When the
// queue is full or the node is closing the event is dropped, counted and
// an error wrapping [ErrEventDropped] returned; an event JetStream does not
// acknowledge (NATS down) is dropped and counted later. ctx is not used
// for the publish (which outlives the call); it is accepted for future
// blocking variants.
func (e *Events) Publish(_ context.Context, kind string, v any) error {
	if !validKind(kind) {
		return fmt.Errorf("cluster: event kind %q: want one token of [a-z0-9_]", kind)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("cluster: event %s: %w", kind, err)
	}
	ev := event{kind: kind, data: data, id: nats.NewInbox()[len(nats.InboxPrefix):]}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		e.n.metrics.dropped.WithLabelValues(dropClosed).Inc()
		return fmt.Errorf("%w: %s: node closed", ErrEventDropped, kind)
	}
	select {
	case e.queue <- ev:
		return nil
	default:
		e.n.metrics.dropped.WithLabelValues(dropBufferFull).Inc()
		return fmt.Errorf("%w: %s: %d events queued", ErrEventDropped, kind, EventsBuffer)
	}
}

// run publishes queued events until the queue is closed and empty, or the
// node's context ends.
func (e *Events) run() {
	defer e.n.wg.Done()
	defer close(e.done)
	failing := false
	for ev := range e.queue {
		// Wait for the stream to exist (or the node to close).
		select {
		case <-e.n.ready:
		case <-e.n.ctx.Done():
		}
		if e.n.ctx.Err() != nil {
			e.n.metrics.dropped.WithLabelValues(dropClosed).Inc()
			continue
		}
		ctx, cancel := context.WithTimeout(e.n.ctx, eventPublishTimeout)
		_, err := e.n.js.Publish(ctx, EventsSubjectPrefix+ev.kind, ev.data, jetstream.WithMsgID(ev.id))
		cancel()
		if err != nil {
			e.n.metrics.dropped.WithLabelValues(dropPublishFailed).Inc()
			if !failing {
				e.n.log.Warn("event publish failed, dropping events until it works", "kind", ev.kind, "error", err)
				failing = true
			}
			continue
		}
		if failing {
			e.n.log.Info("events publish again")
			failing = false
		}
		e.n.metrics.published.WithLabelValues(ev.kind).Inc()
	}
}

// flush stops accepting events and waits up to timeout for the queued ones
// to be published; the rest are dropped when the node's context ends.
func (e *Events) flush(timeout time.Duration) {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		close(e.queue)
	}
	e.mu.Unlock()
	if !isClosed(e.n.ready) {
		return // nothing can be published before the stream exists
	}
	select {
	case <-e.done:
	case <-time.After(timeout):
	}
}
