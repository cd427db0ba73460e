// Package preview is the admin listener's preview page: "/" lists the live
// streams (from the status API, /api/v1/streams) and plays one straight from
// the origin, over HLS with hls.js or over low-latency DASH with dash.js.
//
//	GET /                                    the page (?stream=live/key plays that stream once it is live;
//	                                         &format=dash plays its manifest.mpd with dash.js, and
//	                                         &latency=<seconds> overrides the MPD's target latency)
//	GET /preview/app.js                      the page's script
//	GET /preview/style.css                   the page's style sheet
//	GET /preview/hls.min.js                  hls.js, vendored in assets/ (see assets/README.md)
//	GET /preview/hls.js-LICENSE.txt          hls.js's licence
//	GET /preview/dash.all.min.js             dash.js, vendored in assets/, loaded when DASH is chosen
//	GET /preview/dash.js-LICENSE.txt         dash.js's licence
//	GET /preview/dash.all.min.js.LICENSE.txt the notices of the code bundled in dash.all.min.js
//	GET /preview/config.json                 where the origin is: {"originBaseURL", "originPort", "originScheme"}
//
// Everything is embedded in the binary; the page makes no request outside
// the admin listener and the origin, which its Content-Security-Policy
// enforces. Static files carry a content hash in their URL (?v=) and are
// cached for a year when it matches; the page and config.json are revalidated
// on every load.
package preview

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

//go:embed web/index.html web/app.js web/style.css assets/hls.min.js assets/LICENSE assets/VERSION
//go:embed assets/dash.all.min.js assets/dash.all.min.js.LICENSE.txt assets/dashjs-LICENSE.md assets/DASHJS_VERSION
var files embed.FS

// HLSVersion is the vendored hls.js version.
var HLSVersion = strings.TrimSpace(string(mustRead("assets/VERSION")))

// DASHVersion is the vendored dash.js version.
var DASHVersion = strings.TrimSpace(string(mustRead("assets/DASHJS_VERSION")))

// Config tells the page where the origin is. Admin and origin listen on
// different ports, so the page cannot use relative URLs for the streams.
type Config struct {
	// OriginBaseURL, when set, is the URL the page prefixes stream paths with,
	// e.g. "https://cdn.example.com" (a CDN in front of the origin). No
	// trailing slash is needed.
	OriginBaseURL string
	// OriginPort is the origin's port: the page then plays from
	// <scheme>//<the host it was loaded from>:<OriginPort>.
	OriginPort int
	// OriginScheme is "http" or "https" for that URL; empty means the page's
	// own scheme. Set "https" when the origin serves TLS and the admin
	// listener does not.
	OriginScheme string
	// OriginAddr, when set, is asked on every config.json request; the port
	// of the address it returns (when not nil) overrides OriginPort. It lets a
	// handler built before the origin listens (port 0) report the real port.
	OriginAddr func() net.Addr
}

type asset struct {
	path        string // URL path
	contentType string
	body        []byte
	etag        string // strong, quoted
	version     string // short content hash, the ?v= in the page's URLs
}

// Handler serves the page, its assets and config.json. Any other path is a
// 404, so it can be mounted as the admin mux's catch-all "/".
func Handler(cfg Config) http.Handler {
	h := &handler{cfg: cfg, assets: map[string]*asset{}}
	for _, a := range []struct{ file, path, contentType string }{
		{"web/app.js", "/preview/app.js", "text/javascript; charset=utf-8"},
		{"web/style.css", "/preview/style.css", "text/css; charset=utf-8"},
		{"assets/hls.min.js", "/preview/hls.min.js", "text/javascript; charset=utf-8"},
		{"assets/LICENSE", "/preview/hls.js-LICENSE.txt", "text/plain; charset=utf-8"},
		{"assets/dash.all.min.js", "/preview/dash.all.min.js", "text/javascript; charset=utf-8"},
		{"assets/dashjs-LICENSE.md", "/preview/dash.js-LICENSE.txt", "text/plain; charset=utf-8"},
		{"assets/dash.all.min.js.LICENSE.txt", "/preview/dash.all.min.js.LICENSE.txt", "text/plain; charset=utf-8"},
	} {
		h.assets[a.path] = newAsset(a.path, a.contentType, mustRead(a.file))
	}
	tmpl := template.Must(template.New("index.html").Funcs(template.FuncMap{
		// asset gives a static file's URL with its content version.
		"asset": func(path string) (string, error) {
			a, ok := h.assets[path]
			if !ok {
				return "", fmt.Errorf("preview: no asset %s", path)
			}
			return a.path + "?v=" + a.version, nil
		},
	}).Parse(string(mustRead("web/index.html"))))
	var page bytes.Buffer
	if err := tmpl.Execute(&page, map[string]string{"HLSVersion": HLSVersion, "DASHVersion": DASHVersion}); err != nil {
		panic(err)
	}
	h.index = newAsset("/", "text/html; charset=utf-8", page.Bytes())
	return h
}

