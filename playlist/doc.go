// Package playlist renders HLS playlists (RFC 8216bis, with Low-Latency HLS)
// from store snapshots. Its functions are pure: the same snapshots and
// options give the same bytes, so the origin can cache them by snapshot
// version and tests compare them with golden files.
//
// The origin serves, for stream <key>:
//
//	/live/<key>/index.m3u8               Multivariant
//	/live/<key>/<rendition>/index.m3u8   Media
//	/live/<key>/<rendition>/init.mp4     (init-N.mp4 after a codec change)
//	/live/<key>/<rendition>/seg<MSN>.m4s
//	/live/<key>/<rendition>/part<MSN>.<index>.m4s
//
// and every URI in the playlists is relative to the playlist's own URL.
//
// Choices, in short (the comments on the constants say more):
//
//   - EXT-X-VERSION is 9 in low-latency media playlists, whether or not a
//     given response is a delta update, and 6 in plain media playlists and
//     the multivariant playlist.
//   - EXT-X-TARGETDURATION is the largest of the configured segment target
//     and the segment durations, each rounded to the nearest second.
//   - CAN-SKIP-UNTIL is six target durations, the minimum the spec allows. A
//     delta update skips the segments ending at least that far from the end
//     of the playlist, so with the default window (6 segments of one target
//     duration) nothing is ever skipped and a delta request gets the full
//     playlist; windows longer than 6 target durations do get skipped.
//   - Parts are listed for at most the last three segments (the open one
//     included) within three target durations of the end.
//   - EXT-X-DISCONTINUITY-SEQUENCE is derived from the first listed segment's
//     epoch and init version (see discontinuitySequence).
//   - With MediaOptions.Encryption, EXT-X-KEY tags (AES-128, relative key
//     URIs) follow the first EXT-X-MAP and every key change; see Encryption.
package playlist
