package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/headwater-live/headwater/internal/testpeer"
	"github.com/headwater-live/headwater/server"
)

// TestTracing records the spans of one publish: the publish session, its
// segments as children, and origin requests tagged with the stream; the
// pipeline's log lines carry the trace id.
func TestTracing(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(t.Context()) }()
	s := startServer(t, nil, server.WithTracerProvider(tp))

	pub := testpeer.PublishRTMP(t, s.rtmpURL("traced"), 5*time.Second, 30)
	url := s.originURL("/live/traced/video/index.m3u8")
	testpeer.WaitFor(t, 10*time.Second, "the playlist", func() bool { return get(t, url).status == http.StatusOK })
	if err := pub.Wait(t, 20*time.Second); err != nil {
		t.Fatalf("publisher: %v", err)
	}
	testpeer.WaitFor(t, 5*time.Second, "the publish span", func() bool {
		for _, sp := range exp.GetSpans() {
			if sp.Name == "publish live/traced" {
				return true
			}
		}
		return false
	})

	var publishSpan tracetest.SpanStub
	segments, origins := 0, 0
	spans := exp.GetSpans()
	for _, sp := range spans {
		if sp.Name == "publish live/traced" {
			publishSpan = sp
		}
	}
	for _, sp := range spans {
		switch {
		case sp.Name == "segment":
			if sp.Parent.SpanID() != publishSpan.SpanContext.SpanID() || sp.SpanContext.TraceID() != publishSpan.SpanContext.TraceID() {
				t.Errorf("segment span is not a child of the publish span")
			}
			segments++
		case strings.HasPrefix(sp.Name, "origin "):
			for _, a := range sp.Attributes {
				if string(a.Key) == "headwater.stream" && a.Value.AsString() == "live/traced" {
					origins++
				}
			}
		}
	}
	if segments < 2 || origins == 0 {
		t.Fatalf("spans: %d segments, %d origin requests tagged with the stream (of %d spans)", segments, origins, len(spans))
	}
	traceID := publishSpan.SpanContext.TraceID().String()
	if !strings.Contains(s.logs.String(), `"trace_id":"`+traceID+`"`) {
		t.Errorf("no log line carries trace id %s", traceID)
	}
}
