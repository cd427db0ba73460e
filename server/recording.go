package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/headwater-live/headwater/cluster"
	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/eventhook"
	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/metrics"
	"github.com/headwater-live/headwater/objstore"
	"github.com/headwater-live/headwater/objstore/local"
	"github.com/headwater-live/headwater/objstore/s3"
	"github.com/headwater-live/headwater/recording"
	"github.com/headwater-live/headwater/spool"
	"github.com/headwater-live/headwater/store"
	"github.com/headwater-live/headwater/thumbnail"
	"github.com/headwater-live/headwater/transcoder"
)

// recordingPart is the node's recording (record.enabled): the storage
// backend and the spool in front of it, the recorder following every
// recorded publish, and the jobs its events trigger: sprites for each
// session ready, retention. It also makes the live posters and hands its
// events to events.webhook (the server's). Nil when recording is off.
type recordingPart struct {
	cfg       config.RecordConfig
	backend   objstore.Backend
	spool     *spool.Spool
	rec       *recording.Recorder
	thumbs    *thumbnail.Maker
	forks     *forkStarter // the thumbnails' fork server; nil: ffmpeg is executed
	posters   *posterLoop
	hook      *eventhook.Hook // the server's events.webhook; nil without
	retention []recording.RetentionRule
	publish   func(kind string, v any) // cluster events; nil without a cluster
	// runJobs, in a cluster, takes jobs from the events every recording
	// node shares (cluster.Node.RunJobs): a session's sprites are made by
	// whichever node takes its recording_ready event. Nil on one box,
	// where jobs run in-process.
	runJobs func(ctx context.Context, name, kind string, ackWait time.Duration, handle func(context.Context, []byte) error)
	log     *slog.Logger

	jobs       chan recording.Summary // sessions ready for their sprite job
	retentionC chan struct{}          // a retention run is due (a session was stored)
	jobFails   *prometheus.CounterVec
	wg         sync.WaitGroup
}