type handler struct {
	cfg    Config
	index  *asset
	assets map[string]*asset
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var serve func()
	switch p := r.URL.Path; {
	case p == "/":
		serve = func() { h.serveIndex(w, r) }
	case p == "/preview/config.json":
		serve = func() { h.serveConfig(w, r) }
	case h.assets[p] != nil:
		serve = func() { serveAsset(w, r, h.assets[p]) }
	default:
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
		return
	}
	serve()
}

func (h *handler) serveIndex(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("Content-Security-Policy", h.csp())
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	serveBytes(w, r, h.index)
}

// serveAsset serves a static file: cached for a year when the request names
// its current version, revalidated otherwise (an old page after an upgrade).
func serveAsset(w http.ResponseWriter, r *http.Request, a *asset) {
	hdr := w.Header()
	if r.URL.Query().Get("v") == a.version {
		hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		hdr.Set("Cache-Control", "no-cache")
	}
	hdr.Set("X-Content-Type-Options", "nosniff")
	serveBytes(w, r, a)
}

// pageConfig is config.json.
type pageConfig struct {
	OriginBaseURL string `json:"originBaseURL,omitempty"`
	OriginPort    int    `json:"originPort,omitempty"`
	OriginScheme  string `json:"originScheme,omitempty"`
	HLSVersion    string `json:"hlsVersion"`
	DASHVersion   string `json:"dashjsVersion"`
}

func (h *handler) pageConfig() pageConfig {
	return pageConfig{
		OriginBaseURL: strings.TrimRight(h.cfg.OriginBaseURL, "/"),
		OriginPort:    h.originPort(),
		OriginScheme:  h.cfg.OriginScheme,
		HLSVersion:    HLSVersion,
		DASHVersion:   DASHVersion,
	}
}

func (h *handler) serveConfig(w http.ResponseWriter, r *http.Request) {
	body, err := json.Marshal(h.pageConfig())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	body = append(body, '\n')
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Content-Type-Options", "nosniff")
	serveBytes(w, r, newAsset(r.URL.Path, "application/json", body))
}

func (h *handler) originPort() int {
	if h.cfg.OriginAddr != nil {
		if a := h.cfg.OriginAddr(); a != nil {
			if _, p, err := net.SplitHostPort(a.String()); err == nil {
				if n, err := strconv.Atoi(p); err == nil && n > 0 {
					return n
				}
			}
		}
	}
	return h.cfg.OriginPort
}

// csp is the page's Content-Security-Policy: scripts, styles and images from
// the admin listener only, media and XHR also from the origin, workers from
// blob: (hls.js transmuxes in a worker built from its own source).
func (h *handler) csp() string {
	origin := h.originSource()
	if origin != "" {
		origin = " " + origin
	}
	return strings.Join([]string{
		"default-src 'self'",
		"script-src 'self'",
		"style-src 'self'",
		"img-src 'self' data:",
		"connect-src 'self'" + origin,
		"media-src 'self' blob:" + origin,
		"worker-src blob:",
		"child-src blob:",
		"object-src 'none'",
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
}

// originSource is the CSP source expression for the origin. Without a base
// URL the page uses whatever host it was loaded from, so any host on the
// origin's port is allowed. Empty when the port is unknown.
func (h *handler) originSource() string {
	if h.cfg.OriginBaseURL != "" {
		if u, err := url.Parse(h.cfg.OriginBaseURL); err == nil && u.Scheme != "" && u.Host != "" {
			return u.Scheme + "://" + u.Host
		}
	}
	port := h.originPort()
	if port <= 0 {
		return ""
	}
	src := "*:" + strconv.Itoa(port)
	if h.cfg.OriginScheme != "" {
		src = h.cfg.OriginScheme + "://" + src
	}
	return src
}

func newAsset(path, contentType string, body []byte) *asset {
	sum := sha256.Sum256(body)
	v := hex.EncodeToString(sum[:])[:16]
	return &asset{path: path, contentType: contentType, body: body, etag: `"` + v + `"`, version: v}
}

// serveBytes answers with a's body, ETag and Content-Type; ServeContent
// handles If-None-Match (304), HEAD and ranges.
func serveBytes(w http.ResponseWriter, r *http.Request, a *asset) {
	w.Header().Set("Content-Type", a.contentType)
	w.Header().Set("ETag", a.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

func mustRead(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return b
}
