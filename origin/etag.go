package origin

import (
	"bytes"
	"net/http"
	"strconv"
	"time"

	"github.com/headwater-live/headwater/store"
)

// appendStreamTag identifies the stream instance: a stream replaced after
// its grace time restarts its sequence numbers but not its start time.
func appendStreamTag(b []byte, st *store.Stream) []byte {
	return strconv.AppendInt(b, st.Started().UnixNano(), 36)
}

// appendMediaTag is a segment's or part's strong ETag:
// "<stream start>.<epoch>.<msn>.<part|s>".
func appendMediaTag(b []byte, st *store.Stream, seg *store.Segment, part int) []byte {
	b = append(b, '"')
	b = appendStreamTag(b, st)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(seg.Epoch), 36)
	b = append(b, '.')
	b = strconv.AppendUint(b, seg.MSN, 36)
	b = append(b, '.')
	if part < 0 {
		b = append(b, 's')
	} else {
		b = strconv.AppendInt(b, int64(part), 36)
	}
	return append(b, '"')
}

// encryptedTag turns a media ETag into the ETag of its ciphertext:
// "<stream start>.<epoch>.<msn>.<part|s>.e".
func encryptedTag(tag []byte) []byte {
	return append(append(tag[:len(tag)-1], ".e"...), '"')
}

// conditional reports whether a request needs http.ServeContent's
// precondition or range handling.
func conditional(r *http.Request) bool {
	h := r.Header
	return len(h["Range"]) > 0 || len(h["If-None-Match"]) > 0 || len(h["If-Modified-Since"]) > 0 ||
		len(h["If-Match"]) > 0 || len(h["If-Unmodified-Since"]) > 0
}

// serveBytes serves an immutable media object from memory. The common plain
// GET/HEAD writes the store's slice directly (no copy); conditional and
// range requests go through http.ServeContent (304, 206, 412, 416,
// multipart ranges). tag is the strong ETag, quotes included.
func (h *handler) serveBytes(w *respWriter, r *http.Request, data []byte, ctype []string, tag []byte, mod time.Time) {
	hdr := w.Header()
	hdr["Content-Type"] = ctype
	hdr["Cache-Control"] = h.ccSegment
	if conditional(r) {
		hdr["Etag"] = []string{string(tag)}
		http.ServeContent(w, r, "", mod, bytes.NewReader(data))
		return
	}
	// One string holds the ETag, Last-Modified and Content-Length values,
	// one array their slices: two allocations for three headers.
	var buf [160]byte
	b := append(buf[:0], tag...)
	nTag := len(b)
	if !mod.IsZero() {
		b = mod.UTC().AppendFormat(b, http.TimeFormat)
	}
	nMod := len(b)
	b = strconv.AppendInt(b, int64(len(data)), 10)
	str := string(b)
	vals := new([3]string)
	vals[0], vals[1], vals[2] = str[:nTag], str[nTag:nMod], str[nMod:]
	hdr["Etag"] = vals[0:1:1]
	if nMod > nTag {
		hdr["Last-Modified"] = vals[1:2:2]
	}
	hdr[hvContentLength] = vals[2:3:3]
	hdr["Accept-Ranges"] = hvBytes
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(data)
	}
}

// httpTime formats t as an HTTP date (Last-Modified).
func httpTime(t time.Time) string {
	var b [len(http.TimeFormat) + 4]byte
	return string(t.UTC().AppendFormat(b[:0], http.TimeFormat))
}
