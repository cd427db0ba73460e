package srt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosrt "github.com/datarhei/gosrt"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

const (
	// trackWait is how long frames of ready tracks are buffered while
	// another track waits for its parameter sets and first key frame; then
	// the stream is published without it.
	trackWait = 5 * time.Second
	// maxPendingFrames bounds the frames buffered before the publish.
	maxPendingFrames = 2048
)

// Idle causes, set by the watchdog before it closes the connection.
const (
	idleNone int32 = iota
	idleNoData
	idleNoMedia
	idleNoPublish // the publish deadline passed before the stream was published
)

// publisher is one publishing SRT connection.
type publisher struct {
	srv    *Server
	id     string
	sid    StreamID
	name   string
	remote string
	log    *slog.Logger
	m      *ingest.ProtocolMetrics

	conn      io.Closer // nil when serving a plain reader (tests, fuzzing)
	holdsSlot bool      // holds one of the server's publisher slots
	r         io.Reader // counts bytes and renews lastData
	stats     statser
	untrack   func()
	authReq   *auth.PublishRequest // the publish Config.Auth allowed, for Unpublished

	dmx       demuxer
	rt        *retimer
	stream    *media.Stream
	pending   []demuxFrame
	firstSeen time.Time
	have      [3]bool // track ids with frames
	announced [3]bool // track ids announced to Publish
	warned    map[string]bool

	stopKick func() bool
	kickDone chan struct{}
	kicked   bool // set before kickDone is closed

	start       time.Time
	publishedAt time.Time
	lastData    atomic.Int64 // unix nanoseconds
	lastFrame   atomic.Int64
	idle        atomic.Int32
	published   atomic.Bool // the stream is published (the publish deadline is met)
	bytes       atomic.Uint64
	frames      uint64
	demuxErrors uint64
}

func newPublisher(srv *Server, id string, sid StreamID, remote string, log *slog.Logger, conn gosrt.Conn) *publisher {
	p := newPublisherFrom(srv, id, sid, remote, log, conn)
	p.conn = conn
	p.stats = conn
	p.holdsSlot = true
	return p
}

// newPublisherFrom makes a publisher reading the TS from r.
func newPublisherFrom(srv *Server, id string, sid StreamID, remote string, log *slog.Logger, r io.Reader) *publisher {
	p := &publisher{
		srv:    srv,
		id:     id,
		sid:    sid,
		name:   sid.Name,
		remote: remote,
		log:    log,
		m:      srv.metrics,
		warned: make(map[string]bool),
		start:  time.Now(),
	}
	p.r = &dataReader{r: r, p: p}
	p.lastData.Store(p.start.UnixNano())
	p.lastFrame.Store(p.start.UnixNano())
	p.dmx = demuxer{log: log, onError: p.demuxError, emit: p.onFrame}
	return p
}

// dataReader counts the bytes read and renews the publisher's lastData.
type dataReader struct {
	r io.Reader
	p *publisher
}

func (r *dataReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if n > 0 {
		r.p.lastData.Store(time.Now().UnixNano())
		r.p.bytes.Add(uint64(n))
		r.p.m.Bytes.Add(float64(n))
	}
	return n, err
}

func (p *publisher) run() {
	p.log.Info("srt: publisher connected", "user", p.sid.User)
	if p.stats != nil {
		p.untrack = p.srv.srtm.track(p.stats, p.name, dirReceive)
	}
	wd := p.startWatchdog()
	// However much it sends, a publisher that does not get its stream
	// published in time is dropped: nothing is buffered for it for longer.
	deadline := time.AfterFunc(p.srv.cfg.PublishDeadline, func() {
		if !p.published.Load() && p.idle.CompareAndSwap(idleNone, idleNoPublish) {
			p.closeConn()
		}
	})
	err := p.serveSafe()
	deadline.Stop()
	wd.stop()
	p.finish()
	p.report(err)
}

// serveSafe runs the session, turning a panic into an internal error.
func (p *publisher) serveSafe() (err error) {
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("srt: panic in publisher session", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			err = &ingest.SessionError{Reason: ingest.ReasonInternal, Err: fmt.Errorf("internal error: %v", r)}
		}
	}()
	return p.serve()
}

