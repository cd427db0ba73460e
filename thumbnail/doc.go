// Package thumbnail makes pictures from CMAF media with ffmpeg: a JPEG
// poster of a live stream from one segment that starts with a key frame
// (Maker.Poster), and JPEG sprite sheets with a WebVTT thumbnail track for
// a recording (Maker.Sprites, SpriteSet.VTT), the track players read for
// scrubbing previews.
//
// # Posters
//
// A poster decodes one picture: the init segment and the first fragment
// (moof+mdat) of the segment, which starts with the key frame, are written
// to ffmpeg's stdin; ffmpeg decodes key frames only (-skip_frame nokey),
// with one thread, stops after the first picture, scales it to fit the
// requested width (display aspect kept, even dimensions, never enlarged)
// and encodes it as JPEG to its stdout. The rest of the segment is never
// read.
//
// # Process start
//
// Every poster is one ffmpeg process started with exec, at most
// Config.PosterProcesses at once (DefaultPosterProcesses), each bounded by
// the caller's context and Config.PosterTimeout; a failed or hung process
// ends its own poster, with ffmpeg's stderr in the error, and frees its
// slot. The transcoder's fork server (which forks ffmpeg from a process
// whose libraries are already loaded) is not reused: its protocol is
// internal to package transcoder, and its pool runs GOP jobs, not
// arbitrary command lines. BenchmarkPoster measures what a poster costs
// (see doc/decisions in the report of issue 14 and the figures below).
//
// Measured with Debian's ffmpeg 5.1 (215 shared libraries) on 2 cores, a
// 1280x720 H.264 segment to a 640x360 poster: see BenchmarkPoster, whose
// figures are quoted in docs/decisions.md by the integration.
//
// # Sprites
//
// Sprites run one ffmpeg over the whole recording, read from an io.Reader
// (init segment then media segments, as one fragmented MP4). By default
// only key frames are decoded: thumbnail k is the last key frame at or
// before k×Interval (ffmpeg's fps filter with round=up), which with the
// usual 2 s GOP is at most 2 s early and costs a fraction of decoding
// every frame; SpriteOptions.AllFrames decodes every frame and takes the
// frame on screen at k×Interval. ffmpeg scales each thumbnail and writes
// it as a raw PPM picture; the sheets are tiled and encoded as JPEG here,
// one sheet in memory at a time. A recording of duration D has
// ceil(D/Interval) thumbnails; when the media ends early the last picture
// stands for the rest, and the last cue ends at D.
package thumbnail
