package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is sysconf(_SC_CLK_TCK), the unit of the times in
// /proc/<pid>/stat. It is 100 on every Linux architecture Go supports (the
// kernel's USER_HZ), which is also what prometheus/procfs assumes.
const clockTicks = 100

// procStat is what hwload uses of /proc/<pid>/stat.
type procStat struct {
	PID   int
	Comm  string
	PPID  int
	UTime uint64 // user CPU of all the process's threads, clock ticks
	STime uint64 // system CPU of all the process's threads, clock ticks
	RSS   int64  // resident pages
}

// CPU is user + system time.
func (s procStat) CPU() time.Duration {
	return ticksToDuration(s.UTime + s.STime)
}

func ticksToDuration(t uint64) time.Duration {
	return time.Duration(t) * time.Second / clockTicks
}

// parseProcStat parses the contents of /proc/<pid>/stat. The command name
// is in parentheses and may itself contain spaces and parentheses, so the
// fields are counted from the last ')'.
func parseProcStat(data string) (procStat, error) {
	var s procStat
	open := strings.IndexByte(data, '(')
	closing := strings.LastIndexByte(data, ')')
	if open < 0 || closing < open {
		return s, fmt.Errorf("proc stat: no command name in %q", truncate(data, 80))
	}
	pid, err := strconv.Atoi(strings.TrimSpace(data[:open]))
	if err != nil {
		return s, fmt.Errorf("proc stat: bad pid: %w", err)
	}
	s.PID = pid
	s.Comm = data[open+1 : closing]
	// fields[0] is field 3 (state) of proc(5).
	fields := strings.Fields(data[closing+1:])
	const (
		fPPID  = 4 - 3
		fUTime = 14 - 3
		fSTime = 15 - 3
		fRSS   = 24 - 3
	)
	if len(fields) <= fRSS {
		return s, fmt.Errorf("proc stat: %d fields, want more than %d", len(fields)+2, fRSS+3)
	}
	if s.PPID, err = strconv.Atoi(fields[fPPID]); err != nil {
		return s, fmt.Errorf("proc stat: ppid: %w", err)
	}
	if s.UTime, err = strconv.ParseUint(fields[fUTime], 10, 64); err != nil {
		return s, fmt.Errorf("proc stat: utime: %w", err)
	}
	if s.STime, err = strconv.ParseUint(fields[fSTime], 10, 64); err != nil {
		return s, fmt.Errorf("proc stat: stime: %w", err)
	}
	if s.RSS, err = strconv.ParseInt(fields[fRSS], 10, 64); err != nil {
		return s, fmt.Errorf("proc stat: rss: %w", err)
	}
	return s, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// readProcStat reads /proc/<pid>/stat ("self" for pid 0).
func readProcStat(pid int) (procStat, error) {
	name := "self"
	if pid > 0 {
		name = strconv.Itoa(pid)
	}
	b, err := os.ReadFile(filepath.Join("/proc", name, "stat"))
	if err != nil {
		return procStat{}, err
	}
	return parseProcStat(string(b))
}

// descendants returns pid's child processes, their children and so on,
// found by scanning /proc for parent ids.
func descendants(pid int) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := readProcStat(p)
		if err != nil {
			continue // gone meanwhile
		}
		children[st.PPID] = append(children[st.PPID], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out, nil
}

// cpuOf sums the CPU time of pids. A process that has gone is skipped and
// reported in missing.
func cpuOf(pids []int) (total time.Duration, missing []int) {
	for _, p := range pids {
		st, err := readProcStat(p)
		if err != nil {
			missing = append(missing, p)
			continue
		}
		total += st.CPU()
	}
	return total, missing
}

// parseCPULine parses the aggregate "cpu ..." line of /proc/stat into busy
// and total time: busy is user+nice+system+irq+softirq+steal (guest time is
// already inside user), total adds idle and iowait.
func parseCPULine(line string) (busy, total time.Duration, err error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("proc stat: bad cpu line %q", truncate(line, 80))
	}
	var v [8]uint64
	for i := range v {
		if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
			return 0, 0, fmt.Errorf("proc stat: cpu field %d: %w", i+1, err)
		}
	}
	user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
	b := user + nice + system + irq + softirq + steal
	return ticksToDuration(b), ticksToDuration(b + idle + iowait), nil
}

// machineCPU reads the machine's busy and total CPU time from /proc/stat.
func machineCPU() (busy, total time.Duration, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseCPULine(line)
}

// parseSchedstat returns the run-queue wait (the second field, in ns) of a
// /proc/<pid>/task/<tid>/schedstat line: time the thread was runnable but
// waiting for a CPU.
func parseSchedstat(s string) (time.Duration, error) {
	f := strings.Fields(s)
	if len(f) < 3 {
		return 0, fmt.Errorf("schedstat: %q", truncate(s, 80))
	}
	ns, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("schedstat: %w", err)
	}
	return time.Duration(ns), nil
}

// runQueueWait sums the run-queue wait of all of pid's threads (exited
// threads are not counted).
func runQueueWait(pid int) (time.Duration, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "schedstat"))
		if err != nil {
			continue // thread gone
		}
		d, err := parseSchedstat(string(b))
		if err != nil {
			return 0, err
		}
		total += d
	}
	return total, nil
}

// loadAverage returns the 1-minute load average, -1 if unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// machineSample is the machine-wide state at one instant, to judge how much
// of the machine other work took during a measurement.
type machineSample struct {
	busy, total time.Duration
	load1       float64
	ok          bool
}

func sampleMachine() machineSample {
	b, t, err := machineCPU()
	return machineSample{busy: b, total: t, load1: loadAverage(), ok: err == nil}
}

// machineReport describes the machine during a measurement window.
type machineReport struct {
	Cores     int     `json:"cores"`
	BusyCores float64 `json:"busy_cores"`
	// OtherCores is busy minus the server and the load generator: work of
	// other processes competing for the same cores.
	OtherCores float64 `json:"other_cores"`
	Load1Start float64 `json:"load1_start"`
	Load1End   float64 `json:"load1_end"`
	// ServerRunQueueWait is the time the server's threads spent runnable
	// but waiting for a CPU, per second of wall time.
	ServerRunQueueWait *float64 `json:"server_run_queue_wait_s_per_s,omitempty"`
}

func newMachineReport(a, b machineSample, wall float64, accounted float64, cores int) machineReport {
	r := machineReport{Cores: cores, Load1Start: a.load1, Load1End: b.load1}
	if a.ok && b.ok {
		r.BusyCores = (b.busy - a.busy).Seconds() / wall
		r.OtherCores = max(r.BusyCores-accounted, 0)
	}
	return r
}

func (r machineReport) String() string {
	s := fmt.Sprintf("%.2f of %d cores busy (%.2f by other processes), load average %.1f → %.1f",
		r.BusyCores, r.Cores, r.OtherCores, r.Load1Start, r.Load1End)
	if r.ServerRunQueueWait != nil {
		s += fmt.Sprintf("; server threads waited %.3f s per s for a CPU", *r.ServerRunQueueWait)
	}
	return s
}