func (p *publisher) serve() error {
	if err := p.dmx.init(p.r); err != nil {
		if errors.Is(err, io.EOF) && p.bytes.Load() > 0 && p.idle.Load() == idleNone {
			return ingest.ProtocolError("the stream ended before an MPEG-TS program (PAT/PMT) was found")
		}
		return err
	}
	var tracks []string
	if v := p.dmx.video; v != nil {
		codec := "H.264"
		if v.hevc {
			codec = "H.265"
		}
		tracks = append(tracks, fmt.Sprintf("PID %d: %s", v.pid, codec))
	}
	if a := p.dmx.audio; a != nil {
		tracks = append(tracks, fmt.Sprintf("PID %d: %s", a.pid, a.track.Codec.RFC6381()))
	}
	p.log.Info("srt: MPEG-TS program", "tracks", strings.Join(tracks, ", "))
	if len(p.dmx.ignored) > 0 {
		p.log.Warn("srt: ignoring tracks", "tracks", strings.Join(p.dmx.ignored, ", "))
	}
	for {
		if err := p.dmx.step(); err != nil {
			return err
		}
	}
}

func (p *publisher) demuxError(err error) {
	p.demuxErrors++
	p.srv.srtm.DemuxErrors.Inc()
	switch {
	case p.demuxErrors <= 5:
		p.log.Warn("srt: MPEG-TS decoding error", "err", err, "errors", p.demuxErrors)
	case p.demuxErrors%1000 == 0:
		p.log.Warn("srt: MPEG-TS decoding errors go on", "err", err, "errors", p.demuxErrors)
	default:
		p.log.Debug("srt: MPEG-TS decoding error", "err", err, "errors", p.demuxErrors)
	}
}

func (p *publisher) warnOnce(key, msg string, args ...any) {
	if p.warned[key] {
		return
	}
	p.warned[key] = true
	p.log.Warn(msg, args...)
}

// onFrame receives the demuxer's frames: they are buffered until the tracks
// are known, then written.
func (p *publisher) onFrame(df demuxFrame) error {
	p.lastFrame.Store(time.Now().UnixNano())
	id := df.f.Track.ID
	if p.stream == nil {
		if p.firstSeen.IsZero() {
			p.firstSeen = time.Now()
		}
		p.have[id] = true
		p.pending = append(p.pending, df)
		if p.readyToPublish() {
			return p.publish()
		}
		return nil
	}
	if !p.announced[id] {
		p.warnOnce(fmt.Sprintf("late-%d", id), "srt: ignoring a track that started after the stream was published without it",
			"kind", df.f.Track.Kind().String())
		return nil
	}
	p.write(df)
	return nil
}

// readyToPublish tells whether every ingested track has frames, or the
// others waited long enough.
func (p *publisher) readyToPublish() bool {
	complete := (p.dmx.video == nil || p.have[videoTrackID]) && (p.dmx.audio == nil || p.have[audioTrackID])
	return complete || time.Since(p.firstSeen) >= trackWait || len(p.pending) >= maxPendingFrames
}

func (p *publisher) publish() error {
	var tracks []*media.Track
	for _, t := range p.dmx.tracks() {
		if p.have[t.ID] {
			tracks = append(tracks, t)
			p.announced[t.ID] = true
		}
	}
	if !p.announced[videoTrackID] && p.dmx.video != nil {
		p.log.Warn("srt: publishing without video: no key frame with parameter sets arrived in time",
			"waited", time.Since(p.firstSeen).Round(time.Millisecond), "frames_dropped", p.dmx.video.droppedBeforeKey)
	}
	info := media.PublishInfo{Protocol: Protocol, RemoteAddr: p.remote, SessionID: p.id, Backup: p.sid.Backup()}
	st, err := p.srv.pub.Publish(p.name, info, tracks)
	if err != nil {
		return &ingest.SessionError{Reason: ingest.PublishReason(err), Err: err}
	}
	p.stream = st
	p.published.Store(true)
	p.publishedAt = time.Now()
	p.m.Sessions.Inc()
	p.kickDone = make(chan struct{})
	p.stopKick = context.AfterFunc(st.Context(), func() {
		p.kicked = true
		p.closeConn()
		close(p.kickDone)
	})
	var desc []string
	for _, t := range tracks {
		desc = append(desc, t.Codec.RFC6381())
	}
	p.log.Info("srt: publishing", "tracks", strings.Join(desc, ","), "buffered_frames", len(p.pending))

	p.rt = newRetimer(p.pending)
	for _, df := range p.pending {
		if p.announced[df.f.Track.ID] {
			p.write(df)
		}
	}
	p.pending = nil
	if p.srv.testHookPublished != nil {
		p.srv.testHookPublished(p)
	}
	return nil
}

