package rtsp

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmpeg4audio"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpsimpleaudio"
	"github.com/bluenviron/gortsplib/v5/pkg/liberrors"
	"github.com/pion/rtp"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

// Payload types of what readers receive.
const (
	videoPayloadType = 96
	audioPayloadType = 97
)

// outTrack packetizes one track of a stream for one reader.
type outTrack struct {
	id       int
	video    bool
	media    *description.Media
	h264     *rtph264.Encoder
	h265     *rtph265.Encoder
	aac      *rtpmpeg4audio.Encoder
	opus     *rtpsimpleaudio.Encoder
	tsOffset uint32
}

func randUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return binary.BigEndian.Uint32(b[:])
}

// describe builds the session description of a stream's tracks and the
// packetizers of a reader. With controls, the medias carry the
// "trackID=N" controls that gortsplib gives a ServerStream's (DESCRIBE
// answers are built here, SETUP uses a ServerStream).
func describe(tracks []*media.Track, controls bool) (*description.Session, []*outTrack, error) {
	desc := &description.Session{}
	var outs []*outTrack
	for _, t := range tracks {
		ot := &outTrack{id: t.ID, tsOffset: randUint32()}
		var f format.Format
		var err error
		switch c := t.Codec.(type) {
		case *media.H264:
			ff := &format.H264{PayloadTyp: videoPayloadType, SPS: c.SPS, PPS: c.PPS, PacketizationMode: 1}
			ot.h264, err = ff.CreateEncoder()
			f, ot.video = ff, true
		case *media.H265:
			ff := &format.H265{PayloadTyp: videoPayloadType, VPS: c.VPS, SPS: c.SPS, PPS: c.PPS}
			ot.h265, err = ff.CreateEncoder()
			f, ot.video = ff, true
		case *media.AAC:
			cfg := c.Config
			ff := &format.MPEG4Audio{PayloadTyp: audioPayloadType, Config: &cfg, SizeLength: 13, IndexLength: 3, IndexDeltaLength: 3}
			ot.aac, err = ff.CreateEncoder()
			f = ff
		case *media.Opus:
			ff := &format.Opus{PayloadTyp: audioPayloadType, ChannelCount: c.ChannelCount}
			ot.opus, err = ff.CreateEncoder()
			f = ff
		default:
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("%s packetizer: %w", t.Codec.Name(), err)
		}
		typ := description.MediaTypeAudio
		if ot.video {
			typ = description.MediaTypeVideo
		}
		ot.media = &description.Media{Type: typ, Formats: []format.Format{f}}
		if controls {
			ot.media.Control = "trackID=" + strconv.Itoa(len(desc.Medias))
		}
		desc.Medias = append(desc.Medias, ot.media)
		outs = append(outs, ot)
	}
	if len(outs) == 0 {
		return nil, nil, fmt.Errorf("no track can be sent over RTSP")
	}
	return desc, outs, nil
}

// packetize turns a frame into RTP packets (timestamps relative to 0).
func (ot *outTrack) packetize(f *media.Frame) ([]*rtp.Packet, error) {
	switch f.Track.Codec.(type) {
	case *media.H264:
		if ot.h264 == nil {
			return nil, nil
		}
		if au := media.VideoNALUs(f, media.DropDelimiters); au != nil {
			return ot.h264.Encode(au)
		}
		return nil, nil
	case *media.H265:
		if ot.h265 == nil {
			return nil, nil
		}
		if au := media.VideoNALUs(f, media.DropDelimiters); au != nil {
			return ot.h265.Encode(au)
		}
		return nil, nil
	case *media.AAC:
		if ot.aac == nil || len(f.Payload) == 0 {
			return nil, nil
		}
		return ot.aac.Encode([][]byte{f.Payload})
	case *media.Opus:
		if ot.opus == nil || len(f.Payload) == 0 {
			return nil, nil
		}
		pkt, err := ot.opus.Encode(f.Payload)
		if err != nil {
			return nil, err
		}
		return []*rtp.Packet{pkt}, nil
	}
	return nil, nil
}

