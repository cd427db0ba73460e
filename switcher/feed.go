package switcher

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/headwater-live/headwater/media"
)

// slateTick is how often the slate's frames are written while it is on
// the air: a part's worth at a time is plenty for the packaging, and 100
// streams on slate wake 1,000 times a second.
const slateTick = 100 * time.Millisecond

// input is one publisher of a feed: its media.Stream (in the Switcher's
// private registry) and what the feed knows of it. Owned by the feed's
// goroutine.
type input struct {
	st   *media.Stream
	sub  *media.Subscription
	role string
	// last is when its latest frame arrived; lively is when it started
	// sending after a silence longer than silence (or first sent).
	last, lively time.Time
	silence      time.Duration
	// tracks are the latest version of each of its tracks, by ID.
	tracks map[int]*media.Track
	// video is its first video track's ID (-1: none yet); prevDTS the
	// DTS of its latest video frame, frameDur the interval before it.
	video     int
	prevDTS   int64
	frameDur  time.Duration
	hasVideo  bool
	seenVideo bool
	// firstDTS and videoFrames measure the mean frame duration.
	firstDTS    int64
	videoFrames int64
	// gop holds, while x stands by, its frames since its latest video key
	// frame: a failover puts x on the air from there at once instead of
	// waiting for its next key frame.
	gop []*media.Frame
}

// minFramesForDuration is the video frames an input's frame duration is
// measured over before the slate is made for it.
const minFramesForDuration = 30

// maxGOPFrames bounds a standby input's kept GOP (10 s at 60 fps with
// audio); a longer GOP is not kept and a failover waits for a key frame.
const maxGOPFrames = 1200

// keep adds f to x's current GOP while x stands by.
func (x *input) keep(f *media.Frame) {
	switch {
	case x.startsGOP(f):
		clear(x.gop)
		x.gop = append(x.gop[:0], f)
	case len(x.gop) > 0 && len(x.gop) < maxGOPFrames:
		x.gop = append(x.gop, f)
	case len(x.gop) >= maxGOPFrames:
		clear(x.gop)
		x.gop = x.gop[:0]
	}
}

// takeGOP returns x's kept GOP (nil without one) and stops keeping it.
func (x *input) takeGOP() []*media.Frame {
	g := x.gop
	x.gop = nil
	return g
}

func (x *input) source() Source {
	if x.role == "backup" {
		return SourceBackup
	}
	return SourcePrimary
}

// note records a frame of x.
func (x *input) note(f *media.Frame) {
	if x.tracks == nil {
		x.tracks = make(map[int]*media.Track, 2)
		x.video = -1
		for _, t := range x.st.Tracks() {
			x.tracks[t.ID] = t
			if t.Kind() == media.KindVideo && x.video < 0 {
				x.video, x.hasVideo = t.ID, true
			}
		}
	}
	x.tracks[f.Track.ID] = f.Track
	if f.Track.ID == x.video {
		// The frame duration is the mean over the publish so far: RTMP's
		// millisecond timestamps make single intervals jitter (33, 34 ms).
		if !x.seenVideo || f.DTS < x.prevDTS {
			x.firstDTS, x.videoFrames = f.DTS, 0
		}
		x.prevDTS, x.seenVideo = f.DTS, true
		if x.videoFrames++; x.videoFrames >= minFramesForDuration {
			if d := media.TicksToDuration(f.DTS-x.firstDTS, f.Track.ClockRate) / time.Duration(x.videoFrames-1); d > 0 && d < time.Second {
				x.frameDur = d
			}
		}
	}
	at := f.Received
	if at.IsZero() {
		at = time.Now()
	}
	if x.last.IsZero() || at.Sub(x.last) > x.silence {
		x.lively = at
	}
	x.last = at
}

// startsGOP reports whether f is where x can go on the air: a video key
// frame, or any frame of an input without video.
func (x *input) startsGOP(f *media.Frame) bool {
	if !x.hasVideo && x.tracks != nil {
		return true
	}
	return f.Key && f.Track.Kind() == media.KindVideo
}

// currentTracks are x's tracks in their latest versions, in the order it
// announced them.
func (x *input) currentTracks() []*media.Track {
	ts := x.st.Tracks()
	out := make([]*media.Track, len(ts))
	for i, t := range ts {
		if cur := x.tracks[t.ID]; cur != nil {
			t = cur
		}
		out[i] = t
	}
	return out
}

func (x *input) videoTrack() *media.Track {
	if !x.hasVideo {
		return nil
	}
	return x.tracks[x.video]
}

func (x *input) audioTrack() *media.Track {
	for _, t := range x.currentTracks() {
		if t.Kind() == media.KindAudio {
			return t
		}
	}
	return nil
}

// close drops the publisher (when the feed ends) and detaches.
func (x *input) close() {
	x.st.Kick()
	x.sub.Close()
}

