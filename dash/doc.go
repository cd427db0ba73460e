// Package dash renders the live MPEG-DASH manifest (MPD) of a stream from
// store snapshots, for the same CMAF objects the HLS playlists list:
//
//	/live/<key>/manifest.mpd
//	/live/<key>/<rendition>/init.mp4     (init-N.mp4 after a codec change)
//	/live/<key>/<rendition>/seg<MSN>.m4s
//
// Every URI in the MPD is relative to the MPD's own URL. MPD is a pure
// function of its arguments (the wall clock is passed in), so the origin can
// cache its output and tests compare it with golden files. The MPD is built
// with the github.com/Eyevinn/dash-mpd model and marshalled by it.
//
// # Shape
//
// The MPD is type="dynamic" with the isoff-live and CMAF profiles (plus the
// DASH-IF low-latency profile in low-latency mode). Each Period has at most
// two AdaptationSets: id 0 for video (every video rendition is a
// Representation; the ladder is expected to be segment-aligned, as the
// segmenter cuts every rendition at the same key frames) and id 1 for audio.
// Representations are addressed with SegmentTemplate, $Number$ (the store's
// media sequence number, MSN, so numbers are continuous across Periods and
// shared with HLS) and a SegmentTimeline built from the segments' real tfdt
// (BaseTime) and durations, equal durations compressed with S@r. A template
// is put on the AdaptationSet, with $RepresentationID$, when all its
// Representations would have the same one.
//
// # Timing model
//
// A Period maps media time (tfdt ticks) to wall-clock time as players see
// it: the segment of media time t is presented, and its availability is
// computed, at
//
//	availabilityStartTime + Period@start + (t - presentationTimeOffset)/timescale
//
// availabilityStartTime is Options.AvailabilityStart (store.Stream.Started,
// fixed for the life of the stream: ISO/IEC 23009-1 forbids changing it in
// an MPD update). The segmenter starts the media timeline at 0 with the
// stream's first frame, which arrives at about Started(), so the first
// publish (epoch 0) is anchored there: its first Period is "p0" with start 0
// and presentationTimeOffset 0, i.e. media time t is wall clock
// availabilityStartTime + t. The first frames reach the store slightly
// before Started() (the RTMP and SRT ingests buffer them until the tracks
// are known), so segments are announced a little after they exist rather
// than before, and players do not ask for segments that do not exist yet.
// The anchor is taken once per publish: an encoder clock that drifts from
// the server's over a long publish shifts the live edge by the drift.
//
// A republish (Segment.Epoch increases) continues the media timeline where
// the previous publish ended (BaseTime is continuous) although wall-clock
// time went on while the stream was down, so the mapping has to move: each
// epoch starts a new Period "p<epoch>" whose presentationTimeOffset is the
// epoch's first media time T (the earliest first segment of the epoch over
// the renditions, in each Representation's timescale) and whose start is
// that segment's ProgramDateTime - availabilityStartTime, i.e. the wall
// clock at which its first frame was received (the latest over the
// renditions, so nothing is announced before it exists). The start is
// raised, if needed, to the end of the previous Period's media so that
// Periods never overlap.
//
// Using the ProgramDateTime of the window's first segment instead (as a
// sliding anchor) would align the live edge a little better but would change
// Period@start and presentationTimeOffset with every MPD update, which the
// spec forbids and which makes dash.js and Shaka shift or re-buffer. An
// anchor must therefore be taken once per Period and kept. MPD can only see
// the segments the store still keeps (the window plus store.Config
// KeepExtra), so once the first segment of an epoch has left the store the
// anchor can no longer be derived from the snapshots; Options.History keeps
// it. Without a History, the start of a republished Period is re-derived
// from the oldest segment still kept once its first segment is gone, which
// moves it by the jitter of the ingest clock; and a Period started by a codec
// change or a gap (below) merges back into the one before once the segments
// that showed the change are gone, changing its id. Either confuses players
// at that moment: the origin should keep one History per stream (see
// History). Only a stream that was never republished and never changed codec
// or had a gap is stable without one.
//
// A change of codec configuration within a publish (a new init segment,
// Segment.InitName) also starts a Period, "p<epoch>-<MSN>", at the first
// segment using the new init; it keeps the epoch's anchor (the media clock
// did not jump), so its start is the epoch's Period@start plus the media
// time elapsed since the epoch's presentationTimeOffset.
//
// # Gaps
//
// A gap segment (store.Segment.Gap: a failed transcode) has no data, so it is
// left out of the SegmentTimeline. A hole in a SegmentTimeline with $Number$
// addressing would however renumber every later segment of the Period: the
// number of an S entry is startNumber plus its index (ISO/IEC 23009-1; S@n
// could say otherwise but dash.js ignores it, dash.js issue #5107). So a run
// of gap segments ends a Period and the next segment starts a new one,
// "p<epoch>-<MSN>", with its own startNumber: the hole is at the end of the
// earlier Period (players jump it as a buffer gap) and the numbers in every
// timeline stay those of the store.
//
// # Live edge, updates and the end of the stream
//
// minimumUpdatePeriod is the segment target: with SegmentTimeline a player
// only learns of a new segment by reloading the MPD, and one new segment
// appears per target duration. timeShiftBufferDepth is the duration of the
// window (the last Options.Window complete segments of the longest
// rendition), suggestedPresentationDelay is three segment targets (as HLS
// holds back three target durations), minBufferTime one segment target.
//
// A stream whose renditions have all ended may be republished within the
// store's EndedGrace, and the presentation then goes on in a new Period. So
// for Options.EndGrace (10s by default) after the end the MPD stays live:
// players keep reloading it (waiting at the live edge) and pick up the new
// Period when the encoder reconnects; dash.js and Shaka both cross from the
// old Period's last segment to the new Period across the outage. A final
// MPD would make them stop for good at the first reload during a network
// blip. After EndGrace the MPD is final and stays dynamic, as DASH-IF IOP
// recommends for the end of a live service and as dash.js and Shaka handle:
// minimumUpdatePeriod is removed (players stop reloading),
// mediaPresentationDuration is set to the end of the last segment (players
// fire "ended" there) and timeShiftBufferDepth is removed (infinite) so that
// the last window stays playable for as long as the origin keeps it, instead
// of expiring a window's duration after the end. Changing the type to static
// would make players treat the window as a VoD presentation starting at time
// 0, with nothing there. (ffmpeg's dash demuxer never ends a dynamic MPD: it
// polls until the MPD goes away.)
//
// A Period that has just started is listed only once every rendition that
// is still live has a segment in it (or some rendition has two): dash.js
// and Shaka set up a Period's AdaptationSets when they reach it, so audio
// added in a later MPD update would never be played.
//
// # Low latency
//
// With Options.LowLatency the MPD follows the DASH-IF low-latency guidelines
// as dash.js (which enables its low-latency mode on
// availabilityTimeComplete="false" and ServiceDescription) and Shaka
// implement them:
//
//   - The SegmentTimeline also lists the segment being written, as soon as
//     it has a part (CMAF chunk), with its expected duration (the segment
//     target, or more once it has run longer). dash.js only requests
//     segments its timeline lists, it does not request the next $Number$
//     past the end of a SegmentTimeline (DASH-IF livesim2 publishes the
//     segment being produced in its low-latency SegmentTimeline MPDs for
//     this reason, livesim2 issue #181). The next MPD carries the real
//     duration.
//
//   - SegmentTemplate@availabilityTimeOffset is the segment target minus the
//     part target, with availabilityTimeComplete="false": a segment becomes
//     available (its first chunk) one part after it starts instead of when
//     it ends. The origin must serve the segment being written with chunked
//     transfer, sending each part as it is appended and ending the response
//     when the segment completes, and hold a request for it until it has a
//     first part.
//
//   - minimumUpdatePeriod is the part target, at least 500ms (at most the
//     segment target): the player must learn of the next segment soon after
//     its first part; the floor bounds the MPD request rate.
//
//   - ServiceDescription id 0 with Latency target (Options.TargetLatency,
//     default 3 part targets within [1.5s, 3s]: one part for the chunk to
//     exist, one MPD update to learn of it and one of buffer, with a floor
//     below which dash.js rebuffers at every segment boundary and a ceiling
//     above which the mode is no longer low latency), min 3/4 and max twice
//     the target (dash.js seeks back to the live edge past max), and
//     PlaybackRate 0.96 to 1.04 for catching up.
//
//   - suggestedPresentationDelay is the target latency and minBufferTime the
//     part target (Shaka waits for minBufferTime of buffer before playing).
//
//   - Each AdaptationSet carries a ProducerReferenceTime (id 0, which the
//     Latency element refers to) stating the Period's anchor: media time
//     presentationTimeOffset was received at availabilityStartTime +
//     Period@start. It adds no information to the timing model (dash.js
//     derives a zero offset from it) but makes Latency@referenceId valid.
//
// Representation@bandwidth is the highest bit rate of one segment in the
// window (as HLS BANDWIDTH), estimated from the open segment's parts before
// any segment is complete.
//
// UTCTiming (urn:mpeg:dash:utc:http-iso:2014) points at Options.UTCTimingURL
// so that players compute the live edge with the origin's clock.
package dash
