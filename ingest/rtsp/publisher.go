package rtsp

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

// publisher turns the RTP packets of one RTSP session, a publisher's RECORD
// session or a pull source's PLAY session, into a media.Stream.
//
// gortsplib delivers each track's packets on its own goroutine (one per
// media with UDP, the connection's reader with TCP), so everything here
// runs under mu: the stream's WriteFrame is called from one goroutine at a
// time, and nothing in the packet path blocks (gortsplib's UDP listener is
// shared by every session of the server).
//
// Frames wait in pending until the stream can be published: every video
// track has its parameter sets (from the SDP or in-band) and a first key
// frame. Tracks still not ready maxHeaderWait after the first packet are
// dropped (with a warning); without any usable track the session fails.
// The publish's time 0 is the first video key frame's DTS (the first
// audio frame's timestamp without video); earlier audio is dropped.
type publisher struct {
	srv  *Server
	name string
	info media.PublishInfo
	log  *slog.Logger
	m    *ingest.ProtocolMetrics
	rm   *Metrics
	// onPublished runs once the stream is published, with mu held.
	onPublished func(*media.Stream)

	failed chan struct{} // closed when err is set

	mu        sync.Mutex
	tracks    []*inTrack
	created   time.Time
	firstPkt  time.Time
	readyAt   time.Time // when every track became ready
	stream    *media.Stream
	pending   []*media.Frame
	baseTicks int64  // time 0 of the publish, in baseClock ticks of the session timeline
	baseClock uint32 //
	sync      string // how the tracks were aligned: "rtcp" or "arrival"
	published time.Time
	frames    uint64
	bytes     uint64
	err       error
	closed    bool
	warned    map[string]bool
}

// inTrack is one ingested track of a publisher.
type inTrack struct {
	plan      trackPlan
	asm       assembler
	video     bool
	announced bool // part of the published stream
	dropped   bool // given up before publishing
	haveLast  bool
	lastDTS   int64
	// shift (in the track's clock) added to the track's timestamps to align
	// it with the others, from RTCP sender reports; fixed at publish time.
	shift int64
	// ntp and ntpPTS are the NTP time (from RTCP sender reports) and PTS of
	// the track's last packet with both, before publishing.
	ntp    time.Time
	ntpPTS int64
	seen   bool // a packet with a timestamp arrived
	// the last RTCP sender report before publishing
	haveSR bool
	srNTP  time.Time
	srRTP  uint32
}

// ntpEpoch is the NTP era 0 origin (1900-01-01) in Unix time.
const ntpEpochOffset = 2208988800

// ntpTime converts a 32.32 fixed-point NTP timestamp.
func ntpTime(v uint64) time.Time {
	sec := int64(v>>32) - ntpEpochOffset
	frac := int64((v & 0xffffffff) * uint64(time.Second) >> 32)
	return time.Unix(sec, frac)
}

// handleRTCP takes the sender reports of track t, which align the tracks
// at publish time. (gortsplib's own PacketNTP misses the first report when
// it arrives before the first RTP packet, as ffmpeg sends it.)
func (p *publisher) handleRTCP(t *inTrack, pkt rtcp.Packet) {
	sr, ok := pkt.(*rtcp.SenderReport)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stream != nil || p.closed {
		return
	}
	t.haveSR, t.srNTP, t.srRTP = true, ntpTime(sr.NTPTime), sr.RTPTime
}

func newPublisher(srv *Server, name string, info media.PublishInfo, log *slog.Logger, plans []trackPlan) (*publisher, error) {
	p := &publisher{
		srv:     srv,
		name:    name,
		info:    info,
		log:     log,
		m:       srv.metrics,
		rm:      srv.rm,
		failed:  make(chan struct{}),
		created: time.Now(),
		warned:  make(map[string]bool),
	}
	for _, pl := range plans {
		asm, err := newAssembler(pl, p.warnLocked)
		if err != nil {
			return nil, fmt.Errorf("%s track: %w", pl.format.Codec(), err)
		}
		p.tracks = append(p.tracks, &inTrack{plan: pl, asm: asm, video: isVideo(pl.format)})
	}
	if len(p.tracks) == 0 {
		return nil, ingest.Fail(ingest.ReasonUnsupportedCodec, "no supported track")
	}
	return p, nil
}

