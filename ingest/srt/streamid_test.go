package srt

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/headwater-live/headwater/media"
)

func TestParseStreamID(t *testing.T) {
	t.Parallel()
	pub := func(name string) StreamID { return StreamID{Name: name, Mode: ModePublish, Type: "stream"} }
	req := func(name string) StreamID { return StreamID{Name: name, Mode: ModeRequest, Type: "stream"} }
	ok := []struct {
		in   string
		want StreamID
	}{
		{"#!::r=live/key,m=publish", pub("live/key")},
		{"#!::m=publish,r=live/key", pub("live/key")},
		{"#!::r=live/key,m=request", req("live/key")},
		{"#!::r=live/key", req("live/key")}, // m defaults to request
		{"#!::r=live/key,m=publish,u=alice,s=1234,t=stream,h=example.com",
			StreamID{Name: "live/key", Mode: ModePublish, User: "alice", Session: "1234", Type: "stream", Host: "example.com"}},
		{"#!::r=live/key,m=publish,token=abc=def,x=",
			StreamID{Name: "live/key", Mode: ModePublish, Type: "stream", Extra: map[string]string{"token": "abc=def", "x": ""}}},
		{"#!::u=,r=a", req("a")},
		{"publish:live/key", pub("live/key")},
		{"read:live/key", req("live/key")},
		{"request:live/key", req("live/key")},
		{"live/key", pub("live/key")},
		{"key", pub("key")},
		{"live/a.b_c-d/e", pub("live/a.b_c-d/e")},
		{"#!::r=" + strings.Repeat("a", media.MaxNameLength), req(strings.Repeat("a", media.MaxNameLength))},
	}
	for _, tc := range ok {
		got, err := ParseStreamID(tc.in)
		if err != nil {
			t.Errorf("ParseStreamID(%q): %v", tc.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseStreamID(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}

	bad := []struct {
		in   string
		want error
	}{
		{"", ErrStreamID},
		{strings.Repeat("a", MaxStreamIDLength+1), ErrStreamID},
		{"#!::", ErrStreamID},
		{"#!::m=publish", ErrStreamID},
		{"#!::r=live/key,m=publish,", ErrStreamID},
		{"#!::r=live/key,,m=publish", ErrStreamID},
		{"#!::r=live/key,publish", ErrStreamID},
		{"#!::=x,r=live/key", ErrStreamID},
		{"#!::r=live/key,r=live/other", ErrStreamID},
		{"#!::r=live/key,m=push", ErrStreamID},
		{"#!::r=live/key,m=bidirectional", ErrUnsupportedMode},
		{"#!::r=live/key,t=file", ErrUnsupportedType},
		{"#!::r=live/key,t=auth", ErrUnsupportedType},
		{"#!::r=,m=publish", media.ErrInvalidName},
		{"#!::r=live/../key,m=publish", media.ErrInvalidName},
		{"#!::r=live/key?token=1,m=publish", media.ErrInvalidName},
		{"#!:r=live/key", ErrStreamID},
		{"publish:", media.ErrInvalidName},
		{"publish:live//key", media.ErrInvalidName},
		{"publish:live/key:user:pass", media.ErrInvalidName},
		{"play:live/key", ErrStreamID},
		{":live/key", ErrStreamID},
		{"live/key ", media.ErrInvalidName},
		{"/live/key", media.ErrInvalidName},
		{"live/" + strings.Repeat("a", media.MaxNameLength), media.ErrInvalidName},
	}
	for _, tc := range bad {
		got, err := ParseStreamID(tc.in)
		if !errors.Is(err, tc.want) {
			t.Errorf("ParseStreamID(%q) = %+v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestStreamIDString(t *testing.T) {
	t.Parallel()
	id := StreamID{Name: "live/key", Mode: ModePublish, User: "u1", Type: "stream", Extra: map[string]string{"b": "2", "a": "1"}}
	if got, want := id.String(), "#!::r=live/key,m=publish,u=u1,a=1,b=2"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestStreamIDBackup: role=backup in the access control syntax asks for
// the backup publisher's place; anything else is a primary.
func TestStreamIDBackup(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{
		"#!::r=live/key,m=publish,role=backup":  true,
		"#!::role=backup,r=live/key,m=publish":  true,
		"#!::r=live/key,m=publish,role=primary": false,
		"#!::r=live/key,m=publish,role=Backup":  false,
		"#!::r=live/key,m=publish":              false,
		"publish:live/key":                      false,
	} {
		id, err := ParseStreamID(in)
		if err != nil {
			t.Fatalf("ParseStreamID(%q): %v", in, err)
		}
		if id.Backup() != want {
			t.Errorf("ParseStreamID(%q).Backup() = %v, want %v", in, id.Backup(), want)
		}
	}
}

func FuzzParseStreamID(f *testing.F) {
	for _, s := range []string{
		"#!::r=live/key,m=publish", "#!::r=live/key", "#!::m=request,r=a/b,u=x,s=y,h=z,k=v",
		"publish:live/key", "read:live/key", "request:x", "live/key", "", "#!::", "#!::r=a,r=b",
		"#!::r=a,m=bidirectional", "#!::r=a,t=file", "a:b:c", "#!::r=a,x==,y=z=", "#!::r=a,m=publish,role=backup",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseStreamID(s)
		if err != nil {
			if id.Name != "" || id.Mode != 0 {
				t.Fatalf("error %v with a non-zero StreamID %+v", err, id)
			}
			return
		}
		if verr := media.ValidateName(id.Name); verr != nil {
			t.Fatalf("accepted name %q: %v", id.Name, verr)
		}
		if id.Mode != ModePublish && id.Mode != ModeRequest {
			t.Fatalf("mode %d", id.Mode)
		}
		if id.Type != "stream" {
			t.Fatalf("type %q", id.Type)
		}
		// The canonical form parses back to the same StreamID.
		again, err := ParseStreamID(id.String())
		if err != nil {
			if len(id.String()) > MaxStreamIDLength {
				return
			}
			t.Fatalf("String() %q of %q does not parse: %v", id.String(), s, err)
		}
		if !reflect.DeepEqual(again, id) {
			t.Fatalf("%q: %+v, round trip %q gives %+v", s, id, id.String(), again)
		}
	})
}
