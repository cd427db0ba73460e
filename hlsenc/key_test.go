package hlsenc

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// leaks reports whether s contains key's material in any common spelling.
func leaks(key Key, s string) bool { return leak(key, s) != "" }

// leak returns the spelling of key's material found in s, or "".
func leak(key Key, s string) string {
	m := key.Material()
	for _, enc := range []string{
		hex.EncodeToString(m[:]),
		strings.ToUpper(hex.EncodeToString(m[:])),
		string(m[:]),
		fmt.Sprint(m[:]),     //nolint:staticcheck // QF1010: the decimal form [1 2 3 ...] is the case under test
		fmt.Sprintf("%v", m), // array form
		fmt.Sprintf("%#v", m[:]),
	} {
		if strings.Contains(s, enc) {
			return enc
		}
	}
	// Also any 6-byte window of the hex, so partial dumps are caught too.
	h := hex.EncodeToString(m[:])
	for i := 0; i+12 <= len(h); i += 2 {
		if strings.Contains(s, h[i:i+12]) {
			return h[i : i+12]
		}
	}
	return ""
}

type holder struct {
	Name   string
	Key    Key
	Ptr    *Key
	hidden Key
	inner  struct{ k Key }
	Any    any
}

func TestKeyRedacted(t *testing.T) {
	key := NewKey()
	h := holder{Name: "h", Key: key, Ptr: &key, hidden: key, Any: key}
	h.inner.k = key
	var out bytes.Buffer

	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %p"} {
		fmt.Fprintf(&out, f+"\n", key)
		fmt.Fprintf(&out, f+"\n", &key)
		fmt.Fprintf(&out, f+"\n", h)
		fmt.Fprintf(&out, f+"\n", &h)
		fmt.Fprintf(&out, f+"\n", []Key{key})
		fmt.Fprintf(&out, f+"\n", map[string]Key{"k": key})
	}
	out.WriteString(fmt.Sprint(key, h) + fmt.Sprintln(key, &h))
	for _, newHandler := range []func() slog.Handler{
		func() slog.Handler { return slog.NewJSONHandler(&out, nil) },
		func() slog.Handler { return slog.NewTextHandler(&out, nil) },
	} {
		log := slog.New(newHandler())
		log.Info("key", "key", key, "ptr", &key, "holder", h, "holderPtr", &h, "any", any(key))
		log.Info("attrs", slog.Any("k", key), slog.Group("g", "k", key))
		log.With("k", key).Error("with")
	}
	js, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(js)
	ys, err := yaml.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	out.Write(ys)
	tx, _ := key.MarshalText()
	out.Write(tx)
	out.WriteString(fmt.Errorf("wrapped: %v / %w", key, errors.New("e")).Error())

	if l := leak(key, out.String()); l != "" {
		t.Fatalf("key material %q printed:\n%s", l, out.String())
	}
	if !strings.Contains(out.String(), key.ID()) || !strings.Contains(out.String(), redacted) {
		t.Fatalf("output lacks the id or the redaction marker:\n%s", out.String())
	}
}

