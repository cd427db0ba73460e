package transcoder

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	mpegtscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/headwater-live/headwater/media"
)

// tsOffset is added to every timestamp handed to ffmpeg (after subtracting
// the GOP's first DTS) so that ffmpeg only ever sees small, positive
// timestamps: no 33-bit wrap, no negative DTS with B-frames, whatever the
// stream's age. It is subtracted again from ffmpeg's output.
const tsOffset = 90000

// tsClock is the MPEG-TS clock rate.
const tsClock = 90000

// muxGOP writes a GOP as an MPEG-TS byte stream: parameter sets before every
// random access point, timestamps rebased to base (in 90 kHz ticks) and
// shifted by tsOffset.
func muxGOP(frames []*media.Frame, base int64) ([]byte, error) {
	if len(frames) == 0 {
		return nil, errors.New("empty GOP")
	}
	var codec mpegtscodecs.Codec
	switch frames[0].Track.Codec.(type) {
	case *media.H264:
		codec = &mpegtscodecs.H264{}
	case *media.H265:
		codec = &mpegtscodecs.H265{}
	default:
		return nil, fmt.Errorf("unsupported source codec %s", frames[0].Track.Codec.Name())
	}
	size := 0
	for _, f := range frames {
		size += len(f.Payload) + 64
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+size/8+4096))
	track := &mpegts.Track{Codec: codec}
	w := &mpegts.Writer{W: buf, Tracks: []*mpegts.Track{track}}
	if err := w.Initialize(); err != nil {
		return nil, err
	}
	for _, f := range frames {
		var au h264.AVCC
		if err := au.Unmarshal(f.Payload); err != nil {
			return nil, fmt.Errorf("frame at DTS %d: %w", f.DTS, err)
		}
		rate := f.Track.ClockRate
		pts := media.RescaleNearest(f.PTS-base, rate, tsClock) + tsOffset
		dts := media.RescaleNearest(f.DTS-base, rate, tsClock) + tsOffset
		var err error
		switch c := f.Track.Codec.(type) {
		case *media.H264:
			if f.Key && !hasH264ParamSets(au) {
				au = append([][]byte{c.SPS, c.PPS}, au...)
			}
			err = w.WriteH264(track, pts, dts, au)
		case *media.H265:
			if f.Key && !hasH265ParamSets(au) {
				au = append([][]byte{c.VPS, c.SPS, c.PPS}, au...)
			}
			err = w.WriteH265(track, pts, dts, au)
		default:
			err = fmt.Errorf("codec changed to %s inside a GOP", f.Track.Codec.Name())
		}
		if err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

func hasH264ParamSets(au [][]byte) bool {
	for _, n := range au {
		if len(n) > 0 && h264.NALUType(n[0]&0x1f) == h264.NALUTypeSPS {
			return true
		}
	}
	return false
}

func hasH265ParamSets(au [][]byte) bool {
	for _, n := range au {
		if len(n) > 0 && h265.NALUType((n[0]>>1)&0x3f) == h265.NALUType_SPS_NUT {
			return true
		}
	}
	return false
}

// OutFrame is one access unit of a rendition as a worker returns it:
// timestamps already mapped back to the source clock.
type OutFrame struct {
	DTS, PTS int64
	Key      bool
	// AU is the access unit without parameter sets or delimiters, AVCC
	// (4-byte length-prefixed).
	AU []byte
}

// OutTrack is what a worker produced for one rendition of a job.
type OutTrack struct {
	// Codec carries the parameter sets the encoder wrote (H.264 or H.265).
	Codec  media.Codec
	Frames []OutFrame
}

// demuxOutput reads ffmpeg's MPEG-TS output: one video PID per rendition in
// output order. mapTS maps MPEG-TS timestamps back to the source's; emit,
// when not nil, is called with each frame as soon as it is read.
func demuxOutput(r io.Reader, n int, mapTS func(pts, dts int64) (int64, int64), emit func(i int, o *OutTrack)) ([]OutTrack, error) {
	rd := &mpegts.Reader{R: r}
	if err := rd.Initialize(); err != nil {
		return nil, fmt.Errorf("reading ffmpeg output: %w", err)
	}
	var decodeErr error
	rd.OnDecodeError(func(err error) {
		if decodeErr == nil {
			decodeErr = err
		}
	})
	tracks := rd.Tracks()
	if len(tracks) != n {
		return nil, fmt.Errorf("ffmpeg output has %d tracks, want %d", len(tracks), n)
	}
	out := make([]OutTrack, n)
	for i, tr := range tracks {
		o := &out[i]
		add := func(au [][]byte, pts, dts int64, key bool) error {
			if len(au) == 0 {
				return nil
			}
			payload, err := h264.AVCC(au).Marshal()
			if err != nil {
				return err
			}
			pts, dts = mapTS(pts, dts)
			o.Frames = append(o.Frames, OutFrame{DTS: dts, PTS: pts, Key: key, AU: payload})
			if emit != nil {
				emit(i, o)
			}
			return nil
		}
		switch tr.Codec.(type) {
		case *mpegtscodecs.H264:
			cd := &media.H264{}
			o.Codec = cd
			rd.OnDataH264(tr, func(pts, dts int64, au [][]byte) error {
				key := false
				keep := au[:0:0]
				for _, nalu := range au {
					if len(nalu) == 0 {
						continue
					}
					switch h264.NALUType(nalu[0] & 0x1f) {
					case h264.NALUTypeSPS:
						if cd.SPS == nil {
							cd.SPS = bytes.Clone(nalu)
						}
						continue
					case h264.NALUTypePPS:
						if cd.PPS == nil {
							cd.PPS = bytes.Clone(nalu)
						}
						continue
					case h264.NALUTypeAccessUnitDelimiter:
						continue
					case h264.NALUTypeIDR:
						key = true
					}
					keep = append(keep, nalu)
				}
				return add(keep, pts, dts, key)
			})
		case *mpegtscodecs.H265:
			cd := &media.H265{}
			o.Codec = cd
			rd.OnDataH265(tr, func(pts, dts int64, au [][]byte) error {
				key := false
				keep := au[:0:0]
				for _, nalu := range au {
					if len(nalu) == 0 {
						continue
					}
					typ := h265.NALUType((nalu[0] >> 1) & 0x3f)
					switch typ {
					case h265.NALUType_VPS_NUT:
						if cd.VPS == nil {
							cd.VPS = bytes.Clone(nalu)
						}
						continue
					case h265.NALUType_SPS_NUT:
						if cd.SPS == nil {
							cd.SPS = bytes.Clone(nalu)
						}
						continue
					case h265.NALUType_PPS_NUT:
						if cd.PPS == nil {
							cd.PPS = bytes.Clone(nalu)
						}
						continue
					case h265.NALUType_AUD_NUT:
						continue
					}
					if typ >= h265.NALUType_BLA_W_LP && typ <= h265.NALUType_CRA_NUT {
						key = true
					}
					keep = append(keep, nalu)
				}
				return add(keep, pts, dts, key)
			})
		default:
			return nil, fmt.Errorf("ffmpeg output track %d: unsupported codec %T", i, tr.Codec)
		}
	}
	for {
		if err := rd.Read(); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("reading ffmpeg output: %w", err)
		}
	}
	for i := range out {
		if len(out[i].Frames) == 0 {
			if decodeErr != nil {
				return nil, fmt.Errorf("rendition %d: no frames (%v)", i, decodeErr)
			}
			return nil, fmt.Errorf("rendition %d: no frames", i)
		}
		if err := checkParams(out[i].Codec); err != nil {
			return nil, fmt.Errorf("rendition %d: %w", i, err)
		}
	}
	return out, nil
}

func checkParams(c media.Codec) error {
	switch c := c.(type) {
	case *media.H264:
		if c.SPS == nil || c.PPS == nil {
			return errors.New("no SPS/PPS in the encoder output")
		}
	case *media.H265:
		if c.VPS == nil || c.SPS == nil || c.PPS == nil {
			return errors.New("no VPS/SPS/PPS in the encoder output")
		}
	}
	return nil
}
