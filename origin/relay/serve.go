package relay

import (
	"bytes"
	"net/http"
	"time"
)

// header holds the response headers relayed from the owner. The value
// slices are the upstream response's, never modified: net/http only reads
// header values, so every waiter's response can hold the same ones.
type header struct {
	ctype, cc, etag, lastMod, encoding, vary []string
	// clen is this node's Content-Length of the complete body.
	clen []string
	// mod is Last-Modified parsed, for immutable objects' If-Modified-Since;
	// zero for playlists (they change within a second: only If-None-Match
	// revalidates them, as on the owner).
	mod time.Time
}

// takeHeader keeps the headers of an upstream response that are relayed.
func takeHeader(h http.Header, kind Kind) header {
	x := header{
		ctype:    h["Content-Type"],
		cc:       h["Cache-Control"],
		etag:     h["Etag"],
		lastMod:  h["Last-Modified"],
		encoding: h["Content-Encoding"],
		vary:     h["Vary"],
	}
	if kind.immutable() && len(x.lastMod) > 0 {
		x.mod, _ = http.ParseTime(x.lastMod[0])
	}
	return x
}

// set puts the relayed headers in hdr (Content-Length aside).
func (x *header) set(hdr http.Header) {
	put := func(name string, v []string) {
		if len(v) > 0 {
			hdr[name] = v
		}
	}
	put("Content-Type", x.ctype)
	put("Cache-Control", x.cc)
	put("Etag", x.etag)
	put("Last-Modified", x.lastMod)
	put("Content-Encoding", x.encoding)
	put("Vary", x.vary)
}

// conditional reports whether a request needs http.ServeContent's
// precondition or range handling.
func conditional(r *http.Request) bool {
	h := r.Header
	return len(h["Range"]) > 0 || len(h["If-None-Match"]) > 0 || len(h["If-Modified-Since"]) > 0 ||
		len(h["If-Match"]) > 0 || len(h["If-Unmodified-Since"]) > 0
}

// serveObject answers r with a complete object. A plain GET or HEAD of a
// media object or key writes the shared body as it is; conditional and
// range requests, and playlists (as the origin serves them), go through
// http.ServeContent (304, 206, 412, 416).
func serveObject(w http.ResponseWriter, r *http.Request, obj *object, kind Kind) {
	hdr := w.Header()
	if obj.status != http.StatusOK {
		hdr["Content-Type"] = hvTextPlain
		hdr["X-Content-Type-Options"] = hvNoSniff
		w.WriteHeader(obj.status)
		if r.Method != http.MethodHead {
			_, _ = w.Write(obj.body)
		}
		return
	}
	obj.hdr.set(hdr)
	if (kind.immutable() || kind == KindKey) && !conditional(r) {
		hdr["Content-Length"] = obj.hdr.clen
		if kind != KindKey {
			hdr["Accept-Ranges"] = hvBytes
		}
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(obj.body)
		}
		return
	}
	http.ServeContent(w, r, "", obj.hdr.mod, bytes.NewReader(obj.body))
}
