// Package cdntest runs Headwater behind the nginx cache of deploy/nginx (the
// CDN of docker-compose.yml) and checks that the origin's caching headers
// make a shared cache behave as live LL-HLS needs; it also lints the Docker
// and monitoring files, which cannot be run here.
package cdntest

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/internal/testpeer"
)

// granularity is nginx's clock resolution for cache expiry: it stores
// "valid until" in whole seconds, so an object with max-age=N is fresh for
// N to N+1 seconds.
const granularity = time.Second

func TestCDN(t *testing.T) {
	nginxBinary(t) // fails without nginx, before ffmpeg starts
	s := startServer(t, func(c *config.Config) {
		c.Segmenter.SegmentDuration = config.Duration(time.Second)
	})
	e := startNginx(t, s.OriginAddr().String())
	testpeer.PublishRTMP(t, s.rtmpURL("cdn"), 25*time.Second, 30)

	const (
		videoPath = "/live/cdn/video/index.m3u8"
		audioPath = "/live/cdn/audio/index.m3u8"
		mvPath    = "/live/cdn/index.m3u8"
	)
	// Wait on the origin itself, so that nothing is cached yet.
	testpeer.WaitFor(t, 15*time.Second, "two complete video segments", func() bool {
		r := get(t, s.originURL(videoPath))
		return r.status == http.StatusOK && len(parseMedia(t, r).Segments) >= 2
	})

	t.Run("segment and part are cached", func(t *testing.T) {
		m := parseMedia(t, get(t, s.originURL(videoPath)))
		seg := m.Segments[len(m.Segments)-2]
		if len(seg.Parts) == 0 {
			t.Fatalf("segment %s lists no parts", seg.URI)
		}
		for _, uri := range []string{seg.URI, seg.Parts[len(seg.Parts)-1].URI} {
			url := e.url("/live/cdn/video/" + uri)
			first, second := get(t, url), get(t, url)
			if first.status != http.StatusOK || second.status != http.StatusOK {
				t.Fatalf("%s: status %d then %d", uri, first.status, second.status)
			}
			if first.cache() != "MISS" || second.cache() != "HIT" {
				t.Errorf("%s: X-Cache-Status %q then %q, want MISS then HIT", uri, first.cache(), second.cache())
			}
			if !bytes.Equal(first.body, second.body) || len(first.body) < 8 || string(first.body[4:8]) != "moof" {
				t.Errorf("%s: cached body differs or is not a CMAF fragment (%d, %d bytes)", uri, len(first.body), len(second.body))
			}
			for _, r := range []response{first, second} {
				if cc := r.header.Get("Cache-Control"); cc != "public, max-age=86400, immutable" {
					t.Errorf("%s: Cache-Control %q", uri, cc)
				}
				if r.header.Get("Etag") == "" || r.header.Get("Access-Control-Allow-Origin") != "*" {
					t.Errorf("%s: ETag %q, Access-Control-Allow-Origin %q", uri,
						r.header.Get("Etag"), r.header.Get("Access-Control-Allow-Origin"))
				}
			}
			if first.header.Get("X-Request-Id") == second.header.Get("X-Request-Id") {
				t.Errorf("%s: the cached response repeats the request id %q", uri, first.header.Get("X-Request-Id"))
			}
			// Ranges are served from the cached object.
			rg := get(t, url, "Range", "bytes=0-99")
			if rg.status != http.StatusPartialContent || len(rg.body) != 100 || rg.cache() != "HIT" ||
				!bytes.Equal(rg.body, first.body[:100]) {
				t.Errorf("%s: range: status %d, %d bytes, %s", uri, rg.status, len(rg.body), rg.cache())
			}
		}
	})

	t.Run("media playlist is not served stale", func(t *testing.T) {
		first, hits, next := observeLifetime(t, e.url(videoPath), 4*time.Second)
		age := maxAge(first.header.Get("Cache-Control"))
		if age != 1 {
			t.Fatalf("media playlist Cache-Control %q, want max-age=1", first.header.Get("Cache-Control"))
		}
		checkLifetime(t, "media playlist", first, hits, next, time.Duration(age)*time.Second)
		a, b := parseMedia(t, first), parseMedia(t, next)
		if a.PreloadHint == nil || b.PreloadHint == nil {
			t.Fatal("no preload hint")
		}
		if a.PreloadHint.URI == b.PreloadHint.URI && a.MediaSequence == b.MediaSequence {
			t.Errorf("the playlist fetched after the cached one expired did not move on: preload hint %s, media sequence %d",
				b.PreloadHint.URI, b.MediaSequence)
		}
		t.Logf("media playlist: preload hint %s (seq %d) -> %s (seq %d)",
			a.PreloadHint.URI, a.MediaSequence, b.PreloadHint.URI, b.MediaSequence)
	})

	// Timing on a shared machine is noisy: latencies are logged, and only
	// gross delays fail. What keeps waiters fast is a lock timeout below
	// nginx's 500ms polling nap (see cdn-cache.conf), checked here.
	lockWait := lockTimeout(t)
	if lockWait >= 500*time.Millisecond {
		t.Errorf("proxy_cache_lock_timeout %s: every request waiting on the cache lock would be answered at least 500ms late", lockWait)
	}
	const grossDelay = 2 * time.Second

	t.Run("a crowd asking for a new part costs the origin one request", func(t *testing.T) {
		m := parseMedia(t, get(t, s.originURL(videoPath)))
		uri := newestPart(t, m)
		url := e.url("/live/cdn/video/" + uri)
		const crowd = 20
		before := s.originRequests(t, "part")
		results, start := together(t, crowd, url)
		originHits := s.originRequests(t, "part") - before
		statuses := map[string]int{}
		var slowest time.Duration
		for _, r := range results {
			if r.status != http.StatusOK || !bytes.Equal(r.body, results[0].body) {
				t.Fatalf("part %s: status %d, or bodies differ", uri, r.status)
			}
			statuses[r.cache()]++
			slowest = max(slowest, r.at.Sub(start))
		}
		t.Logf("%d simultaneous requests for part %s: %v; %v reached the origin; the last answer after %s",
			crowd, uri, statuses, originHits, slowest.Round(time.Millisecond))
		// The part exists, so the origin answers the first request at once
		// (well within the lock timeout) and every waiter gets the cached
		// answer: one MISS, the rest HITs, one origin request.
		if originHits != 1 || statuses["MISS"] != 1 || statuses["HIT"] != crowd-1 {
			t.Errorf("%v of %d simultaneous requests for one existing part reached the origin (X-Cache-Status %v), want 1 and one MISS; "+
				"the first answer took %s (lock timeout %s)", originHits, crowd, statuses, fastestMiss(results), lockWait)
		}
		if slowest > grossDelay {
			t.Errorf("the crowd waited up to %s for a part that exists (lock timeout %s)", slowest, lockWait)
		}
	})

	t.Run("blocking reload through the cache", func(t *testing.T) {
		m := parseMedia(t, get(t, s.originURL(videoPath)))
		msn, part := testpeer.ParsePartURI(t, m.PreloadHint.URI)
		path := fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=%d", videoPath, msn, part)

		// A crowd of players asks for the next part before it exists, and
		// one request goes straight to the origin as the reference.
		const crowd = 20
		before := s.originRequests(t, "media_playlist")
		var direct response
		var directErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			direct, directErr = tryGet(s.originURL(path))
		}()
		results, start := together(t, crowd, e.url(path))
		<-done
		originHits := s.originRequests(t, "media_playlist") - before - 1 // minus the direct one
		if directErr != nil {
			t.Fatal(directErr)
		}
		var slowest time.Duration
		statuses := map[string]int{}
		// The hinted part answers the request, or, when the encoder's key
		// frame closed the segment before it (the hint is a prediction),
		// the next segment's first part does (RFC 8216bis: "or later").
		satisfied := func(body []byte) bool {
			return strings.Contains(string(body), m.PreloadHint.URI) ||
				strings.Contains(string(body), fmt.Sprintf("part%d.0.m4s", msn+1))
		}
		for _, r := range results {
			if r.status != http.StatusOK || !satisfied(r.body) {
				t.Fatalf("blocking reload %s through the cache: status %d, without %s or part%d.0.m4s:\n%s", path, r.status, m.PreloadHint.URI, msn+1, r.body)
			}
			if cc := r.header.Get("Cache-Control"); maxAge(cc) != 6 {
				t.Errorf("blocking reload Cache-Control %q, want max-age=6", cc)
			}
			statuses[r.cache()]++
			slowest = max(slowest, r.at.Sub(start))
		}
		// The direct request returns when the part is published; the last
		// player of the crowd must not be much later.
		lag := slowest - direct.at.Sub(start)
		t.Logf("blocking reload for part %d.%d: the origin answered after %s; %d players through the cache: %v, "+
			"the last one %s after the origin's answer; %v requests reached the origin",
			msn, part, direct.at.Sub(start).Round(time.Millisecond), crowd, statuses,
			lag.Round(time.Millisecond), originHits)
		if lag > grossDelay {
			t.Errorf("players behind the cache got the playlist %s after the origin had it (lock timeout %s)", lag, lockWait)
		}

		// Now that it is answered, the URL is a cache entry.
		again := get(t, e.url(path))
		if again.status != http.StatusOK || again.cache() != "HIT" {
			t.Errorf("repeated blocking reload: status %d, X-Cache-Status %q, want a HIT", again.status, again.cache())
		}
		if !satisfied(again.body) {
			t.Errorf("the cached blocking reload lacks part %s (and part%d.0.m4s)", m.PreloadHint.URI, msn+1)
		}
		checkAge(t, "blocking reload", again, 6)
	})

	t.Run("multivariant playlist is cached at most its max-age", func(t *testing.T) {
		first, hits, next := observeLifetime(t, e.url(mvPath), 5*time.Second)
		age := maxAge(first.header.Get("Cache-Control"))
		if age != 2 {
			t.Fatalf("multivariant Cache-Control %q, want max-age=2", first.header.Get("Cache-Control"))
		}
		checkLifetime(t, "multivariant playlist", first, hits, next, time.Duration(age)*time.Second)
	})

	t.Run("404 is cached briefly", func(t *testing.T) {
		first, hits, next := observeLifetime(t, e.url("/live/not-yet/index.m3u8"), 4*time.Second)
		if first.status != http.StatusNotFound || next.status != http.StatusNotFound {
			t.Fatalf("status %d then %d, want 404", first.status, next.status)
		}
		if cc := first.header.Get("Cache-Control"); maxAge(cc) != 1 {
			t.Fatalf("404 Cache-Control %q, want max-age=1", cc)
		}
		checkLifetime(t, "404", first, hits, next, time.Second)
	})

	t.Run("errors are not cached", func(t *testing.T) {
		for _, q := range []string{"?_HLS_part=1", "?_HLS_msn=999999"} {
			url := e.url(videoPath + q)
			a, b := get(t, url), get(t, url)
			if a.status != http.StatusBadRequest || b.status != http.StatusBadRequest {
				t.Errorf("%s: status %d then %d, want 400", q, a.status, b.status)
			}
			if a.cache() == "HIT" || b.cache() == "HIT" {
				t.Errorf("%s: a 400 was served from the cache (%s, %s)", q, a.cache(), b.cache())
			}
		}
	})

	t.Run("gzip and identity are cached apart", func(t *testing.T) {
		url := e.url(audioPath) // not requested through the cache yet
		gz := get(t, url, "Accept-Encoding", "gzip")
		plain := get(t, url)
		gz2 := get(t, url, "Accept-Encoding", "gzip")
		if gz.header.Get("Content-Encoding") != "gzip" || gz2.header.Get("Content-Encoding") != "gzip" {
			t.Errorf("gzip client got Content-Encoding %q, %q", gz.header.Get("Content-Encoding"), gz2.header.Get("Content-Encoding"))
		}
		if plain.header.Get("Content-Encoding") != "" || !bytes.HasPrefix(plain.raw, []byte("#EXTM3U")) {
			t.Errorf("identity client got Content-Encoding %q, body %.20q", plain.header.Get("Content-Encoding"), plain.raw)
		}
		for _, r := range []response{gz, plain, gz2} {
			if !strings.Contains(r.header.Get("Vary"), "Accept-Encoding") {
				t.Errorf("Vary %q", r.header.Get("Vary"))
			}
			parseMedia(t, r)
		}
		t.Logf("X-Cache-Status gzip %s, identity %s, gzip again %s", gz.cache(), plain.cache(), gz2.cache())
		if gz2.cache() != "HIT" || !bytes.Equal(gz2.body, gz.body) {
			t.Errorf("the gzip variant was not kept next to the identity one: %s", gz2.cache())
		}
	})

	t.Run("an audience of LL-HLS players", func(t *testing.T) {
		// Players in lockstep, as LL-HLS makes them: each blocking reload
		// releases them all when a part is published. That is the worst
		// case for nginx (see cdn-cache.conf): their blocking reloads reach
		// the origin, only the parts are collapsed.
		const players = 8
		const watch = 4 * time.Second
		m := parseMedia(t, get(t, s.originURL(videoPath)))
		hint := m.PreloadHint.URI
		beforePlaylists, beforeParts := s.originRequests(t, "media_playlist"), s.originRequests(t, "part")
		var mu sync.Mutex
		type tally struct{ requests, hits, bytes, hitBytes int }
		var playlists, parts tally
		partMisses := map[string]int{} // part URI: responses not from the cache
		var wg sync.WaitGroup
		errc := make(chan error, players)
		end := time.Now().Add(watch)
		for range players {
			wg.Go(func() {
				err := play(e, videoPath, hint, end, func(uri string, r response, isPart bool) {
					mu.Lock()
					defer mu.Unlock()
					c := &playlists
					if isPart {
						c = &parts
						if r.cache() != "HIT" {
							partMisses[uri]++
						}
					}
					c.requests++
					c.bytes += len(r.raw)
					if r.cache() == "HIT" {
						c.hits++
						c.hitBytes += len(r.raw)
					}
				})
				if err != nil {
					errc <- err
				}
			})
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
		originPlaylists := s.originRequests(t, "media_playlist") - beforePlaylists
		originParts := s.originRequests(t, "part") - beforeParts
		all := tally{playlists.requests + parts.requests, playlists.hits + parts.hits,
			playlists.bytes + parts.bytes, playlists.hitBytes + parts.hitBytes}
		ratio := func(a, b int) float64 { return float64(a) / float64(max(b, 1)) }
		t.Logf("%d players for %s through the cache:", players, watch)
		t.Logf("  blocking reloads: %d requests, %d HITs, %v reached the origin",
			playlists.requests, playlists.hits, originPlaylists)
		t.Logf("  parts:            %d requests, %d HITs, %v reached the origin",
			parts.requests, parts.hits, originParts)
		t.Logf("  all: request hit ratio %.2f, byte hit ratio %.2f, origin request offload %.2f",
			ratio(all.hits, all.requests), ratio(all.hitBytes, all.bytes),
			1-(originPlaylists+originParts)/float64(all.requests))
		if parts.requests < players*5 {
			t.Fatalf("only %d part requests in %s", parts.requests, watch)
		}
		// A player asks for a part once the playlist lists it, so the part
		// exists: the first request for it reaches the origin, the other
		// players' are answered from the cache. Each part the players
		// fetched costs the origin exactly one request.
		for uri, n := range partMisses {
			if n != 1 {
				t.Errorf("part %s: %d of the players' requests were not answered from the cache, want 1", uri, n)
			}
		}
		if originParts != float64(len(partMisses)) {
			t.Errorf("%v part requests reached the origin for %d parts the players fetched, want one a part",
				originParts, len(partMisses))
		}
	})
}

