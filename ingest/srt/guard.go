package srt

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
)

const (
	tsPacketSize = 188
	tsSyncByte   = 0x47
	tsNullPID    = 0x1fff

	// heldPackets is the size, in packets, up to which a video PES is
	// handed to the demuxer as it came; a larger one is replaced by a
	// stand-in (see packetGuard).
	heldPackets = 32
	// maxVideoPES bounds a video PES: mediacommon's largest access unit.
	maxVideoPES = 8 << 20
	// maxOtherPES bounds any other PES (audio: at most 64 KiB by its
	// PES_packet_length field, with headers).
	maxOtherPES = 96 << 10
	// maxHeldBytes bounds the PES bytes held over all PIDs, and
	// maxStandInBytes those waiting in the stand-in table.
	maxHeldBytes    = 24 << 20
	maxStandInBytes = 16 << 20
)

// packetGuard sits between the connection and mediacommon's MPEG-TS
// Reader. It
//
//   - hands out whole, aligned 188-byte packets only, skipping garbage up to
//     the next sync byte (reported once per skipped run);
//   - reassembles each PES itself, in linear time and within bounds: go-astits
//     (under mediacommon) re-copies the whole PES accumulated so far for every
//     packet it adds, which is quadratic (a 1 MiB I-frame costs about half a
//     second of CPU, an 8 MiB one minutes) and unbounded;
//   - hands the demuxer small PES (audio, small video frames) as they came,
//     and replaces a large video PES by a stand-in: a one-packet PES with the
//     same header (timestamps) whose payload is a token naming the real
//     payload, kept aside in the guard's table. The demuxer's video callback
//     swaps the token for the payload (takeStandIn);
//   - drops duplicate packets and the PES broken by a continuity counter
//     jump (as astits would), and renumbers the continuity counters of what
//     it hands out, since it changes the packet sequence;
//   - once the demuxer has chosen its tracks, drops the PIDs it does not
//     read (keep).
type packetGuard struct {
	r       io.Reader
	onError func(error)
	// keep, when set, tells the PIDs to hand out (PSI and ingested tracks).
	keep func(pid uint16) bool

	buf        []byte
	start, end int
	err        error // sticky read error, returned once everything is handed out
	skipped    int   // garbage bytes skipped and not yet reported
	eof        bool  // the held PES were flushed after the read error

	out    []byte // packets ready to be handed out
	outPos int

	pids [8192]*pidState
	held int // PES bytes held over all PIDs

	nonce       [8]byte // makes stand-in tokens unguessable
	nextID      uint64
	standIns    map[uint64][]byte
	standInIDs  []uint64 // in creation order, for eviction
	standInSize int
}

// pidState is the reassembly state of one PID.
type pidState struct {
	holding  bool // inside a PES being reassembled
	dropping bool // dropping until the next unit start
	video    bool // the PES stream_id is a video one
	lastCC   byte
	outCC    byte
	pkts     []byte // the PES's packets as they came, while they are few
	npkts    int
	payload  []byte // the PES: TS payloads concatenated
	length   int    // total PES size when PES_packet_length is set, else 0
	sizeHint int    // size of the last stand-in's PES, to allocate the next
}

func newPacketGuard(r io.Reader, onError func(error)) *packetGuard {
	g := &packetGuard{r: r, onError: onError, buf: make([]byte, 32*tsPacketSize), standIns: make(map[uint64][]byte)}
	for i := range g.nonce {
		for g.nonce[i] == 0 { // the token must not contain a start code
			_, _ = rand.Read(g.nonce[i : i+1])
		}
	}
	return g
}

// Read fills p with whole packets (len(p) must hold one). It only reads
// from the connection when it has nothing to hand out.
func (g *packetGuard) Read(p []byte) (int, error) {
	if len(p) < tsPacketSize {
		return 0, io.ErrShortBuffer
	}
	for g.outPos == len(g.out) {
		g.out, g.outPos = g.out[:0], 0
		if g.eof {
			return 0, g.err
		}
		pkt, err := g.next()
		if err != nil {
			g.flushAll()
			g.eof = true
			continue
		}
		g.process(pkt)
	}
	n := copy(p, g.out[g.outPos:])
	n -= n % tsPacketSize
	g.outPos += n
	return n, nil
}

// next returns the next aligned packet (a slice of the buffer, valid until
// the following call).
func (g *packetGuard) next() ([]byte, error) {
	for {
		if g.start < g.end && g.buf[g.start] != tsSyncByte {
			i := bytes.IndexByte(g.buf[g.start:g.end], tsSyncByte)
			if i < 0 {
				i = g.end - g.start
			}
			g.skipped += i
			g.start += i
		}
		if g.end-g.start >= tsPacketSize {
			if g.skipped > 0 {
				g.onError(fmt.Errorf("skipped %d bytes of garbage to resynchronise", g.skipped))
				g.skipped = 0
			}
			pkt := g.buf[g.start : g.start+tsPacketSize]
			g.start += tsPacketSize
			return pkt, nil
		}
		if g.err != nil {
			return nil, g.err
		}
		// Move the partial packet to the front and read more.
		g.end = copy(g.buf, g.buf[g.start:g.end])
		g.start = 0
		m, err := g.r.Read(g.buf[g.end:])
		g.end += m
		if err != nil {
			g.err = err
		}
	}
}

