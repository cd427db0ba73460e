package ingest

import "sync"

// Slots counts the sessions of one kind (publishers, readers) against a
// limit that a configuration reload may change; a limit of 0 or less is no
// limit. Safe for concurrent use.
type Slots struct {
	mu    sync.Mutex
	limit int
	used  int
}

// NewSlots returns Slots with the given limit.
func NewSlots(limit int) *Slots { return &Slots{limit: limit} }

// SetLimit changes the limit. Sessions holding a slot keep it even when
// they exceed the new limit.
func (s *Slots) SetLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = n
}

// Limit is the current limit.
func (s *Slots) Limit() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limit
}

// Acquire takes a slot; false when the limit is reached.
func (s *Slots) Acquire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limit > 0 && s.used >= s.limit {
		return false
	}
	s.used++
	return true
}

// Release gives back a slot taken by Acquire.
func (s *Slots) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.used--
}

// Used is the number of slots taken.
func (s *Slots) Used() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.used
}