// warnLocked logs a warning the first time key is seen. mu must be held.
func (p *publisher) warnLocked(key, msg string, args ...any) {
	if p.warned[key] {
		return
	}
	p.warned[key] = true
	p.log.Warn(msg, args...)
}

// handle processes one RTP packet of track t whose PTS (gortsplib's
// PacketPTS) is pts; ptsOK is false while the session's timeline waits for
// this track's first random access packet. It returns the session's fatal
// error, if any: the caller then ends the session.
func (p *publisher) handle(t *inTrack, pkt *rtp.Packet, pts int64, ptsOK bool) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = p.fail(ingest.Recovered(r))
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.err != nil {
		return p.err
	}
	n := pkt.MarshalSize()
	p.m.Bytes.Add(float64(n))
	p.bytes += uint64(n)
	now := time.Now()
	if p.firstPkt.IsZero() {
		p.firstPkt = now
	}
	if ptsOK && p.stream == nil {
		t.seen = true
		if t.haveSR {
			clock := int64(t.plan.format.ClockRate())
			d := int64(int32(pkt.Timestamp-t.srRTP)) * int64(time.Second) / clock
			t.ntp, t.ntpPTS = t.srNTP.Add(time.Duration(d)), pts
		}
	}
	if ptsOK {
		frames, err := t.asm.push(pkt, pts, now)
		if err != nil {
			p.rm.DecodeErrors.Inc()
			p.warnLocked(fmt.Sprintf("decode-%d", t.plan.id), "rtsp: undecodable RTP packets (logged once per track)",
				"codec", t.plan.format.Codec(), "err", err)
		}
		for _, f := range frames {
			p.emit(t, f)
		}
	}
	if p.stream == nil && p.err == nil {
		p.tryPublish(now)
	}
	return p.err
}

// fail records the session's fatal error (the first one wins) and returns it.
func (p *publisher) fail(err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failLocked(err)
	return p.err
}

// failure is the session's fatal error, nil while there is none.
func (p *publisher) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// failLocked records err as the session's fatal error unless there is one
// already; p.mu is held.
func (p *publisher) failLocked(err error) {
	if p.err == nil {
		p.err = err
		close(p.failed)
	}
}

func (p *publisher) emit(t *inTrack, f *media.Frame) {
	if t.dropped {
		return
	}
	if p.stream == nil {
		if len(p.pending) >= maxPendingFrames {
			p.warnLocked("pending", "rtsp: too many frames before the stream could be published; dropping the oldest")
			p.pending = p.pending[1:]
		}
		p.pending = append(p.pending, f)
		return
	}
	if t.announced {
		p.write(t, f)
	}
}

// tryPublish publishes the stream when its tracks are ready, or gives up on
// the tracks that are not once the header wait has passed. Ready tracks
// wait up to syncWait more for what aligns them: a packet of each track,
// and RTCP sender reports of all of them once one track had one.
func (p *publisher) tryPublish(now time.Time) {
	allReady := true
	for _, t := range p.tracks {
		if !t.dropped && !t.asm.ready() {
			allReady = false
		}
	}
	if !allReady {
		if now.Sub(p.firstPkt) < p.srv.headerWait {
			return
		}
		for _, t := range p.tracks {
			if !t.dropped && !t.asm.ready() {
				t.dropped = true
				why := "no key frame"
				if t.asm.track() == nil {
					why = "no parameter sets"
				}
				p.log.Warn("rtsp: giving up on a track", "codec", t.plan.format.Codec(), "why", why, "after", p.srv.headerWait)
			}
		}
	}
	if p.readyAt.IsZero() {
		p.readyAt = now
	}
	if now.Sub(p.readyAt) < syncWait {
		seen, anySR, allSR := true, false, true
		for _, t := range p.tracks {
			if t.dropped {
				continue
			}
			seen = seen && t.seen
			anySR = anySR || !t.ntp.IsZero()
			allSR = allSR && !t.ntp.IsZero()
		}
		if !seen || (anySR && !allSR) {
			return
		}
	}
	var tracks []*media.Track
	var video *inTrack
	for _, t := range p.tracks {
		if t.dropped {
			continue
		}
		tracks = append(tracks, t.asm.track())
		if t.video && video == nil {
			video = t
		}
	}
	if len(tracks) == 0 {
		p.failLocked(ingest.ProtocolError("no usable track %s after the first packet", p.srv.headerWait))
		return
	}
	p.align()
	// Time 0 of the publish: the first video key frame, else the earliest frame.
	found := false
	for _, f := range p.pending {
		t := p.trackOf(f)
		if t == nil || t.dropped {
			continue
		}
		dts := f.DTS + t.shift
		switch {
		case video != nil:
			if t == video && f.Key {
				p.baseTicks, p.baseClock, found = dts, f.Track.ClockRate, true
			}
		case !found || media.Rescale(dts, f.Track.ClockRate, p.baseClock) < p.baseTicks:
			p.baseTicks, p.baseClock, found = dts, f.Track.ClockRate, true
		}
		if found && video != nil {
			break
		}
	}
	if !found {
		return // audio only, no frame yet
	}

	st, err := p.srv.reg.Publish(p.name, p.info, tracks)
	if err != nil {
		p.failLocked(&ingest.SessionError{Reason: ingest.PublishReason(err), Err: err})
		return
	}
	p.stream = st
	p.published = now
	p.m.Sessions.Inc()
	var desc []string
	for _, t := range p.tracks {
		if !t.dropped {
			t.announced = true
			desc = append(desc, t.asm.track().Codec.RFC6381())
		}
	}
	p.log.Info("rtsp: publishing", "tracks", strings.Join(desc, ","), "buffered_frames", len(p.pending),
		"wait", now.Sub(p.firstPkt).Round(time.Millisecond), "sync", p.sync)
	if p.onPublished != nil {
		p.onPublished(st)
	}
	pending := p.pending
	p.pending = nil
	for _, f := range pending {
		if t := p.trackOf(f); t != nil && t.announced {
			p.write(t, f)
		}
	}
	if p.srv.testHookPublished != nil {
		p.srv.testHookPublished(p)
	}
}

