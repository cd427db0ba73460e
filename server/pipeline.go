package server

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/segmenter"
	"github.com/headwater-live/headwater/store"
	"github.com/headwater-live/headwater/switcher"
	"github.com/headwater-live/headwater/telemetry"
)

// The packaging pipeline of one publish. Every consumer takes its own
// bounded media.Subscription inside media.Registry.Publish (OnPublish),
// before the publisher's first frame, so none misses the first key frame:
//
//	media.Stream       subscriptions
//	(one publish) ──┬─► source ────────────────────────────► segmenter.RunWith ─────► store.Stream
//	                │                                         ▲ Extra    │ Timeline     ▲
//	                ├─► audio stage ─► transcoder.RunAudio ───┘ (AAC)    │ (placement)  │ same MSNs,
//	                │                  Opus → AAC; the source run        ▼              │ aligned key frames
//	                │                  skips the Opus track (Skip)   segmenter.Writer ──┘ one per rendition
//	                │                                                    ▲
//	                ├─► abr stage ───► transcoder.Transcoder ─► jobExecutor ┘
//	                │                  a job per closed GOP      (the local Pool; a remote pool)
//	                └─► more stages (a recording sink, ...)
//
// The source run (segmenter.RunWith into the publish's store.Stream) is the
// spine. A stage joins it, in stageRun.join before it starts, through the
// source run's segmenter.RunOptions in one of two ways: by feeding it
// (Extra, with Skip naming the source tracks it replaces: the audio
// detour), or by following its placement on the timeline (Timeline: the
// ABR renditions, written by segmenter.Writers into the same store.Stream
// with the source's sequence numbers). A stage that neither feeds nor
// follows (a recording sink) only consumes its subscription. The pipeline
// ends the store.Stream (ENDLIST) once the source run and every stage run
// have returned.
//
// A new consumer is a stage, appended to the stages the pipelines are
// built with (Server.buildPackaging); the wiring here does not change. The
// ABR ladder's GOP jobs run on a jobExecutor (abr.go), which the cluster
// work replaces without touching the stage.

// stage is a consumer of every publish beside the source run: the audio
// detour, the ABR ladder, a recording sink. It is asked once per publish.
type stage interface {
	// attach runs inside media.Registry.Publish, before the publisher's
	// first frame: it subscribes to ms with the given buffer when it takes
	// part in this publish and returns its run, or returns nil.
	attach(ms *media.Stream, buffer int) stageRun
}

// stageRun is a stage's part in one publish.
type stageRun interface {
	// join runs once the publish has its place in the store, before the
	// source run starts; it may set the source run's options it joins
	// through (see the drawing above).
	join(p *publish, opts *segmenter.RunOptions)
	// run consumes the stage's subscription until its channel closes (the
	// publish ended) or ctx ends. It runs in its own goroutine.
	run(ctx context.Context, p *publish)
	// close releases the stage's subscription. It is called once, when the
	// pipeline ends, whether or not run has returned early.
	close()
}

// publish is what the source run and the stages of one publish share.
type publish struct {
	name string
	dst  *store.Stream // the publish's place in the store
	log  *slog.Logger
}

// pipelines runs one pipeline per publish; its start is the registry's
// OnPublish hook.
type pipelines struct {
	ctx       context.Context // the server's: cancelled at the end of Shutdown
	store     *store.Store
	seed      func(*store.Store, string) *store.Stream // pipelineConfig.seed
	follow    func(context.Context, *store.Stream)     // pipelineConfig.follow
	holds     func(name string) bool                   // pipelineConfig.holds
	segmenter *segmenter.Segmenter
	stages    []stage
	buffer    int // frames per subscription (segmenter.subscriber_buffer)
	tracer    trace.Tracer
	log       *slog.Logger

	wg      sync.WaitGroup
	mu      sync.Mutex
	running map[string]chan struct{} // stream name -> closed when its pipeline has finished
}

// pipelineConfig holds what every pipeline is built from.
type pipelineConfig struct {
	store *store.Store
	// seed, when set, begins a publish's stream in the store instead of
	// store.Begin: a cluster node seeds a stream taken over from another
	// node with where it stood (clustering.beginStream).
	seed func(*store.Store, string) *store.Stream
	// follow, when set, is told of each publish once it has its place
	// in the store, before the first frame is packaged: the recorder
	// follows the store stream from there (it reads what the store
	// holds, so it is not a stage).
	follow func(context.Context, *store.Stream)
	// holds, when set, tells whether the stream of a name is always-on
	// (switcher.Policy.On): its place in the store is held across the end
	// of each publish (store.Stream.Hold), and only the switcher's end of
	// the stream (pipelines.release) ends it.
	holds     func(name string) bool
	segmenter *segmenter.Segmenter
	stages    []stage
	buffer    int
	tp        trace.TracerProvider
	log       *slog.Logger
}

func newPipelines(ctx context.Context, c pipelineConfig) *pipelines {
	return &pipelines{
		ctx:       ctx,
		store:     c.store,
		seed:      c.seed,
		follow:    c.follow,
		holds:     c.holds,
		segmenter: c.segmenter,
		stages:    c.stages,
		buffer:    c.buffer,
		tracer:    c.tp.Tracer(telemetry.TracerName),
		log:       c.log,
		running:   make(map[string]chan struct{}),
	}
}

