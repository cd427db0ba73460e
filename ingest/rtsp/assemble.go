package rtsp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpfragmented"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph264"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtph265"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpmpeg4audio"
	"github.com/bluenviron/gortsplib/v5/pkg/format/rtpsimpleaudio"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/pion/rtp"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

// Track ids of the published streams (the same as RTMP's and SRT's).
const (
	videoTrackID = 1
	audioTrackID = 2
)

// trackPlan is one media of a session description that is ingested: the
// media and the format (payload type) within it whose packets are decoded.
type trackPlan struct {
	media  *description.Media
	format format.Format
	id     int
}

// planTracks picks what to ingest from a session description: the first
// media with a supported video format (H.264, H.265) and the first with a
// supported audio format (MPEG-4 audio, generic or LATM, Opus); see
// checkFormat. Everything else is described in ignored, for one warning
// each, with the reason a format was refused when there is one.
func planTracks(desc *description.Session) (plans []trackPlan, ignored []string) {
	var video, audio *trackPlan
	for i, m := range desc.Medias {
		var chosen format.Format
		var names, whys []string
		for _, f := range m.Formats {
			names = append(names, f.Codec())
			if chosen != nil {
				continue
			}
			if err := checkFormat(f); err == nil {
				chosen = f
			} else if !errors.Is(err, errUnsupported) {
				whys = append(whys, err.Error())
			}
		}
		switch {
		case chosen == nil:
			msg := fmt.Sprintf("media %d (%s: %v): unsupported codec", i, m.Type, names)
			if len(whys) > 0 {
				msg += ": " + strings.Join(whys, "; ")
			}
			ignored = append(ignored, msg)
		case isVideo(chosen) && video == nil:
			video = &trackPlan{media: m, format: chosen, id: videoTrackID}
		case !isVideo(chosen) && audio == nil:
			audio = &trackPlan{media: m, format: chosen, id: audioTrackID}
		default:
			ignored = append(ignored, fmt.Sprintf("media %d (%s: %s): only one %s track is ingested", i, m.Type, chosen.Codec(), m.Type))
		}
	}
	for _, p := range []*trackPlan{video, audio} {
		if p != nil {
			plans = append(plans, *p)
		}
	}
	return plans, ignored
}

func isVideo(f format.Format) bool {
	switch f.(type) {
	case *format.H264, *format.H265:
		return true
	}
	return false
}

// errUnsupported is checkFormat's answer for formats that need no more
// explanation than "unsupported codec".
var errUnsupported = errors.New("unsupported")

// checkFormat tells whether a format can be ingested (nil): H.264 in
// packetization mode 0 or 1, H.265 without DON, MPEG-4 audio (RFC 3640,
// with its config; or LATM, RFC 6416, with its StreamMuxConfig in the SDP:
// see latm.go) and Opus. Other formats get errUnsupported, or the reason
// when there is more to say.
func checkFormat(f format.Format) error {
	ok := false
	switch f := f.(type) {
	case *format.H264:
		ok = f.PacketizationMode < 2
	case *format.H265:
		ok = f.MaxDONDiff == 0
	case *format.MPEG4Audio:
		ok = f.Config != nil && f.Config.SampleRate > 0 && f.SizeLength > 0
	case *format.MPEG4AudioLATM:
		_, err := latmFormatConfig(f)
		return err
	case *format.Opus:
		ok = true
	}
	if !ok {
		return errUnsupported
	}
	return nil
}

// assembler turns the RTP packets of one track into frames. Timestamps are
// those of the session's timeline (gortsplib's PacketPTS), in the track's
// clock; the publisher re-bases them on the publish's start.
type assembler interface {
	// push decodes one packet whose PTS is pts. A decode error is not
	// fatal: the packet is lost and the assembler carries on.
	push(pkt *rtp.Packet, pts int64, now time.Time) ([]*media.Frame, error)
	// track is the current track, nil while the codec parameters are unknown.
	track() *media.Track
	// ready tells whether the track can be published: parameters known and,
	// for video, a first key frame assembled.
	ready() bool
}

// errNeedMore is returned by decoders that wait for more packets.
func needMore(err error) bool {
	return errors.Is(err, rtph264.ErrMorePacketsNeeded) || errors.Is(err, rtph265.ErrMorePacketsNeeded) ||
		errors.Is(err, rtpmpeg4audio.ErrMorePacketsNeeded) || errors.Is(err, rtpfragmented.ErrMorePacketsNeeded)
}