func (p *publisher) write(df demuxFrame) {
	clamped := p.rt.videoClamped
	p.rt.apply(df)
	if p.rt.videoClamped > clamped {
		p.warnOnce("video-backwards", "srt: video DTS not increasing; moved forward", "dts", df.f.DTS)
	}
	p.stream.WriteFrame(df.f)
	p.m.Frame(df.f.Track.Kind())
	p.frames++
}

func (p *publisher) closeConn() {
	if p.conn != nil {
		_ = p.conn.Close()
	}
}

// finish releases what the session holds: it closes the stream exactly once.
func (p *publisher) finish() {
	if p.stopKick != nil && !p.stopKick() {
		<-p.kickDone // the kick is closing the connection: let it finish
	}
	p.closeConn()
	if p.stream != nil {
		p.stream.Close()
		p.m.Sessions.Dec()
	}
	if p.holdsSlot {
		p.srv.release(ModePublish)
		p.holdsSlot = false
	}
	if p.untrack != nil {
		p.untrack()
	}
	p.srv.unpublished(p.authReq)
	p.authReq = nil
}

// report logs how the session ended and counts errors.
func (p *publisher) report(err error) {
	attrs := []any{"bytes", p.bytes.Load(), "demux_errors", p.demuxErrors}
	if p.stats != nil {
		var st gosrt.Statistics
		p.stats.Stats(&st)
		attrs = append(attrs, "srt_lost", st.Accumulated.PktRecvLoss, "srt_retransmitted", st.Accumulated.PktRecvRetrans,
			"srt_dropped", st.Accumulated.PktRecvDrop)
	}
	if p.stream != nil {
		attrs = append(attrs, "duration", time.Since(p.publishedAt).Round(time.Millisecond), "frames", p.frames)
	}
	var se *ingest.SessionError
	switch {
	case p.kicked:
		p.log.Info("srt: publisher kicked", attrs...)
		return
	case p.srv.life.Closed():
		p.log.Info("srt: session closed by server shutdown", attrs...)
		return
	case errors.As(err, &se):
		// classified below
	case p.idle.Load() == idleNoData:
		se = &ingest.SessionError{Reason: ingest.ReasonTimeout, Err: fmt.Errorf("nothing received for %s", p.srv.cfg.IdleTimeout)}
	case p.idle.Load() == idleNoPublish:
		se = &ingest.SessionError{Reason: ingest.ReasonTimeout,
			Err: fmt.Errorf("not publishing %s after connecting (publish_deadline)", p.srv.cfg.PublishDeadline)}
	case p.idle.Load() == idleNoMedia:
		se = &ingest.SessionError{Reason: ingest.ReasonProtocol, Err: fmt.Errorf("no decodable media for %s", p.srv.cfg.IdleTimeout)}
	case err == nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		if p.stream == nil && p.bytes.Load() > 0 {
			se = &ingest.SessionError{Reason: ingest.ReasonProtocol, Err: errors.New("the publisher left before any media could be published")}
			break
		}
		p.log.Info("srt: publisher disconnected", attrs...)
		return
	default:
		se = &ingest.SessionError{Reason: ingest.ReasonProtocol, Err: err}
	}
	p.m.Error(se.Reason)
	p.log.Warn("srt: session failed", append(attrs, "reason", string(se.Reason), "err", se.Err)...)
}

// watchdog closes a publisher's connection when no data (or no media) came
// for the idle timeout: gosrt connections have no read deadlines.
type watchdog struct {
	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func (p *publisher) startWatchdog() *watchdog {
	w := &watchdog{}
	idle := p.srv.cfg.IdleTimeout
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t = time.AfterFunc(idle, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.stopped {
			return
		}
		now := time.Now().UnixNano()
		sinceData := time.Duration(now - p.lastData.Load())
		sinceFrame := time.Duration(now - p.lastFrame.Load())
		switch {
		case sinceData >= idle:
			p.idle.Store(idleNoData)
		case sinceFrame >= idle && sinceData < idle/2:
			// Data flows (it came recently) but decodes to nothing. Frames
			// lag data (a PES ends when the next starts), so a publisher
			// that just stopped is left to the no-data case.
			p.idle.Store(idleNoMedia)
		default:
			next := idle - sinceData
			if sinceFrame < idle {
				next = min(next, idle-sinceFrame)
			}
			w.t.Reset(max(next, 10*time.Millisecond))
			return
		}
		p.closeConn()
	})
	return w
}

func (w *watchdog) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	w.t.Stop()
}
