// Package store keeps what the origin serves: per stream, per rendition, a
// sliding window of CMAF init segments, segments and parts in memory.
//
// Writers (the segmenter) append parts to an open segment and close it;
// readers (playlists, the origin) take immutable snapshots and may wait for a
// given media sequence number and part to appear, which is what LL-HLS
// blocking playlist reload and preload hints need.
package store
