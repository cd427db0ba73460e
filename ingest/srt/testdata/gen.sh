#!/bin/sh
# Regenerates h264_aac.ts, the MPEG-TS file of BenchmarkDemux and of the
# tests that run without ffmpeg: 2 s of 640x360 30 fps H.264 (key frame
# every 60 frames, no B-frames) and 48 kHz AAC.
set -e
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -nostdin -y \
	-f lavfi -i testsrc2=size=640x360:rate=30 \
	-f lavfi -i sine=frequency=440:sample_rate=48000 -t 2 \
	-c:v libx264 -preset ultrafast -g 60 -bf 0 -b:v 800k \
	-c:a aac -b:a 96k \
	-f mpegts h264_aac.ts
