package transcoder

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"time"
)

// CheckEncoders asks ffmpeg (path, "ffmpeg" when empty) for its video
// encoders and reports every rendition whose encoder it lacks, so that a
// configuration naming a missing encoder fails at startup with a clear
// error rather than as failed jobs. Ladders must be validated.
func CheckEncoders(ctx context.Context, path string, ladders ...Ladder) error {
	if path == "" {
		path = "ffmpeg"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "-hide_banner", "-nostdin", "-encoders").Output()
	if err != nil {
		return fmt.Errorf("transcoder: running %s -encoders: %w", path, err)
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		// " V....D libx264  description": flags then name; video flags start with V.
		if len(f) >= 2 && len(f[0]) == 6 && f[0][0] == 'V' {
			have[f[1]] = true
		}
	}
	missing := map[string][]string{}
	for _, l := range ladders {
		for _, r := range l {
			enc := r.Encoder
			if enc == "" {
				enc = "libx264"
			}
			if !have[enc] {
				missing[enc] = append(missing[enc], r.Name)
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	var msgs []string
	for enc, rs := range missing {
		msgs = append(msgs, fmt.Sprintf("encoder %q (renditions %s)", enc, strings.Join(rs, ", ")))
	}
	sort.Strings(msgs)
	return fmt.Errorf("transcoder: %s lacks video %s", path, strings.Join(msgs, "; "))
}
