package ingest

import "github.com/headwater-live/headwater/media"

// Registry is where the ingest protocols publish streams and find live ones.
// Every protocol publishes to it; RTMP and SRT look a name up to refuse a
// publish on a live name before any media flows (Publish stays the
// authority), and SRT and RTSP readers find the live streams they read.
// *media.Registry satisfies it.
type Registry interface {
	// Publish starts a live stream of the given tracks under name.
	Publish(name string, info media.PublishInfo, tracks []*media.Track) (*media.Stream, error)
	// Get returns the live stream of name, if any.
	Get(name string) (*media.Stream, bool)
}

var _ Registry = (*media.Registry)(nil)