// newRecordingPart builds the recording part when record.enabled: it checks
// the backend (a directory that cannot be written, a missing bucket or
// refused credentials stop the start with the reason) and opens the spool,
// which resumes whatever a previous run left in it.
func newRecordingPart(cfg *config.Config, hook *eventhook.Hook, reg prometheus.Registerer, log *slog.Logger) (_ *recordingPart, err error) {
	rc := cfg.Record
	if !rc.Enabled {
		return nil, nil
	}
	var p *recordingPart
	defer func() {
		if err != nil && p != nil {
			p.forks.close()
			if p.spool != nil {
				_ = p.spool.Close()
			}
		}
	}()
	log = log.With("component", "recording")
	backend, spoolDir, err := recordBackend(rc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := backend.Check(ctx); err != nil {
		return nil, fmt.Errorf("record: %s: %w", backend, err)
	}
	p = &recordingPart{
		cfg:        rc,
		backend:    backend,
		hook:       hook,
		log:        log,
		jobs:       make(chan recording.Summary, 64),
		retentionC: make(chan struct{}, 1),
		jobFails: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "headwater_record_jobs_total",
			Help: "Recording jobs run, by job (sprites, retention) and result (ok, error).",
		}, []string{"job", "result"})),
	}
	p.spool, err = spool.Open(spool.Config{
		Dir:      spoolDir,
		MaxBytes: int64(rc.SpoolMaxBytes),
		OnStored: p.stored,
	}, backend, log.With("component", "spool"), reg)
	if err != nil {
		return nil, fmt.Errorf("record.spool_dir: %w", err)
	}
	rules, err := config.ParseRetention(rc.Retention)
	if err != nil {
		return nil, fmt.Errorf("record.retention: %w", err)
	}
	for _, r := range rules {
		p.retention = append(p.retention, recording.RetentionRule{Prefix: r.Prefix, MaxAge: r.MaxAge, MaxBytes: r.MaxBytes})
	}
	mode, err := transcoder.ParseForkServerMode(cfg.Transcoder.ForkServer)
	if err != nil {
		return nil, fmt.Errorf("transcoder.fork_server: %w", err)
	}
	if p.forks, err = newForkStarter(mode, cfg.Transcoder.FFmpeg, "", log); err != nil {
		return nil, fmt.Errorf("record: thumbnails: %w", err)
	}
	tc := thumbnail.Config{FFmpeg: cfg.Transcoder.FFmpeg}
	if p.forks != nil {
		tc.Starter = p.forks
	}
	if p.thumbs, err = thumbnail.New(tc); err != nil {
		return nil, fmt.Errorf("record: thumbnails: %w", err)
	}
	p.rec, err = recording.New(recording.Config{
		Writer:     p.spool,
		Backend:    backend,
		Rules:      recording.Rules{Include: rc.Prefixes, Exclude: rc.Exclude},
		Node:       recordNode(cfg),
		DVRWindow:  cfg.DVR.Window.Duration(),
		Notify:     p.event,
		Encrypted:  originConfig(cfg).Encryption.Covers,
		Log:        log,
		Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	if d := rc.PosterInterval.Duration(); d > 0 {
		p.posters = newPosterLoop(p.thumbs, d, log)
	}
	return p, nil
}

// recordBackend builds the configured backend and names the spool directory.
func recordBackend(rc config.RecordConfig) (objstore.Backend, string, error) {
	switch rc.Backend {
	case "s3":
		b, err := s3.New(s3.Config{
			Endpoint: rc.S3.Endpoint, Region: rc.S3.Region, Bucket: rc.S3.Bucket, Prefix: rc.S3.Prefix,
			PathStyle: rc.S3.PathStyle, AccessKeyFile: rc.S3.AccessKeyFile, SecretKeyFile: rc.S3.SecretKeyFile,
			ServerSideEncryption: rc.S3.SSE, KMSKeyID: rc.S3.KMSKeyID,
		})
		if err != nil {
			return nil, "", fmt.Errorf("record.s3: %w", err)
		}
		dir := rc.SpoolDir
		if dir == "" {
			dir = "./recordings-spool"
		}
		return b, dir, nil
	default:
		b, err := local.New(rc.Dir)
		if err != nil {
			return nil, "", fmt.Errorf("record.dir: %w", err)
		}
		dir := rc.SpoolDir
		if dir == "" {
			dir = filepath.Join(rc.Dir, ".spool")
		}
		return b, dir, nil
	}
}

// recordNode is the node id written into sessions: cluster.node_id, else
// the host name. It must stay the same across restarts for interrupted
// sessions to be found (recording.Recorder.Recover).
func recordNode(cfg *config.Config) string {
	if cfg.Cluster.NodeID != "" {
		return cfg.Cluster.NodeID
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	return "local"
}

// start runs the spool's uploads, the jobs and the posters until ctx ends, and finds the sessions a previous run left unfinished.
func (p *recordingPart) start(ctx context.Context, st *store.Store) {
	if p == nil {
		return
	}
	run := func(f func()) {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			f()
		}()
	}
	run(func() {
		if err := p.spool.Run(ctx); err != nil && ctx.Err() == nil {
			p.log.Error("recording: spool stopped", "error", err)
		}
	})
	run(func() { p.jobsLoop(ctx, st) })
	if p.runJobs != nil {
		run(func() {
			p.runJobs(ctx, "recording-sprites", cluster.KindRecordingReady, time.Minute, p.spriteEvent)
		})
	}
	if p.posters != nil {
		run(func() { p.posters.run(ctx, st) })
	}
	if err := p.rec.Recover(ctx); err != nil {
		p.log.Error("recording: cannot look for unfinished sessions", "error", err)
	}
}

// wait waits for every goroutine of the part (ctx has ended) and closes
// the spool (it unlocks its directory).
func (p *recordingPart) wait() {
	if p == nil {
		return
	}
	p.rec.Wait()
	p.wg.Wait()
	p.forks.close()
	if err := p.spool.Close(); err != nil {
		p.log.Error("recording: spool close", "error", err)
	}
}

// follow records a publish that has begun in the store.
func (p *recordingPart) follow(ctx context.Context, st *store.Stream) {
	if p == nil || !p.rec.Records(st.Name()) {
		return
	}
	p.rec.Follow(ctx, st, st.Epoch())
}

// health reports the spool's uploads for /readyz.
func (p *recordingPart) health() (bool, string) {
	if p == nil {
		return true, ""
	}
	if err := p.spool.Healthy(); err != nil {
		return false, "recording storage: " + err.Error()
	}
	return true, ""
}

// event handles a recording event: it goes to the webhook and the
// cluster, and a ready session gets its sprite job.
func (p *recordingPart) event(e recording.Event) {
	payload := e.Payload()
	if p.hook != nil {
		p.hook.Send(e.Kind, payload)
	}
	if p.publish != nil {
		kind := map[string]string{
			recording.EventStarted: cluster.KindRecordingStarted,
			recording.EventReady:   cluster.KindRecordingReady,
			recording.EventFailed:  cluster.KindRecordingFailed,
			recording.EventDeleted: cluster.KindRecordingDeleted,
		}[e.Kind]
		p.publish(kind, payload)
	}
	if e.Kind == recording.EventReady && p.runJobs == nil {
		select {
		case p.jobs <- e.Summary:
		default:
			p.log.Warn("recording: sprite jobs queue full; thumbnails skipped", "stream", e.Summary.Stream, "recording", e.Summary.Session)
			p.jobFails.WithLabelValues("sprites", "error").Inc()
		}
	}
}

// stored is the spool's OnStored: a stored session summary makes a
// retention run due.
func (p *recordingPart) stored(key string, _ int64) {
	if len(p.retention) == 0 || filepath.Ext(key) != ".json" {
		return
	}
	select {
	case p.retentionC <- struct{}{}:
	default:
	}
}

// jobsLoop runs the sprite jobs of this node's sessions (on one box) and
// retention, one at a time, until ctx ends. Both are idempotent: a sprite
// job finding thumbnails.vtt stored does nothing; retention deletes only
// what its rules say must go.
func (p *recordingPart) jobsLoop(ctx context.Context, st *store.Store) {
	every := p.cfg.RetentionInterval.Duration()
	t := time.NewTicker(every)
	defer t.Stop()
	sweep := time.NewTicker(10 * time.Second)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case sum := <-p.jobs:
			p.spriteJob(ctx, sum)
		case <-p.retentionC:
			p.retentionJob(ctx)
		case <-t.C:
			p.retentionJob(ctx)
		case <-sweep.C:
			p.rec.Sweep(st)
		}
	}
}

