package srt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

// Track ids of the published streams, as RTMP's.
const (
	videoTrackID = 1
	audioTrackID = 2
)

// demuxFrame is a frame on the demuxer's timeline (see timeline), before
// the retimer makes its timestamps relative to the publish.
type demuxFrame struct {
	f *media.Frame
	// samples is an audio frame's duration in ticks of its clock.
	samples int64
}

// videoState is the state of the video track being demuxed.
type videoState struct {
	pid   uint16
	hevc  bool
	track *media.Track // nil until the parameter sets and a key frame arrived
	// latest parameter sets seen in the stream (copies)
	vps, sps, pps []byte
	// started is set at the first frame emitted: a key frame with the
	// parameter sets known.
	started bool
	// droppedBeforeKey counts the frames dropped before it.
	droppedBeforeKey int
	// carry holds the NAL units of an access unit without a picture, for
	// the next one.
	carry [][]byte
	// lastTS and step are the timeline DTS of the last access unit and the
	// last step between two (the frame duration, for discontinuities).
	lastTS, step int64
	hasLast      bool
}

// audioState is the state of the audio track being demuxed.
type audioState struct {
	pid          uint16
	track        *media.Track
	frameSamples int64 // AAC: 1024
	lastDuration int64 // of the last PES, 90 kHz (for discontinuities)
}

// demuxer turns an MPEG-TS byte stream into media frames with
// mediacommon's mpegts.Reader. It keeps the first H.264/H.265 track and the
// first AAC/Opus track of the PMT and ignores the others.
//
// Frames are handed to emit from the goroutine calling init and step, in
// stream order, with timestamps on the demuxer's continuous 90 kHz timeline
// (audio: in ticks of the track's clock) that a retimer makes relative to
// the publish.
type demuxer struct {
	log     *slog.Logger
	onError func(error) // non-fatal decoding errors (the stream goes on)
	emit    func(demuxFrame) error
	now     func() time.Time

	guard  *packetGuard
	reader *mpegts.Reader
	video  *videoState
	audio  *audioState
	tl     timeline
	// ignored describes the PMT's tracks that are not ingested.
	ignored []string
}

// init reads the stream until its PMT and the first ADTS header of an AAC
// track, and sets the tracks up. It fails with ReasonUnsupportedCodec when
// no track can be ingested.
func (d *demuxer) init(r io.Reader) (err error) {
	defer d.recoverPanic(&err)
	if d.now == nil {
		d.now = time.Now
	}
	d.guard = newPacketGuard(r, d.decodeError)
	d.reader = &mpegts.Reader{R: d.guard}
	if err := d.reader.Initialize(); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return err
		}
		return ingest.ProtocolError("reading the MPEG-TS program: %v", err)
	}
	d.reader.OnDecodeError(d.decodeError)

	ignored := make(map[uint16]bool)
	for _, t := range d.reader.Tracks() {
		if d.setupTrack(t) {
			continue
		}
		ignored[t.PID] = true
		d.ignored = append(d.ignored, fmt.Sprintf("PID %d: %s", t.PID, tsCodecName(t.Codec)))
	}
	if d.video == nil && d.audio == nil {
		if len(d.ignored) == 0 {
			return ingest.ProtocolError("the MPEG-TS program has no elementary stream")
		}
		return ingest.Fail(ingest.ReasonUnsupportedCodec, "no supported track (H.264, H.265, AAC, Opus) in the program: %s",
			strings.Join(d.ignored, ", "))
	}
	// The guard drops the tracks not ingested from now on.
	d.guard.keep = func(pid uint16) bool { return !ignored[pid] }
	return nil
}