// feed keeps one stream name on the air. Its goroutine (run) owns every
// field but the status, which status() reads under mu.
type feed struct {
	sw     *Switcher
	name   string
	policy Policy
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	joins  chan *input

	in      [2]*input // primary, backup
	onAir   Source
	out     *media.Stream
	pending *input // goes on the air at its next key frame
	pendWhy string

	slate      Slate
	slateFor   *media.Track // the video track the slate was made for
	slateReady chan slateResult
	slateAsked bool
	cursor     SlateCursor
	slateStart time.Time

	awaitUntil time.Time // while no publisher is connected
	ended      bool      // under the Switcher's mu: OnEnd was told

	mu       sync.Mutex
	snapshot Status
}

type slateResult struct {
	slate Slate
	video *media.Track
	err   error
}

// newFeed returns the feed of name with its first input on the air; its
// output is set before it runs.
func newFeed(sw *Switcher, name string, pol Policy, first *input) *feed {
	ctx, cancel := context.WithCancel(sw.slateCtx)
	f := &feed{
		sw:         sw,
		name:       name,
		policy:     pol,
		log:        sw.log.With("stream", name),
		ctx:        ctx,
		cancel:     cancel,
		joins:      make(chan *input, 8),
		slateReady: make(chan slateResult, 1),
		onAir:      first.source(),
	}
	f.in[roleOf(first)] = first
	f.publishStatus(nil)
	return f
}

func roleOf(x *input) int {
	if x.role == "backup" {
		return 1
	}
	return 0
}

// run is the feed's loop: it forwards the on-air input's frames to the
// output, watches the others, and switches.
func (f *feed) run() {
	defer f.finish()
	var tick *time.Ticker
	if f.policy.FailoverAfter > 0 {
		every := max(f.policy.FailoverAfter/4, 20*time.Millisecond)
		tick = time.NewTicker(every)
		defer tick.Stop()
	}
	var window *time.Timer
	slateTicker := time.NewTicker(slateTick)
	slateTicker.Stop()
	defer slateTicker.Stop()
	for {
		var tickC <-chan time.Time
		if tick != nil {
			tickC = tick.C
		}
		var windowC <-chan time.Time
		if window != nil {
			windowC = window.C
		}
		var slateC <-chan time.Time
		if f.onAir == SourceSlate {
			slateC = slateTicker.C
		}
		var outDone <-chan struct{}
		if f.out != nil {
			outDone = f.out.Context().Done()
		}
		select {
		case <-f.ctx.Done():
			return
		case <-outDone:
			f.log.Info("switcher: the stream was stopped; its publishers are dropped")
			return
		case fr, ok := <-f.frames(0):
			f.handle(f.in[0], fr, ok)
		case fr, ok := <-f.frames(1):
			f.handle(f.in[1], fr, ok)
		case x := <-f.joins:
			f.join(x)
		case r := <-f.slateReady:
			f.slateDone(r)
		case <-tickC:
			f.checkStall()
		case <-windowC:
			window = nil
			if f.in[0] == nil && f.in[1] == nil {
				f.log.Info("switcher: no publisher came back within the reconnect window", "window", f.policy.ReconnectWindow)
				if f.sw.end(f, false) {
					return
				}
			}
		case now := <-slateC:
			f.writeSlate(now)
		}
		// Start the slate's ticker when it has just gone on the air, and
		// the window when the last publisher has just left.
		if f.onAir == SourceSlate && f.cursor != nil && f.slateStart.IsZero() {
			f.slateStart = time.Now()
			f.writeSlate(f.slateStart)
			slateTicker.Reset(slateTick)
		}
		if f.in[0] == nil && f.in[1] == nil {
			if window == nil && f.awaitUntil.IsZero() {
				if f.policy.ReconnectWindow <= 0 {
					if f.sw.end(f, false) {
						return
					}
					continue
				}
				f.awaitUntil = time.Now().Add(f.policy.ReconnectWindow)
				window = time.NewTimer(f.policy.ReconnectWindow)
				f.publishStatus(nil)
			}
		} else if window != nil || !f.awaitUntil.IsZero() {
			if window != nil {
				window.Stop()
				window = nil
			}
			f.awaitUntil = time.Time{}
			f.publishStatus(nil)
		}
	}
}

// frames is input i's frame channel, nil without one.
func (f *feed) frames(i int) <-chan *media.Frame {
	if f.in[i] == nil {
		return nil
	}
	return f.in[i].sub.Frames()
}

