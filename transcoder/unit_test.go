package transcoder

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestRenditionValidate(t *testing.T) {
	bf := 3
	for _, tc := range []struct {
		r   Rendition
		err string
	}{
		{Rendition{Name: "480p", Height: 480, Bitrate: "1400k"}, ""},
		{Rendition{Name: "x", Height: 480, Bitrate: "2.5M", Maxrate: "3M", Bufsize: "6M", BFrames: &bf}, ""},
		{Rendition{Name: "x", Height: 480, Bitrate: "800000"}, ""},
		{Rendition{Name: "x", Height: 480, Bitrate: "abc"}, "not a number"},
		{Rendition{Name: "x", Height: 480, Bitrate: "0"}, "must be positive"},
		{Rendition{Name: "x", Height: 480, Bitrate: "0k"}, "must be positive"},
		{Rendition{Name: "x", Height: 480, Bitrate: "-5k"}, "must be positive"},
		{Rendition{Name: "x", Height: 480, Bitrate: ""}, "empty bitrate"},
		{Rendition{Name: "x", Height: 480, Bitrate: "NaNk"}, "not a number"},
		{Rendition{Name: "x", Height: 480, Bitrate: "5G"}, "not a number"},
		{Rendition{Name: "x", Height: 480, Bitrate: "1400k", Maxrate: "1000k"}, "below bitrate"},
		{Rendition{Name: "x", Height: 480, Bitrate: "1400k", Bufsize: "abc"}, "bufsize"},
		{Rendition{Name: "x", Height: 481, Bitrate: "1k"}, "even"},
		{Rendition{Name: "x", Height: 0, Bitrate: "1k"}, "even"},
		{Rendition{Name: "", Height: 480, Bitrate: "1k"}, "name"},
		{Rendition{Name: "a/b", Height: 480, Bitrate: "1k"}, "name"},
		{Rendition{Name: "video", Height: 480, Bitrate: "1k"}, "reserved"},
		{Rendition{Name: "x", Height: 480, Bitrate: "1k", Encoder: "libx264; rm -rf"}, "encoder"},
		{Rendition{Name: "x", Height: 480, Bitrate: "1k", Preset: "very fast"}, "preset"},
		{Rendition{Name: "x", Height: 480, Bitrate: "1k", ExtraArgs: []string{"-f", "null"}}, "extra_args"},
		{Rendition{Name: "x", Height: 480, Bitrate: "1k", ExtraArgs: []string{"-tune"}}, "pairs"},
		{Rendition{Name: "x", Height: 480, Bitrate: "1k", ExtraArgs: []string{"-tune:v", "film"}}, "specifier"},
		{Rendition{Name: "x", Height: 480, Bitrate: "1k", ExtraArgs: []string{"-x264-params", "rc-lookahead=20", "-tune", "film"}}, ""},
		{Rendition{Name: "x", Height: 480, Bitrate: "1k", Threads: -2}, "threads"},
		{Rendition{Name: "x", Height: 480, Bitrate: "1k", Threads: -1}, ""},
	} {
		err := tc.r.Validate()
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: Validate() = %v, want %q", tc.r, err, tc.err)
		}
	}
	if err := (Ladder{{Name: "a", Height: 360, Bitrate: "1k"}, {Name: "a", Height: 240, Bitrate: "1k"}}).Validate(); err == nil {
		t.Error("duplicate names accepted")
	}
	if err := (Ladders{"live/": {{Name: "a", Height: 360, Bitrate: "abc"}}}).Validate(); err == nil || !strings.Contains(err.Error(), `ladder "live/"`) {
		t.Errorf("Ladders.Validate = %v", err)
	}
}

func TestLadderSelection(t *testing.T) {
	d := DefaultLadder()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	// Shedding order: the tallest rung first, the lowest last.
	if d[0].Priority >= d[1].Priority || d[1].Priority >= d[2].Priority {
		t.Errorf("default priorities %d %d %d", d[0].Priority, d[1].Priority, d[2].Priority)
	}
	if d[0].Profile != "high" || d[2].Profile != "main" || d[1].Preset != "veryfast" || d[1].maxrate != 1540000 || d[1].bufsize != 1540000 {
		t.Errorf("defaults %+v", d[1])
	}
	names := func(l Ladder) string {
		var s []string
		for _, r := range l {
			s = append(s, r.Name)
		}
		return strings.Join(s, ",")
	}
	for h, want := range map[int]string{1080: "720p,480p,360p", 720: "480p,360p", 481: "480p,360p", 480: "360p", 360: ""} {
		if got := names(d.For(h)); got != want {
			t.Errorf("For(%d) = %s, want %s", h, got, want)
		}
	}
	small := Ladder{{Name: "240p", Height: 240, Bitrate: "400k"}}
	vip := Ladder{{Name: "1080p", Height: 1080, Bitrate: "6M"}}
	ls := Ladders{"": d, "live/": small, "live/vip": vip}
	if err := ls.Validate(); err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]string{"other/x": "720p,480p,360p", "live/x": "240p", "live/vip/1": "1080p", "live/vi": "240p"} {
		if got := names(ls.For(s)); got != want {
			t.Errorf("Ladders.For(%s) = %s, want %s", s, got, want)
		}
	}
	if (Ladders{"live/": small}).For("other") != nil {
		t.Error("no default ladder, yet one returned")
	}
}

