package config

import (
	"strings"
	"testing"
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
