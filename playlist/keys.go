package playlist

import "github.com/headwater-live/headwater/hlsenc"

// Encryption describes the AES-128 encryption of a rendition's segments and
// parts (see package hlsenc). Init sections stay in the clear.
//
// The playlist writes an EXT-X-KEY after the first EXT-X-MAP and again
// whenever the key changes (keys change at segment boundaries, so the tag
// precedes the EXTINF and the first EXT-X-PART of the segment it applies
// to), including before the preload hint when the hinted part starts a key
// period. A later EXT-X-MAP (an init change) is preceded by
// "#EXT-X-KEY:METHOD=NONE", so that the init is read in the clear, and
// followed by the EXT-X-KEY in force. A delta update repeats the key in
// force after EXT-X-SKIP. Key URIs are relative (hlsenc.RelativeKeyURI),
// so that a playback token in the playlist's path carries to the key
// requests.
type Encryption struct {
	// Stream is the stream's name, from which key URIs are made.
	Stream string
	// KeyFor returns the key of segment msn, which its parts share. It
	// must return the same key for the same msn for as long as the segment
	// can be listed (hlsenc.KeyProvider.KeyFor does).
	KeyFor func(msn uint64) (hlsenc.Key, error)
}

// keyWriter writes the EXT-X-KEY tags of an encrypted playlist. A nil
// *keyWriter writes nothing.
type keyWriter struct {
	enc *Encryption
	cur hlsenc.Key // key in force; zero before the first EXT-X-KEY and after METHOD=NONE
	err error      // first KeyFor error
}

// beforeMap writes METHOD=NONE before an EXT-X-MAP that follows an
// EXT-X-KEY, so that the init section is not taken for encrypted.
func (k *keyWriter) beforeMap(b []byte) []byte {
	if k == nil || k.cur.IsZero() {
		return b
	}
	k.cur = hlsenc.Key{}
	b = append(b, hlsenc.NoneKeyTag...)
	return append(b, '\n')
}

// forSegment writes the EXT-X-KEY of segment msn unless it is in force.
func (k *keyWriter) forSegment(b []byte, msn uint64) []byte {
	if k == nil || k.err != nil {
		return b
	}
	key, err := k.enc.KeyFor(msn)
	if err != nil {
		k.err = err
		return b
	}
	if !k.cur.IsZero() && key.ID() == k.cur.ID() {
		return b
	}
	k.cur = key
	b = hlsenc.AppendKeyTag(b, key, hlsenc.RelativeKeyURI(k.enc.Stream, key.ID()))
	return append(b, '\n')
}
