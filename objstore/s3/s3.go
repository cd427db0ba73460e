// Package s3 is the objstore backend of an S3-compatible object store
// (AWS S3, MinIO, Ceph RGW, versitygw, ...), through minio-go.
//
// Requests are made once: the client's own retries are off (MaxRetries
// 1), since the spool retries uploads with its own backoff and a reader
// of a recording (a player) retries by itself. Errors wrap
// objstore.ErrNotFound for a missing object, and ErrNoBucket,
// ErrAccessDenied or ErrUnreachable when they are of that kind.
package s3

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/encrypt"

	"github.com/headwater-live/headwater/objstore"
	"github.com/headwater-live/headwater/objstore/local"
)

// Config configures a Backend.
type Config struct {
	// Endpoint is the server's URL: http:// or https:// and a host with
	// an optional port, no path ("https://s3.eu-west-1.amazonaws.com",
	// "http://127.0.0.1:7070").
	Endpoint string
	// Region is the bucket's region; "" has the client ask the server
	// (GetBucketLocation) before the first request.
	Region string
	// Bucket is the bucket objects are stored in.
	Bucket string
	// Prefix is prepended, with a '/', to every key inside the bucket
	// ("recordings" stores key "a/b" as "recordings/a/b"); "" stores keys
	// as they are. Leading and trailing slashes are ignored.
	Prefix string
	// PathStyle addresses the bucket in the URL's path
	// (http://host/bucket/key), as most self-hosted servers need; false
	// lets the client choose, which is the bucket in the host name
	// (virtual-hosted style) for AWS and a few other known providers and
	// path style elsewhere.
	PathStyle bool
	// AccessKeyFile and SecretKeyFile are files holding the access key id
	// and the secret access key (surrounding white space is ignored),
	// read by New. Set both or neither: without them the AWS environment
	// is used, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
	// AWS_SESSION_TOKEN first, then the shared credentials and config
	// files (AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE, ~/.aws) with
	// the profile AWS_PROFILE ("default" when unset).
	AccessKeyFile, SecretKeyFile string
	// ServerSideEncryption asks the server to encrypt stored objects: ""
	// (the bucket's default), "AES256" (SSE-S3) or "aws:kms" (SSE-KMS).
	ServerSideEncryption string
	// KMSKeyID is the KMS key of "aws:kms"; "" is the account's default
	// key. It needs ServerSideEncryption "aws:kms".
	KMSKeyID string
}

var (
	// ErrNoBucket is wrapped by Check's error (and the other operations')
	// when the bucket does not exist.
	ErrNoBucket = errors.New("bucket does not exist")
	// ErrAccessDenied is wrapped when the server refused the request: bad
	// credentials (an unknown access key, a wrong secret, an expired
	// token) or no permission on the bucket.
	ErrAccessDenied = errors.New("access denied (bad credentials or no permission on the bucket)")
	// ErrUnreachable is wrapped when no answer came from the endpoint: it
	// could not be resolved or connected to, or did not answer in time.
	ErrUnreachable = errors.New("endpoint unreachable")
	// ErrNoCredentials is Check's error when neither the key files nor
	// the AWS environment give credentials.
	ErrNoCredentials = errors.New("no credentials: set the access and secret key files, " +
		"or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or a profile in ~/.aws/credentials")
)

// Backend stores objects in an S3 bucket. It is safe for concurrent use.
type Backend struct {
	client    *minio.Client
	creds     *credentials.Credentials
	transport *http.Transport
	bucket    string
	prefix    string // "" or ending in '/'
	sse       encrypt.ServerSide
	name      string
}

var _ objstore.Backend = (*Backend)(nil)

