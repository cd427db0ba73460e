package dash

import (
	"slices"
	"strconv"
	"time"
)

// bound is a place inside an epoch where a Period must start: the first
// segment with a new init, or the first segment after a run of gaps.
type bound struct {
	t   mediaTime
	msn uint64
}

// plan splits the items into Periods, anchors the Periods (see the package
// doc) and decides which are listed.
func (b *builder) plan() {
	var epochs []int
	for i := range b.rends {
		for j := range b.rends[i].items {
			e := b.rends[i].items[j].seg.Epoch
			if k, found := slices.BinarySearch(epochs, e); !found {
				epochs = slices.Insert(epochs, k, e)
			}
		}
	}
	var (
		prevEnd     time.Duration
		havePrevEnd bool
		prevOffset  time.Duration
	)
	for _, k := range epochs {
		ps := b.epochPeriods(k, prevEnd, havePrevEnd, prevOffset)
		b.periods = append(b.periods, ps...)
		prevOffset = ps[0].start - ps[0].t.duration()
		havePrevEnd = false
		for i := range b.rends {
			for j := range b.rends[i].items {
				it := &b.rends[i].items[j]
				if it.seg.Epoch != k || it.open {
					continue
				}
				if e := presentation(it.p, it.end()); !havePrevEnd || e > prevEnd {
					prevEnd, havePrevEnd = e, true
				}
			}
		}
	}

	for i := range b.rends {
		for j := range b.rends[i].items {
			if it := &b.rends[i].items[j]; it.listed && !it.seg.Gap {
				it.p.n++
			}
		}
	}
	for _, p := range b.periods {
		if p.n > 0 {
			b.listed = append(b.listed, p)
		}
	}
	if n := len(b.listed); n > 0 && !b.ended && !b.complete(b.listed[n-1]) {
		b.listed[n-1].n = 0
		b.listed = b.listed[:n-1]
	}
	for _, p := range b.listed {
		if !p.frozen {
			b.hist.record(anchor{id: p.id, epoch: p.epoch, first: p.first, t: p.t, start: p.start})
		}
	}
}

// complete reports whether the newest Period p can be listed: every live
// rendition has a segment in it, or some rendition has two complete ones
// (a rendition that stopped producing must not hold the others back).
func (b *builder) complete(p *period) bool {
	all := true
	for i := range b.rends {
		r := &b.rends[i]
		has, done := false, 0
		for j := range r.items {
			it := &r.items[j]
			if it.p == p && it.listed {
				has = true
				if !it.open {
					done++
				}
			}
		}
		if done >= 2 {
			return true
		}
		if r.live && !has {
			all = false
		}
	}
	return all
}

// epochPeriods makes the Periods of epoch k and assigns the epoch's items to
// them. prevEnd is the end of the previous epoch's media (if known) and
// prevOffset its wall-clock offset.
func (b *builder) epochPeriods(k int, prevEnd time.Duration, havePrevEnd bool, prevOffset time.Duration) []*period {
	p0 := &period{id: "p" + strconv.Itoa(k), epoch: k, first: true}
	if a, ok := b.hist.lookup(p0.id); ok {
		p0.t, p0.start, p0.frozen = a.t, a.start, true
	} else if k == 0 {
		// The first publish: media time 0 is availabilityStartTime.
		p0.t, p0.frozen = mediaTime{0, 1}, true
	} else {
		b.anchorEpoch(p0, prevEnd, havePrevEnd, prevOffset)
	}
	offset := p0.start - p0.t.duration()

	ps := []*period{p0}
	for _, c := range b.bounds(k) {
		p := &period{id: "p" + strconv.Itoa(k) + "-" + strconv.FormatUint(c.msn, 10), epoch: k, b: c.t}
		if a, ok := b.hist.lookup(p.id); ok {
			p.b, p.t, p.start, p.frozen = a.t, a.t, a.start, true
		}
		ps = append(ps, p)
	}
	if h := b.hist; h != nil {
		// Boundaries whose segments have left the store.
		tol := b.segTgt / 2
		for _, a := range h.anchors {
			if a.epoch != k || a.first || slices.ContainsFunc(ps, func(p *period) bool { return p.id == a.id }) {
				continue
			}
			if i := slices.IndexFunc(ps[1:], func(p *period) bool { return !p.frozen && absDur(p.b.duration()-a.t.duration()) <= tol }); i >= 0 {
				// The same boundary, seen from another rendition's segment.
				p := ps[1+i]
				p.id, p.b, p.t, p.start, p.frozen = a.id, a.t, a.t, a.start, true
				continue
			}
			ps = append(ps, &period{id: a.id, epoch: k, b: a.t, t: a.t, start: a.start, frozen: true})
		}
	}
	slices.SortStableFunc(ps[1:], func(x, y *period) int { return x.b.cmp(y.b) })

	for i := range b.rends {
		for j := range b.rends[i].items {
			it := &b.rends[i].items[j]
			if it.seg.Epoch != k {
				continue
			}
			it.p = p0
			mid := it.mid()
			for _, p := range ps[1:] {
				if p.b.cmp(mid) <= 0 {
					it.p = p
				}
			}
		}
	}
	for _, p := range ps[1:] {
		if p.frozen {
			continue
		}
		// Start at the earliest segment of the Period, so that none begins
		// before it.
		p.t = p.b
		for i := range b.rends {
			for j := range b.rends[i].items {
				if it := &b.rends[i].items[j]; it.p == p && it.time().cmp(p.t) < 0 {
					p.t = it.time()
				}
			}
		}
		p.start = max((offset + p.t.duration()).Round(time.Millisecond), 0)
	}
	return ps
}

