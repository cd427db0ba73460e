package srt

import (
	"context"
	"fmt"
	"strings"

	gosrt "github.com/datarhei/gosrt"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/ingest"
)

// authorize runs Config.Auth for a publish request accepted by decide. It
// returns the allowed request (nil when there is no Auth or the connection
// reads), or the rejection.
func (s *Server) authorize(id, remote string, sid StreamID) (*auth.PublishRequest, *rejection) {
	if s.cfg.Auth == nil || sid.Mode != ModePublish {
		return nil, nil
	}
	req := auth.PublishRequest{
		Protocol:   Protocol,
		Stream:     sid.Name,
		RemoteAddr: remote,
		RequestID:  id,
		Params:     authParams(sid.Extra),
	}
	if err := s.cfg.Auth.AuthorizePublish(s.life.Context(), req); err != nil {
		return nil, &rejection{code: gosrt.REJX_UNAUTHORIZED, reason: ingest.ReasonUnauthorized, metric: rejectAuth,
			err: fmt.Errorf("publish %s: %w", sid.Name, err)}
	}
	return &req, nil
}

// readTokenKey is the streamid key carrying a reader's playback token
// (t= is the access control syntax's type).
const readTokenKey = "token"

// authorizeRead runs Config.ReadAuthorizer for a read-out request.
func (s *Server) authorizeRead(req gosrt.ConnRequest, sid StreamID) *rejection {
	if s.cfg.ReadAuthorizer == nil {
		return nil
	}
	if err := s.cfg.ReadAuthorizer(sid.Name, sid.Extra[readTokenKey], ingest.AddrIP(req.RemoteAddr())); err != nil {
		return &rejection{code: gosrt.REJX_UNAUTHORIZED, reason: ingest.ReasonUnauthorized, metric: rejectAuth,
			err: fmt.Errorf("read %s: %w", sid.Name, err)}
	}
	return nil
}

// unpublished tells Config.Auth that a publish it allowed has ended.
func (s *Server) unpublished(req *auth.PublishRequest) {
	if req != nil {
		s.cfg.Auth.Unpublished(context.WithoutCancel(s.life.Context()), *req)
	}
}

// authParams bounds the streamid's extra keys as auth.ParamsFromQuery does.
func authParams(extra map[string]string) map[string]string {
	if len(extra) == 0 {
		return nil
	}
	q := make(map[string][]string, len(extra))
	for k, v := range extra {
		q[k] = []string{v}
	}
	return auth.ParamsFromQuery(q)
}

// redactStreamID hides the values of a streamid's keys other than the
// resource and the mode (they may be credentials: key=, token=) so that it
// can be quoted in logs.
func redactStreamID(raw string) string {
	body, ok := strings.CutPrefix(raw, accessControlPrefix)
	if !ok {
		return raw
	}
	items := strings.Split(body, ",")
	for i, item := range items {
		k, _, found := strings.Cut(item, "=")
		if found && k != "r" && k != "m" {
			items[i] = k + "=…"
		}
	}
	return accessControlPrefix + strings.Join(items, ",")
}