// lookup finds a live stream. For an on-demand source that is not live
// it asks the source to connect and waits up to OnDemandTimeout for it.
func (s *Server) lookup(name string) (*media.Stream, bool) {
	if st, ok := s.reg.Get(name); ok {
		return st, true
	}
	s.mu.Lock()
	src := s.sources[name]
	s.mu.Unlock()
	if src == nil || !src.cfg.OnDemand {
		return nil, false
	}
	src.demand()
	t := time.NewTimer(s.cfg.OnDemandTimeout)
	defer t.Stop()
	tick := time.NewTicker(onDemandPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.C:
			return nil, false
		case <-s.life.Done():
			return nil, false
		case <-tick.C:
			if st, ok := s.reg.Get(name); ok {
				return st, true
			}
		}
	}
}

// OnDescribe answers with the SDP of a live stream, whatever published it.
func (h *handler) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	s := h.s
	name := pathName(ctx.Path)
	if res, err := s.authorizeRead(ctx.Conn, ctx.Request, name, ctx.Query); res != nil {
		return res, nil, err
	}
	st, ok := s.lookup(name)
	if !ok {
		s.log.Debug("rtsp: describe of a stream that is not live", "stream", name, "remote", remoteOf(ctx.Conn))
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	desc, _, err := describe(st.Tracks(), true)
	if err != nil {
		return &base.Response{StatusCode: base.StatusUnsupportedMediaType}, nil, nil
	}
	body, err := desc.Marshal()
	if err != nil {
		return &base.Response{StatusCode: base.StatusInternalServerError}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK, Body: body}, nil, nil
}

// readSession is one reader: SETUP (per media), PLAY. It has its own
// ServerStream and media.Subscription.
type readSession struct {
	srv    *Server
	ss     *gortsplib.ServerSession
	id     string
	remote string
	name   string
	log    *slog.Logger
	st     *media.Stream
	stream *gortsplib.ServerStream
	outs   map[int]*outTrack
	video  bool // the stream has a video track
	start  time.Time

	sub        *media.Subscription // from PLAY
	relayDone  chan struct{}       // closed when the relay goroutine ends
	active     chan struct{}       // closed once PLAY's response is out
	activeOnce sync.Once
	done       chan struct{} // closed by finish
	needKey    atomic.Bool   // the send queue overflowed: skip to the next key frame
	overflows  atomic.Uint64

	// relay goroutine only
	begun  bool
	frames uint64
}

// setupRead answers a reader's SETUP.
func (h *handler) setupRead(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	s := h.s
	if rd, ok := s.sessionState(ctx.Session).(*readSession); ok {
		if rd.name != pathName(ctx.Path) {
			return &base.Response{StatusCode: base.StatusBadRequest}, nil, liberrors.ErrServerMediasDifferentPaths{}
		}
		return &base.Response{StatusCode: base.StatusOK}, rd.stream, nil
	}
	if ctx.Session.State() != gortsplib.ServerSessionStateInitial {
		return &base.Response{StatusCode: base.StatusBadRequest}, nil, liberrors.ErrServerInvalidState{}
	}
	name := pathName(ctx.Path)
	remote := remoteOf(ctx.Conn)
	if res, err := s.authorizeRead(ctx.Conn, ctx.Request, name, ctx.Query); res != nil {
		return res, nil, err
	}
	st, ok := s.lookup(name)
	if !ok {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	rd := &readSession{
		srv: s, ss: ctx.Session, id: ingest.NewSessionID(), remote: remote, name: name, st: st,
		outs: make(map[int]*outTrack), start: time.Now(),
		active: make(chan struct{}), done: make(chan struct{}),
	}
	rd.log = s.log.With("session", rd.id, "stream", name, "remote", remote)
	if !s.acquire(true) {
		rd.log.Warn("rtsp: reader refused", "err", fmt.Errorf("rtsp %s: %d RTSP readers already", remote, s.cfg.MaxReaders))
		return &base.Response{StatusCode: base.StatusServiceUnavailable}, nil, nil
	}
	desc, outs, err := describe(st.Tracks(), false)
	if err == nil {
		rd.stream = &gortsplib.ServerStream{Server: s.rtsp, Desc: desc}
		err = rd.stream.Initialize()
	}
	if err != nil {
		s.release(true)
		rd.log.Warn("rtsp: reader refused", "err", fmt.Errorf("rtsp %s: %w", remote, err))
		return &base.Response{StatusCode: base.StatusInternalServerError}, nil, nil
	}
	for _, ot := range outs {
		rd.outs[ot.id] = ot
		rd.video = rd.video || ot.video
	}
	s.mu.Lock()
	s.sessions[ctx.Session] = rd
	s.readersOf[name]++
	s.mu.Unlock()
	s.rm.Readers.Inc()
	rd.log.Info("rtsp: reader", "transport", ctx.Transport.Protocol.String(), "publisher", st.Info().Protocol)
	return &base.Response{StatusCode: base.StatusOK}, rd.stream, nil
}

// OnPlay subscribes the reader to its stream; the relay starts writing once
// gortsplib has sent the response (OnResponse).
func (h *handler) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	s := h.s
	rd, ok := s.sessionState(ctx.Session).(*readSession)
	if !ok {
		return &base.Response{StatusCode: base.StatusBadRequest}, liberrors.ErrServerInvalidState{}
	}
	if rd.sub != nil { // a second PLAY
		s.started(ctx.Conn)
		return &base.Response{StatusCode: base.StatusOK}, nil
	}
	rd.sub = rd.st.Subscribe(s.cfg.ReadBuffer)
	rd.relayDone = make(chan struct{})
	s.mu.Lock()
	s.pendingPlay[ctx.Conn] = rd
	s.mu.Unlock()
	s.started(ctx.Conn)
	s.life.Go(rd.relay)
	return &base.Response{StatusCode: base.StatusOK}, nil
}