// harmless tells decode errors that are expected at the start of a
// connection (a fragment whose start was missed).
func harmless(err error) bool {
	return errors.Is(err, rtph264.ErrNonStartingPacketAndNoPrevious) ||
		errors.Is(err, rtph265.ErrNonStartingPacketAndNoPrevious)
}

func newAssembler(p trackPlan, warn warnFunc) (assembler, error) {
	switch f := p.format.(type) {
	case *format.H264:
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		sps, pps := f.SafeParams()
		a := &videoAssembler{id: p.id, dec: dec, splitsByTimestamp: true, warn: warn}
		a.setParam(int(h264.NALUTypeSPS), sps)
		a.setParam(int(h264.NALUTypePPS), pps)
		a.updateTrack()
		return a, nil
	case *format.H265:
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		vps, sps, pps := f.SafeParams()
		a := &videoAssembler{id: p.id, dec: dec, h265: true, warn: warn}
		a.setParam(int(h265.NALUType_VPS_NUT), vps)
		a.setParam(int(h265.NALUType_SPS_NUT), sps)
		a.setParam(int(h265.NALUType_PPS_NUT), pps)
		a.updateTrack()
		return a, nil
	case *format.MPEG4Audio:
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		return newAACAssembler(p.id, f.Config, dec), nil
	case *format.MPEG4AudioLATM:
		cfg, err := latmFormatConfig(f)
		if err != nil {
			return nil, err
		}
		dec, err := newLATMDecoder(f)
		if err != nil {
			return nil, err
		}
		return newAACAssembler(p.id, cfg, dec), nil
	case *format.Opus:
		dec, err := f.CreateDecoder()
		if err != nil {
			return nil, err
		}
		channels := f.ChannelCount
		if channels <= 0 {
			channels = 2
		}
		return &opusAssembler{dec: dec, trk: &media.Track{ID: p.id, Codec: &media.Opus{ChannelCount: channels}, ClockRate: 48000}}, nil
	}
	return nil, fmt.Errorf("unsupported format %s", p.format.Codec())
}

// warnFunc logs a warning the first time its key is seen.
type warnFunc func(key, msg string, args ...any)

// --- video ---

type nalDecoder interface {
	Decode(*rtp.Packet) ([][]byte, error)
}

type dtsExtractor interface {
	Extract(au [][]byte, pts int64) (int64, error)
}

// videoAssembler assembles H.264 or H.265 access units: gortsplib's
// depacketizer gives NAL units, mediacommon's DTSExtractor the DTS from the
// slice headers. Parameter sets come from the SDP (sprop-*) and from the
// stream; a change makes a new Track. The payload is AVCC with access unit
// delimiters dropped and in-band parameter sets kept.
type videoAssembler struct {
	id                int
	h265              bool
	dec               nalDecoder
	splitsByTimestamp bool // rtph264 ends an access unit when the timestamp changes
	warn              warnFunc

	vps, sps, pps []byte
	trk           *media.Track

	dts       dtsExtractor
	pending   bool // the decoder holds NAL units of an incomplete access unit
	pendingTS uint32
	pendPTS   int64
	started   bool // a key frame was assembled
	haveLast  bool
	lastDTS   int64
}

func (a *videoAssembler) track() *media.Track { return a.trk }
func (a *videoAssembler) ready() bool         { return a.trk != nil && a.started }

func (a *videoAssembler) naluType(n []byte) int {
	if a.h265 {
		return int(n[0]>>1) & 0x3f
	}
	return int(n[0] & 0x1f)
}

func (a *videoAssembler) isVCL(t int) bool {
	if a.h265 {
		return t < 32
	}
	return t >= 1 && t <= 5
}

func (a *videoAssembler) isAUD(t int) bool {
	if a.h265 {
		return t == int(h265.NALUType_AUD_NUT)
	}
	return t == int(h264.NALUTypeAccessUnitDelimiter)
}

// paramSlot returns where a parameter set NAL unit type is kept, nil for
// other types.
func (a *videoAssembler) paramSlot(t int) *[]byte {
	if a.h265 {
		switch h265.NALUType(t) {
		case h265.NALUType_VPS_NUT:
			return &a.vps
		case h265.NALUType_SPS_NUT:
			return &a.sps
		case h265.NALUType_PPS_NUT:
			return &a.pps
		}
		return nil
	}
	switch h264.NALUType(t) {
	case h264.NALUTypeSPS:
		return &a.sps
	case h264.NALUTypePPS:
		return &a.pps
	}
	return nil
}

