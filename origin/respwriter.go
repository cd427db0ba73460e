package origin

import (
	"io"
	"net/http"
)

// Interfaces the response writer wrapper keeps visible: http.ServeContent's
// io.CopyN looks for io.ReaderFrom, and http.ResponseController (Flush in
// streamSegment) unwraps to the connection's writer. respWriter is not an
// http.Flusher on purpose: ResponseController reaches the connection's own
// FlushError through Unwrap, which reports errors a Flush would swallow.
var (
	_ http.ResponseWriter                       = (*respWriter)(nil)
	_ io.ReaderFrom                             = (*respWriter)(nil)
	_ interface{ Unwrap() http.ResponseWriter } = (*respWriter)(nil)
)

// respWriter records the status and body size of a response and applies the
// cache policy of error responses, whoever writes them (http.ServeContent's
// own 412/416 included): 404 is cacheable for NotFoundMaxAge, any other
// error is no-cache. Pooled: ServeHTTP owns it for one request.
type respWriter struct {
	http.ResponseWriter
	h           *handler
	status      int
	n           int64
	wroteHeader bool
	// abort makes ServeHTTP abort the response (panic with
	// http.ErrAbortHandler) instead of ending it: set when a streamed
	// segment cannot be completed.
	abort bool
	// private makes every response, errors included, "private, no-store"
	// (key files).
	private bool
}

// WriteHeader records the status and, for an error, replaces the cache
// headers with the error policy (see respWriter).
func (w *respWriter) WriteHeader(code int) {
	if w.wroteHeader || code < 200 {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	if code >= 400 {
		hdr := w.Header()
		switch {
		case w.private:
			hdr["Cache-Control"] = hvPrivate
		case code == http.StatusNotFound:
			hdr["Cache-Control"] = w.h.ccNotFound
		default:
			hdr["Cache-Control"] = hvNoCache
		}
		delete(hdr, "Etag")
		delete(hdr, "Last-Modified")
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write counts the body bytes written.
func (w *respWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// ReadFrom keeps the underlying writer's io.ReaderFrom (net/http's avoids a
// copy buffer) visible to http.ServeContent's io.CopyN.
func (w *respWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.n += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