// play is one LL-HLS player: a blocking reload for the hinted part, then
// the newest part the playlist lists, until end. Every response goes to
// observe with its URI (relative to path's directory for parts).
func play(e *edge, path, hint string, end time.Time, observe func(uri string, r response, isPart bool)) error {
	dir := path[:strings.LastIndex(path, "/")+1]
	fetched := ""
	for time.Now().Before(end) {
		m := testpeer.PartURI.FindStringSubmatch(hint)
		if m == nil {
			return fmt.Errorf("preload hint %q is not a part", hint)
		}
		r, err := tryGet(e.url(fmt.Sprintf("%s?_HLS_msn=%s&_HLS_part=%s", path, m[1], m[2])))
		if err != nil {
			return err
		}
		observe(path, r, false)
		if r.status != http.StatusOK {
			return fmt.Errorf("blocking reload for %s: status %d", hint, r.status)
		}
		newest := ""
		hint = ""
		for _, line := range strings.Split(string(r.body), "\n") {
			if rest, ok := strings.CutPrefix(line, "#EXT-X-PART:"); ok {
				_, uri, _ := strings.Cut(rest, "URI=\"")
				newest, _, _ = strings.Cut(uri, "\"")
			}
			if rest, ok := strings.CutPrefix(line, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\""); ok {
				hint, _, _ = strings.Cut(rest, "\"")
			}
		}
		if hint == "" || newest == "" {
			return fmt.Errorf("no part or no preload hint in\n%s", r.body)
		}
		if newest == fetched {
			continue
		}
		p, err := tryGet(e.url(dir + newest))
		if err != nil {
			return err
		}
		observe(newest, p, true)
		if p.status != http.StatusOK {
			return fmt.Errorf("part %s: status %d", newest, p.status)
		}
		fetched = newest
	}
	return nil
}

