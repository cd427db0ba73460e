package preview

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func do(t *testing.T, h http.Handler, method, target string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var assetURL = regexp.MustCompile(`(?:src|href|content)="((/preview/[^"?]+)\?v=([0-9a-f]{16}))"`)

func TestIndex(t *testing.T) {
	h := Handler(Config{OriginPort: 8080})
	r := do(t, h, "GET", "/", nil)
	page := body(t, r)
	if r.StatusCode != 200 {
		t.Fatalf("status %d", r.StatusCode)
	}
	for k, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"Cache-Control":          "no-cache",
		"X-Content-Type-Options": "nosniff",
		"X-Frame-Options":        "DENY",
	} {
		if got := r.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	csp := r.Header.Get("Content-Security-Policy")
	for _, want := range []string{"script-src 'self'", "connect-src 'self' *:8080", "media-src 'self' blob: *:8080", "worker-src blob:", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, want := range []string{"<h1>Headwater</h1>", "<video id=\"video\" controls muted autoplay playsinline", "hls.js " + HLSVersion,
		"dash.js " + DASHVersion, `lang="en"`, `<input type="radio" name="format" id="format-dash" value="dash">`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "{{") || strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Errorf("page has a template leftover or an absolute URL:\n%s", page)
	}

	// Every asset the page links carries its current version.
	links := assetURL.FindAllStringSubmatch(page, -1)
	if len(links) != 4 {
		t.Fatalf("want style.css, hls.min.js, app.js and dash.all.min.js (loaded on demand) versioned in the page, found %q", links)
	}
	for _, l := range links {
		a := do(t, h, "GET", l[1], nil)
		if a.StatusCode != 200 || a.Header.Get("ETag") != `"`+l[3]+`"` || a.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
			t.Errorf("%s: status %d, ETag %q, Cache-Control %q", l[2], a.StatusCode, a.Header.Get("ETag"), a.Header.Get("Cache-Control"))
		}
	}

	// Revalidation.
	if r := do(t, h, "GET", "/", map[string]string{"If-None-Match": r.Header.Get("ETag")}); r.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match on /: %d", r.StatusCode)
	}
	// ?stream= is the same page.
	if r := do(t, h, "GET", "/?stream=live/key", nil); r.StatusCode != 200 {
		t.Errorf("/?stream=: %d", r.StatusCode)
	}
	if r := do(t, h, "HEAD", "/", nil); r.StatusCode != 200 || r.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("HEAD /: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
}

func TestAssets(t *testing.T) {
	h := Handler(Config{OriginPort: 8080}).(*handler)
	for path, ctype := range map[string]string{
		"/preview/app.js":                      "text/javascript; charset=utf-8",
		"/preview/style.css":                   "text/css; charset=utf-8",
		"/preview/hls.min.js":                  "text/javascript; charset=utf-8",
		"/preview/hls.js-LICENSE.txt":          "text/plain; charset=utf-8",
		"/preview/dash.all.min.js":             "text/javascript; charset=utf-8",
		"/preview/dash.js-LICENSE.txt":         "text/plain; charset=utf-8",
		"/preview/dash.all.min.js.LICENSE.txt": "text/plain; charset=utf-8",
	} {
		t.Run(path, func(t *testing.T) {
			a := h.assets[path]
			versioned := do(t, h, "GET", path+"?v="+a.version, nil)
			b := body(t, versioned)
			if versioned.StatusCode != 200 || versioned.Header.Get("Content-Type") != ctype || len(b) == 0 {
				t.Fatalf("status %d, type %q, %d bytes", versioned.StatusCode, versioned.Header.Get("Content-Type"), len(b))
			}
			if cc := versioned.Header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
				t.Errorf("versioned Cache-Control %q", cc)
			}
			etag := versioned.Header.Get("ETag")
			if etag != `"`+a.version+`"` {
				t.Errorf("ETag %q", etag)
			}
			// Without (or with an old) version: revalidate every time.
			for _, target := range []string{path, path + "?v=0123456789abcdef"} {
				r := do(t, h, "GET", target, nil)
				if cc := r.Header.Get("Cache-Control"); r.StatusCode != 200 || cc != "no-cache" {
					t.Errorf("%s: status %d, Cache-Control %q", target, r.StatusCode, cc)
				}
			}
			if r := do(t, h, "GET", path, map[string]string{"If-None-Match": etag}); r.StatusCode != http.StatusNotModified {
				t.Errorf("If-None-Match: %d", r.StatusCode)
			}
		})
	}
	if b := body(t, do(t, h, "GET", "/preview/hls.min.js", nil)); !strings.Contains(b, "Hls") || len(b) < 100_000 {
		t.Errorf("hls.min.js does not look like hls.js (%d bytes)", len(b))
	}
	if b := body(t, do(t, h, "GET", "/preview/hls.js-LICENSE.txt", nil)); !strings.Contains(b, "Apache License") {
		t.Errorf("licence: %q", b)
	}
	if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(HLSVersion) {
		t.Errorf("HLSVersion %q", HLSVersion)
	}
	if b := body(t, do(t, h, "GET", "/preview/dash.all.min.js", nil)); !strings.Contains(b, "dashjs") || !strings.Contains(b, `"`+DASHVersion+`"`) || len(b) < 100_000 {
		t.Errorf("dash.all.min.js does not look like dash.js %s (%d bytes)", DASHVersion, len(b))
	}
	if b := body(t, do(t, h, "GET", "/preview/dash.js-LICENSE.txt", nil)); !strings.Contains(b, "BSD License") {
		t.Errorf("dash.js licence: %q", b)
	}
	if !regexp.MustCompile(`^5\.\d+\.\d+$`).MatchString(DASHVersion) {
		t.Errorf("DASHVersion %q", DASHVersion)
	}
}

