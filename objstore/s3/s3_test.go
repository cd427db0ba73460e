package s3

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/headwater-live/headwater/internal/s3test"
	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/objstore"
	"github.com/headwater-live/headwater/objstore/local"
)

// keyFiles writes access and secret into files and returns their paths.
func keyFiles(t *testing.T, access, secret string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	a, s := filepath.Join(dir, "access"), filepath.Join(dir, "secret")
	if err := os.WriteFile(a, []byte(access+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s, []byte("  "+secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return a, s
}

// config is the configuration of srv's bucket with its root keys in files.
func config(t *testing.T, srv *s3test.Server) Config {
	t.Helper()
	a, s := keyFiles(t, srv.AccessKey, srv.SecretKey)
	return Config{Endpoint: srv.Endpoint, Region: s3test.Region, Bucket: srv.Bucket, PathStyle: true, AccessKeyFile: a, SecretKeyFile: s}
}

func newBackend(t *testing.T, cfg Config) *Backend {
	t.Helper()
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.CloseIdleConnections)
	return b
}

func put(t *testing.T, b *Backend, key, data, contentType string) {
	t.Helper()
	if err := b.Put(t.Context(), key, strings.NewReader(data), int64(len(data)), contentType); err != nil {
		t.Fatal(err)
	}
}

func listKeys(t *testing.T, b *Backend, prefix string) []string {
	t.Helper()
	var keys []string
	err := b.List(t.Context(), prefix, func(i objstore.Info) error {
		keys = append(keys, fmt.Sprintf("%s:%d", i.Key, i.Size))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestBackend(t *testing.T) {
	srv := s3test.Start(t)
	cfg := config(t, srv)
	cfg.Prefix = "/headwater/rec/"
	b := newBackend(t, cfg)
	ctx := t.Context()
	if err := b.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if want := "s3 " + srv.Endpoint + " bucket rec prefix headwater/rec/"; b.String() != want {
		t.Errorf("String() = %q, want %q", b.String(), want)
	}

	before := time.Now().Add(-time.Second)
	put(t, b, "live/cam1/s1/720p/init.mp4", "init", "video/mp4")
	put(t, b, "live/cam1/s1/index.json", `{"v":1}`, "application/json")
	put(t, b, "live/cam1/s1/index.json", `{"v":2}`, "application/json")
	put(t, b, "live/cam1/s1/raw", "raw", "")

	rc, info, err := b.Get(ctx, "live/cam1/s1/index.json")
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != `{"v":2}` || info.Key != "live/cam1/s1/index.json" || info.Size != 7 || info.Modified.Before(before) {
		t.Fatalf("Get = %q, %+v", data, info)
	}
	st, err := b.Stat(ctx, "live/cam1/s1/720p/init.mp4")
	if err != nil {
		t.Fatal(err)
	}
	if st.Key != "live/cam1/s1/720p/init.mp4" || st.Size != 4 || st.Modified.Before(before) {
		t.Fatalf("Stat = %+v", st)
	}

	// The objects are in the bucket under the prefix, with their content
	// types.
	if got, want := srv.Objects(t), map[string]string{
		"headwater/rec/live/cam1/s1/720p/init.mp4": "init",
		"headwater/rec/live/cam1/s1/index.json":    `{"v":2}`,
		"headwater/rec/live/cam1/s1/raw":           "raw",
	}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("bucket holds %v, want %v", got, want)
	}
	for key, want := range map[string]string{
		"live/cam1/s1/720p/init.mp4": "video/mp4",
		"live/cam1/s1/index.json":    "application/json",
		"live/cam1/s1/raw":           "application/octet-stream",
	} {
		oi, err := srv.Client(t).StatObject(ctx, srv.Bucket, "headwater/rec/"+key, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if oi.ContentType != want {
			t.Errorf("%s: Content-Type %q, want %q", key, oi.ContentType, want)
		}
	}

	for _, key := range []string{"live/cam1/s1/missing", "live/cam1"} {
		if _, _, err := b.Get(ctx, key); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("Get(%s) = %v, want ErrNotFound", key, err)
		}
		if _, err := b.Stat(ctx, key); !errors.Is(err, objstore.ErrNotFound) {
			t.Errorf("Stat(%s) = %v, want ErrNotFound", key, err)
		}
	}
	_, _, err = b.Get(ctx, "live/cam1/s1/missing")
	if want := "s3 get live/cam1/s1/missing: objstore: object not found: The specified key does not exist."; fmt.Sprint(err) != want {
		t.Errorf("Get of a missing key: %q, want %q", err, want)
	}

	for _, key := range []string{"live/cam1/s1/raw", "live/cam1/s1/raw", "never/was"} {
		if err := b.Delete(ctx, key); err != nil {
			t.Fatalf("Delete(%s) = %v", key, err)
		}
	}
	if got := listKeys(t, b, ""); strings.Join(got, " ") != "live/cam1/s1/720p/init.mp4:4 live/cam1/s1/index.json:7" {
		t.Fatalf("after Delete: List = %v", got)
	}

	for _, key := range []string{"../x", "a//b", "/abs", ""} {
		if err := b.Put(ctx, key, strings.NewReader("x"), 1, ""); !errors.Is(err, local.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, _, err := b.Get(ctx, key); !errors.Is(err, local.ErrInvalidKey) {
			t.Errorf("Get(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
}

func TestList(t *testing.T) {
	srv := s3test.Start(t)
	b := newBackend(t, config(t, srv))
	for _, k := range []string{"a/b", "a.txt", "a-b", "a/a/z", "a0", "b", "live/cam1/s2/x", "live/cam1/s1/y", "live/cam10/z", "live/cam1.json"} {
		put(t, b, k, k, "")
	}
	for _, tc := range []struct {
		prefix string
		want   string
	}{
		{"", "a-b:3 a.txt:5 a/a/z:5 a/b:3 a0:2 b:1 live/cam1.json:14 live/cam1/s1/y:14 live/cam1/s2/x:14 live/cam10/z:12"},
		{"a/", "a/a/z:5 a/b:3"},
		{"live/cam1", "live/cam1.json:14 live/cam1/s1/y:14 live/cam1/s2/x:14 live/cam10/z:12"},
		{"live/cam1/", "live/cam1/s1/y:14 live/cam1/s2/x:14"},
		{"live/cam2/", ""},
	} {
		if got := strings.Join(listKeys(t, b, tc.prefix), " "); got != tc.want {
			t.Errorf("List(%q) = %s, want %s", tc.prefix, got, tc.want)
		}
	}

	// Stopping early returns fn's error and leaves no lister running.
	goroutines := runtime.NumGoroutine()
	stop := errors.New("stop")
	var seen []string
	err := b.List(t.Context(), "", func(i objstore.Info) error {
		seen = append(seen, i.Key)
		if len(seen) == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || strings.Join(seen, " ") != "a-b a.txt" {
		t.Fatalf("List stopped: %v after %v", err, seen)
	}
	b.CloseIdleConnections()
	testpeer.WaitGoroutines(t, goroutines)

	if err := b.List(t.Context(), "../", func(objstore.Info) error { return nil }); !errors.Is(err, local.ErrInvalidKey) {
		t.Fatalf("List(../) = %v", err)
	}
}

func TestCheck(t *testing.T) {
	srv := s3test.Start(t)
	ctx := t.Context()
	good := config(t, srv)
	name := "s3 " + srv.Endpoint + " bucket "

	noBucket := good
	noBucket.Bucket = "nope"
	badSecret := good
	_, badSecret.SecretKeyFile = keyFiles(t, srv.AccessKey, "not-the-secret")
	badAccess := good
	badAccess.AccessKeyFile, _ = keyFiles(t, "nobody", srv.SecretKey)
	down := good
	downAddr := testpeer.FreeAddr(t)
	down.Endpoint = "http://" + downAddr
	for _, tc := range []struct {
		what string
		cfg  Config
		is   error
		want string
	}{
		{"good", good, nil, ""},
		{"no bucket", noBucket, ErrNoBucket, name + "nope: bucket does not exist: The specified bucket does not exist."},
		{"bad secret", badSecret, ErrAccessDenied, name + "rec: access denied (bad credentials or no permission on the bucket): " +
			"The request signature we calculated does not match the signature you provided. Check your key and signing method."},
		{"unknown access key", badAccess, ErrAccessDenied, name + "rec: access denied (bad credentials or no permission on the bucket): " +
			"No user exists with the provided access key ID."},
		{"unreachable", down, ErrUnreachable, "s3 http://" + downAddr + " bucket rec: endpoint unreachable: dial tcp " + downAddr + ": connect: connection refused"},
	} {
		b := newBackend(t, tc.cfg)
		err := b.Check(ctx)
		if tc.is == nil {
			if err != nil {
				t.Errorf("%s: Check = %v", tc.what, err)
			}
			continue
		}
		if !errors.Is(err, tc.is) || err.Error() != tc.want {
			t.Errorf("%s: Check = %v, want %q", tc.what, err, tc.want)
		}
	}

	// The other operations' errors are of the same kinds.
	b := newBackend(t, badSecret)
	if err := b.Put(ctx, "k", strings.NewReader("x"), 1, ""); !errors.Is(err, ErrAccessDenied) {
		t.Errorf("Put with a bad secret = %v", err)
	}
	b = newBackend(t, noBucket)
	if err := b.Put(ctx, "k", strings.NewReader("x"), 1, ""); !errors.Is(err, ErrNoBucket) ||
		err.Error() != "s3 put k: bucket does not exist: The specified bucket does not exist." {
		t.Errorf("Put to a missing bucket = %v", err)
	}
	b = newBackend(t, good)
	srv.Stop()
	err := b.Put(ctx, "k", strings.NewReader("x"), 1, "")
	if want := "s3 put k: endpoint unreachable: dial tcp " + srv.Addr + ": connect: connection refused"; !errors.Is(err, ErrUnreachable) || err.Error() != want {
		t.Errorf("Put with the server down = %v, want %q", err, want)
	}
	// Every operation tells the outage the same way, at once (not after
	// minio-go's wait following its last attempt), and a listing does
	// not end as if it were complete.
	refused := "endpoint unreachable: dial tcp " + srv.Addr + ": connect: connection refused"
	_, _, err = b.Get(ctx, "k")
	errs := map[string]error{"s3 get k": err}
	_, errs["s3 stat k"] = b.Stat(ctx, "k")
	errs["s3 delete k"] = b.Delete(ctx, "k")
	errs["s3 list k/"] = b.List(ctx, "k/", func(objstore.Info) error { return nil })
	errs[name+"rec"] = b.Check(ctx)
	for op, err := range errs {
		if !errors.Is(err, ErrUnreachable) || err.Error() != op+": "+refused {
			t.Errorf("%s with the server down: %v, want %q", op, err, op+": "+refused)
		}
	}
	srv.Start()
	if err := b.Put(ctx, "k", strings.NewReader("x"), 1, ""); err != nil {
		t.Errorf("Put after the server came back = %v", err)
	}
	if err := b.List(ctx, "", func(objstore.Info) error { return nil }); err != nil {
		t.Errorf("List after the server came back = %v", err)
	}
}

// clearAWSEnv makes the AWS environment empty for the test: no variables,
// a HOME with no ~/.aws.
func clearAWSEnv(t *testing.T) {
	t.Helper()
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY",
		"AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"} {
		t.Setenv(v, "")
	}
	t.Setenv("HOME", t.TempDir())
}

func TestCredentialsFromEnvironment(t *testing.T) {
	srv := s3test.Start(t)
	ctx := t.Context()
	cfg := Config{Endpoint: srv.Endpoint, Region: s3test.Region, Bucket: srv.Bucket, PathStyle: true}

	clearAWSEnv(t)
	err := newBackend(t, cfg).Check(ctx)
	if want := "s3 " + srv.Endpoint + " bucket rec: " + ErrNoCredentials.Error(); !errors.Is(err, ErrNoCredentials) || err.Error() != want {
		t.Fatalf("Check without credentials = %v, want %q", err, want)
	}

	// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	b := newBackend(t, cfg)
	if err := b.Check(ctx); err != nil {
		t.Fatalf("Check with AWS_ACCESS_KEY_ID: %v", err)
	}
	put(t, b, "from/env", "env", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wrong")
	if err := newBackend(t, cfg).Check(ctx); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("Check with a wrong AWS_SECRET_ACCESS_KEY = %v", err)
	}

	// The shared credentials file, the profile AWS_PROFILE chosen (its
	// default profile has wrong keys).
	clearAWSEnv(t)
	file := filepath.Join(t.TempDir(), "credentials")
	shared := fmt.Sprintf("[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong\n\n"+
		"[rec]\naws_access_key_id = %s\naws_secret_access_key = %s\n", srv.AccessKey, srv.SecretKey)
	if err := os.WriteFile(file, []byte(shared), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", file)
	if err := newBackend(t, cfg).Check(ctx); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("Check with the default profile = %v, want access denied", err)
	}
	t.Setenv("AWS_PROFILE", "rec")
	b = newBackend(t, cfg)
	if err := b.Check(ctx); err != nil {
		t.Fatalf("Check with AWS_PROFILE=rec: %v", err)
	}
	put(t, b, "from/profile", "profile", "")
	if got := srv.Objects(t); fmt.Sprint(got) != "map[from/env:env from/profile:profile]" {
		t.Fatalf("bucket holds %v", got)
	}
}

func TestNewErrors(t *testing.T) {
	a, s := keyFiles(t, "a", "s")
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := Config{Endpoint: "https://s3.example.com", Bucket: "rec", AccessKeyFile: a, SecretKeyFile: s}
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.Endpoint = "s3.example.com" }, `s3 endpoint "s3.example.com": not an http:// or https:// URL of a host with no path`},
		{func(c *Config) { c.Endpoint = "ftp://h" }, `s3 endpoint "ftp://h": not an http:// or https:// URL of a host with no path`},
		{func(c *Config) { c.Endpoint = "http://h/bucket" }, `s3 endpoint "http://h/bucket": not an http:// or https:// URL of a host with no path`},
		{func(c *Config) { c.Bucket = "" }, "s3: no bucket"},
		{func(c *Config) { c.Prefix = "a/../b" }, `s3 prefix: invalid object key "a/../b": a ".." element`},
		{func(c *Config) { c.ServerSideEncryption = "aes256" }, `s3 server-side encryption "aes256": not "", "AES256" or "aws:kms"`},
		{func(c *Config) { c.KMSKeyID = "k" }, `s3: a KMS key id needs server-side encryption "aws:kms", not ""`},
		{func(c *Config) { c.SecretKeyFile = "" }, "s3 credentials: set both the access key file and the secret key file, or neither"},
		{func(c *Config) { c.SecretKeyFile = empty }, "s3 secret key file " + empty + ": empty"},
		{func(c *Config) { c.AccessKeyFile = "/nonexistent/key" }, "s3 access key file: open /nonexistent/key: no such file or directory"},
	} {
		cfg := base
		tc.change(&cfg)
		if _, err := New(cfg); fmt.Sprint(err) != tc.want {
			t.Errorf("New(%+v) = %v, want %q", cfg, err, tc.want)
		}
	}
	for _, sse := range []string{"", "AES256", "aws:kms"} {
		cfg := base
		cfg.ServerSideEncryption = sse
		if sse == "aws:kms" {
			cfg.KMSKeyID = "arn:aws:kms:eu-west-1:111122223333:key/k"
		}
		b, err := New(cfg)
		if err != nil {
			t.Errorf("New with SSE %q: %v", sse, err)
			continue
		}
		b.CloseIdleConnections()
	}
}

func TestServerSideEncryptionHeaders(t *testing.T) {
	// versitygw stores no SSE: what the backend asks for is seen on the
	// wire, by a reverse proxy in front of the real server.
	srv := s3test.Start(t)
	for _, tc := range []struct {
		sse, kms string
		want     string // the PUT's x-amz-server-side-encryption | ...-aws-kms-key-id
	}{
		{"AES256", "", "AES256|"},
		{"aws:kms", "", "aws:kms|"},
		{"aws:kms", "key-1", "aws:kms|key-1"},
		{"", "", "|"},
	} {
		proxy := newHeaderProxy(t, srv.Endpoint)
		cfg := config(t, srv)
		cfg.Endpoint = proxy.URL
		cfg.ServerSideEncryption, cfg.KMSKeyID = tc.sse, tc.kms
		if err := newBackend(t, cfg).Put(t.Context(), "enc", strings.NewReader("x"), 1, ""); err != nil {
			t.Fatal(err)
		}
		if got := proxy.last(); got != tc.want {
			t.Errorf("SSE %q, key %q: the PUT had %q, want %q", tc.sse, tc.kms, got, tc.want)
		}
	}
}

// headerProxy is a reverse proxy that keeps the SSE headers of the last
// PUT it passed on.
type headerProxy struct {
	*httptest.Server
	mu  sync.Mutex
	put string
}

func newHeaderProxy(t *testing.T, target string) *headerProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &headerProxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			p.mu.Lock()
			p.put = r.Header.Get("X-Amz-Server-Side-Encryption") + "|" + r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id")
			p.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *headerProxy) last() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.put
}

// TestPutChecksum checks that a PUT's payload is sent unsigned with its
// CRC32C, which the server checks: a byte changed on the way makes the
// PUT fail, from a reader that can seek (a spool file) or not.
func TestPutChecksum(t *testing.T) {
	srv := s3test.Start(t)
	u, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	corrupt := false
	var seen []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			mu.Lock()
			seen = append(seen, r.Header.Get("X-Amz-Content-Sha256")+"|"+r.Header.Get("X-Amz-Checksum-Crc32c"))
			if corrupt && len(body) > 0 {
				body[len(body)-1] ^= 1
			}
			mu.Unlock()
			r.Body = io.NopCloser(strings.NewReader(string(body)))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	cfg := config(t, srv)
	cfg.Endpoint = proxy.URL
	b := newBackend(t, cfg)

	small := strings.Repeat("0123456789abcdef", 20_000) // 320 KB: read into memory
	big := strings.Repeat("fedcba9876543210", 300_000)  // 4.8 MB: a file is read twice
	dir := t.TempDir()
	file := func(data string) func() io.Reader {
		path := filepath.Join(dir, strconv.Itoa(len(data)))
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return func() io.Reader {
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			return f
		}
	}
	for name, tc := range map[string]struct {
		data string
		body func() io.Reader
	}{
		"file":     {small, file(small)},
		"big-file": {big, file(big)},
		"stream":   {small, func() io.Reader { return io.MultiReader(strings.NewReader(small)) }},
	} {
		data, body := tc.data, tc.body
		mu.Lock()
		corrupt = false
		mu.Unlock()
		if err := b.Put(t.Context(), "sum/"+name, body(), int64(len(data)), "video/mp4"); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		rc, info, err := b.Get(t.Context(), "sum/"+name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || string(got) != data || info.Size != int64(len(data)) {
			t.Fatalf("%s: read back %d bytes (size %d), err %v; want the %d put", name, len(got), info.Size, err, len(data))
		}
		mu.Lock()
		corrupt = true
		mu.Unlock()
		err = b.Put(t.Context(), "sum/"+name+"-bad", body(), int64(len(data)), "video/mp4")
		if err == nil {
			t.Errorf("%s: a PUT whose payload was changed on the way succeeded", name)
		}
		t.Logf("%s, a byte changed: %v", name, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, h := range seen {
		if sha, sum, _ := strings.Cut(h, "|"); sha != "UNSIGNED-PAYLOAD" || sum == "" {
			t.Errorf("a PUT had X-Amz-Content-Sha256 %q and X-Amz-Checksum-Crc32c %q, want UNSIGNED-PAYLOAD and a checksum", sha, sum)
		}
	}
}
