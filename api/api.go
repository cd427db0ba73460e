// Package api is Headwater's status API on the admin listener:
//
//	GET    /api/v1/streams         every stream live or within its ended grace time
//	GET    /api/v1/streams/{name}  one stream ("live/key")
//	DELETE /api/v1/streams/{name}  kick the publisher
//
// and, with recording on (WithRecordings), the recorded sessions under
// /api/v1/recordings.
//
// Errors are JSON: {"error": {"code": "not_found", "message": "..."}}. The
// schema is documented in docs/openapi.yaml.
package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/playlist"
	"github.com/headwater-live/headwater/store"
)

// ViewerCounter estimates a stream's current viewers.
type ViewerCounter interface {
	Count(stream string, now time.Time) int
}

// Owner is where a live stream of a cluster is published (its placement).
type Owner struct {
	// Stream is the stream name.
	Stream string `json:"-"`
	// Node is the owning node's id.
	Node string `json:"node"`
	// OriginURL is the owning node's origin base URL.
	OriginURL string `json:"origin_url,omitempty"`
	// Started is when the publish was accepted.
	Started time.Time `json:"-"`
	// Protocol is the ingest protocol.
	Protocol string `json:"-"`
}

// ClusterStreams returns this node's id and the live streams of the
// cluster with their owners.
type ClusterStreams func() (self string, owners []Owner)

// Option configures a Handler.
type Option func(*Handler)

// WithCluster makes the stream list cover every live stream of the
// cluster: streams of other nodes are listed with their owner (no detail:
// it is on the owner's API), this node's with their full detail and
// themselves as owner.
func WithCluster(list ClusterStreams) Option {
	return func(h *Handler) { h.cluster = list }
}

// Handler serves the status API.
type Handler struct {
	registry *media.Registry
	store    *store.Store
	viewers  ViewerCounter
	window   int
	log      *slog.Logger
	mux      *http.ServeMux
	cluster  ClusterStreams // nil on one node

	recordings Recordings     // nil: recording is off
	alwaysOn   AlwaysOnStatus // nil: no switcher
}

// New returns the API handler. viewers may be nil; window is the number of
// segments bandwidth is measured over (the playlist window).
func New(registry *media.Registry, st *store.Store, viewers ViewerCounter, window int, log *slog.Logger, opts ...Option) *Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{registry: registry, store: st, viewers: viewers, window: window, log: log, mux: http.NewServeMux()}
	for _, o := range opts {
		o(h)
	}
	h.mux.HandleFunc("GET /api/v1/streams", h.list)
	h.mux.HandleFunc("GET /api/v1/streams/{name...}", h.get)
	h.mux.HandleFunc("DELETE /api/v1/streams/{name...}", h.kick)
	h.routeRecordings()
	h.mux.HandleFunc("/api/", notFoundOrMethod)
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// notFoundOrMethod answers what no route took: 405 with Allow for a known
// path asked with another method, JSON 404 otherwise.
func notFoundOrMethod(w http.ResponseWriter, r *http.Request) {
	allow := ""
	switch {
	case r.URL.Path == "/api/v1/streams":
		allow = "GET"
	case strings.HasPrefix(r.URL.Path, "/api/v1/streams/"), strings.HasPrefix(r.URL.Path, "/api/v1/recordings/"):
		allow = "GET, DELETE"
	case r.URL.Path == "/api/v1/recordings":
		allow = "GET"
	}
	if allow != "" {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here; allowed: "+allow)
		return
	}
	writeError(w, http.StatusNotFound, "not_found", "no such API endpoint: "+r.Method+" "+r.URL.Path)
}

