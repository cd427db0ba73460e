package cluster

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestContinuitySaveLoad: a record saved by one node is loaded as written
// (its node id set) under a name with dots; a name with none has no record;
// a later save replaces it; the bucket keeps it past the placement TTL.
func TestContinuitySaveLoad(t *testing.T) {
	n := startNode(t, embeddedConfig(t, "a"), prometheus.NewRegistry())
	waitReady(t, n, 10*time.Second)
	c := n.Continuity()
	ctx := context.Background()
	if _, ok, err := c.Load(ctx, "live/none"); ok || err != nil {
		t.Fatalf("Load of a name never saved = %v, %v", ok, err)
	}
	rec := ContinuityRecord{Stream: "live/a.b", SegmentDuration: time.Second, End: 900000, EndTimescale: 90000,
		Renditions: []RenditionContinuity{{Name: "video", NextMSN: 10, DiscontinuitySequence: 1}, {Name: "144p", NextMSN: 9}}}
	if err := c.Save(ctx, rec); err != nil {
		t.Fatal(err)
	}
	got, ok, err := c.Load(ctx, "live/a.b")
	if !ok || err != nil {
		t.Fatalf("Load = %v, %v", ok, err)
	}
	if got.Node != "a" || got.Updated.IsZero() || got.End != 900000 || got.EndTimescale != 90000 || got.SegmentDuration != time.Second ||
		len(got.Renditions) != 2 || got.Renditions[0] != rec.Renditions[0] || got.Renditions[1] != rec.Renditions[1] {
		t.Fatalf("Load = %+v, want %+v", got, rec)
	}
	rec.Ended = true
	rec.Renditions[0].NextMSN = 12
	if err := c.Save(ctx, rec); err != nil {
		t.Fatal(err)
	}
	time.Sleep(n.cfg.PlacementTTL + 200*time.Millisecond)
	if got, ok, _ := c.Load(ctx, "live/a.b"); !ok || !got.Ended || got.Renditions[0].NextMSN != 12 {
		t.Fatalf("Load after a second save and the placement TTL = %+v, %v", got, ok)
	}
}
