// Package slate makes the stand-by media a stream shows while its publisher
// is away: a still picture (the built-in card, an image file) or a short
// loop of a media file, with silent audio (or the file's), encoded to match
// the stream's own parameters — codec, H.264 profile and level, picture
// size, frame rate, AAC sample rate and channels — so that a player
// switching between the stream and its slate sees a discontinuity and no
// decoder change.
//
// A Library encodes each parameter set once with ffmpeg (libx264 or
// libx265 with a key frame exactly every Config.GOP, no scene-cut key
// frames, no B-frames, a low constant-quality bitrate; AAC-LC from the
// native encoder), reads the raw elementary streams back into the media
// model (AVCC access units, raw AAC frames) and keeps the result as an
// immutable Clip: one loop of a whole number of GOPs (one GOP for a still).
// Concurrent requests for the same parameters wait for one encode; at most
// Config.MaxClips clips are kept. The built-in card is drawn in Go (colour
// bars and a block-pixel "STAND BY / BACK SOON": no fonts needed) and
// handed to ffmpeg as a PNG.
//
// Each stream on slate plays its clip through its own Cursor: new frames
// that share the clip's payloads, video shifted by the loop count ×
// Duration, audio continuing on its own 1024-sample grid, both exactly
// continuous across loops.
//
// Cost, measured on 2 shared cores (Intel Xeon, load average ~9 from other
// work, go test -bench, Go 1.26):
//
//   - BenchmarkCursor100Streams: 100 cursors on one 1280x720@30 + AAC 48 kHz
//     stereo clip advancing in 100 ms steps cost 1.58 ms of CPU per second
//     of media (0.16% of a core), 2000 allocations (2 per Next call: the
//     frames and the slice) and 728 kB per second of media for all 100.
//   - BenchmarkClipEncode: one 1280x720@30 high + AAC 48 kHz stereo clip
//     (2 s GOP, built-in card) takes 1.24 s of wall time (0.53 s on an idle
//     machine), two ffmpeg encoders included; 758 allocations in Go.
package slate