// setParam stores a parameter set of NAL unit type t; an SPS that does not
// parse is ignored. It reports whether anything changed.
func (a *videoAssembler) setParam(t int, b []byte) bool {
	if len(b) == 0 {
		return false
	}
	slot := a.paramSlot(t)
	if slot == nil || bytes.Equal(*slot, b) {
		return false
	}
	if a.isSPS(t) {
		var err error
		if a.h265 {
			var sps h265.SPS
			err = sps.Unmarshal(b)
		} else {
			var sps h264.SPS
			err = sps.Unmarshal(b)
		}
		if err != nil {
			if a.warn != nil {
				a.warn("bad-sps", "rtsp: ignoring a sequence parameter set that does not parse", "err", err)
			}
			return false
		}
	}
	*slot = bytes.Clone(b)
	return true
}

func (a *videoAssembler) isSPS(t int) bool {
	if a.h265 {
		return t == int(h265.NALUType_SPS_NUT)
	}
	return t == int(h264.NALUTypeSPS)
}

// updateTrack makes a new Track when every parameter set is known and one
// changed. It reports whether the track changed (not its creation).
func (a *videoAssembler) updateTrack() bool {
	if len(a.sps) == 0 || len(a.pps) == 0 || (a.h265 && len(a.vps) == 0) {
		return false
	}
	var codec media.Codec
	if a.h265 {
		codec = &media.H265{VPS: a.vps, SPS: a.sps, PPS: a.pps}
	} else {
		codec = &media.H264{SPS: a.sps, PPS: a.pps}
	}
	changed := a.trk != nil
	a.trk = &media.Track{ID: a.id, Codec: codec, ClockRate: 90000}
	return changed
}

func (a *videoAssembler) newExtractor() dtsExtractor {
	if a.h265 {
		d := &h265.DTSExtractor{}
		d.Initialize()
		return d
	}
	d := &h264.DTSExtractor{}
	d.Initialize()
	return d
}

func (a *videoAssembler) push(pkt *rtp.Packet, pts int64, now time.Time) ([]*media.Frame, error) {
	prevPending, prevTS, prevPTS := a.pending, a.pendingTS, a.pendPTS
	au, err := a.dec.Decode(pkt)
	if err != nil {
		if needMore(err) {
			if !a.pending || pkt.Timestamp != a.pendingTS {
				a.pending, a.pendingTS, a.pendPTS = true, pkt.Timestamp, pts
			}
			return nil, nil
		}
		a.pending = false
		if harmless(err) {
			return nil, nil
		}
		return nil, err
	}
	auPTS := pts
	if a.splitsByTimestamp && prevPending && pkt.Timestamp != prevTS {
		// No marker bit: rtph264 returned the previous access unit because
		// this packet has another timestamp, and keeps this packet's NAL
		// units for the next one.
		auPTS = prevPTS
		a.pending, a.pendingTS, a.pendPTS = true, pkt.Timestamp, pts
	} else {
		a.pending = false
	}
	f := a.assemble(au, auPTS, now)
	if f == nil {
		return nil, nil
	}
	return []*media.Frame{f}, nil
}

// assemble turns one access unit into a frame, or nil when there is nothing
// to publish (parameter sets only, before the first key frame, unknown
// parameters).
func (a *videoAssembler) assemble(au [][]byte, pts int64, now time.Time) *media.Frame {
	nalus := au[:0:0]
	size, vcl, paramsChanged := 0, false, false
	for _, n := range au {
		if len(n) == 0 {
			continue
		}
		t := a.naluType(n)
		if a.isAUD(t) {
			continue
		}
		if a.paramSlot(t) != nil && a.setParam(t, n) {
			paramsChanged = true
		}
		vcl = vcl || a.isVCL(t)
		nalus = append(nalus, n)
		size += 4 + len(n)
	}
	if paramsChanged && a.updateTrack() && a.warn != nil {
		a.warn(fmt.Sprintf("params-%p", a.trk), "rtsp: video parameter sets changed", "codec", a.trk.Codec.RFC6381())
	}
	if !vcl {
		return nil
	}
	if a.trk == nil {
		if a.warn != nil {
			a.warn("no-params", "rtsp: dropping video until its parameter sets are known")
		}
		return nil
	}
	var key bool
	if a.h265 {
		key = h265.IsRandomAccess(nalus)
	} else {
		key = h264.IsRandomAccess(nalus)
	}
	if !a.started {
		if !key {
			return nil
		}
		a.started = true
		a.dts = a.newExtractor()
	}

	dts, err := a.dts.Extract(a.withParams(nalus, key), pts)
	if err != nil {
		if a.warn != nil {
			a.warn("dts", "rtsp: cannot compute video DTS; using PTS until the next key frame", "err", err)
		}
		// Start the extractor again: it needs a random access unit.
		a.dts = a.newExtractor()
		dts = pts
	}
	if a.haveLast && dts <= a.lastDTS {
		dts = a.lastDTS + 1
	}
	a.haveLast, a.lastDTS = true, dts

	payload := make([]byte, 0, size)
	for _, n := range nalus {
		payload = binary.BigEndian.AppendUint32(payload, uint32(len(n)))
		payload = append(payload, n...)
	}
	return &media.Frame{Track: a.trk, DTS: dts, PTS: max(pts, dts), Key: key, Received: now, Payload: payload}
}

