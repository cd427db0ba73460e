package gopqueue

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/transcoder"
)

// wireVersion is the version of the job, input and result messages. A
// worker terms a job of another version as invalid (counted): owners and
// workers of one cluster are upgraded together.
const wireVersion = 2

// jobMeta is a job message's metadata: the job without its input, where to
// send results and whether the input follows or stays with the owner.
type jobMeta struct {
	V     int    `json:"v"`
	Key   string `json:"key"`
	Node  string `json:"node"`
	Reply string `json:"reply"`
	// Job is the transcoder job with Input empty.
	Job transcoder.Job `json:"job"`
	// InputSize is len(Job.Input).
	InputSize int `json:"input_size"`
	// Held means the input stayed on the owner (a claim check): the worker
	// asks for it on InputSubjectPrefix.<node>.<key>. Otherwise the input
	// follows the metadata in the job message.
	Held bool `json:"held,omitempty"`
	// InputURL, when set, is where the owner serves the held input over
	// HTTP, with Token in the request's hdrToken header.
	InputURL string `json:"input_url,omitempty"`
	Token    string `json:"token,omitempty"`
}

// encodeJob is a job message: the metadata's length (4 bytes, big endian),
// the metadata as JSON, then the inline input, if any.
func encodeJob(m *jobMeta, inline []byte) ([]byte, error) {
	meta, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding job %s: %w", m.Key, err)
	}
	b := make([]byte, 4, 4+len(meta)+len(inline))
	binary.BigEndian.PutUint32(b, uint32(len(meta)))
	b = append(b, meta...)
	return append(b, inline...), nil
}

// decodeJob reads a job message; the inline input aliases data.
func decodeJob(data []byte) (*jobMeta, []byte, error) {
	if len(data) < 4 {
		return nil, nil, errors.New("short job message")
	}
	n := int(binary.BigEndian.Uint32(data))
	if n > len(data)-4 {
		return nil, nil, errors.New("job metadata longer than the message")
	}
	m := &jobMeta{}
	if err := json.Unmarshal(data[4:4+n], m); err != nil {
		return nil, nil, fmt.Errorf("job metadata: %w", err)
	}
	if m.V != wireVersion {
		return nil, nil, fmt.Errorf("job message version %d, want %d", m.V, wireVersion)
	}
	return m, data[4+n:], nil
}

// Input messages. A worker's request for a held input is its wire
// version and the largest chunk it takes (uvarints). The owner answers on
// the request's reply subject with the input's chunks, in order: each
// message's data is a piece of the input (not copied into a frame of our
// own) and its header hdrOffset the piece's offset in decimal; or with one
// message whose header hdrInput is inputGone when it no longer has the job.
const (
	hdrOffset = "Headwater-Offset"
	hdrInput  = "Headwater-Input"
	inputGone = "gone" // done, canceled, expired, or another incarnation's
)

func encodeInputRequest(maxChunk int) []byte {
	b := binary.AppendUvarint(nil, wireVersion)
	return binary.AppendUvarint(b, uint64(maxChunk))
}

func decodeInputRequest(data []byte) (int, error) {
	r := reader{b: data}
	v, c := r.uvarint(), r.uvarint()
	switch {
	case r.err != nil:
		return 0, r.err
	case v != wireVersion:
		return 0, fmt.Errorf("input request version %d, want %d", v, wireVersion)
	case c < 1024 || c > 1<<30:
		return 0, fmt.Errorf("input request for chunks of %d bytes", c)
	}
	return int(c), nil
}

// Kinds of result messages (their first byte).
const (
	kindStart  byte = 1 // a delivery of the job started on a worker
	kindFrame  byte = 2 // one output frame
	kindResult byte = 3 // the final result of a delivery
)

// Codec types in a frame message.
const (
	codecNone byte = 0
	codecH264 byte = 1
	codecH265 byte = 2
)

// wireFrame is a decoded frame message.
type wireFrame struct {
	delivery  uint64
	attempt   int
	rendition int // index in the job's renditions
	k         int
	codec     media.Codec
	frame     transcoder.OutFrame
}

func encodeStart(delivery uint64) []byte {
	return binary.AppendUvarint([]byte{kindStart}, delivery)
}

