//go:build eval

// The evaluations behind two design decisions of the transcoder (one ffmpeg
// run per GOP for all renditions; one decoder and one encoder thread per
// job), recorded in docs/decisions.md and the package comment. They are not
// tests: they assert nothing, take minutes of CPU and only log figures, so
// they build only with the eval tag. Run them on an otherwise idle machine:
//
//	go test -tags eval -run Experiment -v -timeout 30m ./transcoder/

package transcoder

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runFF runs ffmpeg with args on input in and returns its wall and CPU time.
func runFF(t testing.TB, args []string, in []byte) (wall, cpu time.Duration) {
	cmd := exec.Command("ffmpeg", args...)
	cmd.Stdin = bytes.NewReader(in)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	st := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	return time.Since(st), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// withThreads rewrites a command line's thread options: dec for the
// decoder, enc for every encoder ("0" = ffmpeg's automatic choice).
func withThreads(args []string, dec, enc string) []string {
	out := append([]string(nil), args...)
	for i := 0; i+1 < len(out); i++ {
		if out[i] == "-threads" {
			out[i+1] = dec
		}
		if strings.HasPrefix(out[i], "-threads:v:") {
			out[i+1] = enc
		}
	}
	return out
}

// One ffmpeg run per GOP producing every rendition (decode once, start
// once) versus one run per rendition, in CPU per media second.
func TestExperimentOneRunVersusRunPerRendition(t *testing.T) {
	needFFmpeg(t)
	fx := sourceFixture(t, 1280, 720, 30, 60, 2, 20)
	lad := DefaultLadder()
	if err := lad.Validate(); err != nil {
		t.Fatal(err)
	}
	rs := lad.For(720)
	mediaSec := float64(len(fx.frames)) / 30
	var one, per time.Duration
	for _, g := range fx.gops() {
		in, err := muxGOP(g, g[0].DTS)
		if err != nil {
			t.Fatal(err)
		}
		_, c := runFF(t, buildTemplate(rs, "").Args, in)
		one += c
		for _, r := range rs {
			_, c := runFF(t, buildTemplate([]Rendition{r}, "").Args, in)
			per += c
		}
	}
	t.Logf("one run per GOP: %.3f CPU s/media s; one run per rendition: %.3f (load %s)",
		one.Seconds()/mediaSec, per.Seconds()/mediaSec, loadAvg())
}

// Decoder and encoder threads: CPU per job and job wall time, the
// configurations interleaved GOP by GOP.
func TestExperimentThreads(t *testing.T) {
	needFFmpeg(t)
	fx := sourceFixture(t, 1280, 720, 30, 60, 2, 20)
	lad := DefaultLadder()
	if err := lad.Validate(); err != nil {
		t.Fatal(err)
	}
	args := buildTemplate(lad.For(720), "").Args
	cfgs := [][2]string{{"1", "1"}, {"1", "2"}, {"1", "0"}, {"0", "0"}}
	cpu := map[[2]string]time.Duration{}
	walls := map[[2]string][]time.Duration{}
	n := 0
	for _, g := range fx.gops() {
		in, err := muxGOP(g, g[0].DTS)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cfgs {
			w, cp := runFF(t, withThreads(args, c[0], c[1]), in)
			cpu[c] += cp
			walls[c] = append(walls[c], w)
		}
		n++
	}
	for _, c := range cfgs {
		t.Logf("decoder threads %s, encoder threads %s: CPU per job %v, job wall p50 %v",
			c[0], c[1], (cpu[c] / time.Duration(n)).Round(time.Millisecond), pct(walls[c], .5).Round(time.Millisecond))
	}
	t.Logf("load %s", loadAvg())
}
