package rtmp

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/ingest"
)

// nameChecker is implemented by registries that refuse more names than
// media.ValidateName does (reserved names): the publish command is then
// refused at once, before authentication. Publish remains the authority.
type nameChecker interface {
	CheckName(name string) error
}

// authorize runs Config.Auth for the publish command being handled. A
// refusal answers NetStream.Publish.Rejected with the refusal's reason (its
// message never holds a credential) and ends the session.
func (s *session) authorize() error {
	a := s.cfg.Auth
	if a == nil {
		return nil
	}
	req := auth.PublishRequest{
		Protocol:   Protocol,
		Stream:     s.name,
		RemoteAddr: s.remote,
		RequestID:  s.id,
		Params:     s.authParams(),
	}
	if err := a.AuthorizePublish(s.srv.life.Context(), req); err != nil {
		reason := auth.ReasonOf(err)
		_ = s.sendStatus("error", "NetStream.Publish.Rejected", "publish refused: "+string(reason))
		return &ingest.SessionError{Reason: ingest.ReasonUnauthorized, Err: fmt.Errorf("publish %s: %w", s.name, err)}
	}
	s.authReq = &req
	return nil
}

// unpublished tells Config.Auth that the publish it allowed has ended.
func (s *session) unpublished() {
	if s.authReq == nil {
		return
	}
	s.cfg.Auth.Unpublished(context.WithoutCancel(s.srv.life.Context()), *s.authReq)
	s.authReq = nil
}

// authParams collects the publisher's parameters: the query of the publish
// name ("key?key=…") first, then those of the connect command's app
// ("live?key=…") and tcUrl ("rtmp://host/live?key=…"), where OBS and other
// encoders put a query written in the server URL.
func (s *session) authParams() map[string]string {
	queries := []url.Values{s.query}
	if s.appQuery != "" {
		if q, err := url.ParseQuery(s.appQuery); err == nil {
			queries = append(queries, q)
		}
	}
	if _, raw, ok := strings.Cut(s.tcURL, "?"); ok {
		if q, err := url.ParseQuery(raw); err == nil {
			queries = append(queries, q)
		}
	}
	return auth.ParamsFromQuery(queries...)
}

// withoutQuery strips the query of a URL for logging.
func withoutQuery(u string) string {
	u, _, _ = strings.Cut(u, "?")
	return u
}
