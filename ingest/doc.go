// Package ingest holds what the ingest protocols (RTMP, SRT and RTSP) share:
// the Registry they publish to, the server lifecycle (start, serve, close)
// and publisher/reader slots, the session error with its metric reason,
// Prometheus metrics with a fixed set of error reasons, session ids, the
// mapping of media registry errors to reasons, per-address connection
// limits, read authorisation, and the audio timestamp regeneration that
// turns jittery source timestamps into exact sample counts.
//
// Each protocol lives in a sub-package (ingest/rtmp, ingest/srt,
// ingest/rtsp) that turns network sessions into media.Streams.
package ingest