// encodeFrame is a frame message: kind, delivery, attempt, rendition
// index, k, DTS, PTS, key flag, the codec's parameter sets, then the AU.
func encodeFrame(delivery uint64, attempt, rendition, k int, codec media.Codec, f transcoder.OutFrame) []byte {
	b := make([]byte, 0, 64+len(f.AU)+codecSize(codec))
	b = append(b, kindFrame)
	b = binary.AppendUvarint(b, delivery)
	b = binary.AppendUvarint(b, uint64(attempt))
	b = binary.AppendUvarint(b, uint64(rendition))
	b = binary.AppendUvarint(b, uint64(k))
	b = binary.AppendVarint(b, f.DTS)
	b = binary.AppendVarint(b, f.PTS)
	if f.Key {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	switch c := codec.(type) {
	case *media.H264:
		b = append(b, codecH264)
		b = appendBytes(b, c.SPS)
		b = appendBytes(b, c.PPS)
	case *media.H265:
		b = append(b, codecH265)
		b = appendBytes(b, c.VPS)
		b = appendBytes(b, c.SPS)
		b = appendBytes(b, c.PPS)
	default:
		b = append(b, codecNone)
	}
	return append(b, f.AU...)
}

func codecSize(c media.Codec) int {
	switch c := c.(type) {
	case *media.H264:
		return len(c.SPS) + len(c.PPS) + 8
	case *media.H265:
		return len(c.VPS) + len(c.SPS) + len(c.PPS) + 12
	}
	return 0
}

func appendBytes(b, p []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// reader decodes the fields of a result or input message.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated message")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated message")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = errors.New("truncated message")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errors.New("truncated message")
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

// decodeFrame reads a frame message (after its kind byte); the AU and
// parameter sets alias data.
func decodeFrame(data []byte) (wireFrame, error) {
	r := reader{b: data}
	var w wireFrame
	w.delivery = r.uvarint()
	w.attempt = int(r.uvarint())
	w.rendition = int(r.uvarint())
	w.k = int(r.uvarint())
	w.frame.DTS = r.varint()
	w.frame.PTS = r.varint()
	w.frame.Key = r.byte() == 1
	switch r.byte() {
	case codecH264:
		w.codec = &media.H264{SPS: r.bytes(), PPS: r.bytes()}
	case codecH265:
		w.codec = &media.H265{VPS: r.bytes(), SPS: r.bytes(), PPS: r.bytes()}
	}
	if r.err != nil {
		return w, r.err
	}
	w.frame.AU = r.b
	return w, nil
}

// wireResult is the final result of a delivery: the outcome of each
// rendition and how many frames were streamed for it (the frames
// themselves went out as frame messages, they are not repeated).
type wireResult struct {
	Renditions []wireRendition `json:"renditions"`
	// Attempt is the worker's last local attempt (the frames counted are
	// that attempt's).
	Attempt int           `json:"attempt"`
	Retried bool          `json:"retried,omitempty"`
	Err     string        `json:"err,omitempty"`
	Wall    time.Duration `json:"wall"`
	CPU     time.Duration `json:"cpu"`
}

type wireRendition struct {
	Name    string `json:"name"`
	Outcome string `json:"outcome"`
	Reason  string `json:"reason,omitempty"`
	Frames  int    `json:"frames"`
}

func encodeResult(delivery uint64, res *wireResult) ([]byte, error) {
	js, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("encoding a result: %w", err)
	}
	b := binary.AppendUvarint([]byte{kindResult}, delivery)
	return append(b, js...), nil
}

func decodeResult(data []byte) (uint64, *wireResult, error) {
	r := reader{b: data}
	d := r.uvarint()
	if r.err != nil {
		return 0, nil, r.err
	}
	res := &wireResult{}
	if err := json.Unmarshal(r.b, res); err != nil {
		return 0, nil, fmt.Errorf("result: %w", err)
	}
	return d, res, nil
}

// shedResult is the result of a delivery that runs none of its
// renditions (reason "late", "failed", ...).
func shedResult(rs []transcoder.Rendition, outcome, reason, err string) *wireResult {
	res := &wireResult{Err: err}
	for _, r := range rs {
		res.Renditions = append(res.Renditions, wireRendition{Name: r.Name, Outcome: outcome, Reason: reason})
	}
	return res
}