func (g *packetGuard) state(pid uint16) *pidState {
	st := g.pids[pid]
	if st == nil {
		st = &pidState{}
		g.pids[pid] = st
	}
	return st
}

// process takes one aligned packet from the connection.
func (g *packetGuard) process(pkt []byte) {
	pid := uint16(pkt[1]&0x1f)<<8 | uint16(pkt[2])
	if pid == tsNullPID {
		return
	}
	if pkt[1]&0x80 != 0 {
		g.onError(fmt.Errorf("PID %d: packet with the transport error indicator dropped", pid))
		return
	}
	if g.keep != nil && !g.keep(pid) {
		return
	}
	afc := pkt[3] >> 4 & 3
	if afc&1 == 0 { // no payload (adaptation field only, or reserved)
		return
	}
	payload := pkt[4:]
	discontinuity := false
	if afc&2 != 0 {
		afLen := int(pkt[4])
		if afLen > 182 {
			g.onError(fmt.Errorf("PID %d: adaptation field of %d bytes: packet dropped", pid, afLen))
			return
		}
		discontinuity = afLen > 0 && pkt[5]&0x80 != 0
		payload = pkt[5+afLen:]
	}
	cc := pkt[3] & 0x0f
	st := g.state(pid)

	if pkt[1]&0x40 != 0 { // payload unit start
		g.flush(pid, st)
		st.dropping = false
		st.lastCC = cc
		if len(payload) < 3 || payload[0] != 0 || payload[1] != 0 || payload[2] != 1 {
			g.forward(pid, st, pkt) // PSI (or not a PES: the demuxer decides)
			return
		}
		st.holding = true
		st.video = len(payload) >= 4 && payload[3]&0xf0 == 0xe0
		st.length = 0
		if len(payload) >= 6 {
			if l := int(binary.BigEndian.Uint16(payload[4:6])); l > 0 {
				st.length = 6 + l
			}
		}
		st.pkts = append(st.pkts[:0], pkt...)
		st.npkts = 1
		if st.payload == nil && st.video && st.sizeHint > 0 {
			st.payload = make([]byte, 0, st.sizeHint+st.sizeHint/4)
		}
		st.payload = append(st.payload[:0], payload...)
		g.held += len(payload)
		g.checkComplete(pid, st)
		return
	}

	if st.dropping {
		return
	}
	if !st.holding {
		g.forward(pid, st, pkt) // PSI continuation, or data without a unit start
		return
	}
	if cc == st.lastCC {
		return // duplicate packet
	}
	if cc != (st.lastCC+1)&0x0f && !discontinuity {
		g.onError(fmt.Errorf("PID %d: continuity counter jumped from %d to %d: PES dropped", pid, st.lastCC, cc))
		g.drop(st)
		return
	}
	st.lastCC = cc
	limit := maxOtherPES
	if st.video {
		limit = maxVideoPES
	}
	if len(st.payload)+len(payload) > limit || g.held+len(payload) > maxHeldBytes {
		g.onError(fmt.Errorf("PID %d: PES over %d bytes (%d held in all): dropped until the next one", pid, len(st.payload), g.held))
		g.drop(st)
		return
	}
	st.payload = append(st.payload, payload...)
	g.held += len(payload)
	if !st.video || st.npkts < heldPackets {
		st.pkts = append(st.pkts, pkt...)
	}
	st.npkts++
	g.checkComplete(pid, st)
}

// checkComplete hands a PES out as soon as its declared length is reached.
func (g *packetGuard) checkComplete(pid uint16, st *pidState) {
	if st.length > 0 && len(st.payload) >= st.length {
		g.flush(pid, st)
	}
}

// drop abandons the PES being held and ignores the PID until its next
// unit start.
func (g *packetGuard) drop(st *pidState) {
	g.held -= len(st.payload)
	st.holding, st.dropping = false, true
	st.pkts, st.payload = st.pkts[:0], st.payload[:0]
}

// forward hands a packet out with the PID's next continuity counter.
func (g *packetGuard) forward(pid uint16, st *pidState, pkt []byte) {
	g.out = append(g.out, pkt...)
	g.out[len(g.out)-tsPacketSize+3] = pkt[3]&0xf0 | st.outCC
	st.outCC = (st.outCC + 1) & 0x0f
}

