package auth

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// maxSecretFileBytes bounds what ReadSecretFile reads: secrets, key
// files and JWKS are small; a larger file is a mistake (a wrong path).
const maxSecretFileBytes = 1 << 20

// SecretFile is a file read by [ReadSecretFile]: its content as stored and
// the permissions it had when it was read.
type SecretFile struct {
	Path    string
	Content []byte
	Mode    fs.FileMode
}

// ReadSecretFile is the one reader of the files holding Headwater's
// secrets (publish JWT and webhook secrets, JWT public keys and JWKS,
// playback token keys, the CDN secret, the admin token, SRT passphrases,
// TLS keys): it reads a regular file of at most 1 MiB and records its
// mode, so that callers can tell a secret readable by others
// ([SecretFile.Exposed]) and a rotated one ([SecretFile.Sum]). Errors
// name the path, never the content.
func ReadSecretFile(path string) (SecretFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return SecretFile{}, err
	}
	defer func() { _ = f.Close() }()
	st, err := f.Stat()
	if err != nil {
		return SecretFile{}, err
	}
	if !st.Mode().IsRegular() {
		return SecretFile{}, fmt.Errorf("secret file %s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFileBytes+1))
	if err != nil {
		return SecretFile{}, err
	}
	if len(b) > maxSecretFileBytes {
		return SecretFile{}, fmt.Errorf("secret file %s is larger than %d bytes", path, maxSecretFileBytes)
	}
	return SecretFile{Path: path, Content: b, Mode: st.Mode()}, nil
}

// Exposed reports whether the file's group or other users may read it: a
// secret should be readable by its owner only (chmod 600).
func (f SecretFile) Exposed() bool { return f.Mode.Perm()&0o044 != 0 }

// Sum is the SHA-256 of the content: a reload compares it to tell a
// secret rotated in place (same path, new content) from an unchanged one.
func (f SecretFile) Sum() [sha256.Size]byte { return sha256.Sum256(f.Content) }

// Secret is the content without surrounding whitespace (a trailing
// newline, typically). An empty secret is an error.
func (f SecretFile) Secret() ([]byte, error) {
	b := bytes.TrimSpace(f.Content)
	if len(b) == 0 {
		return nil, errors.New("secret file " + f.Path + " is empty")
	}
	return b, nil
}

// Lines are the content's non-empty lines, each without surrounding
// whitespace (a file holding several secrets, one per line). A file with
// none is an error.
func (f SecretFile) Lines() ([][]byte, error) {
	var out [][]byte
	for line := range bytes.SplitSeq(f.Content, []byte("\n")) {
		if line = bytes.TrimSpace(line); len(line) > 0 {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("secret file " + f.Path + " is empty")
	}
	return out, nil
}

// ReadSecret reads the secret held in path ([ReadSecretFile], then
// [SecretFile.Secret]).
func ReadSecret(path string) ([]byte, error) {
	f, err := ReadSecretFile(path)
	if err != nil {
		return nil, err
	}
	return f.Secret()
}