type addr string

func (a addr) Network() string { return "tcp" }
func (a addr) String() string  { return string(a) }

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want pageConfig
		csp  string
	}{
		{"port", Config{OriginPort: 8080}, pageConfig{OriginPort: 8080}, "connect-src 'self' *:8080;"},
		{"scheme", Config{OriginPort: 8443, OriginScheme: "https"}, pageConfig{OriginPort: 8443, OriginScheme: "https"}, "connect-src 'self' https://*:8443;"},
		{"base url", Config{OriginPort: 8080, OriginBaseURL: "https://cdn.example.com/"}, pageConfig{OriginPort: 8080, OriginBaseURL: "https://cdn.example.com"}, "connect-src 'self' https://cdn.example.com;"},
		{"listening addr wins", Config{OriginPort: 0, OriginAddr: func() net.Addr { return addr("127.0.0.1:41234") }}, pageConfig{OriginPort: 41234}, "connect-src 'self' *:41234;"},
		{"not listening yet", Config{OriginPort: 8080, OriginAddr: func() net.Addr { return nil }}, pageConfig{OriginPort: 8080}, "connect-src 'self' *:8080;"},
		{"ipv6", Config{OriginAddr: func() net.Addr { return &net.TCPAddr{IP: net.IPv6loopback, Port: 9999} }}, pageConfig{OriginPort: 9999}, "connect-src 'self' *:9999;"},
		{"unknown", Config{}, pageConfig{}, "connect-src 'self';"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := Handler(tc.cfg)
			r := do(t, h, "GET", "/preview/config.json", nil)
			if r.StatusCode != 200 || r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Cache-Control") != "no-cache" {
				t.Fatalf("status %d, type %q, Cache-Control %q", r.StatusCode, r.Header.Get("Content-Type"), r.Header.Get("Cache-Control"))
			}
			var got pageConfig
			if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
			tc.want.HLSVersion, tc.want.DASHVersion = HLSVersion, DASHVersion
			if got != tc.want {
				t.Errorf("config.json = %+v, want %+v", got, tc.want)
			}
			if csp := do(t, h, "GET", "/", nil).Header.Get("Content-Security-Policy"); !strings.Contains(csp, tc.csp) {
				t.Errorf("CSP %q lacks %q", csp, tc.csp)
			}
		})
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	h := Handler(Config{OriginPort: 8080})
	for _, p := range []string{"/index.html", "/preview/", "/preview", "/preview/nope.js", "/preview/hls.min.js.map", "/favicon.ico", "/live/key/index.m3u8", "/preview/app.js/x", "//"} {
		if r := do(t, h, "GET", p, nil); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, r.StatusCode)
		}
	}
	for _, p := range []string{"/", "/preview/app.js", "/preview/config.json"} {
		for _, m := range []string{"POST", "PUT", "DELETE"} {
			r := do(t, h, m, p, nil)
			if r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d, Allow %q", m, p, r.StatusCode, r.Header.Get("Allow"))
			}
		}
	}
	if r := do(t, h, "POST", "/nope", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("POST /nope: %d", r.StatusCode)
	}
}

// TestMountedAsCatchAll checks the handler under the admin mux's "/" next
// to more specific routes, the way server wires it.
func TestMountedAsCatchAll(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "metrics") })
	mux.Handle("/", Handler(Config{OriginPort: 8080}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for path, want := range map[string]int{"/": 200, "/metrics": 200, "/preview/config.json": 200, "/nope": 404} {
		r, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != want {
			t.Errorf("GET %s: %d, want %d", path, r.StatusCode, want)
		}
	}
}
