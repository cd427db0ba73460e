package rtmp

// The protocol side of a session: control messages, commands (connect,
// createStream, publish) and what the server sends back. The media side
// (audio, video and data messages) is in media.go.

import (
	"encoding/binary"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/headwater-live/headwater/ingest"
	"github.com/headwater-live/headwater/media"
)

const (
	// outChunkSize is the chunk size of what the server sends.
	outChunkSize = 4096
	// windowAckSize is the acknowledgement window announced to the client.
	windowAckSize = 2500000

	// Chunk stream ids used by the server.
	csidControl = 2
	csidCommand = 3
	csidStatus  = 5
)

func (s *session) flush() error {
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout))
	return s.bw.Flush()
}

func (s *session) writeControl(typeID uint8, payload []byte) error {
	return s.cw.writeMessage(csidControl, typeID, 0, 0, payload)
}

func (s *session) writeCommand(csid uint8, streamID uint32, values ...any) error {
	return s.cw.writeMessage(csid, msgCommandAMF0, streamID, 0, amfEncode(nil, values...))
}

func (s *session) sendStatus(level, code, description string) error {
	err := s.writeCommand(csidStatus, s.publishSID, "onStatus", 0.0, nil, amfObj{
		{"level", level}, {"code", code}, {"description", description},
	})
	if err != nil {
		return err
	}
	return s.flush()
}

// acknowledge sends an Acknowledgement each time the peer's window of bytes
// has been received (clients may stop sending without them).
func (s *session) acknowledge() error {
	if s.peerWindow == 0 || s.rd.n-s.ackedBytes < uint64(s.peerWindow) {
		return nil
	}
	s.ackedBytes = s.rd.n
	if err := s.writeControl(msgAck, binary.BigEndian.AppendUint32(nil, uint32(s.rd.n))); err != nil {
		return err
	}
	return s.flush()
}

func (s *session) handleMessage(msg *message) error {
	p := msg.payload
	switch msg.typeID {
	case msgSetChunkSize:
		if len(p) < 4 {
			return ingest.ProtocolError("Set Chunk Size of %d bytes", len(p))
		}
		size := binary.BigEndian.Uint32(p) & 0x7fffffff
		if size < 1 || size > uint32(s.cfg.MaxChunkSize) {
			return ingest.ProtocolError("peer chunk size %d outside 1..%d", size, s.cfg.MaxChunkSize)
		}
		s.cr.chunkSize = size
	case msgAbort:
		if len(p) >= 4 {
			s.cr.abort(binary.BigEndian.Uint32(p))
		}
	case msgWindowAckSize:
		if len(p) >= 4 {
			s.peerWindow = binary.BigEndian.Uint32(p)
		}
	case msgUserControl:
		if len(p) >= 6 && binary.BigEndian.Uint16(p) == ucPingRequest {
			resp := binary.BigEndian.AppendUint16(nil, ucPingResponse)
			resp = append(resp, p[2:6]...)
			if err := s.writeControl(msgUserControl, resp); err != nil {
				return err
			}
			return s.flush()
		}
	case msgAck, msgSetPeerBandwidth, msgSharedObjAMF0, msgSharedObjAMF3:
		// nothing to do
	case msgCommandAMF3, msgDataAMF3:
		// AMF3 messages from AMF0 clients are AMF0 values after a 0 format byte.
		if len(p) > 0 && p[0] == 0 {
			p = p[1:]
		}
		if msg.typeID == msgCommandAMF3 {
			return s.handleCommand(msg, p)
		}
		return s.handleData(p)
	case msgCommandAMF0:
		return s.handleCommand(msg, p)
	case msgDataAMF0:
		return s.handleData(p)
	case msgAudio, msgVideo:
		return s.handleMedia(msg.typeID, msg.timestamp, p)
	case msgAggregate:
		return s.handleAggregate(msg)
	default:
		s.log.Debug("rtmp: ignoring message", "type", msg.typeID, "size", len(p))
	}
	return nil
}

// handleAggregate splits an Aggregate message into its FLV tags (RTMP spec
// 7.1.6): tag header (11 bytes), data, previous tag size (4 bytes).
func (s *session) handleAggregate(msg *message) error {
	p := msg.payload
	first := true
	var base uint32
	for len(p) > 0 {
		if len(p) < 11 {
			return ingest.ProtocolError("truncated aggregate message")
		}
		typ := p[0] & 0x1f
		size := int(p[1])<<16 | int(p[2])<<8 | int(p[3])
		ts := uint32(p[4])<<16 | uint32(p[5])<<8 | uint32(p[6]) | uint32(p[7])<<24
		if len(p)-11 < size {
			return ingest.ProtocolError("truncated aggregate message")
		}
		data := p[11 : 11+size]
		if first {
			base, first = ts, false
		}
		ts = msg.timestamp + (ts - base)
		switch typ {
		case msgAudio, msgVideo:
			if err := s.handleMedia(typ, ts, data); err != nil {
				return err
			}
		case msgDataAMF0:
			if err := s.handleData(data); err != nil {
				return err
			}
		}
		p = p[min(len(p), 11+size+4):]
	}
	return nil
}