// New checks cfg and returns its backend, reading the key files if set.
// It makes no request: Check does.
func New(cfg Config) (*Backend, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("s3 endpoint %q: %w", cfg.Endpoint, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Path != "" && u.Path != "/" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("s3 endpoint %q: not an http:// or https:// URL of a host with no path", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("s3: no bucket")
	}
	b := &Backend{bucket: cfg.Bucket, name: fmt.Sprintf("s3 %s://%s bucket %s", u.Scheme, u.Host, cfg.Bucket)}
	if p := strings.Trim(cfg.Prefix, "/"); p != "" {
		if err := local.ValidateKey(p); err != nil {
			return nil, fmt.Errorf("s3 prefix: %w", err)
		}
		b.prefix = p + "/"
		b.name += " prefix " + b.prefix
	}
	switch cfg.ServerSideEncryption {
	case "":
	case "AES256":
		b.sse = encrypt.NewSSE()
	case "aws:kms":
		if b.sse, err = encrypt.NewSSEKMS(cfg.KMSKeyID, nil); err != nil {
			return nil, fmt.Errorf("s3 server-side encryption: %w", err)
		}
	default:
		return nil, fmt.Errorf("s3 server-side encryption %q: not \"\", \"AES256\" or \"aws:kms\"", cfg.ServerSideEncryption)
	}
	if cfg.KMSKeyID != "" && cfg.ServerSideEncryption != "aws:kms" {
		return nil, fmt.Errorf("s3: a KMS key id needs server-side encryption \"aws:kms\", not %q", cfg.ServerSideEncryption)
	}
	if b.creds, err = newCredentials(cfg); err != nil {
		return nil, err
	}
	b.transport, err = minio.DefaultTransport(u.Scheme == "https")
	if err != nil {
		return nil, fmt.Errorf("s3 transport: %w", err)
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	b.client, err = minio.New(u.Host, &minio.Options{
		Creds:        b.creds,
		Secure:       u.Scheme == "https",
		Transport:    failFast{b.transport},
		Region:       cfg.Region,
		BucketLookup: lookup,
		MaxRetries:   1,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.name, err)
	}
	return b, nil
}

// newCredentials returns the static credentials of cfg's key files, or
// the chain of the AWS environment and the shared files.
func newCredentials(cfg Config) (*credentials.Credentials, error) {
	if cfg.AccessKeyFile == "" && cfg.SecretKeyFile == "" {
		return credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{},
		}), nil
	}
	if cfg.AccessKeyFile == "" || cfg.SecretKeyFile == "" {
		return nil, errors.New("s3 credentials: set both the access key file and the secret key file, or neither")
	}
	access, err := readKeyFile("access key", cfg.AccessKeyFile)
	if err != nil {
		return nil, err
	}
	secret, err := readKeyFile("secret key", cfg.SecretKeyFile)
	if err != nil {
		return nil, err
	}
	return credentials.NewStaticV4(access, secret, ""), nil
}

// readKeyFile reads a credential file.
func readKeyFile(what, path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("s3 %s file: %w", what, err)
	}
	v := strings.TrimSpace(string(data))
	if v == "" {
		return "", fmt.Errorf("s3 %s file %s: empty", what, path)
	}
	return v, nil
}

// String names the backend: "s3 <scheme>://<host> bucket <bucket>", and
// " prefix <prefix>/" when there is one.
func (b *Backend) String() string { return b.name }

// CloseIdleConnections closes the client's idle keep-alive connections
// (and so the goroutines that serve them), for a server shutting down
// or a test counting goroutines.
func (b *Backend) CloseIdleConnections() { b.transport.CloseIdleConnections() }

// object returns the object name of key inside the bucket.
func (b *Backend) object(key string) (string, error) {
	if err := local.ValidateKey(key); err != nil {
		return "", err
	}
	return b.prefix + key, nil
}

// classify wraps err with ErrNoBucket, ErrAccessDenied or ErrUnreachable
// when it is of that kind (and notFound with objstore.ErrNotFound when
// it is a missing object's).
func classify(err error, notFound bool) error {
	if err == nil {
		return nil
	}
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		switch er.Code {
		case "NoSuchKey":
			if notFound {
				return fmt.Errorf("%w: %w", objstore.ErrNotFound, err)
			}
		case "NoSuchBucket":
			return fmt.Errorf("%w: %w", ErrNoBucket, err)
		case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
			"TokenRefreshRequired", "AllAccessDisabled", "AccountProblem", "InvalidSecurity",
			"XAdminUserNotFound": // versitygw's unknown access key (with a 404)
			return fmt.Errorf("%w: %w", ErrAccessDenied, err)
		}
		if er.StatusCode == http.StatusForbidden {
			return fmt.Errorf("%w: %w", ErrAccessDenied, err)
		}
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) {
		var op *net.OpError
		if errors.As(err, &op) {
			err = op // "dial tcp 127.0.0.1:1: connect: connection refused", without the request
		}
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return err
}

