// Package telemetry sets up OpenTelemetry tracing for Headwater. Tracing is
// off unless enabled in the configuration; the OTLP/HTTP exporter then reads
// the standard OTEL_* environment variables (OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, ...).
package telemetry

import (
	"context"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracerName is the instrumentation scope of Headwater's spans.
const TracerName = "github.com/headwater-live/headwater"

// Propagator is the W3C trace-context propagator used for outgoing calls
// (webhooks): it writes and reads the traceparent header.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// Setup returns a tracer provider and a function that flushes and stops it.
// With enabled false it returns a no-op provider that records nothing.
func Setup(ctx context.Context, enabled bool, version string) (trace.TracerProvider, func(context.Context) error, error) {
	if !enabled {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: otlp exporter: %w", err)
	}
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (WithFromEnv) override
	// the built-in service name.
	res, err := resource.New(ctx,
		resource.WithAttributes(semconv.ServiceName("headwater"), semconv.ServiceVersion(version)),
		resource.WithTelemetrySDK(), resource.WithHost(), resource.WithFromEnv())
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return tp, tp.Shutdown, nil
}

// LogAttrs returns the trace_id and span_id of the span in ctx as log
// attributes, or nothing when ctx carries no recording span.
func LogAttrs(ctx context.Context) []any {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	return []any{slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String())}
}
