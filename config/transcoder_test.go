package config

import (
	"fmt"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/headwater-live/headwater/transcoder"
)

func TestTranscoderLadders(t *testing.T) {
	c := Default()
	c.Transcoder.PrefixLadders = []string{"live/premium/=1080p=1080:6000k;720p=720:3000k:libx264:fast"}
	ls, err := c.Transcoder.Ladders()
	if err != nil {
		t.Fatal(err)
	}
	if got := ls.For("live/x"); len(got) != 3 || got[1].Name != "480p" || got[1].Height != 480 || got[1].BitrateBPS() != 1400000 {
		t.Fatalf("default ladder: %+v", got)
	}
	if got := ls.For("live/premium/a"); len(got) != 2 || got[1].Encoder != "libx264" || got[1].Preset != "fast" {
		t.Fatalf("prefix ladder: %+v", got)
	}
}

func TestTranscoderValidate(t *testing.T) {
	for _, tc := range []struct {
		set  func(*TranscoderConfig)
		want string
	}{
		{func(t *TranscoderConfig) { t.Ladder = []string{"480p=480:fast"} }, `transcoder.ladder: rendition 480p: bitrate "fast": not a number`},
		{func(t *TranscoderConfig) { t.Ladder = []string{"480p=481:1M"} }, "transcoder.ladder: rendition 480p: height 481"},
		{func(t *TranscoderConfig) { t.Ladder = []string{"480p"} }, "transcoder.ladder: item 1:"},
		{func(t *TranscoderConfig) { t.PrefixLadders = []string{"live/=1080p=1080:-1"} }, "transcoder.prefix_ladders: item 1: prefix \"live/\""},
		{func(t *TranscoderConfig) { t.Deadline = 0 }, "transcoder.deadline"},
		{func(t *TranscoderConfig) { t.PoolWarm = -2 }, "transcoder.pool_warm"},
	} {
		c := Default()
		tc.set(&c.Transcoder)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

func TestParseReservation(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want transcoder.Reservation
		err  string // the exact error, or "" for success
	}{
		{in: "live/vip/=1:720p,480p", want: transcoder.Reservation{Streams: "live/vip/", Workers: 1, Renditions: []string{"720p", "480p"}}},
		{in: "live/vip/=1:720p;480p", want: transcoder.Reservation{Streams: "live/vip/", Workers: 1, Renditions: []string{"720p", "480p"}}},
		{in: " live/vip/=3: 720p ; 480p,360p ", want: transcoder.Reservation{Streams: "live/vip/", Workers: 3, Renditions: []string{"720p", "480p", "360p"}}},
		{in: "=1:360p", want: transcoder.Reservation{Streams: "", Workers: 1, Renditions: []string{"360p"}}},
		{in: "live/vip/=2", want: transcoder.Reservation{Streams: "live/vip/", Workers: 2}},
		{in: "=1", want: transcoder.Reservation{Workers: 1}},
		{in: "a=1:360p,360p", want: transcoder.Reservation{Streams: "a", Workers: 1, Renditions: []string{"360p"}}},
		{in: "x=1:" + strings.Repeat("r", 32), want: transcoder.Reservation{Streams: "x", Workers: 1, Renditions: []string{strings.Repeat("r", 32)}}},
		{in: "live/vip/", err: `"live/vip/": want <stream prefix>=<workers>[:<rendition>,<rendition>...]`},
		{in: "", err: `"": want <stream prefix>=<workers>[:<rendition>,<rendition>...]`},
		{in: "live vip=1", err: `"live vip=1": stream prefix "live vip" is not the start of a stream name (letters, digits, '_', '.', '-' and '/')`},
		{in: "live/=", err: `"live/=": workers "" is not an integer`},
		{in: "live/=one:720p", err: `"live/=one:720p": workers "one" is not an integer`},
		{in: "live/=1.5", err: `"live/=1.5": workers "1.5" is not an integer`},
		{in: "live/=0:720p", err: `"live/=0:720p": workers must be at least 1, got 0`},
		{in: "live/=-1", err: `"live/=-1": workers must be at least 1, got -1`},
		{in: "live/=1:", err: `"live/=1:": empty rendition name`},
		{in: "live/=1:720p,,480p", err: `"live/=1:720p,,480p": empty rendition name`},
		{in: "live/=1:720p;", err: `"live/=1:720p;": empty rendition name`},
		{in: "live/=1:7 20p", err: `"live/=1:7 20p": rendition name "7 20p": want 1-32 characters of [A-Za-z0-9_.-]`},
		{in: "live/=1:720p:480p", err: `"live/=1:720p:480p": rendition name "720p:480p": want 1-32 characters of [A-Za-z0-9_.-]`},
		{in: "x=1:" + strings.Repeat("r", 33), err: `"x=1:` + strings.Repeat("r", 33) + `": rendition name "` + strings.Repeat("r", 33) + `": want 1-32 characters of [A-Za-z0-9_.-]`},
	} {
		got, err := ParseReservation(tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParseReservation(%q) error = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseReservation(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestTranscoderReservations(t *testing.T) {
	c := Default()
	if rs, err := c.Transcoder.Reservations(); err != nil || rs != nil {
		t.Fatalf("default Reservations() = %v, %v; want none", rs, err)
	}
	c.Transcoder.Reserve = []string{"live/vip/=1:720p,480p", "=1:360p", "live/vip/=2"}
	rs, err := c.Transcoder.Reservations()
	want := []transcoder.Reservation{
		{Streams: "live/vip/", Workers: 1, Renditions: []string{"720p", "480p"}},
		{Streams: "", Workers: 1, Renditions: []string{"360p"}},
		{Streams: "live/vip/", Workers: 2},
	}
	if err != nil || !reflect.DeepEqual(rs, want) {
		t.Fatalf("Reservations() = %+v, %v; want %+v", rs, err, want)
	}
	// They are what the pool accepts.
	if err := (transcoder.PoolConfig{Size: 5, Reserve: rs}).Validate(); err != nil {
		t.Errorf("PoolConfig.Validate: %v", err)
	}
	c.Transcoder.Reserve = []string{"=1:360p", "live/=0"}
	if _, err := c.Transcoder.Reservations(); err == nil || err.Error() != `transcoder.reserve: item 2: "live/=0": workers must be at least 1, got 0` {
		t.Errorf("Reservations() error = %v", err)
	}
}

func TestTranscoderPoolKeys(t *testing.T) {
	cpus := runtime.NumCPU()
	for _, tc := range []struct {
		name string
		set  func(*TranscoderConfig)
		want []string // every error, or none for valid
	}{
		{"defaults", func(*TranscoderConfig) {}, nil},
		{"queue_size", func(t *TranscoderConfig) { t.QueueSize = 64 }, nil},
		{"queue_size negative", func(t *TranscoderConfig) { t.QueueSize = -1 }, []string{`transcoder.queue_size: must be at least 0, got -1`}},
		{"max_wait fraction", func(t *TranscoderConfig) { t.MaxWait = 0.25 }, nil},
		{"max_wait zero", func(t *TranscoderConfig) { t.MaxWait = 0 }, []string{`transcoder.max_wait: must be greater than 0, got 0`}},
		{"max_wait negative", func(t *TranscoderConfig) { t.MaxWait = -0.5 }, []string{`transcoder.max_wait: must be greater than 0, got -0.5`}},
		{"max_wait NaN", func(t *TranscoderConfig) { t.MaxWait = math.NaN() }, []string{`transcoder.max_wait: must be greater than 0, got NaN`}},
		{"max_wait infinite", func(t *TranscoderConfig) { t.MaxWait = math.Inf(1) }, []string{`transcoder.max_wait: must be greater than 0, got +Inf`}},
		{"fork_server on", func(t *TranscoderConfig) { t.ForkServer = "on" }, nil},
		{"fork_server off", func(t *TranscoderConfig) { t.ForkServer = "off" }, nil},
		{"fork_server bad", func(t *TranscoderConfig) { t.ForkServer = "yes" }, []string{`transcoder.fork_server: "yes": want auto, on or off`}},
		{"reserve", func(t *TranscoderConfig) {
			t.PoolSize = 4
			t.Reserve = []string{"live/vip/=1:720p,480p", "=1:360p", "live/x/=1"}
		}, nil},
		{"reserve bad items", func(t *TranscoderConfig) {
			t.PoolSize = 4
			t.Reserve = []string{"live/vip/", "=1:360p", "live/=0", "live/=1:720p,", "live/=1:a b"}
		}, []string{
			`transcoder.reserve: item 1: "live/vip/": want <stream prefix>=<workers>[:<rendition>,<rendition>...]`,
			`transcoder.reserve: item 3: "live/=0": workers must be at least 1, got 0`,
			`transcoder.reserve: item 4: "live/=1:720p,": empty rendition name`,
			`transcoder.reserve: item 5: "live/=1:a b": rendition name "a b": want 1-32 characters of [A-Za-z0-9_.-]`,
		}},
		{"reserve rendition of no ladder", func(t *TranscoderConfig) {
			t.PoolSize = 4
			t.PrefixLadders = []string{"live/premium/=1080p=1080:6000k"}
			t.Reserve = []string{"live/premium/=1:1080p", "=1:720", "=1:video"}
		}, []string{
			`transcoder.reserve: item 2: rendition "720" is in no ladder (transcoder.ladder, transcoder.prefix_ladders)`,
			`transcoder.reserve: item 3: rendition "video" is in no ladder (transcoder.ladder, transcoder.prefix_ladders)`,
		}},
		{"reserve with a bad ladder reports the ladder only", func(t *TranscoderConfig) {
			t.PoolSize = 4
			t.Ladder = []string{"480p"}
			t.Reserve = []string{"=1:720p"}
		}, []string{`transcoder.ladder: item 1: "480p": want name=height:bitrate[:encoder[:preset]]`}},
		{"reserve every worker", func(t *TranscoderConfig) {
			t.PoolSize = 3
			t.Reserve = []string{"live/vip/=2:720p", "=1"}
		}, []string{`transcoder.reserve: 3 workers reserved of 3 (transcoder.pool_size 3): leave at least one unreserved`}},
		{"reserve more than every worker", func(t *TranscoderConfig) {
			t.PoolSize = 2
			t.Reserve = []string{"=5"}
		}, []string{`transcoder.reserve: 5 workers reserved of 2 (transcoder.pool_size 2): leave at least one unreserved`}},
		{"reserve every CPU", func(t *TranscoderConfig) {
			t.Reserve = []string{fmt.Sprintf("=%d", cpus)}
		}, []string{fmt.Sprintf(`transcoder.reserve: %d workers reserved of %d (transcoder.pool_size 0 = %d CPUs): leave at least one unreserved`, cpus, cpus, cpus)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.set(&c.Transcoder)
			if got := errorTexts(c.Validate()); !slices.Equal(got, tc.want) {
				t.Errorf("Validate() errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}