// handle takes one frame of x, or its end (ok false).
func (f *feed) handle(x *input, fr *media.Frame, ok bool) {
	if !ok {
		f.leave(x)
		return
	}
	x.note(fr)
	if !f.slateAsked && f.policy.Slate && f.sw.cfg.Slates != nil && x.frameDur > 0 && f.onAir == x.source() {
		f.askSlate(x)
	}
	switch {
	case f.onAir == x.source():
		if f.pending != nil && f.pendWhy == ReasonStall {
			f.pending = nil // sending again before the other's key frame: it stays
		}
		f.out.WriteFrame(fr)
	case f.pending == x:
		if x.startsGOP(fr) {
			x.takeGOP()
			f.switchTo(x, []*media.Frame{fr}, f.pendWhy)
			return
		}
		x.keep(fr)
	default:
		x.keep(fr)
		f.consider(x)
		if f.pending == x && x.startsGOP(fr) {
			x.takeGOP()
			f.switchTo(x, []*media.Frame{fr}, f.pendWhy)
		}
	}
}

// failOver hands the air over to the standby input x, from its kept GOP
// at once when it has one, else at its next key frame.
func (f *feed) failOver(x *input, reason string) {
	if gop := x.takeGOP(); len(gop) > 0 {
		f.switchTo(x, gop, reason)
		return
	}
	f.pending, f.pendWhy = x, reason
	f.publishStatus(nil)
}

// consider hands the air to a standby input x when it should take over:
// the stream has nothing (or the slate) on the air, or its on-air input is
// silent (failOver: at once from x's kept GOP); or x is the primary back
// while the backup is on the air (Failback: at x's next key frame, so that
// no content repeats).
func (f *feed) consider(x *input) {
	if f.pending != nil {
		return
	}
	switch {
	case f.onAir == SourceNone || f.onAir == SourceSlate:
		f.failOver(x, ReasonResume)
	case f.stalled(f.current()):
		f.failOver(x, ReasonStall)
	case x.source() == SourcePrimary && f.onAir == SourceBackup && f.policy.Failback &&
		time.Since(x.lively) >= f.policy.FailoverAfter:
		f.pending, f.pendWhy = x, ReasonFailback
	}
}

// current is the on-air input, nil for the slate or nothing.
func (f *feed) current() *input {
	for _, x := range f.in {
		if x != nil && x.source() == f.onAir {
			return x
		}
	}
	return nil
}

// stalled reports whether x has sent nothing for FailoverAfter.
func (f *feed) stalled(x *input) bool {
	return x != nil && f.policy.FailoverAfter > 0 && !x.last.IsZero() && time.Since(x.last) >= f.policy.FailoverAfter
}

// checkStall runs every quarter of FailoverAfter: a silent on-air input
// hands over to a live standby input, or to the slate.
func (f *feed) checkStall() {
	cur := f.current()
	if cur == nil || !f.stalled(cur) || f.pending != nil {
		return
	}
	if other := f.standby(cur); other != nil {
		f.failOver(other, ReasonStall)
		return
	}
	if f.cursorReady() {
		f.log.Warn("switcher: the publisher went silent; slate on the air", "role", cur.role, "silent", time.Since(cur.last).Round(time.Millisecond))
		f.toSlate(ReasonStall)
	}
}

// standby is the input other than x if it is sending.
func (f *feed) standby(x *input) *input {
	for _, o := range f.in {
		if o != nil && o != x && !f.stalled(o) && !o.last.IsZero() {
			return o
		}
	}
	return nil
}

// join takes a publisher that has just connected.
func (f *feed) join(x *input) {
	f.in[roleOf(x)] = x
	f.log.Info("switcher: publisher connected", "role", x.role, "session", x.st.Info().SessionID, "on_air", f.onAir)
	f.publishStatus(nil)
}

// leave takes the end of input x.
func (f *feed) leave(x *input) {
	f.in[roleOf(x)] = nil
	x.sub.Close()
	if f.pending == x {
		f.pending = nil
	}
	f.log.Info("switcher: publisher left", "role", x.role, "session", x.st.Info().SessionID)
	if f.onAir != x.source() {
		f.publishStatus(nil)
		return
	}
	if other := f.otherThan(x); other != nil {
		f.failOver(other, ReasonDisconnect)
		return
	}
	if f.cursorReady() {
		f.toSlate(ReasonDisconnect)
		return
	}
	f.closeOut()
	f.setOnAir(SourceNone, ReasonDisconnect)
}

// otherThan is the connected input other than x.
func (f *feed) otherThan(x *input) *input {
	for _, o := range f.in {
		if o != nil && o != x {
			return o
		}
	}
	return nil
}

// switchTo puts x on the air from frames (its first a key frame): the
// output ends and a new one starts with them.
func (f *feed) switchTo(x *input, frames []*media.Frame, reason string) {
	f.pending = nil
	f.closeOut()
	out, err := f.sw.cfg.Publisher.Publish(f.name, x.st.Info(), x.currentTracks())
	if err != nil {
		f.log.Error("switcher: cannot put the publisher on the air; it is dropped", "role", x.role, "error", err)
		f.in[roleOf(x)] = nil
		x.close()
		f.setOnAir(SourceNone, reason)
		return
	}
	f.out = out
	f.setOnAir(x.source(), reason)
	for _, fr := range frames {
		out.WriteFrame(fr)
	}
	if f.policy.Slate && f.sw.cfg.Slates != nil && x.frameDur > 0 && f.slateFor != nil && x.videoTrack() != nil &&
		!sameShape(f.slateFor, x.videoTrack()) {
		f.askSlate(x) // a new resolution or codec: the next slate matches it
	}
}

