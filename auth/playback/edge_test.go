package playback

import (
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/internal/testpeer"
)

// edgeModule extracts the edge worker from docs/security.md, between the
// edge-worker markers.
func edgeModule(t *testing.T) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	_, after, ok1 := strings.Cut(s, "<!-- edge-worker:begin -->")
	block, _, ok2 := strings.Cut(after, "<!-- edge-worker:end -->")
	code, ok3 := strings.CutPrefix(strings.TrimSpace(block), "```js\n")
	code, ok4 := strings.CutSuffix(code, "```")
	if !ok1 || !ok2 || !ok3 || !ok4 {
		t.Fatal("docs/security.md: edge worker block not found between its markers")
	}
	return code
}

type edgeCase struct {
	Name   string            `json:"name"`
	Token  string            `json:"token"`
	Path   string            `json:"path"`
	IP     string            `json:"ip"`
	Now    int64             `json:"now"`
	Keys   map[string]string `json:"keys"`
	Expect string            `json:"expect"` // Go's reason, "" when valid
}

// streamClaimVerdicts are Go's verdicts on the stream and prefix claim
// cases of TestEdgeWorker ("" = valid).
var streamClaimVerdicts = map[string]string{
	"stream claim, itself":               "",
	"stream claim, directory":            "",
	"stream claim, multivariant":         "",
	"stream claim, mpd":                  "",
	"stream claim, rendition segment":    "",
	"stream claim, rendition part":       "",
	"stream claim, key file":             "",
	"stream claim, child directory":      "wrong_path",
	"stream claim, child segment":        "wrong_path",
	"stream claim, child part":           "wrong_path",
	"stream claim, grandchild playlist":  "wrong_path",
	"stream claim, child key file":       "wrong_path",
	"stream claim, rendition directory":  "wrong_path",
	"stream claim, parent":               "wrong_path",
	"stream claim, sibling":              "wrong_path",
	"prefix claim, child playlist":       "",
	"prefix claim, child segment":        "",
	"prefix claim, grandchild segment":   "",
	"prefix claim, child key file":       "",
	"prefix claim, itself without slash": "wrong_path",
}

const edgeHarness = `
import worker, { verifyPlaybackToken } from "./edge.mjs";
import { readFileSync } from "node:fs";
const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const results = [];
for (const c of cases) results.push(await verifyPlaybackToken(c.token, c.path, c.ip, c.now, c.keys) ?? "");

// The fetch handler: a valid request is forwarded, stripped, with the secret.
const seen = [];
globalThis.fetch = async (req) => { seen.push({ url: req.url, secret: req.headers.get("X-Headwater-CDN-Secret") }); return new Response("media"); };
const env = { HEADWATER_TOKEN_KEYS: JSON.stringify(cases[0].keys), HEADWATER_ORIGIN: "https://origin.example", HEADWATER_CDN_SECRET: "cdn-secret" };
const ok = await worker.fetch(new Request("https://cdn.example/t/" + cases[0].token + "/live/a/video/index.m3u8?_HLS_msn=5"), env);
const bad = await worker.fetch(new Request("https://cdn.example/t/" + cases[0].token + "/live/b/index.m3u8"), env);
const none = await worker.fetch(new Request("https://cdn.example/live/a/index.m3u8"), env);
const fetchResult = {
  ok: ok.status, okBody: await ok.text(), forwarded: seen,
  bad: bad.status, badReason: bad.headers.get("X-Headwater-Token"), badCache: bad.headers.get("Cache-Control"),
  none: none.status, noneReason: none.headers.get("X-Headwater-Token"),
};
console.log(JSON.stringify({ results, fetchResult }));
`

