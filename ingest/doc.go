// Package ingest holds what the ingest protocols (RTMP today, SRT and RTSP
// later) share: Prometheus metrics with a fixed set of error reasons, session
// ids, the mapping of media registry errors to reasons, and the audio
// timestamp regeneration that turns jittery source timestamps into exact
// sample counts.
//
// Each protocol lives in a sub-package (ingest/rtmp) that turns a network
// session into a media.Stream.
package ingest