// together sends n identical GETs at once; it returns the responses and
// when they were sent.
func together(t *testing.T, n int, url string) ([]response, time.Time) {
	t.Helper()
	results := make([]response, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() { results[i], errs[i] = tryGet(url) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return results, start
}

// fastestMiss is the shortest time a request not served from the cache took.
func fastestMiss(rs []response) time.Duration {
	fastest := time.Duration(1<<63 - 1)
	for _, r := range rs {
		if r.cache() != "HIT" {
			fastest = min(fastest, r.elapsed)
		}
	}
	return fastest
}

// newestPart is the URI of the last part a media playlist lists.
func newestPart(t *testing.T, m *playlist.Media) string {
	t.Helper()
	if n := len(m.Parts); n > 0 {
		return m.Parts[n-1].URI
	}
	if n := len(m.Segments); n > 0 {
		if p := m.Segments[n-1].Parts; len(p) > 0 {
			return p[len(p)-1].URI
		}
	}
	t.Fatal("the playlist lists no part")
	return ""
}

var lockTimeoutRE = regexp.MustCompile(`(?m)^proxy_cache_lock_timeout\s+(\S+);`)

// lockTimeout reads proxy_cache_lock_timeout from cdn-cache.conf.
func lockTimeout(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy/nginx/cdn-cache.conf"))
	if err != nil {
		t.Fatal(err)
	}
	m := lockTimeoutRE.FindSubmatch(b)
	if m == nil {
		t.Fatal("cdn-cache.conf sets no proxy_cache_lock_timeout")
	}
	d, err := time.ParseDuration(string(m[1]))
	if err != nil {
		t.Fatalf("proxy_cache_lock_timeout %s: %v", m[1], err)
	}
	return d
}

// observeLifetime requests url through the cache every 50ms until a response
// is no longer a HIT (or limit passes). The first request must be a MISS:
// the entry is new. It returns the first response, the HITs and the first
// response not served from the cache entry.
func observeLifetime(t *testing.T, url string, limit time.Duration) (first response, hits []response, next response) {
	t.Helper()
	first = get(t, url)
	if first.cache() != "MISS" {
		t.Fatalf("%s: first request X-Cache-Status %q, want MISS", url, first.cache())
	}
	deadline := first.at.Add(limit)
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		r := get(t, url)
		if r.cache() != "HIT" {
			return first, hits, r
		}
		hits = append(hits, r)
	}
	t.Fatalf("%s: still served from the cache %s after it was stored", url, limit)
	return
}

// checkLifetime checks that a cache entry stored with the first response was
// served (identical) while fresh and replaced once maxAge (plus nginx's
// clock granularity) had passed.
func checkLifetime(t *testing.T, what string, first response, hits []response, next response, maxAge time.Duration) {
	t.Helper()
	for _, h := range hits {
		if !bytes.Equal(h.body, first.body) {
			t.Errorf("%s: a HIT differs from the stored response", what)
			break
		}
	}
	// The next request was sent at next.at-next.elapsed; the last HIT was
	// sent no earlier than 50ms before that.
	lifetime := next.at.Add(-next.elapsed).Sub(first.at)
	var served time.Duration
	if n := len(hits); n > 0 {
		served = hits[n-1].at.Add(-hits[n-1].elapsed).Sub(first.at)
	}
	t.Logf("%s (max-age=%s): HIT for %s after it was stored, then %s (%d HITs)",
		what, maxAge, served.Round(time.Millisecond), next.cache(), len(hits))
	if served > maxAge+granularity {
		t.Errorf("%s: served from the cache %s after it was stored, beyond max-age %s (+%s nginx clock granularity)",
			what, served, maxAge, granularity)
	}
	if lifetime < maxAge-100*time.Millisecond {
		t.Errorf("%s: cached only %s, less than max-age %s", what, lifetime, maxAge)
	}
	for _, h := range hits {
		checkAge(t, what, h, int(maxAge/time.Second))
	}
}

// checkAge fails when a response says it is older than its max-age. (nginx
// sends no Age header; a CDN in its place would.)
func checkAge(t *testing.T, what string, r response, maxAge int) {
	t.Helper()
	if v := r.header.Get("Age"); v != "" {
		if age, err := strconv.Atoi(v); err != nil || age > maxAge {
			t.Errorf("%s: Age %q beyond max-age %d", what, v, maxAge)
		}
	}
}
