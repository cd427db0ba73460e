package ingest

import (
	"errors"
	"net"
	"testing"
)

func TestLifecycle(t *testing.T) {
	l := NewLifecycle("test")
	listens := 0
	if err := l.Start(func() error { listens++; return errors.New("busy") }); err == nil {
		t.Fatal("a failed listen started the server")
	}
	if err := l.Start(func() error { listens++; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := l.Start(func() error { listens++; return nil }); err == nil || err.Error() != "test: server already started" {
		t.Fatalf("second Start: %v", err)
	}
	if listens != 2 {
		t.Fatalf("listen ran %d times, want 2", listens)
	}

	a, b := net.Pipe()
	defer b.Close()
	ended := make(chan struct{})
	if !l.Serve(a, func() {
		<-l.Done()
		if _, err := a.Read(make([]byte, 1)); err == nil { // Close closes a
			t.Error("read on a connection Close closed succeeded")
		}
		close(ended)
	}) {
		t.Fatal("Serve refused before Close")
	}
	ran := false
	l.Go(func() { <-l.Context().Done(); ran = true })

	if l.Closed() {
		t.Fatal("closed before Close")
	}
	stopErr := errors.New("stop")
	if err := l.Close(func() error { return stopErr }); err != stopErr {
		t.Fatalf("Close returned %v, want stop's error", err)
	}
	<-ended
	if !ran || !l.Closed() {
		t.Fatal("Close returned before its goroutines ended")
	}
	if err := l.Close(nil); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	c, d := net.Pipe()
	defer d.Close()
	if l.Serve(c, func() { t.Error("served after Close") }) {
		t.Fatal("Serve accepted a connection after Close")
	}
	if _, err := c.Write([]byte{1}); err == nil {
		t.Fatal("a refused connection was left open")
	}
	if err := l.Start(func() error { return nil }); err == nil || err.Error() != "test: server closed" {
		t.Fatalf("Start after Close: %v", err)
	}
}

func TestSlots(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int
		want  int // slots Acquire grants out of 5
	}{
		{"limited", 2, 2},
		{"no limit", 0, 5},
		{"negative is no limit", -1, 5},
	} {
		s := NewSlots(tc.limit)
		got := 0
		for range 5 {
			if s.Acquire() {
				got++
			}
		}
		if got != tc.want || s.Used() != tc.want {
			t.Errorf("%s: %d granted, %d used, want %d", tc.name, got, s.Used(), tc.want)
		}
	}
	s := NewSlots(1)
	s.Acquire()
	s.SetLimit(2)
	if !s.Acquire() || s.Acquire() || s.Limit() != 2 {
		t.Fatal("SetLimit did not raise the limit to 2")
	}
	s.Release()
	if !s.Acquire() {
		t.Fatal("Release did not free a slot")
	}
}
