package server

import (
	"crypto/sha256"
	"fmt"
	"log/slog"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/config"
)

// secretRef is a secret file as the configuration names it.
type secretRef struct{ key, path string }

// secretSums are the SHA-256 sums of the secret files of a configuration
// (config.SecretFiles), by key and path: what a reload compares to tell a
// file rotated in place from an unchanged one.
type secretSums map[secretRef][sha256.Size]byte

// readSecretFiles reads every secret file cfg names with
// auth.ReadSecretFile and returns their sums. A secret (not public key
// material) that its group or other users may read is logged as a
// warning naming the key and the file, unless old, the sums of the
// running configuration, already held the same file and content (it was
// warned about then). Sums are taken before the components read the
// files, so that a rotation racing the reading is seen by the next reload.
func readSecretFiles(cfg *config.Config, old secretSums, log *slog.Logger) (secretSums, error) {
	sums := secretSums{}
	for _, sf := range cfg.SecretFiles() {
		f, err := auth.ReadSecretFile(sf.Path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sf.Key, err)
		}
		ref, sum := secretRef{sf.Key, sf.Path}, f.Sum()
		if prev, seen := old[ref]; !sf.Public && f.Exposed() && (!seen || prev != sum) {
			log.Warn("security: secret file readable by group or others; chmod 600 it",
				"key", sf.Key, "file", sf.Path, "mode", f.Mode.Perm().String())
		}
		sums[ref] = sum
	}
	return sums, nil
}

// rotated are the changes of secret file contents between the running
// sums and next's, for keys whose value (the paths) did not change and so
// are not among changes already: one change per key, its values the
// path(s) and a note, never the content or a hash of it.
func rotated(running, next secretSums, cfg *config.Config, changes []config.Change) []config.Change {
	listed := map[string]bool{}
	for _, ch := range changes {
		listed[ch.Key] = true
	}
	var out []config.Change
	for _, sf := range cfg.SecretFiles() {
		ref := secretRef{sf.Key, sf.Path}
		old, ok := running[ref]
		if listed[sf.Key] || !ok || old == next[ref] {
			continue
		}
		listed[sf.Key] = true
		out = append(out, config.Change{Key: sf.Key, Old: sf.Path, New: sf.Path + " (content changed)"})
	}
	return out
}