// Check makes sure that there are credentials, that the endpoint
// answers, that it accepts them and that the bucket exists (by listing
// one key under the prefix, which needs s3:ListBucket, as reading
// recordings back does). Its error names the backend and wraps ErrNoCredentials,
// ErrUnreachable, ErrAccessDenied or ErrNoBucket.
func (b *Backend) Check(ctx context.Context) error {
	v, err := b.creds.GetWithContext(&credentials.CredContext{Client: &http.Client{Transport: b.transport}, Context: ctx})
	if err != nil {
		return fmt.Errorf("%s: credentials: %w", b.name, err)
	}
	if v.SignerType.IsAnonymous() || v.AccessKeyID == "" {
		return fmt.Errorf("%s: %w", b.name, ErrNoCredentials)
	}
	if err := b.probe(ctx); err != nil {
		return fmt.Errorf("%s: %w", b.name, classify(err, false))
	}
	return nil
}

// probe lists one key under the prefix: a request whose error response
// has a body naming the problem (a HEAD of the bucket has none, and some
// servers answer a HEAD with an unknown access key 404, as if there were
// no bucket).
func (b *Backend) probe(ctx context.Context) error {
	ctx, abort := operation(ctx)
	ch := b.client.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: b.prefix, MaxKeys: 1})
	defer func() {
		abort(nil)
		for range ch { // until the lister's goroutine has ended
		}
	}()
	o, ok := <-ch
	if ok && o.Err == nil {
		return nil // a key
	}
	return aborted(ctx, o.Err) // an error; or none, and no key unless the context ended
}

// Put uploads size bytes of body as key with contentType ("" is
// application/octet-stream), encrypted as configured. Objects past 16
// MiB are uploaded in parts.
//
// An object of up to 16 MiB goes in one PUT whose payload is not signed
// (UNSIGNED-PAYLOAD), over http as minio-go does over https: over http
// minio-go would sign it in 64 KiB chunks (the streaming signature, a
// SHA-256 of the payload and a signature per chunk), a third of what an
// upload cost. Its integrity is checked by the server instead, with the
// object's CRC32C (x-amz-checksum-crc32c, computed here: see crc32c).
// Over http the payload is then no longer authenticated: use https where
// the network to the store is not trusted.
func (b *Backend) Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) error {
	name, err := b.object(key)
	if err != nil {
		return fmt.Errorf("s3 put %s: %w", key, err)
	}
	opts := minio.PutObjectOptions{
		ContentType:          contentType,
		ServerSideEncryption: b.sse,
	}
	if size >= 0 && size <= singlePutMax {
		sum, r, err := crc32c(body, size)
		if err != nil {
			return fmt.Errorf("s3 put %s: reading the body: %w", key, err)
		}
		body = r
		opts.DisableContentSha256 = true
		opts.UserMetadata = map[string]string{checksumHeader: sum}
	}
	ctx, abort := operation(ctx)
	defer abort(nil)
	_, err = b.client.PutObject(ctx, b.bucket, name, body, size, opts)
	if err != nil {
		return fmt.Errorf("s3 put %s: %w", key, classify(aborted(ctx, err), false))
	}
	return nil
}

// singlePutMax is the largest object Put sends in one request, with its
// CRC32C: minio-go's part size, past which it uploads in parts.
const singlePutMax = 16 << 20

// checksumHeader is the request header of an object's CRC32C, which the
// server checks the payload against (refusing the PUT when they differ).
const checksumHeader = "X-Amz-Checksum-Crc32c"

