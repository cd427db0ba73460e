package origin

import (
	"errors"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/headwater-live/headwater/origin/relay"
	"github.com/headwater-live/headwater/store"
)

// WithRelay makes the origin serve the streams other nodes of a cluster
// own: a request for a stream this node does not serve (not in its store,
// or ended here) that lookup says another node owns is answered by r from
// that node's origin at ownerURL, collapsed and cached (package relay).
// lookup must be cheap (a local cache of the placement) and report remote
// false for streams this node owns. Token scopes and the key-file checks
// run here first, as for local streams; CORS and request ids are this
// node's. Without this option, or with a nil lookup or relay, nothing is
// relayed.
func WithRelay(lookup func(stream string) (ownerURL string, remote bool), r *relay.Relay) Option {
	return func(h *handler) {
		if lookup != nil && r != nil {
			h.lookup, h.relay = lookup, r
		}
	}
}

// owner returns the origin URL of the node owning stream name when this
// node does not serve it: local (ok false: nil) is not live here, and the
// lookup names another node (a publisher that moved takes precedence over
// the ended stream this node still holds). Without a relay it costs one
// comparison.
func (h *handler) owner(name string, local *store.Stream, ok bool) (string, bool) {
	if h.relay == nil || ok && local.Live() {
		return "", false
	}
	return h.lookup(name)
}

// relayed answers a request for an object of stream, owned by the node
// whose origin is at ownerURL, through the relay, once the stream is in
// the scope of the request's playback token.
func (h *handler) relayed(w *respWriter, r *http.Request, ownerURL, stream string, kind relay.Kind, o object) object {
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.SetAttributes(attribute.String("headwater.stream", stream), attribute.Bool("headwater.relayed", true))
	}
	if outOfScope(r, stream) {
		return h.forbidden(w, o)
	}
	gzip := h.cfg.Gzip && acceptsGzip(r)
	var err error
	if kind == relay.KindPlaylist || kind == relay.KindMPD {
		// A playlist or MPD rides out the loss of its owner (relay.ServePlaylist).
		_, err = h.relay.ServePlaylist(w, r, stream, ownerURL, h.lookupOf(stream), h.cfg.BlockTimeout, kind, gzip)
	} else {
		err = h.relay.Serve(w, r, ownerURL, kind, gzip)
	}
	if errors.Is(err, relay.ErrAborted) {
		w.abort = true
	}
	return o
}

// lookupOf is the relay's lookup of stream's owner.
func (h *handler) lookupOf(stream string) relay.Lookup {
	return func() (string, bool) { return h.lookup(stream) }
}

// held holds a playlist (kind KindPlaylist) or MPD (KindMPD) request for
// stream, which no other node owns now, when this node relayed it
// recently: its owner was lost, and the request waits (up to BlockTimeout)
// for the next one (relay.ServePlaylist). It reports false, having written
// nothing, for a stream not relayed recently.
func (h *handler) held(w *respWriter, r *http.Request, stream string, kind relay.Kind, o object) (object, bool) {
	if outOfScope(r, stream) {
		return o, false
	}
	handled, err := h.relay.ServePlaylist(w, r, stream, "", h.lookupOf(stream), h.cfg.BlockTimeout, kind, h.cfg.Gzip && acceptsGzip(r))
	if !handled {
		return o, false
	}
	if span := trace.SpanFromContext(r.Context()); span.IsRecording() {
		span.SetAttributes(attribute.String("headwater.stream", stream), attribute.Bool("headwater.relayed", true))
	}
	if errors.Is(err, relay.ErrAborted) {
		w.abort = true
	}
	return o, true
}

// relayIndex relays <prefix>/index.m3u8 when no local stream answered it:
// a rendition's media playlist of a remote stream, else the multivariant
// playlist of a remote stream named prefix. parent is the local stream
// named like the rendition's stream, if any.
func (h *handler) relayIndex(w *respWriter, r *http.Request, t *target, parent *store.Stream) (object, bool) {
	if t.renditionOK() {
		if u, remote := h.owner(t.stream(), parent, parent != nil); remote {
			return h.relayed(w, r, u, t.stream(), relay.KindPlaylist, objectMediaPlaylist), true
		}
	}
	if t.multivariantOK() {
		st, ok := h.st.Stream(t.prefix)
		if u, remote := h.owner(t.prefix, st, ok); remote {
			return h.relayed(w, r, u, t.prefix, relay.KindPlaylist, objectMultivariant), true
		}
	}
	// No owner now: a stream relayed recently has just lost its own.
	if t.renditionOK() && parent == nil {
		if o, ok := h.held(w, r, t.stream(), relay.KindPlaylist, objectMediaPlaylist); ok {
			return o, true
		}
	}
	if t.multivariantOK() {
		if _, ok := h.st.Stream(t.prefix); !ok {
			if o, ok := h.held(w, r, t.prefix, relay.KindPlaylist, objectMultivariant); ok {
				return o, true
			}
		}
	}
	return objectOther, false
}

// relayKind is the relay's kind of a media object.
func relayKind(k objectKind) relay.Kind {
	switch k {
	case objInit:
		return relay.KindInit
	case objSegment:
		return relay.KindSegment
	case objPart:
		return relay.KindPart
	}
	return relay.KindOther
}
