package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestHashKey(t *testing.T) {
	// sha256("abc"), a published test vector.
	const want = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	if got := HashKey("abc"); got != want {
		t.Fatalf("HashKey = %s", got)
	}
	if _, err := ParseKeyHash(want); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "abc", "sha256:", "sha256:zz", "md5:" + want[7:], want + "00", strings.ToUpper(want)} {
		if _, err := ParseKeyHash(bad); err == nil {
			t.Errorf("ParseKeyHash(%q) accepted", bad)
		}
	}
	k1, k2 := GenerateKey(), GenerateKey()
	if len(k1) != 43 || k1 == k2 || strings.ContainsAny(k1, "+/=?&") {
		t.Fatalf("GenerateKey: %q %q", k1, k2)
	}
}

func TestStaticKeys(t *testing.T) {
	studio, team, admin, old := GenerateKey(), GenerateKey(), GenerateKey(), GenerateKey()
	sk, err := NewStaticKeys([]KeyRule{
		{Stream: "live/studio1", Hashes: []string{HashKey(studio), HashKey(old)}},
		{Prefix: "live/team-", Hashes: []string{HashKey(team)}},
		{Prefix: "live/", Hashes: []string{HashKey(admin)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, stream, key string
		want              error
	}{
		{"right key", "live/studio1", studio, nil},
		{"second hash (rotation)", "live/studio1", old, nil},
		{"wrong key", "live/studio1", team, ErrBadKey},
		{"key of another stream", "live/studio2", studio, ErrBadKey},
		{"exact name only", "live/studio10", studio, ErrBadKey},
		{"prefix key", "live/team-a", team, nil},
		{"prefix key, other prefix", "live/teamb", team, ErrBadKey},
		{"broad prefix key", "live/team-a", admin, nil},
		{"broad prefix key, exact stream", "live/studio1", admin, nil},
		{"not covered", "other/x", admin, ErrBadKey},
		{"hash itself is not the key", "live/studio1", HashKey(studio), ErrBadKey},
		{"empty key", "live/studio1", "", ErrMissingCredentials},
		{"key plus a byte", "live/studio1", studio + "x", ErrBadKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := sk.Check(tc.stream, tc.key)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Check = %v, want %v", err, tc.want)
			}
			if err != nil && tc.key != "" && strings.Contains(err.Error(), tc.key) {
				t.Fatalf("error %q contains the key", err)
			}
		})
	}
}

func TestNewStaticKeysInvalid(t *testing.T) {
	h := HashKey("k")
	for _, rules := range [][]KeyRule{
		nil,
		{{Hashes: []string{h}}},
		{{Stream: "a", Prefix: "b", Hashes: []string{h}}},
		{{Stream: "a"}},
		{{Stream: "a", Hashes: []string{"plaintext-key"}}},
	} {
		if _, err := NewStaticKeys(rules); err == nil {
			t.Errorf("NewStaticKeys(%+v) accepted", rules)
		} else if strings.Contains(err.Error(), "plaintext-key") {
			t.Errorf("error echoes the configured value: %v", err)
		}
	}
}