// castagnoli is the CRC32C table.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c returns the base64 CRC32C of the size bytes of body, and a
// reader of those bytes again: of a copy read into memory (one read of a
// file), or, past inMemoryMax, body itself sought back when it is an
// io.ReadSeeker. It fails when body holds fewer than size bytes.
func crc32c(body io.Reader, size int64) (string, io.Reader, error) {
	if rs, ok := body.(io.ReadSeeker); ok && size > inMemoryMax {
		h := crc32.New(castagnoli)
		start, err := rs.Seek(0, io.SeekCurrent)
		if err != nil {
			return "", nil, err
		}
		if _, err := io.CopyN(h, rs, size); err != nil {
			return "", nil, err
		}
		if _, err := rs.Seek(start, io.SeekStart); err != nil {
			return "", nil, err
		}
		return base64.StdEncoding.EncodeToString(h.Sum(nil)), rs, nil
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(body, data); err != nil {
		return "", nil, err
	}
	sum := crc32.Checksum(data, castagnoli)
	return base64.StdEncoding.EncodeToString(binary.BigEndian.AppendUint32(nil, sum)), bytes.NewReader(data), nil
}

// inMemoryMax is the largest body Put reads into memory to checksum and
// send it; a larger io.ReadSeeker is read twice instead.
const inMemoryMax = 4 << 20

// Get opens key; the error wraps objstore.ErrNotFound when there is no
// such object.
func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, objstore.Info, error) {
	name, err := b.object(key)
	if err != nil {
		return nil, objstore.Info{}, fmt.Errorf("s3 get %s: %w", key, err)
	}
	ctx, abort := operation(ctx)
	obj, err := b.client.GetObject(ctx, b.bucket, name, minio.GetObjectOptions{})
	if err == nil {
		var st minio.ObjectInfo
		if st, err = obj.Stat(); err == nil {
			return object{obj, abort}, objstore.Info{Key: key, Size: st.Size, Modified: st.LastModified}, nil
		}
		obj.Close()
	}
	err = aborted(ctx, err)
	abort(nil)
	return nil, objstore.Info{}, fmt.Errorf("s3 get %s: %w", key, classify(err, true))
}

// object is an object being read, whose Close ends its operation.
type object struct {
	*minio.Object
	abort context.CancelCauseFunc
}

// Close closes the object and ends its operation's context.
func (o object) Close() error {
	err := o.Object.Close()
	o.abort(nil)
	return err
}

// Stat describes key; the error wraps objstore.ErrNotFound when there is
// no such object (or no bucket: a HEAD request cannot tell them apart).
func (b *Backend) Stat(ctx context.Context, key string) (objstore.Info, error) {
	name, err := b.object(key)
	if err != nil {
		return objstore.Info{}, fmt.Errorf("s3 stat %s: %w", key, err)
	}
	ctx, abort := operation(ctx)
	defer abort(nil)
	st, err := b.client.StatObject(ctx, b.bucket, name, minio.StatObjectOptions{})
	if err != nil {
		return objstore.Info{}, fmt.Errorf("s3 stat %s: %w", key, classify(aborted(ctx, err), true))
	}
	return objstore.Info{Key: key, Size: st.Size, Modified: st.LastModified}, nil
}

// List calls fn for each object under prefix in the order the server
// lists them, which S3 defines as lexical (UTF-8 byte) order of the keys.
func (b *Backend) List(ctx context.Context, prefix string, fn func(objstore.Info) error) error {
	if err := local.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("s3 list %s: %w", prefix, err)
	}
	ctx, abort := operation(ctx)
	ch := b.client.ListObjects(ctx, b.bucket, minio.ListObjectsOptions{Prefix: b.prefix + prefix, Recursive: true})
	defer func() {
		abort(nil)
		for range ch { // until the lister's goroutine has ended
		}
	}()
	for o := range ch {
		if o.Err != nil {
			return fmt.Errorf("s3 list %s: %w", prefix, classify(aborted(ctx, o.Err), false))
		}
		if err := fn(objstore.Info{Key: strings.TrimPrefix(o.Key, b.prefix), Size: o.Size, Modified: o.LastModified}); err != nil {
			return err
		}
	}
	// A listing that ends because its context did (without an error
	// item: the lister stops sending then) is not a complete one.
	if err := aborted(ctx, nil); err != nil {
		return fmt.Errorf("s3 list %s: %w", prefix, classify(err, false))
	}
	return nil
}

// Delete removes key; a missing object is not an error.
func (b *Backend) Delete(ctx context.Context, key string) error {
	name, err := b.object(key)
	if err != nil {
		return fmt.Errorf("s3 delete %s: %w", key, err)
	}
	ctx, abort := operation(ctx)
	defer abort(nil)
	if err = b.client.RemoveObject(ctx, b.bucket, name, minio.RemoveObjectOptions{}); err != nil {
		err = classify(aborted(ctx, err), true)
	}
	if err != nil && !errors.Is(err, objstore.ErrNotFound) {
		return fmt.Errorf("s3 delete %s: %w", key, err)
	}
	return nil
}