// start runs inside media.Registry.Publish: it subscribes before the
// publisher's first frame, then packages the stream in its own goroutine. A
// republish waits for the previous pipeline of the same name to finish so
// that the store sees one writer at a time.
func (p *pipelines) start(ms *media.Stream) {
	info := ms.Info()
	sub := ms.Subscribe(p.buffer)
	var runs []stageRun
	for _, st := range p.stages {
		if r := st.attach(ms, p.buffer); r != nil {
			runs = append(runs, r)
		}
	}
	ctx, span := p.tracer.Start(p.ctx, "publish "+ms.Name(),
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("headwater.stream", ms.Name()), attribute.String("headwater.protocol", info.Protocol),
			attribute.String("headwater.session", info.SessionID), attribute.String("network.peer.address", info.RemoteAddr)))
	log := p.log.With("stream", ms.Name(), "session", info.SessionID, "protocol", info.Protocol)
	log = log.With(telemetry.LogAttrs(ctx)...)

	done := make(chan struct{})
	p.mu.Lock()
	previous := p.running[ms.Name()]
	p.running[ms.Name()] = done
	p.mu.Unlock()

	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer p.finished(ms.Name(), done)
		defer sub.Close()
		defer func() {
			for i := len(runs) - 1; i >= 0; i-- {
				runs[i].close()
			}
		}()
		defer span.End()
		if previous != nil {
			<-previous
		}
		err := p.run(ctx, ms, sub, runs, log)
		span.SetAttributes(attribute.Int64("headwater.frames", int64(ms.Frames())), attribute.Int64("headwater.dropped", int64(sub.Dropped())))
		if err != nil && !errors.Is(err, context.Canceled) {
			span.SetStatus(codes.Error, err.Error())
			log.Error("pipeline: ended with error", "error", err)
			return
		}
		log.Info("pipeline: ended", "frames", ms.Frames(), "dropped", sub.Dropped())
	}()
}

// run packages one publish: it begins the stream in the store, lets the
// stages join the source run, runs them beside it, waits for all of them
// and ends the stream. It returns the source run's error.
func (p *pipelines) run(ctx context.Context, ms *media.Stream, sub *media.Subscription, runs []stageRun, log *slog.Logger) error {
	pub := &publish{name: ms.Name(), dst: p.begin(ms.Name()), log: log}
	if p.holds != nil && p.holds(ms.Name()) {
		pub.dst.Hold()
	}
	log.Info("pipeline: started", "epoch", pub.dst.Epoch())
	if p.follow != nil && ms.Info().Protocol != switcher.SlateProtocol {
		p.follow(p.ctx, pub.dst) // the slate is not recorded
	}
	opts := segmenter.RunOptions{Tracks: ms.Tracks()}
	for _, r := range runs {
		r.join(pub, &opts)
	}
	stagesDone := make([]chan struct{}, len(runs))
	for i, r := range runs {
		stagesDone[i] = make(chan struct{})
		go func() {
			defer close(stagesDone[i])
			r.run(ctx, pub)
		}()
	}
	err := p.segmenter.RunWith(ctx, sub, pub.dst, opts)
	for _, done := range stagesDone {
		<-done // a stage's last output (the ABR ladder's last GOPs, the audio transcoder's process gone)
	}
	pub.dst.End()
	return err
}

// begin begins the stream of a publish of name in the store.
func (p *pipelines) begin(name string) *store.Stream {
	if p.seed != nil {
		return p.seed(p.store, name)
	}
	return p.store.Begin(name)
}

// finished forgets the pipeline of name if it is still the latest one, and
// lets a republish waiting for it go on.
func (p *pipelines) finished(name string, done chan struct{}) {
	p.mu.Lock()
	if p.running[name] == done {
		delete(p.running, name)
	}
	p.mu.Unlock()
	close(done)
}

// release ends the always-on stream of name, once the pipeline of its last
// publish (if one is running) has finished: the switcher's feed of the name
// ended (switcher.Config.OnEnd), so the stream's place in the store is no
// longer held and its playlists get ENDLIST. A publish of the name after
// this waits for it, and continues the stream as a republish within
// streams.ended_grace does.
func (p *pipelines) release(name string) {
	done := make(chan struct{})
	p.mu.Lock()
	previous := p.running[name]
	p.running[name] = done
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer p.finished(name, done)
		if previous != nil {
			<-previous
		}
		if st, ok := p.store.Stream(name); ok && st.Held() {
			st.Release()
		}
	}()
}

// wait waits for the pipelines running now to finish, or ctx to end.
func (p *pipelines) wait(ctx context.Context) {
	p.mu.Lock()
	pending := make([]chan struct{}, 0, len(p.running))
	for _, done := range p.running {
		pending = append(pending, done)
	}
	p.mu.Unlock()
	for _, done := range pending {
		select {
		case <-done:
		case <-ctx.Done():
			return
		}
	}
}

// join waits for every pipeline goroutine; call it after the context the
// pipelines were built with has been cancelled.
func (p *pipelines) join() { p.wg.Wait() }