// setupTrack registers the callbacks of a track to ingest.
func (d *demuxer) setupTrack(t *mpegts.Track) bool {
	switch c := t.Codec.(type) {
	case *codecs.H264:
		if d.video != nil {
			return false
		}
		d.video = &videoState{pid: t.PID}
		d.reader.OnDataH264(t, func(pts, dts int64, au [][]byte) error { return d.onVideo(pts, dts, au) })
		return true
	case *codecs.H265:
		if d.video != nil {
			return false
		}
		d.video = &videoState{pid: t.PID, hevc: true}
		d.reader.OnDataH265(t, func(pts, dts int64, au [][]byte) error { return d.onVideo(pts, dts, au) })
		return true
	case *codecs.MPEG4Audio:
		if d.audio != nil || c.SampleRate <= 0 {
			return false
		}
		d.audio = &audioState{
			pid:          t.PID,
			track:        &media.Track{ID: audioTrackID, Codec: &media.AAC{Config: c.Config}, ClockRate: uint32(c.SampleRate)},
			frameSamples: 1024, // ADTS cannot signal 960-sample frames
		}
		d.reader.OnDataMPEG4Audio(t, d.onAAC)
		return true
	case *codecs.Opus:
		if d.audio != nil {
			return false
		}
		channels := c.ChannelCount //nolint:staticcheck // Desc may be nil
		if c.Desc != nil {
			channels = c.Desc.ChannelCount()
		}
		d.audio = &audioState{
			pid:   t.PID,
			track: &media.Track{ID: audioTrackID, Codec: &media.Opus{ChannelCount: channels}, ClockRate: 48000},
		}
		d.reader.OnDataOpus(t, d.onOpus)
		return true
	}
	return false
}

// step demuxes one PES (or table); it returns the reader's error (io.EOF
// when the connection ended) or emit's.
func (d *demuxer) step() (err error) {
	defer d.recoverPanic(&err)
	return d.reader.Read()
}