// withParams puts the parameter sets in front of a key frame that lacks them,
// for the DTS extractor (which needs the SPS, and for H.265 the PPS, in the
// stream; they may have come in the SDP only).
func (a *videoAssembler) withParams(nalus [][]byte, key bool) [][]byte {
	if !key {
		return nalus
	}
	for _, n := range nalus {
		if a.isSPS(a.naluType(n)) {
			return nalus
		}
	}
	out := make([][]byte, 0, len(nalus)+3)
	if a.h265 {
		out = append(out, a.vps)
	}
	out = append(out, a.sps, a.pps)
	return append(out, nalus...)
}

// --- audio ---

// aacAssembler assembles MPEG-4 audio (RFC 3640, AAC-hbr; or LATM, RFC
// 6416): each access unit of a packet is a frame, their timestamps
// regenerated from the sample count.
type aacAssembler struct {
	dec   auDecoder
	trk   *media.Track
	clock ingest.SampleClock
}

// auDecoder returns the AAC access units of a packet: rtpmpeg4audio's
// decoder, or latmDecoder.
type auDecoder interface {
	Decode(*rtp.Packet) ([][]byte, error)
}

// newAACAssembler makes the assembler of an AAC track of configuration
// cfg, whose RTP clock is the sample rate.
func newAACAssembler(id int, cfg *mpeg4audio.AudioSpecificConfig, dec auDecoder) *aacAssembler {
	a := &aacAssembler{dec: dec, trk: &media.Track{ID: id, Codec: &media.AAC{Config: *cfg}, ClockRate: uint32(cfg.SampleRate)}}
	a.clock.FrameSamples = 1024
	if cfg.FrameLengthFlag {
		a.clock.FrameSamples = 960
	}
	return a
}

func (a *aacAssembler) track() *media.Track { return a.trk }
func (a *aacAssembler) ready() bool         { return true }

func (a *aacAssembler) push(pkt *rtp.Packet, pts int64, now time.Time) ([]*media.Frame, error) {
	aus, err := a.dec.Decode(pkt)
	if err != nil {
		if needMore(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []*media.Frame
	for i, au := range aus {
		if len(au) == 0 {
			continue
		}
		ts, _, _ := a.clock.Next(pts + int64(i)*a.clock.FrameSamples)
		out = append(out, &media.Frame{Track: a.trk, DTS: ts, PTS: ts, Key: true, Received: now, Payload: au})
	}
	return out, nil
}

// opusAssembler turns each RTP packet into a frame; packets whose
// timestamp does not advance are dropped.
type opusAssembler struct {
	dec     *rtpsimpleaudio.Decoder
	trk     *media.Track
	started bool
	last    int64
}

func (a *opusAssembler) track() *media.Track { return a.trk }
func (a *opusAssembler) ready() bool         { return true }

func (a *opusAssembler) push(pkt *rtp.Packet, pts int64, now time.Time) ([]*media.Frame, error) {
	p, err := a.dec.Decode(pkt)
	if err != nil {
		return nil, err
	}
	if len(p) == 0 {
		return nil, nil
	}
	if a.started && pts <= a.last {
		return nil, fmt.Errorf("opus timestamp %d does not advance (last %d)", pts, a.last)
	}
	a.started, a.last = true, pts
	return []*media.Frame{{Track: a.trk, DTS: pts, PTS: pts, Key: true, Received: now, Payload: p}}, nil
}