func TestPoolConfigValidate(t *testing.T) {
	if err := (PoolConfig{Size: 2, Reserve: []Reservation{{Workers: 2}}}).Validate(); err == nil {
		t.Error("all workers reserved: accepted")
	}
	if err := (PoolConfig{Size: 3, Reserve: []Reservation{{Streams: "live/vip", Workers: 1}, {Renditions: []string{"360p"}, Workers: 1}}}).Validate(); err != nil {
		t.Error(err)
	}
	if err := (PoolConfig{Size: 2, Reserve: []Reservation{{Workers: 0}}}).Validate(); err == nil {
		t.Error("zero-worker reservation accepted")
	}
	c := PoolConfig{}.withDefaults()
	if c.Size < 1 || c.Warm != c.Size || c.QueueSize != 16*c.Size || c.MaxWait != 1 || len(c.Prewarm) != 1 {
		t.Errorf("defaults %+v", c)
	}
	if c := (PoolConfig{Size: 2, Warm: -1}).withDefaults(); c.Warm != 0 {
		t.Errorf("warm -1 -> %d", c.Warm)
	}
}

func testJob(stream string, seq uint64, closed time.Time, rs ...Rendition) *Job {
	return &Job{Stream: stream, Seq: seq, Renditions: append([]Rendition(nil), rs...), Closed: closed, Ctx: context.Background()}
}