// Stream is one stream in the API.
type Stream struct {
	Name          string      `json:"name"`
	Live          bool        `json:"live"`
	Protocol      string      `json:"protocol,omitempty"`
	RemoteAddress string      `json:"remote_address,omitempty"`
	SessionID     string      `json:"session_id,omitempty"`
	StartedAt     *time.Time  `json:"started_at,omitempty"`
	UptimeSeconds float64     `json:"uptime_seconds,omitempty"`
	IngestBytes   uint64      `json:"ingest_bytes"`
	IngestFrames  uint64      `json:"ingest_frames"`
	IngestBitrate int64       `json:"ingest_bitrate"`
	Tracks        []Track     `json:"tracks"`
	Renditions    []Rendition `json:"renditions"`
	Viewers       int         `json:"viewers"`
	// Owner is the node publishing the stream, in a cluster only.
	Owner *Owner `json:"owner,omitempty"`
	// AlwaysOn is the state of an always-on stream (a reconnect window or
	// backup publishers, docs/always-on.md).
	AlwaysOn *AlwaysOn `json:"always_on,omitempty"`
}

// AlwaysOn is what is on the air of an always-on stream and who could be.
type AlwaysOn struct {
	// OnAir is "primary", "backup", "slate" or "none".
	OnAir string `json:"on_air"`
	// Primary and Backup tell which publishers are connected.
	Primary bool `json:"primary"`
	Backup  bool `json:"backup"`
	// AwaitingUntil is when the reconnect window ends, while no publisher
	// is connected.
	AwaitingUntil *time.Time `json:"awaiting_until,omitempty"`
	// Switches counts the changes of source; the latest is described.
	Switches         int        `json:"switches"`
	LastSwitchAt     *time.Time `json:"last_switch_at,omitempty"`
	LastSwitchReason string     `json:"last_switch_reason,omitempty"`
}

// AlwaysOnStatus returns the always-on state of a stream, false for a
// stream that is not always-on or not kept now.
type AlwaysOnStatus func(name string) (AlwaysOn, bool)

// WithAlwaysOn adds the always-on state to the streams described.
func WithAlwaysOn(status AlwaysOnStatus) Option {
	return func(h *Handler) { h.alwaysOn = status }
}

// Track is one ingested elementary stream.
type Track struct {
	ID         int     `json:"id"`
	Kind       string  `json:"kind"`
	Codec      string  `json:"codec"`
	Codecs     string  `json:"codecs"`
	Width      int     `json:"width,omitempty"`
	Height     int     `json:"height,omitempty"`
	FrameRate  float64 `json:"frame_rate,omitempty"`
	SampleRate int     `json:"sample_rate,omitempty"`
	Channels   int     `json:"channels,omitempty"`
	Bitrate    int     `json:"bitrate"`
}

// Rendition is one packaged rendition (one media playlist).
type Rendition struct {
	Name             string `json:"name"`
	Kind             string `json:"kind"`
	Codecs           string `json:"codecs"`
	Width            int    `json:"width,omitempty"`
	Height           int    `json:"height,omitempty"`
	Bandwidth        int    `json:"bandwidth"`
	AverageBandwidth int    `json:"average_bandwidth"`
	LastMSN          uint64 `json:"last_msn"`
	LastPart         int    `json:"last_part"`
	Segments         int    `json:"segments"`
	Ended            bool   `json:"ended"`
}

type streamList struct {
	Streams []Stream `json:"streams"`
}

func (h *Handler) list(w http.ResponseWriter, _ *http.Request) {
	now := time.Now()
	names := map[string]bool{}
	for _, n := range h.store.Names() {
		names[n] = true
	}
	for _, s := range h.registry.List() {
		names[s.Name()] = true
	}
	out := streamList{Streams: []Stream{}}
	var self string
	owners := map[string]Owner{}
	if h.cluster != nil {
		var list []Owner
		self, list = h.cluster()
		for _, o := range list {
			owners[o.Stream] = o
		}
	}
	for n := range names {
		if s, ok := h.describe(n, now); ok {
			if self != "" && s.Live {
				s.Owner = &Owner{Node: self}
				if o, ok := owners[n]; ok && o.Node == self {
					s.Owner.OriginURL = o.OriginURL
				}
			}
			out.Streams = append(out.Streams, s)
		}
	}
	for n, o := range owners {
		if o.Node == self {
			continue
		}
		if _, local := h.registry.Get(n); local {
			continue
		}
		// Replace what this node keeps of an ended publish of the name.
		out.Streams = slices.DeleteFunc(out.Streams, func(s Stream) bool { return s.Name == n })
		started := o.Started
		out.Streams = append(out.Streams, Stream{Name: n, Live: true, Protocol: o.Protocol, StartedAt: &started,
			UptimeSeconds: now.Sub(started).Seconds(), Tracks: []Track{}, Renditions: []Rendition{}, Owner: &o})
	}
	sort.Slice(out.Streams, func(i, j int) bool { return out.Streams[i].Name < out.Streams[j].Name })
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s, ok := h.describe(name, time.Now())
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no stream named "+quote(name))
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (h *Handler) kick(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	ms, ok := h.registry.Get(name)
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no live stream named "+quote(name))
		return
	}
	info := ms.Info()
	h.log.Info("api: kicking publisher", "stream", name, "session", info.SessionID, "protocol", info.Protocol, "remote", info.RemoteAddr)
	ms.Kick()
	writeJSON(w, http.StatusAccepted, map[string]string{"kicked": name, "session_id": info.SessionID})
}

