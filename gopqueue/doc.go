// Package gopqueue carries the transcoder's GOP jobs over NATS JetStream:
// an Executor on the node that owns a stream, a Worker on any node.
//
// # Subjects and objects
//
//	HEADWATER_GOPS                      work-queue stream (EnsureStreams), durable,
//	                                    MaxAge 2 min, MaxBytes 1 GiB (discard new)
//	  headwater.gops.jobs.<node>.<job>  one message per job: metadata (JSON:
//	                                    the transcoder.Job without its input, the
//	                                    owner, the result subject) + the input
//	                                    inline when it is small
//	  consumer "workers"                durable pull consumer on the jobs,
//	                                    explicit ack, AckWait 2 s, MaxDeliver 5
//	headwater.inputs.<node>.<job>       core NATS request/reply, not stored: the
//	                                    owner serves a held input
//	http://<owner>:<port>/gopqueue/input/<job>
//	                                    the same, directly (the owner's input
//	                                    listener), with the job's token
//	headwater.results.<node>.<job>      core NATS, not stored: a start message
//	                                    per delivery, one message per output
//	                                    frame, a final result
//
// <job> is the executor's incarnation (random) and a counter, so jobs of a
// restarted node never mix with the old ones.
//
// # Large inputs: a claim check
//
// A GOP is often 0.5–2 MB of MPEG-TS and NATS's default max_payload is
// 1 MB. An input of at most ExecutorConfig.InlineMax (64 KiB) whose job
// message fits in the connection's max payload less 4 KiB travels inline.
// A larger one is held: the job message carries the metadata only (a few
// KiB: durable, at-least-once, acked, with its deadline and renditions as
// any job) and the input stays in the owner's memory while the job is
// pending. The worker that takes the job gets it from the owner, one of
// two ways:
//
//   - directly, when the owner has an input listener
//     (ExecutorConfig.InputListen; DirectInputs derives it from the
//     node's http origin URL): the job message names the input's URL and
//     a random 128-bit token, and the worker GETs it over a keep-alive
//     HTTP connection. The bytes cross the network once, owner → worker,
//     as relayed segments do; through a NATS server they would cross it
//     twice and cost the server their copies (1.7 MB: about 3 ms on
//     loopback against 0.4 ms over one TCP connection). An owner whose
//     listener cannot be reached (refused, or no connection within
//     250 ms) is asked over NATS instead, and its listener is skipped for
//     30 s.
//   - over NATS: the worker asks on the job's input subject; the owner
//     answers on the request's inbox with the input in chunks of at most
//     ExecutorConfig.ChunkSize (512 KiB) and the worker's max payload
//     less 4 KiB, each chunk's offset in a header, and the worker copies
//     them into one buffer as they arrive. A request not answered in full
//     within WorkerConfig.InputWait (1 s) is sent again (at most three,
//     none past the deadline). No server setting has to change and no
//     message is above 1 MB.
//
// Nothing of the input is written to JetStream: no file write, no
// replication to the stream's replicas, no purge. A worker reuses the
// buffer of a held input for the next one once its pool is done with the
// job.
//
// The input dies with its owner, and so would the job's results (they go
// back to the owner on core NATS): a worker whose request finds nobody
// serving the subject (NATS's no-responders) or an owner that no longer
// has the job (done, canceled, past its deadline, or a restarted node's
// new incarnation: 410 Gone on the listener) terms the job, counted as
// not started "owner_gone", and sends no result.
//
// # Deliveries, redelivery and late results
//
// A worker heartbeats (InProgress) the jobs it runs every third of the
// ack wait; a worker that dies or is stopped stops them and JetStream
// redelivers the job to another worker after the ack wait. Every result
// message carries JetStream's delivery number of the job and the worker's
// local attempt; the owner takes the highest delivery announced as the
// current one and discards (late_results_discarded_total) anything from
// an older delivery or for a job already done: a paused worker that wakes
// up never writes its GOP a second time. The job's Done is called exactly
// once, by the current delivery's result, at the deadline or when the
// job's Ctx ends; without a result by the deadline the GOP is a gap, as
// with the local pool.
//
// # Deadlines and shedding
//
// Job.Closed and Job.Deadline are wall-clock times: the nodes' clocks must
// be synchronized (NTP) to well under a GOP duration. A worker does not
// start a job whose deadline has passed (Term, jobs_not_started_total
// {reason="late"}, every rendition shed as "late"). It runs the others on
// a local transcoder.Pool, whose rules then apply as to local jobs: a job
// that waited n × MaxWait GOP durations since its GOP closed (time spent
// in JetStream included) loses its n lowest-priority renditions (the
// tallest rung first by default, keeping one), and a job that would not
// finish before its deadline at the speed of recent jobs is shed whole.
// There is no capacity-based shedding inside JetStream: the queue is
// bounded by MaxBytes, past which a job is rejected (a gap).
//
// # Metrics
//
// jobs_pending, jobs_in_flight, jobs_redelivering and pull_requests_waiting
// (headwater_gopqueue_*) are the consumer's NumPending, NumAckPending,
// NumRedelivered and NumWaiting, polled every second on every node running
// an Executor or a Worker. Workers observe job_wait_seconds (stored in the
// stream → taken) and count jobs_redelivered_total and
// jobs_not_started_total and observe input_fetch_seconds (a held input's
// request → its last chunk); owners count jobs_total by outcome,
// jobs_input_held_total, input_requests_total, late_results_discarded_total
// and first_frame_seconds (GOP closed → first rendition frame back).
package gopqueue