func (p *recordingPart) retentionJob(ctx context.Context) {
	if len(p.retention) == 0 {
		return
	}
	if _, err := p.rec.ApplyRetention(ctx, p.retention, time.Now()); err != nil {
		if ctx.Err() == nil {
			p.jobFails.WithLabelValues("retention", "error").Inc()
			p.log.Error("recording: retention", "error", err)
		}
		return
	}
	p.jobFails.WithLabelValues("retention", "ok").Inc()
}

// spriteJob makes a ready session's sprites, retried twice on one box.
func (p *recordingPart) spriteJob(ctx context.Context, sum recording.Summary) {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = p.spriteAttempt(ctx, sum.Stream, sum.Session); err == nil || ctx.Err() != nil {
			return
		}
		p.log.Warn("recording: sprites failed, retrying", "stream", sum.Stream, "recording", sum.Session, "attempt", attempt+1, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(attempt+1) * 2 * time.Second):
		}
	}
}

// spriteEvent is the sprite job of a recording_ready event taken from
// the cluster; its error has the event delivered again.
func (p *recordingPart) spriteEvent(ctx context.Context, data []byte) error {
	var e recording.Payload
	if err := json.Unmarshal(data, &e); err != nil || e.Stream == "" || !recording.IsSessionID(e.Session) {
		p.log.Error("recording: a recording_ready event without a session", "error", err)
		return nil // never valid: not worth retrying
	}
	return p.spriteAttempt(ctx, e.Stream, e.Session)
}

// spriteAttempt makes a ready session's sprite sheets and thumbnails.vtt
// from its first video rendition, unless they exist. It counts the result.
func (p *recordingPart) spriteAttempt(ctx context.Context, stream, session string) error {
	interval := p.cfg.SpriteInterval.Duration()
	if interval <= 0 {
		return nil
	}
	vtt := recording.MediaPrefix(stream, session) + "thumbnails.vtt"
	if _, err := p.backend.Stat(ctx, vtt); err == nil {
		return nil // done before (a retried event)
	}
	err := p.sprites(ctx, stream, session, interval)
	switch {
	case err == nil:
		p.jobFails.WithLabelValues("sprites", "ok").Inc()
		p.log.Info("recording: sprites made", "stream", stream, "recording", session)
	case ctx.Err() == nil:
		p.jobFails.WithLabelValues("sprites", "error").Inc()
		p.log.Error("recording: no sprites", "stream", stream, "recording", session, "error", err)
	}
	return err
}

func (p *recordingPart) sprites(ctx context.Context, stream, session string, interval time.Duration) error {
	sess, err := p.rec.Session(ctx, stream, session)
	if err != nil {
		return err
	}
	var video *recording.Rendition
	for i := range sess.Renditions {
		if sess.Renditions[i].Snap.Info.Kind == media.KindVideo {
			video = &sess.Renditions[i]
			break
		}
	}
	if video == nil {
		return nil // audio only: nothing to show
	}
	var total time.Duration
	var objects []string
	initSeen := ""
	for _, seg := range video.Snap.Segments {
		if seg.Gap {
			continue
		}
		if seg.InitName != initSeen {
			objects = append(objects, video.Name+"/"+seg.InitName)
			initSeen = seg.InitName
		}
		objects = append(objects, video.Name+"/"+recording.SegmentObject(seg.MSN))
		total += seg.Duration
	}
	if total <= 0 {
		return nil
	}
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(p.copyObjects(ctx, stream, session, objects, pw))
	}()
	set, err := p.thumbs.Sprites(ctx, pr, thumbnail.SpriteOptions{Duration: total, Interval: interval})
	_ = pr.CloseWithError(errors.New("sprites: done"))
	if err != nil {
		return err
	}
	prefix := recording.MediaPrefix(stream, session)
	for i, sheet := range set.Sheets {
		if err := p.spool.Add(prefix+"thumbs/sprite-"+strconv.Itoa(i)+".jpg", sheet, "image/jpeg"); err != nil {
			return err
		}
	}
	vtt := set.VTT(func(i int) string { return "thumbs/sprite-" + strconv.Itoa(i) + ".jpg" })
	return p.spool.Add(prefix+"thumbnails.vtt", vtt, "text/vtt")
}

// copyObjects writes a session's objects back to back into w (init and
// segments: a fragmented MP4 stream).
func (p *recordingPart) copyObjects(ctx context.Context, stream, session string, objects []string, w io.Writer) error {
	for _, o := range objects {
		rc, err := p.rec.OpenMedia(ctx, stream, session, o)
		if err != nil {
			return err
		}
		_, err = io.Copy(w, rc)
		_ = rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
