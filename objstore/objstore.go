// Package objstore is where recordings live: a small interface over object
// storage, with a local-directory backend (objstore/local) and an
// S3-compatible one (objstore/s3). Keys are slash-separated paths such as
// "live/cam1/20261207T161800Z/720p/seg42.m4s".
package objstore

import (
	"context"
	"errors"
	"io"
	"time"
)

// ErrNotFound is returned (wrapped) by Get and Stat for a key that holds no object.
var ErrNotFound = errors.New("objstore: object not found")

// Info describes one stored object.
type Info struct {
	// Key is the object's key.
	Key string
	// Size is its length in bytes.
	Size int64
	// Modified is when it was last written.
	Modified time.Time
}

// Backend stores objects by key. Implementations are safe for concurrent use.
type Backend interface {
	// Put stores size bytes read from body under key, replacing any
	// object there. contentType may be empty.
	Put(ctx context.Context, key string, body io.Reader, size int64, contentType string) error
	// Get opens the object at key. The error wraps ErrNotFound when there
	// is none. The caller closes the reader.
	Get(ctx context.Context, key string) (io.ReadCloser, Info, error)
	// Stat describes the object at key without reading it.
	Stat(ctx context.Context, key string) (Info, error)
	// List calls fn for every object whose key starts with prefix, in
	// lexical key order, until fn returns an error (which List returns).
	List(ctx context.Context, prefix string, fn func(Info) error) error
	// Delete removes the object at key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// Check verifies that the backend can be used now (the directory is
	// writable; the bucket exists and the credentials are accepted).
	Check(ctx context.Context) error
	// String names the backend for logs and errors ("dir ./recordings",
	// "s3 http://127.0.0.1:7070 bucket rec").
	String() string
}

// FilePutter is implemented by backends that can take a whole local file
// more cheaply than through Put (the local backend renames it into place).
// After PutFile returns nil the file at path may no longer exist.
type FilePutter interface {
	PutFile(ctx context.Context, key, path string) error
}

// SyncedFilePutter is implemented by FilePutters that can take a file
// its caller has made durable already (fsync, or syncfs of its file
// system) without syncing its data again: PutSyncedFile is PutFile
// without that sync (the spool's committed entries are such files).
type SyncedFilePutter interface {
	FilePutter
	PutSyncedFile(ctx context.Context, key, path string) error
}
