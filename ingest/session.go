package ingest

import (
	"crypto/rand"
	"encoding/hex"
)

// NewSessionID returns a short random id (8 hex digits) that tells ingest
// sessions apart in logs and in media.PublishInfo.
func NewSessionID() string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go >= 1.24)
	return hex.EncodeToString(b[:])
}
