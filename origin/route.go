package origin

import (
	"io"
	"net/http"
	"strings"
)

// route serves one request and returns the object label for metrics.
func (h *handler) route(w *respWriter, r *http.Request) object {
	hdr := w.Header()
	h.setCORS(hdr, r)
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		h.preflight(w, r)
		return objectOther
	default:
		hdr["Allow"] = hvAllow
		h.fail(w, http.StatusMethodNotAllowed, "method not allowed\n")
		return objectOther
	}
	// A RawPath means the request spelt the path with escapes that decode
	// to something else ("%2e%2e", "%2F"): names never need escaping.
	if r.URL.RawPath != "" {
		h.fail(w, http.StatusBadRequest, "bad path\n")
		return objectOther
	}
	if h.archive != nil && strings.HasPrefix(r.URL.Path, vodPrefix) {
		return h.serveVOD(w, r)
	}
	t, status := parsePath(r.URL.Path)
	if status != 0 {
		if status == http.StatusNotFound {
			h.fail(w, status, "not found\n")
		} else {
			h.fail(w, status, "bad path\n")
		}
		return objectOther
	}
	switch t.kind {
	case objHealth:
		hdr["Content-Type"] = hvTextPlain
		hdr["Cache-Control"] = hvNoStore
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok\n")
		return objectHealth
	case objIndex:
		return h.serveIndex(w, r, &t)
	case objMPD:
		return h.serveMPD(w, r, &t)
	case objTime:
		return h.serveTime(w, r)
	case objKey:
		return h.serveKey(w, r, &t)
	case objDVR:
		return h.serveDVR(w, r, &t)
	case objPoster:
		return h.servePoster(w, r, &t)
	}
	return h.serveObject(w, r, &t)
}

// fail writes a short text error; respWriter sets its Cache-Control.
func (h *handler) fail(w *respWriter, code int, msg string) {
	hdr := w.Header()
	delete(hdr, "Content-Encoding")
	delete(hdr, "Accept-Ranges")
	hdr["Content-Type"] = hvTextPlain
	hdr["X-Content-Type-Options"] = hvNoSniff
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg)
}

// notFound answers 404 and returns o, the object label of the request.
func (h *handler) notFound(w *respWriter, o object) object {
	h.fail(w, http.StatusNotFound, "not found\n")
	return o
}

// timeout answers 503 when a blocking request waited BlockTimeout in vain,
// and returns o.
func (h *handler) timeout(w *respWriter, o object) object {
	h.fail(w, http.StatusServiceUnavailable, "timed out waiting for the object\n")
	return o
}
