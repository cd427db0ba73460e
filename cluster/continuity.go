package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamsBucket is the KV bucket of [ContinuityRecord]s: where each stream
// stood when its owner last wrote, kept [StreamsMaxAge] with no placement
// TTL, so that a node taking a name over after its owner died continues
// the stream's numbering and timeline.
const StreamsBucket = "HEADWATER_STREAMS"

// StreamsMaxAge is how long a continuity record is kept after its last
// write.
const StreamsMaxAge = time.Hour

// ContinuityRecord is where a stream stood, written by its owner every
// placement TTL/3 and when the stream ends: the JSON value stored under the
// stream's key in [StreamsBucket].
type ContinuityRecord struct {
	// Stream is the stream name ("live/a").
	Stream string `json:"stream"`
	// Node is the node that wrote the record.
	Node string `json:"node"`
	// Updated is when the record was written.
	Updated time.Time `json:"updated"`
	// Ended is true when the stream had ended (the last write).
	Ended bool `json:"ended,omitempty"`
	// SegmentDuration is the longest segment of the stream so far.
	SegmentDuration time.Duration `json:"segment_duration_ns"`
	// End is the end of the timeline, EndTimescale ticks from the stream's
	// start.
	End          uint64 `json:"end"`
	EndTimescale uint32 `json:"end_timescale"`
	// Renditions are the stream's renditions.
	Renditions []RenditionContinuity `json:"renditions"`
}

// RenditionContinuity is where one rendition stood.
type RenditionContinuity struct {
	// Name is the rendition's name ("video", "720p").
	Name string `json:"name"`
	// NextMSN is the media sequence number its next segment was to take.
	NextMSN uint64 `json:"next_msn"`
	// DiscontinuitySequence is the number of discontinuities so far.
	DiscontinuitySequence uint64 `json:"discontinuity_sequence"`
}

// Continuity stores and loads [ContinuityRecord]s in [StreamsBucket].
type Continuity struct {
	n  *Node
	kv atomicKV
}

// Continuity returns the node's continuity records.
func (n *Node) Continuity() *Continuity { return n.continuity }

// bucket returns the KV bucket, or ErrUnavailable before setup.
func (c *Continuity) bucket() (jetstream.KeyValue, error) {
	kv := c.kv.Load()
	if kv == nil || !c.n.nc.IsConnected() {
		return nil, ErrUnavailable
	}
	return *kv, nil
}

// Save writes rec (its Node set to this node's id, a zero Updated to now).
func (c *Continuity) Save(ctx context.Context, rec ContinuityRecord) error {
	k, err := key(rec.Stream)
	if err != nil {
		return err
	}
	rec.Node = c.n.cfg.NodeID
	if rec.Updated.IsZero() {
		rec.Updated = time.Now()
	}
	rec.Updated = rec.Updated.UTC()
	value, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("cluster: continuity %s: %w", rec.Stream, err)
	}
	kv, err := c.bucket()
	if err != nil {
		return fmt.Errorf("cluster: continuity %s: %w", rec.Stream, err)
	}
	if _, err := kv.Put(ctx, k, value); err != nil {
		return fmt.Errorf("cluster: continuity %s: %w", rec.Stream, unavailable(err))
	}
	return nil
}

// Load returns the record of stream; ok is false when there is none (or
// it cannot be read: the error says why).
func (c *Continuity) Load(ctx context.Context, stream string) (rec ContinuityRecord, ok bool, err error) {
	k, err := key(stream)
	if err != nil {
		return rec, false, err
	}
	kv, err := c.bucket()
	if err != nil {
		return rec, false, fmt.Errorf("cluster: continuity %s: %w", stream, err)
	}
	e, err := kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("cluster: continuity %s: %w", stream, unavailable(err))
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, false, fmt.Errorf("cluster: continuity %s: %w", stream, err)
	}
	return rec, true, nil
}
