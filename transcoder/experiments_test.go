package transcoder

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The experiments behind two design decisions. They take minutes of CPU
// and run only with HEADWATER_TRANSCODER_EXPERIMENTS=1 (use -v).

func experiments(t *testing.T) {
	if os.Getenv("HEADWATER_TRANSCODER_EXPERIMENTS") == "" {
		t.Skip("set HEADWATER_TRANSCODER_EXPERIMENTS=1")
	}
	needFFmpeg(t)
}

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
	experiments(t)
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
	experiments(t)
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