// TestEdgeWorker runs the JavaScript verifier of docs/security.md with node
// on tokens made by this package and checks it reaches the same verdict as
// Verify on every case, so the documentation cannot drift from the code.
func TestEdgeWorker(t *testing.T) {
	node := testpeer.Node(t)
	code := edgeModule(t)
	ring := keyring(t, "k1", map[string][]byte{"k1": secretA, "k2": secretB})
	ring2 := keyring(t, "k2", map[string][]byte{"k1": secretA, "k2": secretB})
	other := keyring(t, "zz", map[string][]byte{"zz": secretA})
	keys := map[string]string{"k1": string(secretA), "k2": string(secretB)}
	wallNow := time.Now()
	exp := wallNow.Add(10 * time.Minute) // the fetch handler uses the real clock
	v4 := netip.MustParseAddr("198.51.100.7")
	v6 := netip.MustParseAddr("2001:db8:0:0:1::7")
	tok := mustSign(t, ring, "/live/a/", exp, netip.Addr{})
	bound4 := mustSign(t, ring, "/live/a/", exp, v4)
	bound6 := mustSign(t, ring, "/live/a/", exp, v6)
	rotated := mustSign(t, ring2, "/live/a", exp, netip.Addr{})
	stream := mustSign(t, ring, "/live/a", exp, netip.Addr{}) // a stream claim, as IssueURL signs
	unknown := mustSign(t, other, "/live/a/", exp, netip.Addr{})
	nonCanonical := tok[:len(tok)-1] + string(tok[len(tok)-1]^1) // last base64 char: low bits changed
	at := wallNow.Unix()

	cases := []edgeCase{
		{Name: "valid", Token: tok, Path: "/live/a/video/seg1.m4s"},
		{Name: "valid key file", Token: tok, Path: "/keys/live/a/0011223344556677.key"},
		{Name: "expired", Token: tok, Path: "/live/a/index.m3u8", Now: exp.Unix()},
		{Name: "expired later", Token: tok, Path: "/live/a/index.m3u8", Now: exp.Unix() + 3600},
		{Name: "other stream", Token: tok, Path: "/live/b/index.m3u8"},
		{Name: "sibling", Token: tok, Path: "/live/ab/index.m3u8"},
		{Name: "dot-dot", Token: tok, Path: "/live/a/../b/x.m4s"},
		{Name: "empty element", Token: tok, Path: "/live/a//x.m4s"},
		{Name: "tampered MAC", Token: flipMAC(tok), Path: "/live/a/index.m3u8"},
		{Name: "tampered prefix", Token: rewritePayload(t, tok, func(p []byte) []byte { p[len(p)-2] = 'b'; return p }), Path: "/live/b/index.m3u8"},
		{Name: "tampered expiry", Token: rewritePayload(t, tok, func(p []byte) []byte { p[5] ^= 0x40; return p }), Path: "/live/a/x"},
		{Name: "non-canonical base64", Token: nonCanonical, Path: "/live/a/index.m3u8"},
		{Name: "rotated key, no trailing slash", Token: rotated, Path: "/live/a/index.m3u8"},
		{Name: "rotated key, sibling", Token: rotated, Path: "/live/ab/index.m3u8"},
		// A stream claim ("/live/a") covers stream live/a only: its
		// directory, objects and renditions' objects and key files, not a
		// stream live/a/x nested under it. A prefix claim ("/live/a/")
		// covers the children too.
		{Name: "stream claim, itself", Token: stream, Path: "/live/a"},
		{Name: "stream claim, directory", Token: stream, Path: "/live/a/"},
		{Name: "stream claim, multivariant", Token: stream, Path: "/live/a/index.m3u8"},
		{Name: "stream claim, mpd", Token: stream, Path: "/live/a/manifest.mpd"},
		{Name: "stream claim, rendition segment", Token: stream, Path: "/live/a/video/seg1.m4s"},
		{Name: "stream claim, rendition part", Token: stream, Path: "/live/a/audio/part3.1.m4s"},
		{Name: "stream claim, key file", Token: stream, Path: "/keys/live/a/0011223344556677.key"},
		{Name: "stream claim, child directory", Token: stream, Path: "/live/a/x/"},
		{Name: "stream claim, child segment", Token: stream, Path: "/live/a/x/video/seg1.m4s"},
		{Name: "stream claim, child part", Token: stream, Path: "/live/a/x/audio/part3.1.m4s"},
		{Name: "stream claim, grandchild playlist", Token: stream, Path: "/live/a/x/y/index.m3u8"},
		{Name: "stream claim, child key file", Token: stream, Path: "/keys/live/a/x/video/0011223344556677.key"},
		{Name: "stream claim, rendition directory", Token: stream, Path: "/live/a/video/"},
		{Name: "stream claim, parent", Token: stream, Path: "/live/index.m3u8"},
		{Name: "stream claim, sibling", Token: stream, Path: "/live/ab/video/seg1.m4s"},
		{Name: "prefix claim, child playlist", Token: tok, Path: "/live/a/x/index.m3u8"},
		{Name: "prefix claim, child segment", Token: tok, Path: "/live/a/x/video/seg1.m4s"},
		{Name: "prefix claim, grandchild segment", Token: tok, Path: "/live/a/x/y/video/seg1.m4s"},
		{Name: "prefix claim, child key file", Token: tok, Path: "/keys/live/a/x/video/0011223344556677.key"},
		{Name: "prefix claim, itself without slash", Token: tok, Path: "/live/a"},
		{Name: "unknown key", Token: unknown, Path: "/live/a/index.m3u8"},
		{Name: "bound v4", Token: bound4, Path: "/live/a/index.m3u8", IP: "198.51.100.7"},
		{Name: "bound v4, mapped client", Token: bound4, Path: "/live/a/index.m3u8", IP: "::ffff:198.51.100.7"},
		{Name: "bound v4, other", Token: bound4, Path: "/live/a/index.m3u8", IP: "198.51.100.70"},
		{Name: "bound v4, none", Token: bound4, Path: "/live/a/index.m3u8"},
		{Name: "bound v6", Token: bound6, Path: "/live/a/index.m3u8", IP: "2001:db8::1:0:0:7"},
		{Name: "bound v6, expanded", Token: bound6, Path: "/live/a/index.m3u8", IP: "2001:0db8:0000:0000:0001:0000:0000:0007"},
		{Name: "bound v6, other", Token: bound6, Path: "/live/a/index.m3u8", IP: "2001:db8::1:0:0:8"},
		{Name: "bound v6, v4 client", Token: bound6, Path: "/live/a/index.m3u8", IP: "198.51.100.7"},
		{Name: "garbage", Token: "not-a-token", Path: "/live/a/index.m3u8"},
		{Name: "empty", Token: "", Path: "/live/a/index.m3u8"},
		{Name: "two dots", Token: tok + ".x", Path: "/live/a/index.m3u8"},
	}
	for i := range cases {
		c := &cases[i]
		c.Keys = keys
		if c.Now == 0 {
			c.Now = at
		}
		ip, _ := netip.ParseAddr(c.IP)
		err := ring.Verify(c.Token, c.Path, ip, time.Unix(c.Now, 0))
		if err != nil {
			c.Expect = string(ReasonOf(err))
		}
	}
	if cases[0].Expect != "" || cases[2].Expect != "expired" || cases[len(cases)-1].Expect != "malformed" {
		t.Fatalf("Go verdicts unexpected: %+v", cases)
	}
	// The stream-claim rule as Go applies it: pinned, so that the parity
	// below is checked on the verdicts that matter.
	for _, c := range cases {
		if want, ok := streamClaimVerdicts[c.Name]; ok && c.Expect != want {
			t.Errorf("%s: Go says %q, want %q", c.Name, c.Expect, want)
		}
	}

	dir := t.TempDir()
	for name, content := range map[string]string{"edge.mjs": code, "harness.mjs": edgeHarness} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	data, _ := json.Marshal(cases)
	if err := os.WriteFile(filepath.Join(dir, "cases.json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, "harness.mjs", "cases.json")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("node: %v\n%s", err, stderr)
	}
	var res struct {
		Results     []string `json:"results"`
		FetchResult struct {
			OK         int    `json:"ok"`
			OKBody     string `json:"okBody"`
			Bad        int    `json:"bad"`
			BadReason  string `json:"badReason"`
			BadCache   string `json:"badCache"`
			None       int    `json:"none"`
			NoneReason string `json:"noneReason"`
			Forwarded  []struct {
				URL    string `json:"url"`
				Secret string `json:"secret"`
			} `json:"forwarded"`
		} `json:"fetchResult"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node output %q: %v", out, err)
	}
	if len(res.Results) != len(cases) {
		t.Fatalf("%d results for %d cases", len(res.Results), len(cases))
	}
	for i, c := range cases {
		t.Logf("%s: go=%q js=%q", c.Name, c.Expect, res.Results[i])
		if res.Results[i] != c.Expect {
			t.Errorf("%s: JavaScript says %q, Go says %q", c.Name, res.Results[i], c.Expect)
		}
	}
	f := res.FetchResult
	if f.OK != 200 || f.OKBody != "media" || len(f.Forwarded) != 1 ||
		f.Forwarded[0].URL != "https://origin.example/live/a/video/index.m3u8?_HLS_msn=5" || f.Forwarded[0].Secret != "cdn-secret" {
		t.Errorf("worker forwarding: %+v", f)
	}
	if f.Bad != 403 || f.BadReason != "wrong_path" || f.BadCache != "no-store" || f.None != 403 || f.NoneReason != "missing_token" {
		t.Errorf("worker refusals: %+v", f)
	}
}