// toSlate puts the slate on the air.
func (f *feed) toSlate(reason string) {
	f.closeOut()
	cur := f.slate.Cursor()
	info := media.PublishInfo{Protocol: SlateProtocol, SessionID: "slate", RemoteAddr: "-"}
	out, err := f.sw.cfg.Publisher.Publish(f.name, info, cur.Tracks())
	if err != nil {
		f.log.Error("switcher: cannot put the slate on the air", "error", err)
		f.setOnAir(SourceNone, reason)
		return
	}
	f.out, f.cursor, f.slateStart = out, cur, time.Time{}
	f.setOnAir(SourceSlate, reason)
}

// writeSlate writes the slate's frames due by now.
func (f *feed) writeSlate(now time.Time) {
	if f.cursor == nil || f.out == nil {
		return
	}
	for _, fr := range f.cursor.Next(now.Sub(f.slateStart)+slateTick/2, now) {
		f.out.WriteFrame(fr)
	}
}

func (f *feed) cursorReady() bool { return f.policy.Slate && f.slate != nil }

// askSlate prepares the slate for x's tracks, off the feed's goroutine.
func (f *feed) askSlate(x *input) {
	f.slateAsked = true
	video, audio, dur := x.videoTrack(), x.audioTrack(), x.frameDur
	src := f.sw.cfg.Slates
	f.sw.wg.Add(1)
	go func() {
		defer f.sw.wg.Done()
		s, err := src.Slate(f.ctx, video, audio, dur)
		select {
		case f.slateReady <- slateResult{slate: s, video: video, err: err}:
		case <-f.ctx.Done():
		}
	}()
}

func (f *feed) slateDone(r slateResult) {
	if r.err != nil {
		f.log.Warn("switcher: no slate for this stream; it waits without one", "error", r.err)
		return
	}
	f.slate, f.slateFor = r.slate, r.video
	// A publisher that left before the slate was ready: show it now.
	if f.onAir == SourceNone && f.pending == nil {
		f.toSlate(ReasonDisconnect)
	}
}

// closeOut ends the output on the air, if any.
func (f *feed) closeOut() {
	if f.out != nil {
		f.out.Close()
		f.out = nil
	}
	f.cursor, f.slateStart = nil, time.Time{}
}

// setOnAir records a change of source.
func (f *feed) setOnAir(to Source, reason string) {
	from := f.onAir
	f.onAir = to
	if from == to {
		f.publishStatus(nil)
		return
	}
	sw := Switch{Stream: f.name, From: from, To: to, Reason: reason, At: time.Now()}
	f.sw.m.switches.WithLabelValues(reason).Inc()
	f.log.Info("switcher: switched", "from", from, "to", to, "reason", reason)
	f.publishStatus(&sw)
	if f.sw.cfg.OnSwitch != nil {
		f.sw.cfg.OnSwitch(sw)
	}
}

// publishStatus refreshes what status() returns.
func (f *feed) publishStatus(sw *Switch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.snapshot.OnAir = f.onAir
	f.snapshot.Primary = f.in[0] != nil
	f.snapshot.Backup = f.in[1] != nil
	f.snapshot.AwaitingUntil = f.awaitUntil
	if sw != nil {
		f.snapshot.Switches++
		f.snapshot.LastSwitch = sw
	}
}

func (f *feed) status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snapshot
}

// finish ends the feed: the output, the publishers, OnEnd.
func (f *feed) finish() {
	f.closeOut()
	for i, x := range f.in {
		if x != nil {
			x.close()
			f.in[i] = nil
		}
	}
	f.sw.end(f, true)
	f.dropJoins() // publishers that joined as it ended
}

// dropJoins drops the publishers waiting to join the feed, which ends.
func (f *feed) dropJoins() {
	for {
		select {
		case x := <-f.joins:
			x.close()
		default:
			return
		}
	}
}

// sameShape reports whether video tracks a and b have the same codec and
// picture size (a slate made for one suits the other).
func sameShape(a, b *media.Track) bool {
	if a == b {
		return true
	}
	if a.Codec.Name() != b.Codec.Name() {
		return false
	}
	va, errA := media.ParseVideoInfo(a.Codec)
	vb, errB := media.ParseVideoInfo(b.Codec)
	return errA == nil && errB == nil && va.Width == vb.Width && va.Height == vb.Height
}