func (s *session) handleCommand(msg *message, p []byte) error {
	vals, err := amfDecodeAll(p)
	if err != nil {
		return ingest.ProtocolError("malformed command: %v", err)
	}
	if len(vals) == 0 {
		return ingest.ProtocolError("empty command")
	}
	name, ok := vals[0].(string)
	if !ok {
		return ingest.ProtocolError("command name is a %T", vals[0])
	}
	var tid float64
	if len(vals) > 1 {
		tid, _ = vals[1].(float64)
	}
	arg := func(i int) any {
		if i < len(vals) {
			return vals[i]
		}
		return nil
	}
	s.log.Debug("rtmp: command", "command", name, "transaction", tid)

	switch name {
	case "connect":
		obj, _ := arg(2).(amfObj)
		return s.onConnect(tid, obj)
	case "createStream":
		if !s.connected {
			return ingest.ProtocolError("createStream before connect")
		}
		if err := s.writeCommand(csidCommand, 0, "_result", tid, nil, 1.0); err != nil {
			return err
		}
		return s.flush()
	case "publish":
		key, _ := arg(3).(string)
		return s.onPublish(msg.streamID, key)
	case "releaseStream", "FCPublish", "getStreamLength", "_checkbw", "receiveAudio", "receiveVideo", "setBufferLength":
		// OBS and ffmpeg send releaseStream and FCPublish before
		// createStream; neither expects an answer.
	case "FCUnpublish", "deleteStream", "closeStream":
		if s.publishing {
			return errUnpublished
		}
	case "play", "play2":
		return ingest.ProtocolError("play is not supported: this is an ingest server")
	default:
		s.log.Debug("rtmp: ignoring command", "command", name)
	}
	return nil
}

func (s *session) onConnect(tid float64, obj amfObj) error {
	if s.connected {
		return ingest.ProtocolError("second connect")
	}
	if obj == nil {
		return ingest.ProtocolError("connect without a command object")
	}
	app := obj.str("app")
	app, s.appQuery, _ = strings.Cut(app, "?")
	s.app = strings.Trim(app, "/")
	s.tcURL = obj.str("tcUrl")
	if s.app != s.cfg.App {
		_ = s.writeCommand(csidCommand, 0, "_error", tid, nil, amfObj{
			{"level", "error"}, {"code", "NetConnection.Connect.Rejected"},
			{"description", fmt.Sprintf("unknown application %q", s.app)},
		})
		_ = s.flush()
		return ingest.Fail(ingest.ReasonBadApp, "application %q refused (only %q is served)", s.app, s.cfg.App)
	}
	s.connected = true
	// The query of tcUrl may hold credentials (rtmp://host/live?key=…): never logged.
	s.log.Debug("rtmp: connect", "app", s.app, "tc_url", withoutQuery(s.tcURL), "flash_ver", obj.str("flashVer"))

	objectEncoding, _ := obj.num("objectEncoding")
	if err := s.writeControl(msgWindowAckSize, binary.BigEndian.AppendUint32(nil, windowAckSize)); err != nil {
		return err
	}
	if err := s.writeControl(msgSetPeerBandwidth, append(binary.BigEndian.AppendUint32(nil, windowAckSize), 2)); err != nil {
		return err
	}
	if err := s.writeControl(msgSetChunkSize, binary.BigEndian.AppendUint32(nil, outChunkSize)); err != nil {
		return err
	}
	s.cw.chunkSize = outChunkSize
	err := s.writeCommand(csidCommand, 0, "_result", tid,
		amfObj{{"fmsVer", "FMS/3,0,1,123"}, {"capabilities", 31.0}},
		amfObj{
			{"level", "status"}, {"code", "NetConnection.Connect.Success"},
			{"description", "Connection succeeded."}, {"objectEncoding", objectEncoding},
		})
	if err != nil {
		return err
	}
	return s.flush()
}

func (s *session) onPublish(streamID uint32, key string) error {
	if !s.connected {
		return ingest.ProtocolError("publish before connect")
	}
	if s.publishing {
		return ingest.ProtocolError("second publish on one connection")
	}
	s.publishSID = streamID
	key, s.rawQuery, _ = strings.Cut(key, "?")
	s.query, _ = url.ParseQuery(s.rawQuery) // best effort: auth will read it
	s.name = s.app + "/" + key
	s.log = s.log.With("stream", s.name)

	if err := media.ValidateName(s.name); err != nil {
		_ = s.sendStatus("error", "NetStream.Publish.BadName", "invalid stream name")
		return &ingest.SessionError{Reason: ingest.ReasonInvalidName, Err: err}
	}
	if c, ok := s.srv.pub.(nameChecker); ok {
		if err := c.CheckName(s.name); err != nil {
			_ = s.sendStatus("error", "NetStream.Publish.BadName", "invalid stream name")
			return &ingest.SessionError{Reason: ingest.ReasonInvalidName, Err: err}
		}
	}
	if err := s.authorize(); err != nil {
		return err
	}
	if ingest.Busy(s.srv.pub, s.name, s.publishInfo()) {
		_ = s.sendStatus("error", "NetStream.Publish.BadName", "stream is already being published")
		return &ingest.SessionError{Reason: ingest.ReasonAlreadyPublishing,
			Err: fmt.Errorf("publish %s: %w", s.name, media.ErrAlreadyPublishing)}
	}
	if !s.srv.publishers.Acquire() {
		_ = s.sendStatus("error", "NetStream.Publish.Rejected", "too many publishers")
		return ingest.Fail(ingest.ReasonTooManyPublishers, "publish %s: %d RTMP publishers already", s.name, s.srv.publishers.Limit())
	}
	s.holdsSlot = true
	s.publishing = true
	s.publishStartedAt = time.Now()
	// Authorised: no more publish deadline, and messages get their buffer
	// at once (within preallocBudget) instead of growing with their bytes.
	s.rd.deadline = time.Time{}
	s.cr.prealloc = preallocBudget

	begin := binary.BigEndian.AppendUint16(nil, ucStreamBegin)
	begin = binary.BigEndian.AppendUint32(begin, streamID)
	if err := s.writeControl(msgUserControl, begin); err != nil {
		return err
	}
	s.log.Info("rtmp: publish", "query", s.rawQuery != "")
	return s.sendStatus("status", "NetStream.Publish.Start", "Start publishing "+s.name)
}