func TestQueueRoundRobinOldestFirst(t *testing.T) {
	q := newLocalQueue(100, nil, nil)
	t0 := time.Now()
	r := Rendition{Name: "a", Priority: 1}
	for seq := uint64(0); seq < 3; seq++ {
		for _, s := range []string{"x", "y", "z"} {
			if s == "z" && seq > 0 {
				continue
			}
			q.Put(testJob(s, seq, t0.Add(time.Duration(seq)*time.Second), r))
		}
	}
	var got []string
	for q.Len() > 0 {
		j, err := q.Take(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, j.Stream+string(rune('0'+j.Seq)))
	}
	if s := strings.Join(got, " "); s != "x0 y0 z0 x1 y1 x2 y2" {
		t.Errorf("order %s", s)
	}
	// accept filters (reserved workers) skip to the next acceptable stream.
	q.Put(testJob("x", 5, t0, r))
	q.Put(testJob("vip", 5, t0, r))
	j, _ := q.Take(context.Background(), func(j *Job) bool { return j.Stream == "vip" })
	if j.Stream != "vip" {
		t.Errorf("reserved take got %s", j.Stream)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := q.Take(ctx, func(j *Job) bool { return j.Stream == "vip" }); err == nil {
		t.Error("Take returned a job the filter refused")
	}
	// A retry goes to the head of its stream.
	retry := testJob("x", 4, t0, r)
	retry.Attempt = 1
	q.Put(retry)
	if j, _ := q.Take(context.Background(), nil); j != retry {
		t.Errorf("retry not first: %s %d", j.Stream, j.Seq)
	}
	q.Close()
	if _, err := q.Take(context.Background(), nil); err != ErrClosed {
		t.Errorf("Take after Close: %v", err)
	}
}

func TestQueueShedsLowestPriorityOldestFirst(t *testing.T) {
	m := NewMetrics(nil)
	hi := Rendition{Name: "720p", Height: 720, Priority: 1} // shed first
	mid := Rendition{Name: "480p", Height: 480, Priority: 2}
	lo := Rendition{Name: "360p", Height: 360, Priority: 3} // kept last
	protected := func(j *Job, r Rendition) bool { return j.Stream == "vip" && r.Name == "720p" }
	q := newLocalQueue(6, protected, m)
	t0 := time.Now()
	var results []*Result
	put := func(s string, seq uint64) *Job {
		j := testJob(s, seq, t0.Add(time.Duration(seq)*time.Second), hi, mid, lo)
		j.Done = func(r *Result) { results = append(results, r) }
		q.Put(j)
		return j
	}
	a0 := put("a", 0)
	v0 := put("vip", 0)
	if q.units != 6 {
		t.Fatalf("units %d", q.units)
	}
	a1 := put("a", 1) // 9 units: shed a0's then a1's 720p (vip's is reserved), then a0's 480p
	if len(a0.Renditions) != 1 || len(a1.Renditions) != 2 || len(v0.Renditions) != 3 {
		t.Fatalf("after shedding: a0 %v a1 %v v0 %v", a0.Renditions, a1.Renditions, v0.Renditions)
	}
	a2 := put("a", 2) // 9 units: a2's 720p, then the oldest 480p: vip's, a1's
	if a0.Renditions[0].Name != "360p" || len(a1.Renditions) != 1 || len(a2.Renditions) != 2 ||
		len(v0.Renditions) != 2 || v0.Renditions[0].Name != "720p" || v0.Renditions[1].Name != "360p" {
		t.Fatalf("a0 %v a1 %v a2 %v v0 %v", a0.Renditions, a1.Renditions, a2.Renditions, v0.Renditions)
	}
	if got := counter(t, m, "720p", OutcomeShed) + counter(t, m, "480p", OutcomeShed); got != 6 {
		t.Errorf("shed counted %v", got)
	}
	if len(results) != 0 {
		t.Fatalf("jobs completed early: %d", len(results))
	}
	// A whole job shed is completed with every rendition shed.
	q2 := newLocalQueue(1, nil, m)
	var res *Result
	j0 := testJob("a", 0, t0, lo)
	j0.Done = func(r *Result) { res = r }
	q2.Put(j0)
	q2.Put(testJob("a", 1, t0.Add(time.Second), lo))
	if res == nil || len(res.Renditions) != 1 || res.Renditions[0].Outcome != OutcomeShed || q2.Len() != 1 {
		t.Fatalf("whole shed: %+v, len %d", res, q2.Len())
	}
}

func TestBuildTemplate(t *testing.T) {
	l := DefaultLadder()
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	tm := buildTemplate(l.For(720), "")
	s := strings.Join(tm.Args, " ")
	for _, want := range []string{
		"-f mpegts -copyts -i pipe:0",
		"[0:v:0]split=2[s0][s1];[s0]scale=-2:480,format=yuv420p[o0];[s1]scale=-2:360,format=yuv420p[o1]",
		"-map [o0] -c:v:0 libx264 -b:v:0 1400000 -maxrate:v:0 1540000 -bufsize:v:0 1540000 -preset:v:0 veryfast -profile:v:0 main -bf:v:0 0 -threads:v:0 1",
		"-map [o1] -c:v:1 libx264 -b:v:1 800000",
		"-force_key_frames:v:1 source",
		"-fps_mode passthrough -muxdelay 0 -muxpreload 0 -flush_packets 1 -f mpegts pipe:1",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("args lack %q:\n%s", want, s)
		}
	}
	if tm.N != 2 || buildTemplate(l.For(720), "").Key != tm.Key || buildTemplate(l.For(1080), "").Key == tm.Key {
		t.Error("template keys")
	}
	l[2].ExtraArgs = []string{"-tune", "film"}
	if !strings.Contains(strings.Join(buildTemplate(l.For(720), "").Args, " "), "-force_key_frames:v:1 source -tune:v:1 film -fps_mode") {
		t.Errorf("extra args not scoped to their stream: %v", buildTemplate(l.For(720), "").Args)
	}
	if p := PrewarmFor(Ladders{"": l, "x/": l}, 1080, 720, 360); len(p) != 2 || len(p[0]) != 3 || len(p[1]) != 2 {
		t.Errorf("PrewarmFor: %v", p)
	}
	one := buildTemplate(l.For(480), "")
	if !strings.Contains(strings.Join(one.Args, " "), "[0:v:0]scale=-2:360,format=yuv420p[o0] ") {
		t.Errorf("single output: %v", one.Args)
	}
}

func TestMergeRetryFrames(t *testing.T) {
	f := func(pts int64, b byte) OutFrame { return OutFrame{PTS: pts, DTS: pts, AU: []byte{b}} }
	// Attempt 0 streamed two frames, then died; the retry reproduces them.
	var p gopPart
	merge(&p, 0, nil, f(0, 1))
	merge(&p, 1, nil, f(1, 2))
	for k, x := range []OutFrame{f(0, 1), f(1, 2), f(2, 3)} {
		merge(&p, k, nil, x)
	}
	if len(p.frames) != 3 || p.mismatch {
		t.Fatalf("identical retry: %d frames, mismatch %v", len(p.frames), p.mismatch)
	}
	// A different retry replaces unwritten frames...
	p = gopPart{}
	merge(&p, 0, nil, f(0, 1))
	merge(&p, 1, nil, f(1, 2))
	for k, x := range []OutFrame{f(0, 9), f(1, 9), f(2, 9)} {
		merge(&p, k, nil, x)
	}
	if len(p.frames) != 3 || p.frames[0].AU[0] != 9 || p.frames[2].AU[0] != 9 || p.mismatch {
		t.Fatalf("different retry, nothing written: %+v", p)
	}
	// ...but not frames already written: the GOP is cut short.
	p = gopPart{}
	merge(&p, 0, nil, f(0, 1))
	p.sent = 1
	merge(&p, 0, nil, f(0, 9))
	if !p.mismatch {
		t.Fatal("mismatch after a write not detected")
	}
}
