// Package gopqueue carries the transcoder's GOP jobs over NATS JetStream:
// an Executor on the node that owns a stream, a Worker on any node.
//
// # Subjects and objects
//
//	HEADWATER_GOPS                      work-queue stream (EnsureStreams), durable,
//	                                    MaxAge 2 min, MaxBytes 1 GiB (discard new)
//	  headwater.gops.jobs.<node>.<job>  one message per job: metadata (JSON:
//	                                    the transcoder.Job without its input, the
//	                                    owner, the result subject) + the input inline
//	  headwater.gops.data.<node>.<job>.<i>
//	                                    the input's chunks when it does not fit
//	  consumer "workers"                durable pull consumer on the jobs,
//	                                    explicit ack, AckWait 2 s, MaxDeliver 5
//	headwater.results.<node>.<job>      core NATS, not stored: a start message
//	                                    per delivery, one message per output
//	                                    frame, a final result
//
// <job> is the executor's incarnation (random) and a counter, so jobs of a
// restarted node never mix with the old ones.
//
// # Large inputs
//
// A GOP is often 0.5–2 MB of MPEG-TS and NATS's default max_payload is
// 1 MB. A job whose metadata and input fit in the connection's max payload
// (less 4 KiB) is one message. A larger input is cut into chunks
// (ExecutorConfig.ChunkSize, 512 KiB) published on the job's data
// subjects of the same stream just before the job message: JetStream
// stores one connection's messages to one stream in order, so the chunks
// are stored before the job can be delivered, and nothing waits for their
// acknowledgements. They match no consumer, so the work queue keeps them
// until the owner purges them once the job is done (or canceled, or
// expired); MaxAge removes the leftovers of an owner that died. The worker
// reads the chunks in parallel with direct gets (last message of each
// chunk subject; a replica not caught up yet is asked again). No server
// setting has to change and the NATS servers never see a message above
// 1 MB.
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
// jobs_not_started_total; owners count jobs_total by outcome,
// late_results_discarded_total and first_frame_seconds (GOP closed → first
// rendition frame back).
package gopqueue
