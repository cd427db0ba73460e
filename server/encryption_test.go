package server_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/netip"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/headwater-live/headwater/config"
	"github.com/headwater-live/headwater/hlsenc"
	"github.com/headwater-live/headwater/internal/testpeer"
)

var encKeyTag = regexp.MustCompile(`#EXT-X-KEY:METHOD=AES-128,URI="([^"]+)",IV=0x([0-9a-f]{32})`)

// TestHLSEncryption publishes with ffmpeg over RTMP (1 s GOP) to a server
// requiring playback tokens, with HLS AES-128 keys rotating every 2
// segments, and plays the tokenised multivariant URL with ffmpeg while it
// is live: ffmpeg's HLS demuxer fetches the keys through the same token
// path and must decode at least 6 s of video and audio without an error.
// Keys are refused without a token, rotate in the playlist, decrypt the
// segments to the store's bytes, and never appear in the logs.
func TestHLSEncryption(t *testing.T) {
	s, kr := tokenServer(t, func(c *config.Config) {
		c.HLS.Encryption.Enabled = true
		c.HLS.Encryption.RotateSegments = 2
		c.Segmenter.Window = 10
	})
	const name = "live/enc"
	pub := testpeer.PublishRTMP(t, s.rtmpURL("enc"), 12*time.Second, 30)
	base := s.originURL("")
	mvURL, err := kr.IssueURL(base, name, 5*time.Minute, netip.Addr{})
	if err != nil {
		t.Fatal(err)
	}
	tokenPrefix := strings.TrimSuffix(mvURL, "/"+name+"/index.m3u8") // base + "/t/<token>"
	testpeer.WaitFor(t, 15*time.Second, "the multivariant playlist", func() bool {
		return get(t, mvURL).status == http.StatusOK
	})

	// The player: from the first listed segment to EXT-X-ENDLIST.
	player := exec.Command("ffmpeg", "-hide_banner", "-v", "error", "-live_start_index", "0",
		"-i", mvURL, "-map", "0:v", "-map", "0:a", "-f", "framecrc", "-")
	var out, errOut testpeer.LogBuffer
	player.Stdout, player.Stderr = &out, &errOut
	if err := player.Start(); err != nil {
		t.Fatal(err)
	}
	played := make(chan error, 1)
	go func() { played <- player.Wait() }()
	t.Cleanup(func() {
		_ = player.Process.Kill()
		if err := <-played; err != nil && t.Failed() {
			t.Logf("player ended: %v", err)
		}
	})

	if err := pub.Wait(t, 40*time.Second); err != nil {
		t.Fatalf("publisher: %v\n%s", err, pub.Stderr.String())
	}
	select {
	case err := <-played:
		played <- err
		if err != nil {
			t.Fatalf("ffmpeg playing %s: %v\n%s", mvURL, err, errOut.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("ffmpeg did not finish playing:\n%s", errOut.String())
	}
	if e := strings.TrimSpace(errOut.String()); e != "" {
		t.Errorf("ffmpeg reported errors while playing:\n%s", e)
	}
	video, audio := 0, 0
	for _, line := range strings.Split(out.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "0,"):
			video++
		case strings.HasPrefix(line, "1,"):
			audio++
		}
	}
	// 30 fps; AAC frames of 1024 samples at 48 kHz.
	if video < 6*30 || audio < 6*48000/1024 {
		t.Errorf("decoded %d video and %d audio frames, want at least 6 s of each (%d, %d)", video, audio, 6*30, 6*48000/1024)
	}
	t.Logf("ffmpeg decoded %d video frames (%.1f s) and %d audio frames", video, float64(video)/30, audio)

	// Every rendition's keys: rotation, refusal without a token, decryption.
	var keys [][]byte
	for _, rend := range []string{"video", "audio"} {
		plURL := tokenPrefix + "/" + name + "/" + rend + "/index.m3u8"
		pl := get(t, plURL)
		if pl.status != http.StatusOK {
			t.Fatalf("GET %s: %d", plURL, pl.status)
		}
		text := string(pl.body)
		tags := encKeyTag.FindAllStringSubmatch(text, -1)
		uris := map[string]bool{}
		for _, m := range tags {
			uris[m[1]] = true
		}
		if len(uris) < 2 {
			t.Fatalf("%s: %d distinct EXT-X-KEY URIs, want a rotation:\n%s", rend, len(uris), text)
		}
		if strings.Index(text, "#EXT-X-MAP:") > strings.Index(text, "#EXT-X-KEY:") {
			t.Errorf("%s: EXT-X-KEY before EXT-X-MAP", rend)
		}
		plBase, _ := url.Parse(plURL)
		for i, m := range tags {
			ref, _ := url.Parse(m[1])
			keyURL := plBase.ResolveReference(ref)
			if !strings.HasPrefix(keyURL.Path, "/t/") || !strings.Contains(keyURL.Path, "/keys/"+name+"/") {
				t.Fatalf("key URI %s resolves to %s: the token does not carry over", m[1], keyURL)
			}
			kr2 := get(t, keyURL.String())
			if kr2.status != http.StatusOK || len(kr2.body) != hlsenc.KeySize || kr2.header.Get("Cache-Control") != "private, no-store" {
				t.Fatalf("GET %s: %d, %d bytes, %v", keyURL, kr2.status, len(kr2.body), kr2.header)
			}
			material := kr2.body
			keys = append(keys, material)
			at := strings.Index(keyURL.Path, "/keys/")
			if at < 0 {
				t.Fatalf("key URI %s has no /keys/ path", keyURL)
			}
			keyPath := keyURL.Path[at:]
			if r := get(t, base+keyPath); r.status != http.StatusForbidden || bytes.Contains(r.body, material) {
				t.Errorf("GET %s without a token: %d", keyPath, r.status)
			}
			otherURL, _ := kr.IssueURL(base, "live/other", time.Minute, netip.Addr{})
			if r := get(t, strings.TrimSuffix(otherURL, "/live/other/index.m3u8")+keyPath); r.status != http.StatusForbidden {
				t.Errorf("GET %s with another stream's token: %d", keyPath, r.status)
			}
			if i == 0 {
				checkDecrypts(t, s, plBase, text, rend, m[1], material, m[2])
			}
		}
	}

	// DASH would serve the media in the clear: refused.
	if r := get(t, tokenPrefix+"/"+name+"/manifest.mpd"); r.status != http.StatusNotFound || !strings.Contains(string(r.body), "DASH is not available") {
		t.Errorf("MPD of an encrypted stream: %d %q", r.status, r.body)
	}

	// No key material in the logs, in any usual spelling.
	logs := s.logs.String()
	if !strings.Contains(logs, "/keys/"+name+"/") {
		t.Fatal("the debug log has no key request: the check below would prove nothing")
	}
	for _, k := range keys {
		for _, spelling := range []string{
			hex.EncodeToString(k), strings.ToUpper(hex.EncodeToString(k)),
			base64.StdEncoding.EncodeToString(k), base64.RawStdEncoding.EncodeToString(k),
			base64.URLEncoding.EncodeToString(k), base64.RawURLEncoding.EncodeToString(k),
			string(k),
		} {
			if strings.Contains(logs, spelling) {
				t.Errorf("a key is in the logs (%q)", spelling)
			}
		}
	}
}

