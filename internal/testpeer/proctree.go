package testpeer

import (
	"os"
	"strconv"
	"strings"
)

// Descendants lists the live processes descended from pid (children,
// grandchildren, …; zombies left out), read from /proc. It is empty where
// there is no /proc.
func Descendants(pid int) []int {
	parent := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// "pid (comm) state ppid ...": comm may hold spaces and
		// parentheses, so the fields are read after the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] == "Z" {
			continue
		}
		parent[n], _ = strconv.Atoi(f[1])
	}
	var out []int
	for n := range parent {
		// Walk up at most 64 generations (a cycle cannot happen, a
		// reused pid read mid-walk could).
		for a, hops := parent[n], 0; a > 1 && hops < 64; a, hops = parent[a], hops+1 {
			if a == pid {
				out = append(out, n)
				break
			}
		}
	}
	return out
}