// flush hands out the PES being held: as it came when small, else as a
// stand-in.
func (g *packetGuard) flush(pid uint16, st *pidState) {
	if !st.holding {
		return
	}
	g.held -= len(st.payload)
	st.holding = false
	if !st.video || st.npkts <= heldPackets {
		for p := st.pkts; len(p) >= tsPacketSize; p = p[tsPacketSize:] {
			g.forward(pid, st, p[:tsPacketSize])
		}
		st.pkts, st.payload = st.pkts[:0], st.payload[:0]
		return
	}
	g.standIn(pid, st)
}

// flushAll hands out every PES held, at the end of the input.
func (g *packetGuard) flushAll() {
	for pid, st := range g.pids {
		if st != nil {
			g.flush(uint16(pid), st)
		}
	}
}

// standIn replaces a large video PES by a one-packet PES with the same
// header whose payload is a token naming the real one.
func (g *packetGuard) standIn(pid uint16, st *pidState) {
	p := st.payload
	st.pkts = st.pkts[:0]
	if len(p) < 9 || len(p) < 9+int(p[8]) {
		g.onError(fmt.Errorf("PID %d: truncated PES header: PES dropped", pid))
		st.payload = st.payload[:0]
		return
	}
	hdrEnd := 9 + int(p[8])
	end := len(p)
	if st.length > 0 {
		end = min(end, st.length)
	}
	data := p[hdrEnd:end]
	st.payload = nil // data now belongs to the stand-in table
	st.sizeHint = min(len(p), maxVideoPES)

	id := g.nextID
	g.nextID++
	g.standIns[id] = data
	g.standInIDs = append(g.standInIDs, id)
	g.standInSize += len(data)
	for g.standInSize > maxStandInBytes && len(g.standInIDs) > 1 {
		old := g.standInIDs[0]
		g.standInIDs = g.standInIDs[1:]
		if d, ok := g.standIns[old]; ok {
			g.standInSize -= len(d)
			delete(g.standIns, old)
		}
	}

	// PES: the original header, then the token as an Annex-B NAL unit.
	// Its length is left unspecified (0), as for any video PES: astits
	// loses the PES a unit start completes when that start packet also
	// completes a PES of declared length.
	pes := make([]byte, 0, hdrEnd+4+standInTokenSize)
	pes = append(pes, p[:hdrEnd]...)
	pes = append(pes, 0, 0, 0, 1)
	pes = g.appendToken(pes, id)
	pes[4], pes[5] = 0, 0

	// Packetise it, stuffing the last packet with an adaptation field.
	first := true
	for len(pes) > 0 {
		pkt := make([]byte, tsPacketSize)
		pkt[0] = tsSyncByte
		pkt[1] = byte(pid >> 8 & 0x1f)
		if first {
			pkt[1] |= 0x40
		}
		pkt[2] = byte(pid)
		room := tsPacketSize - 4
		if len(pes) >= room {
			pkt[3] = 0x10 // payload only
			copy(pkt[4:], pes[:room])
			pes = pes[room:]
		} else {
			pkt[3] = 0x30 // adaptation field and payload
			afLen := room - 1 - len(pes)
			pkt[4] = byte(afLen)
			if afLen > 0 {
				pkt[5] = 0 // no flags
				for i := 6; i < 5+afLen; i++ {
					pkt[i] = 0xff
				}
			}
			copy(pkt[5+afLen:], pes)
			pes = nil
		}
		g.forward(pid, st, pkt)
		first = false
	}
}

// standInTokenSize is the size of a token NAL unit: a header byte (an
// unspecified NAL unit type in H.264 and H.265), the nonce and the id in
// hex, none of them zero bytes.
const standInTokenSize = 1 + 8 + 16

func (g *packetGuard) appendToken(b []byte, id uint64) []byte {
	b = append(b, 0x7f)
	b = append(b, g.nonce[:]...)
	var idb [8]byte
	binary.BigEndian.PutUint64(idb[:], id)
	return hex.AppendEncode(b, idb[:])
}

// takeStandIn returns the payload a stand-in token names and forgets it.
// ok is false when nalu is not a token of this guard; payload is nil when
// the token's payload was evicted.
func (g *packetGuard) takeStandIn(nalu []byte) (payload []byte, ok bool) {
	if len(nalu) != standInTokenSize || nalu[0] != 0x7f || !bytes.Equal(nalu[1:9], g.nonce[:]) {
		return nil, false
	}
	var idb [8]byte
	if _, err := hex.Decode(idb[:], nalu[9:]); err != nil {
		return nil, false
	}
	id := binary.BigEndian.Uint64(idb[:])
	payload = g.standIns[id]
	if payload != nil {
		delete(g.standIns, id)
		g.standInSize -= len(payload)
		if i := slices.Index(g.standInIDs, id); i >= 0 {
			g.standInIDs = slices.Delete(g.standInIDs, i, i+1)
		}
	}
	return payload, true
}
