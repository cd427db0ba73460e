package transcoder

import (
	"context"
	"time"

	"github.com/headwater-live/headwater/media"
)

// Job is one closed GOP of one stream to transcode into some renditions:
// the unit of work a Queue carries to a worker. Every exported field is
// plain data so that a message queue can carry a Job to a worker on another
// machine; Ctx and Done stay on the submitting side.
type Job struct {
	ID     uint64 `json:"id"`
	Stream string `json:"stream"`
	// Seq numbers the stream's GOPs from 0.
	Seq uint64 `json:"seq"`
	// Renditions to produce, in output order. Load shedding removes
	// renditions from a queued job (lowest priority first).
	Renditions []Rendition `json:"renditions"`
	// Input is the GOP as MPEG-TS: parameter sets before the key frame,
	// timestamps rebased to Base and shifted by 1 s (see tsOffset).
	Input []byte `json:"input"`
	// Base is the source DTS of the GOP's first frame, in ClockRate ticks.
	Base      int64  `json:"base"`
	ClockRate uint32 `json:"clock_rate"`
	// PTS and DTS are the source timestamps of the GOP's frames in decode
	// order: outputs are mapped back onto them exactly.
	PTS []int64 `json:"pts"`
	DTS []int64 `json:"dts"`
	// Duration is the GOP's duration (next key frame's DTS − first DTS).
	Duration time.Duration `json:"duration"`
	// Closed is when the GOP closed (its job was created).
	Closed time.Time `json:"closed"`
	// Deadline is when the result stops being useful: a run still going
	// is killed then and the GOP becomes a gap.
	Deadline time.Time `json:"deadline"`
	// Attempt is 0 for the first run, 1 for the retry.
	Attempt int `json:"attempt"`

	// Ctx ends when the submitter no longer wants the result (its stream
	// ended): the job is dropped from the queue or its run killed.
	Ctx context.Context `json:"-"`
	// Done receives the result exactly once. It must not block.
	Done func(*Result) `json:"-"`
	// Progress, when set, receives each output frame as soon as a runner
	// that streams (the local one does) has read it: the k-th frame of a
	// rendition in this attempt, with the rendition's parameter sets. A
	// retry streams the GOP again from k = 0. It must not block; it is
	// called before Done.
	Progress func(rendition string, attempt, k int, codec media.Codec, f OutFrame) `json:"-"`

	shed     []Rendition // removed from Renditions while queued
	shedWhy  string
	enqueued time.Time
	units    int // len(Renditions) while queued
}

// RenditionResult is the outcome of one rendition of a Job.
type RenditionResult struct {
	Rendition Rendition `json:"rendition"`
	// Outcome is OutcomeOK, OutcomeShed or OutcomeFailed.
	Outcome string `json:"outcome"`
	// Reason says why a rendition was not produced ("shed", "late",
	// "failed", "timeout", "canceled").
	Reason string    `json:"reason,omitempty"`
	Track  *OutTrack `json:"track,omitempty"`
}

// Result is what came of a Job: one entry per rendition the job was
// submitted with (shed ones included), in submission order.
type Result struct {
	Job        *Job              `json:"-"`
	Renditions []RenditionResult `json:"renditions"`
	Retried    bool              `json:"retried,omitempty"`
	// Err is the last run error, if any run failed.
	Err error `json:"-"`
	// Wall is the run's wall time, CPU its ffmpeg user+system time.
	Wall time.Duration `json:"wall"`
	CPU  time.Duration `json:"cpu"`
}

// Executor runs jobs: the local Pool, or a client of a remote pool. Submit
// never blocks; the job's Done is called exactly once, possibly before
// Submit returns (a job shed at once).
type Executor interface {
	Submit(j *Job)
}

// Queue holds submitted jobs until a worker takes them. The local
// implementation (NewQueue) is bounded, round-robin between streams and
// oldest GOP first within a stream; it sheds the lowest-priority renditions
// when full. A message-queue implementation can replace it without changing
// the Transcoder or the workers.
type Queue interface {
	// Put adds a job (a retry goes to the head of its stream); it never
	// blocks. Jobs shed whole are completed through their Done.
	Put(j *Job)
	// Take removes and returns the next job accept agrees to run, waiting
	// until there is one or ctx ends.
	Take(ctx context.Context, accept func(*Job) bool) (*Job, error)
	// Len is the number of queued jobs.
	Len() int
	// Close completes every queued job as canceled and makes Take fail.
	Close()
}

// Runner is the worker protocol: it turns a job into rendition tracks, in
// the order of j.Renditions. The local implementation runs ffmpeg.
type Runner interface {
	Run(ctx context.Context, j *Job) ([]OutTrack, RunStats, error)
}

// RunStats describes one run.
type RunStats struct {
	// Warm is true when the run used a pre-started process.
	Warm bool
	// Start is the time from Run's call to a process blocked on the job's
	// input (0 for a warm process).
	Start time.Duration
	// CPU is the process's user+system time.
	CPU time.Duration
	// Stderr is the tail of the process's diagnostics, kept on failure.
	Stderr string
}
