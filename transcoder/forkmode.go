package transcoder

import "fmt"

// ForkServerMode chooses how the runner starts its ffmpeg processes.
type ForkServerMode string

// Fork server modes.
const (
	// ForkServerAuto forks from the fork server when it can be built and
	// started, and executes ffmpeg otherwise (logged once).
	ForkServerAuto ForkServerMode = "auto"
	// ForkServerOn requires the fork server: the runner fails to start
	// without it.
	ForkServerOn ForkServerMode = "on"
	// ForkServerOff executes ffmpeg for every process.
	ForkServerOff ForkServerMode = "off"
)

// ParseForkServerMode parses "auto", "on" or "off" ("" is auto).
func ParseForkServerMode(s string) (ForkServerMode, error) {
	switch ForkServerMode(s) {
	case "", ForkServerAuto:
		return ForkServerAuto, nil
	case ForkServerOn, ForkServerOff:
		return ForkServerMode(s), nil
	}
	return "", fmt.Errorf("%q: want auto, on or off", s)
}