func (rd *readSession) activate() {
	rd.activeOnce.Do(func() { close(rd.active) })
}

// relay writes the subscription's frames to the reader, from the first key
// frame on.
func (rd *readSession) relay() {
	defer close(rd.relayDone)
	select {
	case <-rd.active:
	case <-rd.done:
		return
	}
	frames := rd.sub.Frames()
	for {
		select {
		case f, ok := <-frames:
			if !ok {
				rd.ss.Close() // the stream ended
				return
			}
			if err := rd.write(f); err != nil {
				rd.ss.Close()
				return
			}
		case <-rd.done:
			return
		}
	}
}

func (rd *readSession) write(f *media.Frame) error {
	ot := rd.outs[f.Track.ID]
	if ot == nil {
		return nil
	}
	keyStart := !rd.video || (ot.video && f.Key)
	if !rd.begun {
		if !keyStart {
			return nil
		}
		rd.begun = true
	}
	if rd.needKey.Load() {
		if !keyStart {
			return nil
		}
		rd.needKey.Store(false)
	}
	pkts, err := ot.packetize(f)
	if err != nil {
		rd.log.Debug("rtsp: cannot packetize a frame", "err", err)
		return nil
	}
	ts := ot.tsOffset + uint32(f.PTS)
	ntp := rd.st.Started().Add(f.PTSDuration())
	for _, pkt := range pkts {
		pkt.Timestamp += ts
		if err := rd.stream.WritePacketRTPWithNTP(ot.media, pkt, ntp); err != nil {
			return err
		}
	}
	rd.frames++
	return nil
}

// overflow runs (on the relay goroutine) when a packet did not fit in the
// reader's send queue.
func (rd *readSession) overflow(err error) {
	if rd.needKey.Swap(true) {
		return // already skipping
	}
	rd.srv.rm.ReaderOverflows.Inc()
	if rd.overflows.Add(1) == 1 {
		rd.log.Info("rtsp: reader too slow; skipping to the next key frame (logged once)", "err", err)
	}
}

// finish ends the relay and releases the reader's resources.
func (rd *readSession) finish(sessErr error) {
	s := rd.srv
	close(rd.done)
	if rd.sub != nil {
		rd.sub.Close()
		<-rd.relayDone
	}
	rd.stream.Close()
	s.mu.Lock()
	if s.readersOf[rd.name]--; s.readersOf[rd.name] <= 0 {
		delete(s.readersOf, rd.name)
	}
	s.mu.Unlock()
	s.release(true)
	s.rm.Readers.Dec()
	attrs := []any{"duration", time.Since(rd.start).Round(time.Millisecond), "frames", rd.frames, "why", fmt.Sprint(sessErr)}
	if rd.sub != nil {
		if n := rd.sub.Dropped(); n > 0 {
			attrs = append(attrs, "dropped", n)
		}
	}
	if n := rd.overflows.Load(); n > 0 {
		attrs = append(attrs, "overflows", n)
	}
	rd.log.Info("rtsp: reader disconnected", attrs...)
}
