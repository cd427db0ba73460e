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

// RoleParam is the query (or SRT streamid) key naming a publisher's role;
// RoleBackup is its value for a backup publisher (media.PublishInfo.Backup):
// rtmp://host/live/key?role=backup, #!::r=live/key,m=publish,role=backup,
// rtsp://host/live/key?role=backup.
const (
	RoleParam  = "role"
	RoleBackup = "backup"
)

// Busy reports whether a publish of name with info would be refused as
// already publishing, asked before any media flows (Publish stays the
// authority). A registry that knows publisher roles (the switcher) answers
// for the role's place; otherwise a live name is busy.
func Busy(reg Registry, name string, info media.PublishInfo) bool {
	if b, ok := reg.(interface {
		Busy(name string, info media.PublishInfo) bool
	}); ok {
		return b.Busy(name, info)
	}
	_, live := reg.Get(name)
	return live
}
