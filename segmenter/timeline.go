package segmenter

import (
	"sync"
	"sync/atomic"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/store"
)

// RunOptions are the options of Segmenter.RunWith.
type RunOptions struct {
	// Timeline, when not nil, is given the run's placement of the publish
	// on the stream's timeline (its first DTS and where it starts) once its
	// first video track is placed, so that Writers of renditions made from
	// the same publish (transcoded renditions) put their frames, which
	// carry the source's timestamps, on the same timeline: their segments
	// then start at the same times as the source's.
	Timeline *Timeline
	// Skip, when not nil, leaves out the frames of the tracks it returns
	// true for (a source track replaced by a transcoded one in Extra).
	Skip func(*media.Track) bool
	// Tracks, when not nil, are the tracks the publisher announced: each
	// (but those Skip leaves out) gets its rendition and init section
	// before its first frame, so that the stream's playlists know every
	// rendition to come (a publisher's first audio frame may come after
	// its first video segment is complete).
	Tracks []*media.Track
	// Extra, when not nil, carries frames of further tracks of the same
	// publish, on the source's clock (transcoded audio), packaged with the
	// source's; their track IDs must differ from the source's. Once the
	// source's subscription closes, the run keeps reading Extra until it
	// closes (or ctx ends), so that the caller must close it.
	Extra <-chan *media.Frame
}

// Timeline is a publish's placement on its stream's timeline, shared by the
// run packaging the source (RunWith) and the Writers following it.
type Timeline struct {
	once          sync.Once
	ready         chan struct{}
	ok            bool
	origin, start timePoint
	// source is the leading run's video rendition, whose sequence numbers
	// the Writers' renditions take (store.Rendition.AlignWith).
	source atomic.Pointer[store.Rendition]
}

// NewTimeline returns a Timeline not placed yet.
func NewTimeline() *Timeline { return &Timeline{ready: make(chan struct{})} }

// Ready is closed once the leading run has placed the publish, or ended
// without video.
func (tl *Timeline) Ready() <-chan struct{} { return tl.ready }

func (tl *Timeline) publish(origin, start timePoint) {
	tl.once.Do(func() {
		tl.origin, tl.start, tl.ok = origin, start, true
		close(tl.ready)
	})
}

func (tl *Timeline) abandon() { tl.once.Do(func() { close(tl.ready) }) }
