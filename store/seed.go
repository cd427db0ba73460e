package store

import (
	"math/bits"
	"time"
)

// Seed is where a stream continues an earlier publish that this store never
// held: one made on another node of a cluster (its owner killed, the
// publisher reconnected here) or before this node restarted. A seeded
// stream continues as a republish within EndedGrace does on one box: each
// seeded rendition's first segment takes the seed's next sequence number,
// is a discontinuity and counts one more discontinuity than the seed, and
// the timeline continues from the seed's end.
type Seed struct {
	// Renditions are the earlier publish's renditions. A rendition added
	// later ([Stream.AddRendition]) under one of these names continues it.
	Renditions []SeedRendition
	// End is where the timeline continues, EndTimescale ticks from the
	// stream's start (0 starts a new timeline).
	End          uint64
	EndTimescale uint32
}

// SeedRendition is where one rendition continues.
type SeedRendition struct {
	// Name is the rendition's name.
	Name string
	// NextMSN is the sequence number the rendition's next segment takes.
	NextMSN uint64
	// DiscontinuitySequence is the number of discontinuities before it; the
	// next segment, a discontinuity, has one more.
	DiscontinuitySequence uint64
}

// Continuity describes where a stream stands, for another node to continue
// it: each rendition's next sequence number and discontinuity count, and
// the end of the timeline ([Stream.TimelineEnd]).
func (st *Stream) Continuity() Seed {
	var seed Seed
	seed.End, seed.EndTimescale = st.TimelineEnd()
	for _, r := range st.Renditions() {
		r.mu.Lock()
		seed.Renditions = append(seed.Renditions, SeedRendition{Name: r.name, NextMSN: r.nextMSN, DiscontinuitySequence: r.discSeq})
		r.mu.Unlock()
	}
	st.mu.Lock()
	for _, s := range st.seeds { // seeded renditions not added yet
		if !st.hasRenditionLocked(s.Name) {
			seed.Renditions = append(seed.Renditions, s)
		}
	}
	st.mu.Unlock()
	return seed
}

// MaxSegmentDuration is the longest segment of any rendition of the
// stream, 0 before the first.
func (st *Stream) MaxSegmentDuration() time.Duration {
	var d time.Duration
	for _, r := range st.Renditions() {
		d = max(d, r.Snapshot().MaxSegmentDuration)
	}
	return d
}

// TimelineEnd is where a republish's timeline continues: the latest end of
// a rendition's last complete segment, or the seed's end when later, as
// ticks of timescale (0, 1 for a new stream).
func (st *Stream) TimelineEnd() (ticks uint64, timescale uint32) {
	st.mu.Lock()
	ticks, timescale = st.seedEnd, st.seedTimescale
	rs := append([]*Rendition(nil), st.renditions...)
	st.mu.Unlock()
	if timescale == 0 {
		ticks, timescale = 0, 1
	}
	for _, r := range rs {
		ts := r.Snapshot().Info.Timescale
		if ts == 0 {
			continue
		}
		if next := r.NextBaseTime(); later(next, ts, ticks, timescale) {
			ticks, timescale = next, ts
		}
	}
	return ticks, timescale
}

// later reports whether a/ra is later than b/rb.
func later(a uint64, ra uint32, b uint64, rb uint32) bool {
	ah, al := bits.Mul64(a, uint64(rb))
	bh, bl := bits.Mul64(b, uint64(ra))
	return ah > bh || ah == bh && al > bl
}

// BeginSeeded is [Store.Begin] for a publish continuing seed. A stream held
// here (within EndedGrace) is continued as by Begin, each of its
// renditions taking the seed's numbering when the seed's is further on.
func (s *Store) BeginSeeded(name string, seed Seed) *Stream {
	st := s.Begin(name)
	st.mu.Lock()
	defer st.mu.Unlock()
	if seed.EndTimescale != 0 && later(seed.End, seed.EndTimescale, st.seedEnd, max(st.seedTimescale, 1)) {
		st.seedEnd, st.seedTimescale = seed.End, seed.EndTimescale
	}
	if st.seeds == nil {
		st.seeds = map[string]SeedRendition{}
	}
	for _, sr := range seed.Renditions {
		if r := st.renditionLocked(sr.Name); r != nil {
			r.seed(sr)
			continue
		}
		if old, ok := st.seeds[sr.Name]; !ok || sr.NextMSN > old.NextMSN {
			st.seeds[sr.Name] = sr
		}
	}
	return st
}

// renditionLocked finds a rendition by name; st.mu is held.
func (st *Stream) renditionLocked(name string) *Rendition {
	for _, r := range st.renditions {
		if r.name == name {
			return r
		}
	}
	return nil
}

func (st *Stream) hasRenditionLocked(name string) bool { return st.renditionLocked(name) != nil }

// seed makes the rendition's next segment continue sr when sr is further
// on than the rendition: a discontinuity numbered sr.NextMSN.
func (r *Rendition) seed(sr SeedRendition) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open != nil || sr.NextMSN <= r.nextMSN {
		return
	}
	r.nextMSN = sr.NextMSN
	r.discSeq = max(r.discSeq, sr.DiscontinuitySequence)
	r.pendingDisc = true
	r.publishLocked()
}
