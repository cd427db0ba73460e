package recording

import "strings"

// Rules choose the streams a recorder records by stream-name prefix: the
// longest prefix of Include or Exclude that matches a name decides
// (Include "live/" with Exclude "live/test/" records live/cam1 but not
// live/test/x). "" in Include matches every name.
type Rules struct {
	Include []string
	Exclude []string
}

// Match reports whether name is to be recorded.
func (r Rules) Match(name string) bool {
	best, record := -1, false
	for _, p := range r.Include {
		if len(p) > best && strings.HasPrefix(name, p) {
			best, record = len(p), true
		}
	}
	for _, p := range r.Exclude {
		if len(p) >= best && strings.HasPrefix(name, p) {
			best, record = len(p), false
		}
	}
	return record
}
