package origin

import (
	"net/http"
	"strconv"
)

// logPath is the request path for logs, bounded: garbage paths can be long.
func logPath(r *http.Request) string {
	const max = 256
	p := r.URL.EscapedPath()
	if len(p) > max {
		return p[:max] + "..."
	}
	return p
}

// maxRequestID bounds an X-Request-Id taken from a request.
const maxRequestID = 64

// requestID returns the request's X-Request-Id, sanitised (characters
// outside [A-Za-z0-9._:-] dropped, at most 64 kept), or a new one.
func (h *handler) requestID(r *http.Request) string {
	if v := r.Header["X-Request-Id"]; len(v) > 0 {
		if id := sanitizeID(v[0]); id != "" {
			return id
		}
	}
	var buf [32]byte
	return string(strconv.AppendUint(append(buf[:0], h.idPrefix...), h.idSeq.Add(1), 36))
}

// idByte reports whether c may appear in a request id.
func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':'
}

// sanitizeID keeps the id bytes of s, at most maxRequestID of them.
func sanitizeID(s string) string {
	clean := len(s) <= maxRequestID
	for i := 0; clean && i < len(s); i++ {
		clean = idByte(s[i])
	}
	if clean {
		return s
	}
	b := make([]byte, 0, maxRequestID)
	for i := 0; i < len(s) && len(b) < maxRequestID; i++ {
		if idByte(s[i]) {
			b = append(b, s[i])
		}
	}
	return string(b)
}
