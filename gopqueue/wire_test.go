package gopqueue

import (
	"bytes"
	"testing"
	"time"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/transcoder"
)

func TestWireRoundTrip(t *testing.T) {
	j := fakeJob("live/w", 300, time.Second)
	body, err := encodeJob(&jobMeta{V: wireVersion, Key: "k", Node: "n", Reply: resultSubject("n", "k"), Job: *j, InputSize: 300}, j.Input)
	if err != nil {
		t.Fatal(err)
	}
	m, in, err := decodeJob(body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, j.Input) || m.Job.Stream != j.Stream || !m.Job.Deadline.Equal(j.Deadline) || len(m.Job.Renditions) != 3 ||
		m.Job.Renditions[2].Priority != 3 || len(m.Job.PTS) != len(j.PTS) {
		t.Fatalf("job came back as %+v", m.Job)
	}
	if _, _, err := decodeJob(body[:10]); err == nil {
		t.Error("a truncated job decoded")
	}
	for _, codec := range []media.Codec{fakeCodec, &media.H265{VPS: []byte{1}, SPS: []byte{2, 3}, PPS: nil}, nil} {
		f := transcoder.OutFrame{DTS: -42, PTS: 1 << 40, Key: true, AU: []byte{0, 0, 0, 1, 9}}
		b := encodeFrame(7, 1, 2, 3, codec, f)
		w, err := decodeFrame(b[1:])
		if err != nil {
			t.Fatal(err)
		}
		if w.delivery != 7 || w.attempt != 1 || w.rendition != 2 || w.k != 3 || w.frame.DTS != f.DTS ||
			w.frame.PTS != f.PTS || !w.frame.Key || !bytes.Equal(w.frame.AU, f.AU) {
			t.Fatalf("frame came back as %+v", w)
		}
		if codec != nil && !media.SameVideoParams(codec, w.codec) {
			t.Fatalf("codec %+v came back as %+v", codec, w.codec)
		}
		for n := 1; n < 9; n++ {
			if _, err := decodeFrame(b[1:n]); err == nil {
				t.Errorf("a frame truncated to %d bytes decoded", n)
			}
		}
	}
	c, err := decodeInputRequest(encodeInputRequest(1 << 20))
	if err != nil || c != 1<<20 {
		t.Fatalf("input request came back as %d, %v", c, err)
	}
	for _, bad := range [][]byte{nil, {wireVersion}, {wireVersion + 1, 0x80, 0x80, 0x40}, encodeInputRequest(10)} {
		if _, err := decodeInputRequest(bad); err == nil {
			t.Errorf("input request %x decoded", bad)
		}
	}
}

func TestDirectInputs(t *testing.T) {
	for _, c := range []struct{ origin, listen, host string }{
		{"http://10.0.0.5:8080", "10.0.0.5:0", "10.0.0.5"},
		{"http://node-a:8080/", "node-a:0", "node-a"},
		{"http://[fd00::5]:8080", "[fd00::5]:0", "fd00::5"},
		{"https://node-a:8443", "", ""},
		{"", "", ""},
		{"::bad", "", ""},
	} {
		if l, h := DirectInputs(c.origin); l != c.listen || h != c.host {
			t.Errorf("DirectInputs(%q) = %q, %q; want %q, %q", c.origin, l, h, c.listen, c.host)
		}
	}
}