// checkDecrypts fetches the first segment listed under the key tag keyURI
// in playlist text and checks it decrypts, with the key and IV, to the
// store's bytes of that segment.
func checkDecrypts(t *testing.T, s *testServer, plBase *url.URL, text, rend, keyURI string, material []byte, ivHex string) {
	t.Helper()
	i := strings.Index(text, keyURI)
	if i < 0 {
		t.Fatalf("playlist has no key %s:\n%s", keyURI, text)
	}
	after := text[i:]
	m := regexp.MustCompile(`(?m)^seg(\d+)\.m4s$`).FindStringSubmatch(after)
	if m == nil {
		return // the last key may cover only the preload hint
	}
	var msn uint64
	for _, c := range m[1] {
		msn = msn*10 + uint64(c-'0')
	}
	ref, _ := url.Parse(m[0])
	r := get(t, plBase.ResolveReference(ref).String())
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %d", m[0], r.status)
	}
	st, ok := s.Store().Stream("live/enc")
	if !ok {
		t.Fatal("stream gone from the store")
	}
	rn, _ := st.Rendition(rend)
	seg, ok := rn.Snapshot().Segment(msn)
	if !ok {
		t.Fatalf("seg%d gone from the store", msn)
	}
	var k, iv [hlsenc.KeySize]byte
	copy(k[:], material)
	ivb, _ := hex.DecodeString(ivHex)
	copy(iv[:], ivb)
	key, err := hlsenc.KeyFromBytes("k", k, iv, false)
	if err != nil {
		t.Fatal(err)
	}
	clear, err := hlsenc.DecryptSegment(key, key.IV(msn), r.body)
	if err != nil || !bytes.Equal(clear, seg.Data) {
		t.Errorf("%s seg%d does not decrypt to the store's bytes: %v", rend, msn, err)
	}
	if bytes.Equal(r.body[:32], seg.Data[:32]) {
		t.Errorf("%s seg%d served in the clear", rend, msn)
	}
}
