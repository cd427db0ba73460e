package relay

import (
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestUpstreamURL(t *testing.T) {
	tests := []struct {
		path string
		kind Kind
		want string
	}{
		{"/live/a/v/seg1.m4s?x=1", KindSegment, "http://o:8080/live/a/v/seg1.m4s"},
		{"/live/a/v/index.m3u8", KindPlaylist, "http://o:8080/live/a/v/index.m3u8"},
		// Only the LL-HLS directives, in a fixed order: session ids do not
		// defeat collapsing.
		{"/live/a/v/index.m3u8?sid=42&_HLS_part=2&_HLS_msn=7", KindPlaylist, "http://o:8080/live/a/v/index.m3u8?_HLS_msn=7&_HLS_part=2"},
		{"/live/a/v/index.m3u8?_HLS_skip=YES", KindPlaylist, "http://o:8080/live/a/v/index.m3u8?_HLS_skip=YES"},
		// A query that does not parse goes as it is: the owner answers 400.
		{"/live/a/v/index.m3u8?_HLS_msn=%zz", KindPlaylist, "http://o:8080/live/a/v/index.m3u8?_HLS_msn=%zz"},
		{"/keys/live/a/k.key?x", KindKey, "http://o:8080/keys/live/a/k.key"},
	}
	for _, tc := range tests {
		u, err := url.ParseRequestURI(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if got := upstreamURL("http://o:8080/", u, tc.kind); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.path, got, tc.want)
		}
	}
}

func TestLRU(t *testing.T) {
	m := newMetrics(prometheus.NewRegistry())
	c := newLRU(8*1024, time.Minute, m)
	now := time.Now()
	obj := func(n int) *object { return &object{status: 200, body: make([]byte, n)} }
	c.add("big", obj(1100), now) // over an eighth of the bound: not kept
	if _, ok := c.get("big", now); ok {
		t.Fatal("an object over an eighth of the bound was kept")
	}
	for i := range 20 {
		c.add(string(rune('a'+i)), obj(500), now)
		if c.size > c.max {
			t.Fatalf("size %d over %d", c.size, c.max)
		}
	}
	if _, ok := c.get("a", now); ok {
		t.Fatal("the oldest object was not evicted")
	}
	if _, ok := c.get("t", now); !ok {
		t.Fatal("the newest object was evicted")
	}
	if _, ok := c.get("t", now.Add(2*time.Minute)); ok {
		t.Fatal("an object past its TTL was served")
	}
	if _, ok := c.items["t"]; ok {
		t.Fatal("an expired object was kept")
	}
}