// recoverPanic turns a panic of the demuxing libraries into a protocol
// error: the input is what made them panic.
func (d *demuxer) recoverPanic(err *error) {
	if r := recover(); r != nil {
		d.log.Error("srt: panic while demuxing", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = ingest.ProtocolError("MPEG-TS demuxer failed on the input: %v", r)
	}
}

// unwrap maps a PES timestamp onto the timeline, logging discontinuities
// (the first few as warnings).
func (d *demuxer) unwrap(raw, gap int64, pid uint16) int64 {
	ts, jumped := d.tl.unwrap(raw, gap)
	if jumped {
		level := slog.LevelWarn
		if d.tl.jumps > 3 {
			level = slog.LevelDebug
		}
		d.log.Log(context.Background(), level, "srt: timestamp discontinuity: timeline re-based",
			"pid", pid, "discontinuities", d.tl.jumps)
	}
	return ts
}

func (d *demuxer) decodeError(err error) {
	if d.onError != nil {
		d.onError(err)
	}
}

// tracks are the ingested tracks that are ready (video: parameter sets and a
// key frame seen), video first.
func (d *demuxer) tracks() []*media.Track {
	var ts []*media.Track
	if d.video != nil && d.video.started {
		ts = append(ts, d.video.track)
	}
	if d.audio != nil {
		ts = append(ts, d.audio.track)
	}
	return ts
}

// maxCarry bounds the NAL units without a picture (parameter sets, SEI)
// kept for the next access unit.
const maxCarry = 64 << 10

// isVCL tells whether a NAL unit holds picture data (a slice).
func isVCL(nalu []byte, hevc bool) bool {
	if hevc {
		return (nalu[0]>>1)&0x3f < 32
	}
	typ := nalu[0] & 0x1f
	return typ >= 1 && typ <= 5
}

// NAL unit roles.
const (
	naluOther = iota
	naluAUD
	naluVPS
	naluSPS
	naluPPS
	naluKey
)

func naluRole(nalu []byte, hevc bool) int {
	if hevc {
		switch typ := h265.NALUType((nalu[0] >> 1) & 0x3f); {
		case typ == h265.NALUType_AUD_NUT:
			return naluAUD
		case typ == h265.NALUType_VPS_NUT:
			return naluVPS
		case typ == h265.NALUType_SPS_NUT:
			return naluSPS
		case typ == h265.NALUType_PPS_NUT:
			return naluPPS
		case typ >= h265.NALUType_BLA_W_LP && typ <= h265.NALUType_CRA_NUT: // IRAP
			return naluKey
		}
		return naluOther
	}
	switch h264.NALUType(nalu[0] & 0x1f) {
	case h264.NALUTypeAccessUnitDelimiter:
		return naluAUD
	case h264.NALUTypeSPS:
		return naluSPS
	case h264.NALUTypePPS:
		return naluPPS
	case h264.NALUTypeIDR:
		return naluKey
	}
	return naluOther
}

func (d *demuxer) onVideo(pts, dts int64, au [][]byte) error {
	v := d.video
	received := d.now()
	if len(au) == 1 {
		if payload, ok := d.guard.takeStandIn(au[0]); ok {
			if payload == nil {
				d.decodeError(errors.New("video frame lost: its payload was evicted before it was read"))
				return nil
			}
			var annexB h264.AnnexB
			if err := annexB.Unmarshal(payload); err != nil {
				d.decodeError(fmt.Errorf("video frame: %w", err))
				return nil
			}
			au = annexB
		}
	}
	ts := d.unwrap(dts, v.step, v.pid)
	if v.hasLast && ts > v.lastTS && ts-v.lastTS <= tsClockRate {
		v.step = ts - v.lastTS
	}
	v.hasLast, v.lastTS = true, ts

	if len(v.carry) > 0 {
		au = append(v.carry, au...)
		v.carry = nil
	}
	key, size, vcl := false, 0, false
	var vps, sps, pps []byte
	for _, nalu := range au {
		if len(nalu) == 0 {
			continue
		}
		vcl = vcl || isVCL(nalu, v.hevc)
		switch naluRole(nalu, v.hevc) {
		case naluAUD:
			continue
		case naluVPS:
			vps = nalu
		case naluSPS:
			sps = nalu
		case naluPPS:
			pps = nalu
		case naluKey:
			key = true
		}
		size += 4 + len(nalu)
	}
	if size == 0 {
		return nil
	}
	if !vcl {
		// Parameter sets or SEI sent in a PES of their own: they go with
		// the next picture.
		if size <= maxCarry {
			for _, nalu := range au {
				if len(nalu) > 0 && naluRole(nalu, v.hevc) != naluAUD {
					v.carry = append(v.carry, bytes.Clone(nalu))
				}
			}
		} else {
			d.decodeError(fmt.Errorf("video access unit of %d bytes without a picture dropped", size))
		}
		return nil
	}
	d.updateParams(vps, sps, pps)
	if key {
		d.updateTrack()
	}
	if !v.started {
		if v.track == nil || !key {
			v.droppedBeforeKey++
			return nil
		}
		v.started = true
		if v.droppedBeforeKey > 0 {
			d.log.Info("srt: video frames dropped before the first key frame with parameter sets", "frames", v.droppedBeforeKey)
		}
	}

	payload := make([]byte, 0, size)
	for _, nalu := range au {
		if len(nalu) == 0 || naluRole(nalu, v.hevc) == naluAUD {
			continue
		}
		payload = binary.BigEndian.AppendUint32(payload, uint32(len(nalu)))
		payload = append(payload, nalu...)
	}
	return d.emit(demuxFrame{f: &media.Frame{
		Track: v.track, DTS: ts, PTS: ts + ptsOffset(pts, dts), Key: key, Received: received, Payload: payload,
	}})
}

// updateParams keeps the latest valid parameter sets of the video track.
func (d *demuxer) updateParams(vps, sps, pps []byte) {
	v := d.video
	if vps != nil {
		v.vps = bytes.Clone(vps)
	}
	if sps != nil && !bytes.Equal(sps, v.sps) {
		var err error
		if v.hevc {
			var s h265.SPS
			err = s.Unmarshal(sps)
		} else {
			var s h264.SPS
			err = s.Unmarshal(sps)
		}
		if err != nil {
			d.decodeError(fmt.Errorf("invalid SPS ignored: %w", err))
		} else {
			v.sps = bytes.Clone(sps)
		}
	}
	if pps != nil {
		v.pps = bytes.Clone(pps)
	}
}

// updateTrack creates the video track, or a new version of it when the
// parameter sets changed; called at key frames.
func (d *demuxer) updateTrack() {
	v := d.video
	if v.sps == nil || v.pps == nil || (v.hevc && v.vps == nil) {
		return
	}
	var codec media.Codec
	if v.hevc {
		if cur, ok := trackCodec[*media.H265](v.track); ok &&
			bytes.Equal(cur.VPS, v.vps) && bytes.Equal(cur.SPS, v.sps) && bytes.Equal(cur.PPS, v.pps) {
			return
		}
		codec = &media.H265{VPS: v.vps, SPS: v.sps, PPS: v.pps}
	} else {
		if cur, ok := trackCodec[*media.H264](v.track); ok && bytes.Equal(cur.SPS, v.sps) && bytes.Equal(cur.PPS, v.pps) {
			return
		}
		codec = &media.H264{SPS: v.sps, PPS: v.pps}
	}
	changed := v.track != nil
	v.track = &media.Track{ID: videoTrackID, Codec: codec, ClockRate: tsClockRate}
	info, _ := media.ParseVideoInfo(codec)
	d.log.Info("srt: video track", "codec", codec.RFC6381(), "width", info.Width, "height", info.Height,
		"fps", info.FrameRate, "changed", changed)
}

func trackCodec[C media.Codec](t *media.Track) (C, bool) {
	var zero C
	if t == nil {
		return zero, false
	}
	c, ok := t.Codec.(C)
	return c, ok
}

func (d *demuxer) onAAC(pts int64, aus [][]byte) error {
	a := d.audio
	received := d.now()
	ts := d.unwrap(pts, a.lastDuration, a.pid)
	src := media.Rescale(ts, tsClockRate, a.track.ClockRate)
	a.lastDuration = media.Rescale(int64(len(aus))*a.frameSamples, a.track.ClockRate, tsClockRate)
	for _, au := range aus {
		if len(au) == 0 {
			continue
		}
		err := d.emit(demuxFrame{
			f:       &media.Frame{Track: a.track, DTS: src, PTS: src, Key: true, Received: received, Payload: au},
			samples: a.frameSamples,
		})
		if err != nil {
			return err
		}
		src += a.frameSamples
	}
	return nil
}

func (d *demuxer) onOpus(pts int64, packets [][]byte) error {
	a := d.audio
	received := d.now()
	ts := d.unwrap(pts, a.lastDuration, a.pid)
	src := media.Rescale(ts, tsClockRate, a.track.ClockRate)
	start := src
	for _, pkt := range packets {
		dur := opus.PacketDuration2(pkt)
		if dur <= 0 {
			d.decodeError(errors.New("invalid Opus packet dropped"))
			continue
		}
		err := d.emit(demuxFrame{
			f:       &media.Frame{Track: a.track, DTS: src, PTS: src, Key: true, Received: received, Payload: pkt},
			samples: dur,
		})
		if err != nil {
			return err
		}
		src += dur
	}
	a.lastDuration = media.Rescale(src-start, a.track.ClockRate, tsClockRate)
	return nil
}

// tsCodecName names an MPEG-TS codec for logs.
func tsCodecName(c codecs.Codec) string {
	switch c := c.(type) {
	case *codecs.H264:
		return "H.264"
	case *codecs.H265:
		return "H.265"
	case *codecs.MPEG4Audio:
		return "AAC"
	case *codecs.Opus:
		return "Opus"
	case *codecs.MPEG1Video:
		return "MPEG-1/2 video"
	case *codecs.MPEG4Video:
		return "MPEG-4 video"
	case *codecs.MPEG1Audio:
		return "MPEG-1/2 audio (MP2/MP3)"
	case *codecs.MPEG4AudioLATM:
		return "AAC LATM"
	case *codecs.AC3:
		return "AC-3"
	case *codecs.EAC3:
		return "E-AC-3"
	case *codecs.KLV:
		return "KLV metadata"
	case *codecs.DVBSubtitle:
		return "DVB subtitles"
	case nil:
		return "none"
	default:
		return fmt.Sprintf("unsupported stream type (%T)", c)
	}
}
