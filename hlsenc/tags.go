package hlsenc

import (
	"encoding/hex"
	"strings"
)

// NoneKeyTag turns encryption off for what follows (RFC 8216 §4.3.2.4):
// written before an EXT-X-MAP that appears after an EXT-X-KEY, so that the
// init section stays in the clear, and followed by the EXT-X-KEY in force.
const NoneKeyTag = "#EXT-X-KEY:METHOD=NONE"

// KeyFileContentType is the Content-Type of a key file. Key files are 16
// raw bytes served with Cache-Control "private, no-store", only to holders
// of a valid playback token for the stream.
const KeyFileContentType = "application/octet-stream"

// KeyPrefix starts the origin path of key files: /keys/<stream>/<id>.key.
const KeyPrefix = "/keys/"

// KeyTag returns the EXT-X-KEY tag of key with uri (no newline):
//
//	#EXT-X-KEY:METHOD=AES-128,URI="<uri>",IV=0x<32 hex digits>
//
// The IV attribute is left out for SequenceIV keys. uri must not contain a
// double quote, CR or LF (RelativeKeyURI never does).
func KeyTag(key Key, uri string) string {
	return string(AppendKeyTag(nil, key, uri))
}

// AppendKeyTag appends KeyTag(key, uri) to b, for playlist writers that
// build into a buffer.
func AppendKeyTag(b []byte, key Key, uri string) []byte {
	b = append(b, `#EXT-X-KEY:METHOD=AES-128,URI="`...)
	b = append(b, uri...)
	b = append(b, '"')
	if !key.SequenceIV() {
		iv := key.mat().iv
		b = append(b, ",IV=0x"...)
		b = hex.AppendEncode(b, iv[:])
	}
	return b
}

// KeyPath returns the origin path of a key file: /keys/<stream>/<id>.key.
func KeyPath(stream, id string) string {
	return KeyPrefix + stream + "/" + id + ".key"
}

// RelativeKeyURI returns the URI of a key file relative to a media playlist
// at <stream>/<rendition>/index.m3u8: one "../" per element of stream plus
// one for the rendition, then keys/<stream>/<id>.key. Being relative, it
// resolves under whatever prefix the playlist was fetched with, so a
// playback token in the path (/t/<token>/live/a/video/index.m3u8 ->
// /t/<token>/keys/live/a/<id>.key) is carried to the key request.
func RelativeKeyURI(stream, id string) string {
	n := strings.Count(stream, "/") + 2
	var b strings.Builder
	b.Grow(3*n + len(KeyPrefix) + len(stream) + len(id) + 5)
	for range n {
		b.WriteString("../")
	}
	b.WriteString(KeyPrefix[1:])
	b.WriteString(stream)
	b.WriteByte('/')
	b.WriteString(id)
	b.WriteString(".key")
	return b.String()
}

// ParseKeyPath splits a key file path, "/keys/<stream>/<id>.key", into the
// stream name and key id. ok is false for any other path; the caller still
// validates the stream name (media.ValidateName).
func ParseKeyPath(path string) (stream, id string, ok bool) {
	rest, found := strings.CutPrefix(path, KeyPrefix)
	if !found {
		return "", "", false
	}
	rest, found = strings.CutSuffix(rest, ".key")
	if !found {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 {
		return "", "", false
	}
	stream, id = rest[:i], rest[i+1:]
	if !ValidKeyID(id) {
		return "", "", false
	}
	return stream, id, true
}
