package srt

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"time"

	gosrt "github.com/datarhei/gosrt"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/headwater-live/headwater/media"
)

// Ends of a read-out session that are not errors.
var (
	errStreamEnded = errors.New("the stream ended")
	errReaderLeft  = errors.New("the reader disconnected")
)

// reader is one read-out (m=request) SRT connection: the stream's frames
// muxed back to MPEG-TS.
type reader struct {
	srv    *Server
	id     string
	sid    StreamID
	remote string
	log    *slog.Logger
	conn   gosrt.Conn
	start  time.Time
	frames uint64
}

func newReader(srv *Server, id string, sid StreamID, remote string, log *slog.Logger, conn gosrt.Conn) *reader {
	return &reader{srv: srv, id: id, sid: sid, remote: remote, log: log, conn: conn, start: time.Now()}
}

func (r *reader) run() {
	defer r.srv.release(ModeRequest)
	r.srv.srtm.Readers.Inc()
	defer r.srv.srtm.Readers.Dec()
	untrack := r.srv.srtm.track(r.conn, r.sid.Name, dirSend)
	defer untrack()

	// The connection ends when the peer leaves; a reader sends nothing, so
	// a goroutine waiting in Read notices it.
	left := make(chan struct{})
	go func() {
		defer close(left)
		buf := make([]byte, 1500)
		for {
			if _, err := r.conn.Read(buf); err != nil {
				return
			}
		}
	}()

	err := r.serveSafe(left)
	_ = r.conn.Close()
	<-left

	attrs := []any{"duration", time.Since(r.start).Round(time.Millisecond), "frames", r.frames}
	switch {
	case err == nil, errors.Is(err, errStreamEnded), errors.Is(err, errReaderLeft), r.srv.life.Closed():
		r.log.Info("srt: reader disconnected", append(attrs, "why", fmt.Sprint(err))...)
	default:
		r.log.Warn("srt: reader failed", append(attrs, "err", err)...)
	}
}

func (r *reader) serveSafe(left <-chan struct{}) (err error) {
	defer func() {
		if rec := recover(); rec != nil {
			r.log.Error("srt: panic in reader session", "panic", fmt.Sprint(rec), "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error: %v", rec)
		}
	}()
	return r.serve(left)
}

func (r *reader) serve(left <-chan struct{}) error {
	st, live := r.srv.pub.Get(r.sid.Name)
	if !live {
		return errStreamEnded
	}
	sub := st.Subscribe(r.srv.cfg.ReadBuffer)
	defer func() {
		sub.Close()
		if n := sub.Dropped(); n > 0 {
			r.log.Info("srt: reader lost frames for being slow", "frames", n)
		}
	}()
	mux, err := newTSMuxer(r.conn, st.Tracks())
	if err != nil {
		return err
	}
	r.log.Info("srt: reading", "tracks", len(st.Tracks()))
	for {
		select {
		case f, ok := <-sub.Frames():
			if !ok {
				return errStreamEnded
			}
			if err := mux.write(f); err != nil {
				if errors.Is(err, io.EOF) {
					return errReaderLeft
				}
				return err
			}
			r.frames++
		case <-left:
			return errReaderLeft
		case <-r.srv.life.Done():
			return nil
		}
	}
}

// tsMuxer writes frames as MPEG-TS with mediacommon's Writer, in SRT
// payloads of 7 TS packets. It starts at the first video key frame (at the
// first frame without video) so that decoders get a clean start, and puts
// the parameter sets in front of key frames that lack them (streams
// ingested over RTMP carry them out of band only).
type tsMuxer struct {
	out    *chunkWriter
	w      *mpegts.Writer
	tracks map[int]*mpegts.Track // by media track ID

	hasVideo bool
	started  bool
	offset   int64 // added to the 90 kHz timestamps
}

func newTSMuxer(w io.Writer, tracks []*media.Track) (*tsMuxer, error) {
	m := &tsMuxer{out: &chunkWriter{w: w}, tracks: make(map[int]*mpegts.Track)}
	var list []*mpegts.Track
	for _, t := range tracks {
		var c codecs.Codec
		switch codec := t.Codec.(type) {
		case *media.H264:
			c = &codecs.H264{}
		case *media.H265:
			c = &codecs.H265{}
		case *media.AAC:
			c = &codecs.MPEG4Audio{Config: codec.Config}
		case *media.Opus:
			c = &codecs.Opus{ChannelCount: codec.ChannelCount} //nolint:staticcheck // the writer derives the descriptor
		default:
			continue
		}
		if c.IsVideo() {
			m.hasVideo = true
		}
		mt := &mpegts.Track{Codec: c}
		m.tracks[t.ID] = mt
		list = append(list, mt)
	}
	if len(list) == 0 {
		return nil, errors.New("no track can be muxed to MPEG-TS")
	}
	m.w = &mpegts.Writer{W: m.out, Tracks: list}
	if err := m.w.Initialize(); err != nil {
		return nil, fmt.Errorf("MPEG-TS writer: %w", err)
	}
	return m, nil
}

func (m *tsMuxer) write(f *media.Frame) error {
	t := m.tracks[f.Track.ID]
	if t == nil || len(f.Payload) == 0 {
		return nil
	}
	video := f.Track.Kind() == media.KindVideo
	if !m.started {
		if m.hasVideo && !(video && f.Key) {
			return nil
		}
		m.started = true
		m.offset = tsClockRate - media.Rescale(f.DTS, f.Track.ClockRate, tsClockRate) // start at 1s
	}
	ts := func(v int64) int64 {
		return (media.Rescale(v, f.Track.ClockRate, tsClockRate) + m.offset) & tsMask
	}
	var err error
	switch f.Track.Codec.(type) {
	case *media.H264:
		au := media.VideoNALUs(f, media.KeepDelimiters)
		if au == nil {
			return nil
		}
		err = m.w.WriteH264(t, ts(f.PTS), ts(f.DTS), au)
	case *media.H265:
		au := media.VideoNALUs(f, media.KeepDelimiters)
		if au == nil {
			return nil
		}
		err = m.w.WriteH265(t, ts(f.PTS), ts(f.DTS), au)
	case *media.AAC:
		err = m.w.WriteMPEG4Audio(t, ts(f.PTS), [][]byte{f.Payload})
	case *media.Opus:
		err = m.w.WriteOpus(t, ts(f.PTS), [][]byte{f.Payload})
	}
	if err != nil {
		return err
	}
	return m.out.flush()
}

// chunkWriter buffers the muxer's output and writes it in SRT payloads of
// 7 TS packets.
type chunkWriter struct {
	w   io.Writer
	buf []byte
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func (c *chunkWriter) flush() error {
	b := c.buf
	for len(b) > 0 {
		n := min(len(b), payloadSize)
		if _, err := c.w.Write(b[:n]); err != nil {
			c.buf = c.buf[:0]
			return err
		}
		b = b[n:]
	}
	c.buf = c.buf[:0]
	return nil
}
