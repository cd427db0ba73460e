package api

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/headwater-live/headwater/media"
	"github.com/headwater-live/headwater/recording"
)

// Recordings is the recorded sessions as the API reads them (a
// *recording.Recorder).
type Recordings interface {
	Sessions(ctx context.Context, stream string) ([]recording.Summary, error)
	Delete(ctx context.Context, stream, id, reason string) (int64, error)
}

// WithRecordings serves the recordings endpoints:
//
//	GET    /api/v1/recordings[?stream=<name>]       the recorded sessions
//	GET    /api/v1/recordings/{stream}/{session}    one session
//	DELETE /api/v1/recordings/{stream}/{session}    delete it (media, index)
func WithRecordings(r Recordings) Option {
	return func(h *Handler) { h.recordings = r }
}

// RecordingList is the body of GET /api/v1/recordings.
type RecordingList struct {
	Recordings []recording.Payload `json:"recordings"`
}

func (h *Handler) routeRecordings() {
	if h.recordings == nil {
		off := func(w http.ResponseWriter, _ *http.Request) {
			writeError(w, http.StatusNotFound, "recording_off", "recording is off on this node (record.enabled)")
		}
		h.mux.HandleFunc("/api/v1/recordings", off)
		h.mux.HandleFunc("/api/v1/recordings/", off)
		return
	}
	h.mux.HandleFunc("GET /api/v1/recordings", h.listRecordings)
	h.mux.HandleFunc("GET /api/v1/recordings/{path...}", h.getRecording)
	h.mux.HandleFunc("DELETE /api/v1/recordings/{path...}", h.deleteRecording)
}

// payload is a session as the API lists it: with its VOD paths once it
// no longer records.
func payload(s recording.Summary) recording.Payload {
	kind := recording.EventStarted
	if s.State != recording.StateRecording {
		kind = recording.EventReady
	}
	return recording.Event{Kind: kind, Summary: s}.Payload()
}

func (h *Handler) listRecordings(w http.ResponseWriter, r *http.Request) {
	stream := r.URL.Query().Get("stream")
	if stream != "" && media.ValidateName(stream) != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "stream "+quote(stream)+" is not a stream name")
		return
	}
	sums, err := h.recordings.Sessions(r.Context(), stream)
	if err != nil {
		h.log.Error("api: cannot list recordings", "error", err)
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "recordings cannot be listed now: "+err.Error())
		return
	}
	out := RecordingList{Recordings: make([]recording.Payload, 0, len(sums))}
	for _, s := range sums {
		out.Recordings = append(out.Recordings, payload(s))
	}
	writeJSON(w, http.StatusOK, out)
}

// splitRecording splits "<stream>/<session>".
func splitRecording(path string) (stream, session string, ok bool) {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 || !recording.IsSessionID(path[i+1:]) || media.ValidateName(path[:i]) != nil {
		return "", "", false
	}
	return path[:i], path[i+1:], true
}

func (h *Handler) getRecording(w http.ResponseWriter, r *http.Request) {
	stream, id, ok := splitRecording(r.PathValue("path"))
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no recording "+quote(r.PathValue("path"))+": want <stream>/<session>")
		return
	}
	sums, err := h.recordings.Sessions(r.Context(), stream)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "recordings cannot be read now: "+err.Error())
		return
	}
	for _, s := range sums {
		if s.Session == id {
			writeJSON(w, http.StatusOK, payload(s))
			return
		}
	}
	writeError(w, http.StatusNotFound, "not_found", "no recording "+quote(stream+"/"+id))
}

func (h *Handler) deleteRecording(w http.ResponseWriter, r *http.Request) {
	stream, id, ok := splitRecording(r.PathValue("path"))
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no recording "+quote(r.PathValue("path"))+": want <stream>/<session>")
		return
	}
	n, err := h.recordings.Delete(r.Context(), stream, id, "api")
	switch {
	case errors.Is(err, recording.ErrNoSession):
		writeError(w, http.StatusNotFound, "not_found", "no recording "+quote(stream+"/"+id))
		return
	case errors.Is(err, recording.ErrRecordingNow):
		writeError(w, http.StatusConflict, "recording", quote(stream+"/"+id)+" is being recorded; it can be deleted once its publish ends")
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "storage_unavailable", "recording not deleted: "+err.Error())
		return
	}
	h.log.Info("api: recording deleted", "stream", stream, "recording", id, "bytes", n)
	writeJSON(w, http.StatusOK, map[string]any{"deleted": stream + "/" + id, "bytes": n})
}
