// Package transcoder makes the ABR ladder of a live stream from its closed
// GOPs with a pool of pre-started ffmpeg processes.
//
// # Flow
//
// Transcoder.Run reads a stream's media.Subscription. Every closed GOP of
// its first video track (key frame to next key frame) becomes a Job: the
// GOP muxed as MPEG-TS, its source timestamps, the renditions of the
// stream's ladder below the source's height and a deadline. An Executor
// (the Pool) queues the job; a worker runs it in one ffmpeg process whose
// MPEG-TS output, one PID per rendition, is demuxed back into frames
// (mediacommon's mpegts reader, no temporary files) and streamed to Run,
// which writes them to one Output per rendition in GOP order, or reports a
// Gap. The source itself stays the "video" rendition and its audio the
// "audio" rendition of the existing pipeline: renditions carry video only.
//
// # One run per GOP for all renditions
//
// A job decodes its GOP once, splits it (split filter) and scales and
// encodes each rendition to its own output stream. Measured on the default
// ladder for a 720p30 source (480p+360p), one run per GOP for all
// renditions cost 0.344 CPU s per media second against 0.366 for one run
// per rendition with one encoder thread, and 0.338–0.348 against
// 0.406–0.521 with automatic threads: the decode and the process start-up
// are paid once. Shedding a rendition removes it from the job's command
// line.
//
// # Threads
//
// The pool runs one job per core (Size = NumCPU) and parallelizes across
// GOPs and streams, so each job decodes with one thread and encodes with
// one thread per rendition (Rendition.Threads 0). Interleaved GOP by GOP,
// a 720p GOP job cost 613 ms of CPU with one encoder thread, 672 ms with
// automatic encoder threads and 693 ms with automatic decoder threads too
// (equal within noise on a busier run), for similar job times on a busy
// machine; automatic threads would also oversubscribe a many-core host
// running a job per core. Threads -1 asks for them (shorter jobs on an
// idle machine).
//
// # Timestamps
//
// The GOP is fed with its DTS rebased to 1 s (no 33-bit wrap, no negative
// DTS with B-frames) and ffmpeg runs with -copyts (without it the output
// starts at 0), -muxdelay 0 -muxpreload 0 (without them every timestamp is
// 1.4 s later) and -fps_mode passthrough (no frame dropped or duplicated).
// Output PTS are mapped back exactly onto the source frames' PTS. Renditions
// use no B-frames by default (bframes 0): the output's DTS are then its PTS
// moved back by the source's reordering delay, so a rendition GOP's first
// DTS equals the source's, and segments of every rendition start at the
// same decode time as the source's. With bframes > 0 the PTS are still the
// source's and the DTS are the encoder's, moved to the source's when the
// source reorders at least as much. -force_key_frames source with
// -g 100000 -sc_threshold 0 puts an IDR exactly where the source has a key
// frame and nowhere else, so each rendition GOP starts with the source
// GOP's first PTS. Source GOPs shorter than MinGOP (500 ms) are
// transcoded together in one job, their key frames kept.
//
// # Pre-started processes
//
// An ffmpeg process's arguments are fixed when it starts, so a warm process
// is started for a Template: the command line of a set of renditions, which
// depends on nothing else (not the source size: scale=-2:H). The runner
// keeps Warm idle processes for the templates most in demand (decaying use
// counts; PoolConfig.Prewarm seeds them before the first stream); a process
// is warm once /proc/<pid>/syscall shows it blocked in read(0): libraries
// loaded, options parsed, waiting for its GOP. A job whose template has no
// warm process starts one (a cold start, counted). After its job a process
// exits and a replacement is started: ffmpeg cannot be reset between jobs
// (a long-lived process keeps encoder and rate-control state across GOPs
// of different streams and only flushes its last frames when more input
// arrives), so one process per job keeps jobs stateless. A job starts on
// a warm process in 5 µs (p50; p99 2.6 ms) against 82 ms (p99 129 ms) for
// a process started for it.
//
// # The fork server
//
// Executing Debian's ffmpeg, linked to 215 shared libraries, costs ~70 ms
// of CPU before main (two thirds in the dynamic linker's symbol lookups,
// the rest in the kernel mapping them): pre-starting hides it from the
// latency but not from the CPU bill, 1.14–1.3× one long-running ffmpeg
// doing the same ladder for 720p → 480p+360p. So the runner starts ffmpeg
// once as a fork server: a small preload library (forkserver/forkserver.c,
// compiled with the system's C compiler into the user cache directory on
// first use) takes over __libc_start_main in an ffmpeg process whose
// libraries are loaded and bound eagerly (LD_BIND_NOW), and forks one
// child per process the runner asks for; the child gets the job's command
// line and pipes and runs ffmpeg's main unchanged. A one-frame job costs
// 44 ms of CPU forked against 106 ms executed, which brings the pool to
// 1.02–1.06× (720p) and 1.03–1.10× (1080p) a long-running ffmpeg (medians
// of two benchmark runs; 1.14–1.24× and 1.06–1.07× executed). Each child is still a fresh ffmpeg run: nothing is
// shared between jobs but the read-only, already relocated libraries. The
// server reports each child's exit status and CPU time; children die with
// it (PDEATHSIG), and a dead server is restarted (processes are executed
// meanwhile). Without a C compiler, or with an ffmpeg that cannot be
// preloaded (static builds), processes are executed, as with
// PoolConfig.ForkServer = ForkServerOff.
//
// # Queue, fairness and shedding
//
// The local Queue keeps one FIFO per stream (oldest GOP first) and serves
// streams round robin. It is bounded in rendition-GOPs (QueueSize); past
// the bound it sheds one rendition of a queued GOP at a time: the lowest
// Priority first, the oldest GOP first among equals, reserved renditions
// last. A worker taking a job that waited n × MaxWait GOP durations drops
// its n lowest-priority renditions (keeping one), and a job that would not
// finish before its deadline at the speed of recent jobs is shed whole.
// Default priorities shed the tallest rung first and keep the lowest for
// last: the source passthrough covers the top of the ladder, the tallest
// transcoded rung costs the most (per 2 s GOP of a 1080p source, encoding
// 720p took 0.61 s of CPU, 480p 0.39 s, 360p 0.24 s, on top of 0.23 s to
// start and decode), so shedding it frees the most, and the lowest rung is
// the last resort of viewers on bad networks. Ingest and the passthrough
// never go through the pool. Reserved workers (PoolConfig.Reserve) run only
// jobs of chosen streams/renditions.
//
// # Faults
//
// A run that exits non-zero, is killed or returns unreadable output is
// retried once, at the head of its stream's queue, when the retry can
// still finish before the deadline (by default 3 GOP durations after the
// GOP closed); a run still going at the deadline is killed. Otherwise the
// GOP's renditions are reported as gaps. stderr is kept (its tail) and
// logged with the stream, GOP and renditions at most once per LogInterval
// per stream. Frames stream out of a run as they are encoded; a retry's
// frames must reproduce those already written (x264 is deterministic),
// else the GOP is cut short rather than mixing two encodes.
//
// # Distribution
//
// Job and Result are plain data, and the Queue, Runner and Executor
// interfaces are small, so that a message queue can carry jobs to workers
// on other machines without changing Transcoder or the packager.
//
// # Audio
//
// The source audio rendition is shared by all video renditions. Audio
// that HLS clients cannot all play (Opus) is transcoded to AAC by RunAudio,
// one long-running ffmpeg per stream, restarted when it dies mid-stream.
package transcoder
