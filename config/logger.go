package config

import (
	"fmt"
	"io"
	"log/slog"
)

// SlogLevel returns Level as a slog.Level.
func (l LogConfig) SlogLevel() (slog.Level, error) {
	switch l.Level {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, &FieldError{Path: "log.level", Reason: fmt.Sprintf("%q is not one of debug, info, warn, error", l.Level)}
}

// Logger returns a slog.Logger writing to w: JSON lines when log.format is
// "json" (the default), logfmt-style text when it is "text", at the minimum
// level log.level.
func (c *Config) Logger(w io.Writer) (*slog.Logger, error) {
	level, err := c.Log.SlogLevel()
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.Log.Format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, &FieldError{Path: "log.format", Reason: fmt.Sprintf("%q is not one of json, text", c.Log.Format)}
}