// trackOf is the inTrack of a frame.
func (p *publisher) trackOf(f *media.Frame) *inTrack {
	for _, t := range p.tracks {
		if t.plan.id == f.Track.ID {
			return t
		}
	}
	return nil
}

// align computes the tracks' shifts from the RTCP sender reports when every
// track has had one: the tracks' timelines then start together in real
// time. Without them gortsplib's timeline stands, which aligns the tracks'
// first packets on their arrival (off by the encoder's latency, typically
// the video's).
func (p *publisher) align() {
	p.sync = "arrival"
	var ref *inTrack
	for _, t := range p.tracks {
		if t.dropped {
			continue
		}
		if t.ntp.IsZero() {
			return
		}
		if ref == nil {
			ref = t
		}
	}
	if ref == nil {
		return
	}
	p.sync = "rtcp"
	refOff := ref.ntp.Sub(time.Unix(0, 0)) - media.TicksToDuration(ref.ntpPTS, ref.asm.track().ClockRate)
	for _, t := range p.tracks {
		if t.dropped || t == ref {
			continue
		}
		clock := t.asm.track().ClockRate
		off := t.ntp.Sub(time.Unix(0, 0)) - media.TicksToDuration(t.ntpPTS, clock)
		t.shift = media.DurationToTicks(off-refOff, clock)
	}
}

// write aligns a frame, re-bases it on the publish's start and writes it.
func (p *publisher) write(t *inTrack, f *media.Frame) {
	off := media.Rescale(p.baseTicks, p.baseClock, f.Track.ClockRate) - t.shift
	f.DTS -= off
	f.PTS -= off
	if f.DTS < 0 {
		return // before the publish's start
	}
	if t.haveLast && (f.DTS < t.lastDTS || (t.video && f.DTS == t.lastDTS)) {
		p.warnLocked(fmt.Sprintf("backwards-%d", t.plan.id), "rtsp: dropping frames whose timestamps go backwards",
			"codec", t.plan.format.Codec())
		return
	}
	t.haveLast, t.lastDTS = true, f.DTS
	p.stream.WriteFrame(f)
	p.m.Frame(f.Track.Kind())
	p.frames++
}

// close ends the publish, if any. Packets handled afterwards are ignored.
func (p *publisher) close() {
	p.mu.Lock()
	p.closed = true
	st := p.stream
	p.mu.Unlock()
	if st != nil {
		st.Close()
		p.m.Sessions.Dec()
	}
}

// stats returns what the session's end is logged with.
func (p *publisher) stats() []any {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stream == nil {
		return []any{"bytes", p.bytes}
	}
	return []any{"duration", time.Since(p.published).Round(time.Millisecond), "frames", p.frames, "bytes", p.bytes}
}
