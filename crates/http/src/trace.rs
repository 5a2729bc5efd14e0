//! The request's trace span, when traces are on (`[telemetry] otlp_endpoint`; off, this layer
//! is not in the router at all and a request does no tracing work).
//!
//! One `request` span per HTTP request, named `METHOD /route/{template}` for OpenTelemetry, with
//! only these attributes: the method (bounded, as for metrics), the route template (never the
//! path: ids and query strings stay out), the response status, and the trace id, recorded as a
//! field so that the JSON log lines written during the request carry it. Never a header (the
//! bearer token is one), never a body (parameters may hold secrets). The gateway's
//! `policy.evaluate`, `store.commit` and `long_poll.wait` spans are its children. A caller's W3C
//! `traceparent` (and `tracestate`) makes the span a child of the caller's span.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::trace::TraceContextExt;
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Runs the request inside its `request` span.
pub(crate) async fn traced(req: Request, next: Next) -> Response {
    let method = crate::method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = %route,
        http.response.status_code = Empty,
        trace_id = Empty,
    );
    // W3C trace context from the caller (an agent, the MCP proxy): this request's span joins
    // the caller's trace. Malformed or absent, the span starts a trace of its own.
    let parent = opentelemetry::global::get_text_map_propagator(|p| {
        p.extract(&opentelemetry_http::HeaderExtractor(req.headers()))
    });
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    resp
}
