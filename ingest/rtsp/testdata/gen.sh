#!/bin/sh
# Regenerates the seed media of the fuzz tests (they run without ffmpeg):
# 12 frames of 160x96 video at 30 fps, a key frame every 6, with B-frames,
# as Annex-B H.264 and H.265 with access unit delimiters; and MP4A-LATM
# RTP packets.
set -e
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -nostdin -y \
	-f lavfi -i testsrc2=size=160x96:rate=30 -frames:v 12 \
	-c:v libx264 -preset ultrafast -g 6 -bf 2 -x264-params aud=1 -pix_fmt yuv420p \
	-f h264 seed.h264
ffmpeg -hide_banner -loglevel error -nostdin -y \
	-f lavfi -i testsrc2=size=160x96:rate=30 -frames:v 12 \
	-c:v libx265 -preset ultrafast -pix_fmt yuv420p \
	-x265-params keyint=6:min-keyint=6:scenecut=0:bframes=2:aud=1:log-level=error \
	-f hevc seed.h265
# MP4A-LATM RTP packets of 8 AAC frames (48 kHz stereo) from ffmpeg's
# packetizer, whole (seed.latm) and fragmented in 120-byte packets
# (seed-frag.latm), with their SDPs.
go run genlatm.go seed.latm 1400
go run genlatm.go seed-frag.latm 120
