//! OpenTelemetry traces, off by default: with `--otlp-endpoint URL` the server's spans
//! (each request, its authentication, its engine calls) are exported over OTLP/HTTP (JSON)
//! to `URL/v1/traces`, in batches. An incoming W3C `traceparent` header is continued: the
//! request's span becomes a child of the caller's.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;

/// The exporter's provider: flushed and shut down when the server stops.
pub struct Traces(SdkTracerProvider);

impl Traces {
    pub fn shutdown(self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("warning: traces could not all be exported at shutdown: {e}");
        }
    }
}

/// The tracing layer exporting spans to `endpoint`, and its provider.
pub fn layer<S>(
    endpoint: &str,
) -> anyhow::Result<(
    tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    Traces,
)>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("bulkhead").build())
        .build();
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let tracer = provider.tracer("bulkhead");
    Ok((
        tracing_opentelemetry::layer().with_tracer(tracer),
        Traces(provider),
    ))
}
