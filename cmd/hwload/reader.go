package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// readerStats is what one LL-HLS reader counted while measuring.
type readerStats struct {
	PlaylistRequests int // plain (non-blocking) playlist reloads
	BlockingRequests int // _HLS_msn/_HLS_part blocking reloads
	PartRequests     int
	InitRequests     int
	Bytes            int64
	Errors           int
	ErrorKinds       map[string]int
	Resyncs          int // jumps to the live edge after falling behind
	// BlockingWait is request start → blocking playlist fully read.
	BlockingWait []time.Duration
	// PartLatency is request start → part fully read, for parts the playlist
	// already listed (so it is pure serving time, no waiting).
	PartLatency []time.Duration
	// PartAge is part fully read → (its segment's PROGRAM-DATE-TIME + the
	// part's end offset): how long after the end of the part's media, on the
	// ingest wall clock, the player had it. Known once a later playlist
	// carries the segment's PROGRAM-DATE-TIME, i.e. once the segment is
	// complete.
	PartAge []time.Duration
}

func (s *readerStats) requests() int {
	return s.PlaylistRequests + s.BlockingRequests + s.PartRequests + s.InitRequests
}

func (s *readerStats) add(o *readerStats) {
	s.PlaylistRequests += o.PlaylistRequests
	s.BlockingRequests += o.BlockingRequests
	s.PartRequests += o.PartRequests
	s.InitRequests += o.InitRequests
	s.Bytes += o.Bytes
	s.Errors += o.Errors
	s.Resyncs += o.Resyncs
	addErrorKinds(&s.ErrorKinds, o.ErrorKinds)
	s.BlockingWait = append(s.BlockingWait, o.BlockingWait...)
	s.PartLatency = append(s.PartLatency, o.PartLatency...)
	s.PartAge = append(s.PartAge, o.PartAge...)
}

// reader behaves like an LL-HLS player on one media playlist: load the
// playlist, fetch the init section and the newest part, then loop on a
// blocking reload for the preload-hinted part and fetch the new part(s).
// It counts only while measuring is set.
type reader struct {
	client     *http.Client
	playlist   *url.URL
	measuring  *atomic.Bool
	maxCatchUp int
	// retryDelay is the pause after an error or an ended stream.
	retryDelay time.Duration

	stats   readerStats
	buf     bytes.Buffer
	copyBuf []byte
	initURI string
	// pending holds received parts waiting for their segment's
	// PROGRAM-DATE-TIME, by MSN.
	pending map[uint64][]pendingPart
}

type pendingPart struct {
	end      time.Duration
	received time.Time
}

func newReader(client *http.Client, playlistURL *url.URL, measuring *atomic.Bool) *reader {
	return &reader{
		client:     client,
		playlist:   playlistURL,
		measuring:  measuring,
		maxCatchUp: 16,
		retryDelay: 250 * time.Millisecond,
		copyBuf:    make([]byte, 64*1024),
		pending:    map[uint64][]pendingPart{},
	}
}

// run reads until ctx is done.
func (r *reader) run(ctx context.Context) {
	var (
		last partKey
		have bool
	)
	for ctx.Err() == nil {
		v, err := r.getPlaylist(ctx, "")
		if err != nil {
			r.fail(ctx, err)
			sleepCtx(ctx, r.retryDelay)
			continue
		}
		for ctx.Err() == nil {
			if v.InitURI != "" && v.InitURI != r.initURI {
				if err := r.getObject(ctx, v.InitURI, &r.stats.InitRequests, false); err != nil {
					r.fail(ctx, err)
					break
				}
				r.initURI = v.InitURI
			}
			parts, resync := v.partsAfter(last, have, r.maxCatchUp)
			if resync && r.measuring.Load() {
				r.stats.Resyncs++
			}
			ok := true
			for _, p := range parts {
				if err := r.getObject(ctx, p.URI, &r.stats.PartRequests, true); err != nil {
					r.fail(ctx, err)
					ok = false
					break
				}
				last, have = p.Key, true
				r.pending[p.Key.MSN] = append(r.pending[p.Key.MSN], pendingPart{end: p.End, received: time.Now()})
			}
			r.resolveAges(v)
			if !ok {
				break
			}
			if v.Ended || !v.CanBlock {
				// Nothing to block on: poll like a non-LL player would.
				sleepCtx(ctx, time.Second)
				break
			}
			v, err = r.getPlaylist(ctx, v.Next.query())
			if err != nil {
				r.fail(ctx, err)
				sleepCtx(ctx, r.retryDelay)
				break
			}
		}
	}
}

// resolveAges turns received parts whose segment now has a
// PROGRAM-DATE-TIME into age samples.
func (r *reader) resolveAges(v mediaView) {
	for msn, ps := range r.pending {
		start, ok := v.SegmentStart[msn]
		if !ok {
			if msn < v.FirstMSN {
				delete(r.pending, msn) // left the window without a date
			}
			continue
		}
		if r.measuring.Load() {
			for _, p := range ps {
				r.stats.PartAge = append(r.stats.PartAge, p.received.Sub(start.Add(p.end)))
			}
		}
		delete(r.pending, msn)
	}
}

func (r *reader) fail(ctx context.Context, err error) {
	if ctx.Err() != nil || !r.measuring.Load() {
		return
	}
	r.stats.Errors++
	if r.stats.ErrorKinds == nil {
		r.stats.ErrorKinds = map[string]int{}
	}
	var se statusError
	key := "transport"
	if errors.As(err, &se) {
		key = fmt.Sprintf("HTTP %d", int(se))
	}
	r.stats.ErrorKinds[key]++
}

// statusError is a response status other than 200.
type statusError int

func (e statusError) Error() string { return fmt.Sprintf("HTTP status %d", int(e)) }

// getPlaylist loads the media playlist, blocking when query is set.
func (r *reader) getPlaylist(ctx context.Context, query string) (mediaView, error) {
	u := *r.playlist
	u.RawQuery = query
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return mediaView{}, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return mediaView{}, err
	}
	r.buf.Reset()
	_, err = r.buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if err != nil {
		return mediaView{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return mediaView{}, statusError(resp.StatusCode)
	}
	elapsed := time.Since(start)
	if r.measuring.Load() {
		if query == "" {
			r.stats.PlaylistRequests++
		} else {
			r.stats.BlockingRequests++
			r.stats.BlockingWait = append(r.stats.BlockingWait, elapsed)
		}
		r.stats.Bytes += int64(r.buf.Len())
	}
	var m playlist.Media
	if err := m.Unmarshal(r.buf.Bytes()); err != nil {
		return mediaView{}, fmt.Errorf("playlist %s: %w", u.String(), err)
	}
	return viewOf(&m), nil
}

// getObject fetches an init section or a part relative to the playlist,
// discarding the body.
func (r *reader) getObject(ctx context.Context, uri string, counter *int, isPart bool) error {
	ref, err := url.Parse(uri)
	if err != nil {
		return err
	}
	u := r.playlist.ResolveReference(ref)
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	n, err := drain(resp.Body, r.copyBuf)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return statusError(resp.StatusCode)
	}
	if r.measuring.Load() {
		*counter++
		r.stats.Bytes += n
		if isPart {
			r.stats.PartLatency = append(r.stats.PartLatency, time.Since(start))
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// drain reads r to the end into buf, returning the byte count. Unlike
// io.Copy(io.Discard, r) it uses the caller's (large, reused) buffer, so a
// big body takes few read calls and no allocation.
func drain(r io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