// anchorEpoch sets the start of p, the first Period of a republish, from the
// first segment of the epoch in each rendition: its presentationTimeOffset
// is the earliest of their media times, and media time maps to the latest of
// their ProgramDateTimes. The first segments are known exactly while a
// segment of an earlier epoch (or nothing: the rendition's first segment
// ever) precedes them in the store; otherwise the oldest kept segments of the
// epoch stand in for them.
func (b *builder) anchorEpoch(p *period, prevEnd time.Duration, havePrevEnd bool, prevOffset time.Duration) {
	var (
		haveT         bool
		known, guess  time.Duration
		nKnown, nGues int
	)
	for i := range b.rends {
		r := &b.rends[i]
		j := slices.IndexFunc(r.items, func(it item) bool { return it.seg.Epoch == p.epoch })
		if j < 0 {
			continue
		}
		it := &r.items[j]
		if t := it.time(); !haveT || t.cmp(p.t) < 0 {
			p.t, haveT = t, true
		}
		if it.seg.ProgramDateTime.IsZero() {
			continue
		}
		off := it.seg.ProgramDateTime.Sub(b.ast) - it.time().duration()
		if j > 0 || it.seg.MSN == 0 {
			if nKnown == 0 || off > known {
				known = off
			}
			nKnown++
		}
		if nGues == 0 || off > guess {
			guess = off
		}
		nGues++
	}
	offset := prevOffset
	switch {
	case nKnown > 0:
		offset = known
	case nGues > 0:
		offset = guess
	}
	p.start = (offset + p.t.duration()).Round(time.Millisecond)
	if havePrevEnd && p.start < prevEnd {
		p.start = ceilMillis(prevEnd)
	}
	p.start = max(p.start, 0)
}

// bounds lists the places within epoch k where a Period must start, merging
// those of different renditions less than half a segment target apart.
func (b *builder) bounds(k int) []bound {
	var bs []bound
	for i := range b.rends {
		items := b.rends[i].items
		for j := 1; j < len(items); j++ {
			a, c := items[j-1].seg, items[j].seg
			if a.Epoch != k || c.Epoch != k {
				continue
			}
			if c.InitName != a.InitName || a.Gap && !c.Gap || c.MSN != a.MSN+1 {
				bs = append(bs, bound{t: items[j].time(), msn: c.MSN})
			}
		}
	}
	if len(bs) < 2 {
		return bs
	}
	slices.SortFunc(bs, func(x, y bound) int { return x.t.cmp(y.t) })
	tol := b.segTgt / 2
	out := bs[:0]
	for i := 0; i < len(bs); {
		c := bs[i]
		j := i + 1
		for ; j < len(bs) && bs[j].t.duration()-c.t.duration() <= tol; j++ {
			c.msn = min(c.msn, bs[j].msn)
		}
		out = append(out, c)
		i = j
	}
	return out
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