func TestKeyRedactedInPanic(t *testing.T) {
	key := NewKey()
	func() {
		defer func() {
			r := recover()
			msg := fmt.Sprint(r) + fmt.Sprintf("%+v %#v", r, r)
			if leaks(key, msg) || !strings.Contains(msg, key.ID()) {
				t.Fatalf("recovered panic message leaks or lacks the id: %s", msg)
			}
		}()
		panic(key)
	}()

	// An unrecovered panic is printed by the runtime: run this test binary
	// again in a mode that panics with a key, and read its stderr.
	if os.Getenv("HLSENC_PANIC_CHILD") == "1" {
		k, err := KeyFromBytes("child", [16]byte{0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef, 0xde, 0xad, 0xbe, 0xef}, [16]byte{}, false)
		if err != nil {
			panic(err)
		}
		panic(holder{Key: k, hidden: k})
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestKeyRedactedInPanic$")
	cmd.Env = append(os.Environ(), "HLSENC_PANIC_CHILD=1")
	out, _ := cmd.CombinedOutput()
	s := string(out)
	if !strings.Contains(s, "panic") {
		t.Fatalf("child did not panic:\n%s", s)
	}
	if strings.Contains(strings.ToLower(s), "deadbeef") || strings.Contains(s, "222 173 190 239") {
		t.Fatalf("runtime panic output shows the key:\n%s", s)
	}
	k2, _ := KeyFromBytes("direct", [16]byte{0xde, 0xad, 0xbe, 0xef}, [16]byte{}, false)
	func() {
		defer func() { _ = recover() }()
		panic(fmt.Sprintf("%v", k2))
	}()
}

func TestKeyBasics(t *testing.T) {
	a, b := NewKey(), NewKey()
	if a.ID() == b.ID() || a.Material() == b.Material() || a.IV(0) == b.IV(0) {
		t.Fatal("keys not random")
	}
	if len(a.ID()) != 16 || !ValidKeyID(a.ID()) {
		t.Fatalf("id %q", a.ID())
	}
	if a.IV(1) != a.IV(99) || a.SequenceIV() {
		t.Fatal("explicit IV must not depend on the MSN")
	}
	if (Key{}).String() != "hlsenc.Key(zero)" || !(Key{}).IsZero() || a.IsZero() {
		t.Fatal("zero key")
	}
	iv := SequenceIV(0x0102030405060708)
	if hex.EncodeToString(iv[:]) != "00000000000000000102030405060708" {
		t.Fatalf("SequenceIV = %x", iv)
	}
	if _, err := KeyFromBytes("bad id", [16]byte{}, [16]byte{}, false); err == nil {
		t.Fatal("bad id accepted")
	}
	var w bytes.Buffer
	if n, err := a.WriteTo(&w); n != 16 || err != nil || !bytes.Equal(w.Bytes(), func() []byte { m := a.Material(); return m[:] }()) {
		t.Fatal("WriteTo")
	}
}

func TestMemoryProvider(t *testing.T) {
	p := NewMemoryProvider(MemoryConfig{RotateEvery: 3, Keep: 2})
	k0, _ := p.KeyFor("live/a", 0)
	k2, _ := p.KeyFor("live/a", 2)
	k3, _ := p.KeyFor("live/a", 3)
	if k0.ID() != k2.ID() || k0.ID() == k3.ID() {
		t.Fatal("rotation every 3 segments")
	}
	other, _ := p.KeyFor("live/b", 0)
	if other.ID() == k0.ID() {
		t.Fatal("streams share a key")
	}
	if k, ok := p.Lookup("live/a", k0.ID()); !ok || k.Material() != k0.Material() {
		t.Fatal("Lookup")
	}
	if _, ok := p.Lookup("live/b", k0.ID()); ok {
		t.Fatal("key found under another stream")
	}
	// Period 2 begins: period 0 is dropped (Keep 2), period 1 kept.
	k6, _ := p.KeyFor("live/a", 6)
	if _, ok := p.Lookup("live/a", k0.ID()); ok {
		t.Fatal("old key kept")
	}
	if _, err := p.KeyFor("live/a", 1); !errors.Is(err, ErrKeyGone) {
		t.Fatalf("KeyFor of a dropped period: %v", err)
	}
	if k, _ := p.KeyFor("live/a", 4); k.ID() != k3.ID() {
		t.Fatal("kept period re-keyed")
	}
	if k, _ := p.KeyFor("live/a", 8); k.ID() != k6.ID() {
		t.Fatal("same period, other key")
	}
	p.Forget("live/a")
	if _, ok := p.Lookup("live/a", k6.ID()); ok || p.Streams() != 1 {
		t.Fatal("Forget")
	}
	if k, err := p.KeyFor("live/a", 0); err != nil || k.ID() == k0.ID() {
		t.Fatal("after Forget a stream starts afresh")
	}

	single := NewMemoryProvider(MemoryConfig{SequenceIV: true})
	a, _ := single.KeyFor("s", 0)
	b, _ := single.KeyFor("s", 1_000_000)
	if a.ID() != b.ID() || !a.SequenceIV() || a.IV(5) != SequenceIV(5) {
		t.Fatal("RotateEvery 0: one key per stream, sequence IVs")
	}
}

func TestKeyTag(t *testing.T) {
	k, _ := KeyFromBytes("k1", [16]byte{1}, [16]byte{0xab, 15: 0xcd}, false)
	if got := KeyTag(k, "../../../keys/live/a/k1.key"); got != `#EXT-X-KEY:METHOD=AES-128,URI="../../../keys/live/a/k1.key",IV=0xab0000000000000000000000000000cd` {
		t.Fatalf("KeyTag = %s", got)
	}
	s, _ := KeyFromBytes("k2", [16]byte{1}, [16]byte{}, true)
	if got := KeyTag(s, "u"); got != `#EXT-X-KEY:METHOD=AES-128,URI="u"` {
		t.Fatalf("KeyTag (sequence IV) = %s", got)
	}
	if got := string(AppendKeyTag([]byte("x\n"), s, "u")); got != "x\n"+`#EXT-X-KEY:METHOD=AES-128,URI="u"` {
		t.Fatalf("AppendKeyTag = %s", got)
	}
}

func TestKeyURIs(t *testing.T) {
	for _, stream := range []string{"live/a", "a", "app/sub/x"} {
		id := NewKeyID()
		path := KeyPath(stream, id)
		if s, i, ok := ParseKeyPath(path); !ok || s != stream || i != id {
			t.Fatalf("ParseKeyPath(%s) = %s %s %v", path, s, i, ok)
		}
		rel := RelativeKeyURI(stream, id)
		for _, base := range []string{"/", "/t/TOKEN.MAC/"} {
			pl, _ := url.Parse("https://cdn.example" + base + stream + "/video/index.m3u8")
			r, _ := url.Parse(rel)
			got := pl.ResolveReference(r).Path
			if want := strings.TrimSuffix(base, "/") + path; got != want {
				t.Fatalf("%s resolved from %s = %s, want %s", rel, pl, got, want)
			}
		}
	}
	for _, bad := range []string{"/keys/x.key", "/keys//id.key", "/keys/live/a/id", "/key/live/a/id.key", "/keys/live/a/b c.key", "/keys/live/a/.key"} {
		if _, _, ok := ParseKeyPath(bad); ok {
			t.Errorf("ParseKeyPath(%q) accepted", bad)
		}
	}
}

func TestCache(t *testing.T) {
	key := NewKey()
	c := NewCache(int64(3 * EncryptedSize(1000)))
	p := randBytes(1000)
	id := func(msn uint64) ObjectID { return ObjectID{Stream: "live/a", Rendition: "video", MSN: msn, Part: -1} }
	first := c.Encrypt(id(1), key, key.IV(1), p)
	again := c.Encrypt(id(1), key, key.IV(1), p)
	if &first[0] != &again[0] {
		t.Fatal("no cache hit")
	}
	if got, _ := DecryptSegment(key, key.IV(1), first); !bytes.Equal(got, p) {
		t.Fatal("cached ciphertext wrong")
	}
	other := NewKey()
	if o := c.Encrypt(id(1), other, other.IV(1), p); bytes.Equal(o, first) {
		t.Fatal("another key hit the entry of the first")
	}
	for msn := uint64(2); msn < 10; msn++ {
		c.Encrypt(id(msn), key, key.IV(msn), p)
		if c.Size() > 3*int64(EncryptedSize(1000)) {
			t.Fatalf("size %d over the bound", c.Size())
		}
	}
	c.Forget("live/a")
	if c.Size() != 0 {
		t.Fatal("Forget left entries")
	}
	big := NewCache(10)
	big.Encrypt(id(1), key, key.IV(1), p)
	if big.Size() != 0 {
		t.Fatal("an entry larger than the cache was kept")
	}
}

// TestCacheConcurrentMisses: players asking for the same new part at the
// same moment share one encryption.
func TestCacheConcurrentMisses(t *testing.T) {
	key := NewKey()
	c := NewCache(64 << 20)
	p := randBytes(1 << 20)
	id := ObjectID{Stream: "live/a", Rendition: "video", MSN: 7, Part: 2}
	const n = 32
	start := make(chan struct{})
	out := make(chan []byte, n)
	for range n {
		go func() {
			<-start
			out <- c.Encrypt(id, key, key.IV(7), p)
		}()
	}
	close(start)
	var first []byte
	for range n {
		b := <-out
		if first == nil {
			first = b
		}
		if &b[0] != &first[0] {
			t.Fatal("two encryptions of one resource")
		}
	}
	if got := c.Encryptions(); got != 1 {
		t.Errorf("%d encryptions, want 1", got)
	}
	if got, err := DecryptSegment(key, key.IV(7), first); err != nil || !bytes.Equal(got, p) {
		t.Errorf("shared ciphertext wrong: %v", err)
	}
	// Another part is another encryption.
	id.Part = 3
	c.Encrypt(id, key, key.IV(7), p)
	if got := c.Encryptions(); got != 2 {
		t.Errorf("%d encryptions, want 2", got)
	}
}
