// Package media is Headwater's protocol-neutral model of a live stream:
// tracks with their codec parameters, frames (access units) with source
// timestamps, and the per-publish hub (Stream) that fans frames out to
// subscribers by reference. Ingest protocols produce it; the segmenter and
// the transcoder consume it. It knows nothing of RTMP, SRT, HLS or DASH.
package media
