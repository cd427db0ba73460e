package rtsp

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/netip"
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
	if err := s.cfg.Auth.AuthorizePublish(s.life.Context(), req); err != nil {
		return s.refuse(r.log, r.remote, base.StatusForbidden, ingest.ReasonUnauthorized, fmt.Errorf("publish %s: %w", r.name, err))
	}
	r.authReq = &req
	return nil, nil
}

// readTokenParam is the URL query parameter carrying a reader's token.
const readTokenParam = "token"

// readChallenge is a reader without credentials answered 401 with a Basic
// challenge: it is refused (counted, logged) unless it comes back with a
// credential on the same connection.
type readChallenge struct {
	name string
	err  error // the authorizer's refusal
}

// authorizeRead runs Config.ReadAuthorizer for a DESCRIBE or the first
// SETUP of a reader's session. It returns nil when the read may go on, or
// the answer to send (with an error when the connection is to close).
func (s *Server) authorizeRead(c *gortsplib.ServerConn, req *base.Request, name, query string) (*base.Response, error) {
	if s.cfg.ReadAuthorizer == nil {
		return nil, nil
	}
	q, _ := url.ParseQuery(query)
	token := q.Get(readTokenParam)
	password, hasAuth := basicPassword(req)
	if token == "" {
		token = password
	}
	var ip netip.Addr
	if c != nil && c.NetConn() != nil {
		ip = ingest.AddrIP(c.NetConn().RemoteAddr())
	}
	err := s.cfg.ReadAuthorizer(name, token, ip)
	s.mu.Lock()
	_, challenged := s.challenged[c]
	delete(s.challenged, c)
	if err != nil && token == "" && !hasAuth && !challenged {
		// Clients send their credentials only once challenged: not a
		// refusal yet, unless the client does not come back with one.
		s.challenged[c] = readChallenge{name: name, err: err}
		s.mu.Unlock()
		s.log.Debug("rtsp: read without credentials, challenging", "stream", name, "remote", remoteOf(c))
		return readRefusal(base.StatusUnauthorized, err), nil
	}
	s.mu.Unlock()
	if err == nil {
		return nil, nil
	}
	code := base.StatusForbidden
	if token == "" {
		code = base.StatusUnauthorized
	}
	s.readRefused(name, remoteOf(c), code, err)
	return readRefusal(code, err), &refusedError{err: err}
}

// readRefused counts and logs a refused reader.
func (s *Server) readRefused(name, remote string, code base.StatusCode, err error) {
	s.metrics.Error(ingest.ReasonUnauthorized)
	attrs := []any{"stream", name, "remote", remote, "reason", string(ingest.ReasonUnauthorized), "status", int(code)}
	if refusal := ingest.RefusalReason(err); refusal != "" {
		attrs = append(attrs, "refusal", refusal)
	}
	s.log.Warn("rtsp: reader refused", append(attrs, "err", fmt.Errorf("rtsp %s: read %s: %w", remote, name, err))...)
}

// readRefusal is the answer to a refused reader: 401 with a Basic
// challenge, or 403, with the refusal's reason in X-Headwater-Token as the
// HTTP origin does.
func readRefusal(code base.StatusCode, err error) *base.Response {
	h := base.Header{}
	if code == base.StatusUnauthorized {
		h["WWW-Authenticate"] = base.HeaderValue{`Basic realm="headwater"`}
	}
	if why := ingest.RefusalReason(err); why != "" {
		h["X-Headwater-Token"] = base.HeaderValue{why}
	}
	return &base.Response{StatusCode: code, Header: h}
}

// unpublished tells Config.Auth that a publish it allowed has ended.
func (s *Server) unpublished(req *auth.PublishRequest) {
	if req != nil {
		s.cfg.Auth.Unpublished(context.WithoutCancel(s.life.Context()), *req)
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