// describe assembles what the registry (live publish) and the store
// (packaged renditions) know of a stream.
func (h *Handler) describe(name string, now time.Time) (Stream, bool) {
	out := Stream{Name: name, Tracks: []Track{}, Renditions: []Rendition{}}
	ms, live := h.registry.Get(name)
	st, stored := h.store.Stream(name)
	if !live && !stored {
		return out, false
	}
	renditions := map[string]Rendition{}
	if stored {
		for _, r := range st.Renditions() {
			snap := r.Snapshot()
			peak, avg := playlist.Bandwidth(snap, h.window)
			rd := Rendition{
				Name: r.Name(), Kind: snap.Info.Kind.String(),
				Width: snap.Info.Width, Height: snap.Info.Height,
				Bandwidth: peak, AverageBandwidth: avg,
				Segments: len(snap.Segments), Ended: snap.Ended, LastPart: -1,
			}
			if snap.Info.Codec != nil {
				rd.Codecs = snap.Info.Codec.RFC6381()
			}
			if msn, part, ok := snap.LastMSN(); ok {
				rd.LastMSN, rd.LastPart = msn, part
			}
			out.Renditions = append(out.Renditions, rd)
			renditions[snap.Info.Kind.String()] = rd
		}
	}
	if live {
		info := ms.Info()
		started := ms.Started()
		out.Live = true
		out.Protocol, out.RemoteAddress, out.SessionID = info.Protocol, info.RemoteAddr, info.SessionID
		out.StartedAt = &started
		uptime := now.Sub(started)
		out.UptimeSeconds = uptime.Seconds()
		out.IngestBytes, out.IngestFrames = ms.Bytes(), ms.Frames()
		if uptime > 0 {
			out.IngestBitrate = int64(float64(out.IngestBytes*8) / uptime.Seconds())
		}
		for _, t := range ms.Tracks() {
			tr := Track{ID: t.ID, Kind: t.Kind().String(), Codec: t.Codec.Name(), Codecs: t.Codec.RFC6381()}
			switch c := t.Codec.(type) {
			case *media.AAC:
				tr.SampleRate, tr.Channels = c.Config.SampleRate, c.Channels()
			case *media.Opus:
				tr.SampleRate, tr.Channels = 48000, c.ChannelCount
			default:
				if vi, err := media.ParseVideoInfo(t.Codec); err == nil {
					tr.Width, tr.Height, tr.FrameRate = vi.Width, vi.Height, vi.FrameRate
				}
			}
			// The packaged rendition of the same kind measures the bitrate.
			if rd, ok := renditions[tr.Kind]; ok {
				tr.Bitrate = rd.AverageBandwidth
			}
			out.Tracks = append(out.Tracks, tr)
		}
	}
	if h.viewers != nil {
		out.Viewers = h.viewers.Count(name, now)
	}
	if h.alwaysOn != nil {
		if a, ok := h.alwaysOn(name); ok {
			out.AlwaysOn = &a
		}
	}
	return out, true
}

type apiError struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: errorBody{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
