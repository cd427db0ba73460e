package rtsp

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/base"

	"github.com/headwater-live/headwater/auth"
	"github.com/headwater-live/headwater/ingest"
)

// authorize runs Config.Auth for an ANNOUNCE. It returns nil when the
// publish may go on (r.authReq is then set), or the answer to send.
func (s *Server) authorize(r *recordSession, ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	if s.cfg.Auth == nil {
		return nil, nil
	}
	q, _ := url.ParseQuery(ctx.Query)
	params := auth.ParamsFromQuery(q)
	password, hasAuth := basicPassword(ctx.Request)
	if s.cfg.AuthChallenge && !hasAuth && params["key"] == "" && params["token"] == "" && params["jwt"] == "" {
		// The first leg of an authenticated ANNOUNCE: clients send their
		// credentials only once challenged. Not a refusal yet.
		r.log.Debug("rtsp: announce without credentials, challenging")
		return &base.Response{StatusCode: base.StatusUnauthorized, Header: base.Header{
			"WWW-Authenticate": base.HeaderValue{`Basic realm="headwater"`},
		}}, nil
	}
	req := auth.PublishRequest{
		Protocol:   Protocol,
		Stream:     r.name,
		RemoteAddr: r.remote,
		RequestID:  r.id,
		Params:     params,
		Key:        password,
	}
	if err := s.cfg.Auth.AuthorizePublish(s.ctx, req); err != nil {
		return s.refuse(r.log, r.remote, base.StatusForbidden, ingest.ReasonUnauthorized, fmt.Errorf("publish %s: %w", r.name, err))
	}
	r.authReq = &req
	return nil, nil
}

// unpublished tells Config.Auth that a publish it allowed has ended.
func (s *Server) unpublished(req *auth.PublishRequest) {
	if req != nil {
		s.cfg.Auth.Unpublished(context.WithoutCancel(s.ctx), *req)
	}
}

// basicPassword returns the password of an "Authorization: Basic" header;
// ok reports whether the request carried an Authorization header at all.
func basicPassword(req *base.Request) (password string, ok bool) {
	if req == nil {
		return "", false
	}
	v := req.Header["Authorization"]
	if len(v) == 0 {
		return "", false
	}
	scheme, cred, found := strings.Cut(v[0], " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", true
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", true
	}
	_, pass, _ := strings.Cut(string(raw), ":")
	return pass, true
}
