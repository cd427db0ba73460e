package recording

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Session states, in Summary.State.
const (
	// StateRecording is a session being written now (or, when no node is
	// writing it any more, one that has yet to be found interrupted).
	StateRecording = "recording"
	// StateComplete is a session whose publish ended and whose every
	// object was handed to storage.
	StateComplete = "complete"
	// StateInterrupted is a session whose recorder stopped before its
	// publish ended (Headwater was killed or crashed): it holds what was
	// spooled until then.
	StateInterrupted = "interrupted"
)

// SessionLayout is the time layout of a session id: the UTC time the
// publish started, to the millisecond ("20261207T161800.123Z"). Ids sort
// in time order and never contain a '/'.
const SessionLayout = "20060102T150405.000Z"

// NewSessionID returns the session id of a publish that started at t.
func NewSessionID(t time.Time) string { return t.UTC().Format(SessionLayout) }

// IsSessionID reports whether s has the form of a session id.
func IsSessionID(s string) bool {
	if len(s) != len(SessionLayout) {
		return false
	}
	_, err := time.Parse(SessionLayout, s)
	return err == nil
}

// Object keys. Media, index and keys live under separate prefixes so
// that an index or a key is never listed with media, and keys can be given
// other access rules (or another bucket policy) than media:
//
//	media/<stream>/<session>/<rendition>/init.mp4, seg<N>.m4s
//	media/<stream>/<session>/thumbs/sprite-<i>.jpg, thumbnails.vtt
//	index/<stream>/<session>.json          the session's Summary
//	index/<stream>/<session>/<chunk>.json  its segment entries, in chunks
//	keys/<stream>/<session>.json           AES-128 keys of an encrypted stream

// MediaPrefix is where a session's media objects are kept ("media/live/key/<session>/").
func MediaPrefix(stream, session string) string {
	return "media/" + stream + "/" + session + "/"
}

// MediaKey is the key of one media object of a session's rendition.
func MediaKey(stream, session, rendition, object string) string {
	return MediaPrefix(stream, session) + rendition + "/" + object
}

// SummaryKey is the key of a session's Summary.
func SummaryKey(stream, session string) string {
	return "index/" + stream + "/" + session + ".json"
}

// ChunkKey is the key of one chunk of a session's segment entries.
func ChunkKey(stream, session string, chunk int) string {
	return fmt.Sprintf("index/%s/%s/%06d.json", stream, session, chunk)
}

// IndexPrefix is the prefix of every index object of a stream's sessions.
func IndexPrefix(stream string) string { return "index/" + stream + "/" }

// parseSummaryKey returns the stream and session of a Summary key, or
// false when key is not one (a chunk, or another object).
func parseSummaryKey(key string) (stream, session string, ok bool) {
	rest, found := strings.CutPrefix(key, "index/")
	if !found {
		return "", "", false
	}
	rest, found = strings.CutSuffix(rest, ".json")
	if !found {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 || !IsSessionID(rest[i+1:]) {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

// Summary describes one recorded session: one publish of a stream. It is
// rewritten as the session goes on; its segment entries are in chunks.
type Summary struct {
	// Stream is the stream's name ("live/key").
	Stream string `json:"stream"`
	// Session is the session id (NewSessionID of Started).
	Session string `json:"session"`
	// Node is the id of the node that recorded it.
	Node string `json:"node"`
	// State is StateRecording, StateComplete or StateInterrupted.
	State string `json:"state"`
	// Started is when the publish started; Ended when it ended (zero while
	// recording).
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
	// Updated is when the summary was last written.
	Updated time.Time `json:"updated"`
	// Epoch is the publish's epoch in its live stream.
	Epoch int `json:"epoch"`
	// Renditions describe what each rendition carries.
	Renditions []RenditionMeta `json:"renditions"`
	// Chunks is the number of entry chunks written (0..Chunks-1).
	Chunks int `json:"chunks"`
	// Segments, Gaps and Bytes total the entries so far.
	Segments int   `json:"segments"`
	Gaps     int   `json:"gaps"`
	Bytes    int64 `json:"bytes"`
	// Duration is the longest rendition's recorded duration.
	Duration Seconds `json:"duration"`
	// Encrypted is true when the live stream was served with AES-128:
	// the media is recorded in the clear and played back encrypted with
	// the session's key, stored at KeysKey.
	Encrypted bool `json:"encrypted,omitempty"`
	// Ready is true once recording.ready was announced: everything was
	// stored. A session that ended but is not Ready (the node stopped
	// while uploading) is announced by Recover after a restart.
	Ready bool `json:"ready,omitempty"`
}

// RenditionMeta is what a player needs to know of a recorded rendition.
type RenditionMeta struct {
	Name       string  `json:"name"`
	Kind       string  `json:"kind"` // "video" or "audio"
	Codec      string  `json:"codec"`
	Timescale  uint32  `json:"timescale"`
	Width      int     `json:"width,omitempty"`
	Height     int     `json:"height,omitempty"`
	FrameRate  float64 `json:"frame_rate,omitempty"`
	SampleRate int     `json:"sample_rate,omitempty"`
	Channels   int     `json:"channels,omitempty"`
	// SegmentTarget and PartTarget are the live stream's targets.
	SegmentTarget Seconds `json:"segment_target"`
	PartTarget    Seconds `json:"part_target,omitempty"`
}

// Entry is one recorded segment (or gap) of a rendition.
type Entry struct {
	// Rendition names the rendition.
	Rendition string `json:"r"`
	// MSN is the live segment's media sequence number.
	MSN uint64 `json:"msn"`
	// Time is the segment's decode time (tfdt) in the rendition's timescale
	// and Ticks its duration in the same units.
	Time  uint64 `json:"t"`
	Ticks uint64 `json:"d"`
	// PDT is the wall-clock time of the segment's first frame.
	PDT time.Time `json:"pdt"`
	// Init names the init section the segment needs.
	Init string `json:"init,omitempty"`
	// Size is the segment's length in bytes (0 for a gap).
	Size int `json:"size,omitempty"`
	// Disc marks a discontinuity before the segment (a codec change, the
	// first segment after a republish).
	Disc bool `json:"disc,omitempty"`
	// Gap marks a segment that is missing: a failed transcode, or one the
	// recorder could not get (Missed).
	Gap bool `json:"gap,omitempty"`
	// Missed marks a gap the recorder itself caused (it fell behind the
	// live window), as opposed to one the live stream had.
	Missed bool `json:"missed,omitempty"`
}

// Chunk is one stored chunk of entries.
type Chunk struct {
	Entries []Entry `json:"entries"`
}

// Seconds is a duration written in JSON as seconds.
type Seconds time.Duration

// MarshalJSON writes the duration in seconds, to the millisecond.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.3f", time.Duration(s).Seconds())), nil
}

// UnmarshalJSON reads a number of seconds.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("seconds: %w", err)
	}
	*s = Seconds(time.Duration(f * float64(time.Second)))
	return nil
}

// D returns s as a time.Duration.
func (s Seconds) D() time.Duration { return time.Duration(s) }
