package origin

import "net/http"

// setCORS adds the CORS response headers of a simple request.
func (h *handler) setCORS(hdr http.Header, r *http.Request) {
	if h.corsAny {
		hdr["Access-Control-Allow-Origin"] = hvStar
		hdr["Access-Control-Expose-Headers"] = hvExpose
		return
	}
	// The response depends on Origin whether or not this one is allowed.
	hdr["Vary"] = hvVaryOrigin
	if o := r.Header["Origin"]; len(o) > 0 {
		if v, ok := h.origins[o[0]]; ok {
			hdr["Access-Control-Allow-Origin"] = v
			hdr["Access-Control-Expose-Headers"] = hvExpose
		}
	}
}

// preflight answers OPTIONS: a CORS preflight when the origin is allowed
// (setCORS already put Access-Control-Allow-Origin), a plain 204 with Allow
// otherwise (the browser then refuses the request).
func (h *handler) preflight(w *respWriter, r *http.Request) {
	hdr := w.Header()
	hdr["Allow"] = hvAllow
	if _, ok := hdr["Access-Control-Allow-Origin"]; ok && r.Header.Get("Access-Control-Request-Method") != "" {
		hdr["Access-Control-Allow-Methods"] = hvAllow
		hdr["Access-Control-Allow-Headers"] = hvAllowHeaders
		hdr["Access-Control-Max-Age"] = hvPreflightAge
	}
	delete(hdr, "Access-Control-Expose-Headers")
	w.WriteHeader(http.StatusNoContent)
}
