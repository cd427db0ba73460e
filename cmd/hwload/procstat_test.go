package main

import (
	"os"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
)

func TestParseProcStat(t *testing.T) {
	// A command name with spaces and parentheses; utime 1234, stime 567,
	// rss 2500 pages.
	line := "4242 (nginx: worker (x) 1) S 4241 4241 4241 0 -1 4194624 1170 0 0 0 1234 567 8 9 20 0 1 0 1583 11735040 2500 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
	st, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != 4242 || st.Comm != "nginx: worker (x) 1" || st.PPID != 4241 || st.UTime != 1234 || st.STime != 567 || st.RSS != 2500 {
		t.Fatalf("got %+v", st)
	}
	if got := st.CPU(); got != 18010*time.Millisecond {
		t.Errorf("CPU %v, want 18.01s", got)
	}
	for _, bad := range []string{"", "12 noparen S 1", "x (a) S 1 2", "12 (a) S 1 2 3"} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestReadProcStatSelf(t *testing.T) {
	testpeer.RequireLinux(t, "/proc")
	st, err := readProcStat(0)
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != os.Getpid() || st.PPID != os.Getppid() {
		t.Fatalf("got pid %d ppid %d, want %d %d", st.PID, st.PPID, os.Getpid(), os.Getppid())
	}
	// Burn CPU until the counter moves (ticks are 10 ms; on a busy machine
	// this process may get little of the wall time).
	before := st.CPU()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		x := 0
		for i := 0; i < 1e6; i++ {
			x += i
		}
		_ = x
		after, err := readProcStat(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after.CPU() > before {
			return
		}
	}
	t.Errorf("CPU did not move from %v in 10 s", before)
}

func TestParseCPULine(t *testing.T) {
	busy, total, err := parseCPULine("cpu  100 5 50 800 20 3 2 10 7 0")
	if err != nil {
		t.Fatal(err)
	}
	if busy != 1700*time.Millisecond || total != 9900*time.Millisecond {
		t.Fatalf("busy %v total %v", busy, total)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8", "cpu 1 2 3", "cpu a 2 3 4 5 6 7 8"} {
		if _, _, err := parseCPULine(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestParseSchedstat(t *testing.T) {
	d, err := parseSchedstat("5218904 1234567 42\n")
	if err != nil || d != 1234567*time.Nanosecond {
		t.Fatalf("%v %v", d, err)
	}
	if _, err := parseSchedstat("1 2"); err == nil {
		t.Error("short line accepted")
	}
}

func TestMachineSelf(t *testing.T) {
	testpeer.RequireLinux(t, "/proc")
	if s := sampleMachine(); !s.ok || s.total <= 0 {
		t.Fatalf("machine sample %+v", s)
	}
	if _, err := runQueueWait(os.Getpid()); err != nil {
		t.Fatal(err)
	}
}
