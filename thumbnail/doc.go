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
// read. Before ffmpeg starts, the boxes are checked (a small walker that
// refuses garbage) and so is the first video sample's sync flag, so that a
// part from the middle of a segment is refused without a process.
//
// # Process start
//
// Each poster is one ffmpeg process, at most Config.PosterProcesses at
// once (DefaultPosterProcesses); a call waits for a slot within its
// context and Config.PosterTimeout. A failed or hung process ends its own
// poster only, with ffmpeg's stderr in the error, and is killed (its
// process group) and waited for before Poster returns.
//
// By default ffmpeg is executed (Config.FFmpeg). Measured on 2 shared
// cores with Debian's ffmpeg 5.1 (215 shared libraries), a 1280x720 H.264
// segment to a 640x360 poster costs 78–81 ms of CPU and 86–89 ms one at
// a time (1080p: 87–90 ms of CPU), of which ffmpeg's start before main
// takes about 62 ms (ffmpeg -version alone): a poster every 5 s for 100
// streams would take 1.6 cores. Forked from the transcoder's fork server
// instead (an ffmpeg whose libraries are loaded once), the same poster
// costs 17–19 ms of CPU and 21 ms on an idle machine (measured with a copy
// of its code, as package transcoder keeps the fork server to itself):
// Config.Starter takes such a process starter, so that the server can hand
// one in.
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
// ceil(D/Interval) thumbnails; when the media ends early the last
// thumbnail stands for the rest, and the last cue ends at D. Of a minute
// of 720p H.264 with 2 s GOPs, key frames only cost 0.19 s of CPU, every
// frame 2.8 s (BenchmarkSprites).
package thumbnail
