//! OTLP metrics export of the long-running components.
//!
//! Each component keeps its counters as atomics in its own `Metrics` (read by its tests) and
//! registers them as OpenTelemetry observable counters and gauges on the [`Meter`] handed to its
//! `telemetry::register` (the `opentelemetry` API only: the components never see the SDK or the
//! exporter). [`start`] exports them over OTLP/gRPC every `OTEL_METRIC_EXPORT_INTERVAL` (60 s by
//! default); [`Exporter::shutdown`] exports the last values once more and stops.
//!
//! Nothing here runs unless a component was given an endpoint ([`endpoint`]): no thread, no
//! connection. With one, the SDK's periodic reader runs on its own thread and the tonic channel
//! on a one-worker runtime owned by the [`Exporter`], so export works the same whether the
//! component runs a current-thread runtime (agent), a multi-thread one (aggregator) or a plain
//! thread (correlator), and a slow collector never stalls the component's own runtime.

use std::fmt;
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_otlp::{MetricExporter, WithExportConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::Resource;

/// The standard environment variable naming the collector, used when no flag is given.
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The endpoint to export to: the flag, else [`ENDPOINT_ENV`]; `None` (export off) when neither
/// is set or both are empty.
pub fn endpoint(flag: Option<&str>) -> Option<String> {
    let from_env = || std::env::var(ENDPOINT_ENV).ok();
    flag.map(str::to_string).or_else(from_env).map(|e| e.trim().to_string()).filter(|e| !e.is_empty())
}

/// [`start`]s export when [`endpoint`] finds one (`register` is only called then); `None`
/// otherwise, with nothing started.
pub fn start_if_configured(
    flag: Option<&str>,
    service: &'static str,
    register: impl FnOnce(&Meter),
) -> Result<Option<Exporter>, OtlpError> {
    endpoint(flag).map(|e| start(&e, service, None, register)).transpose()
}

/// Shuts `exporter` down if there is one, logging (not failing on) an unreachable collector:
/// the component's own work is done by then.
pub fn shutdown(exporter: Option<Exporter>) {
    if let Some(Err(e)) = exporter.map(Exporter::shutdown) {
        tracing::warn!(error = %e, "last metrics not exported");
    }
}

/// Why export could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The exporter's runtime could not be created.
    #[error("cannot start the OTLP exporter's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The endpoint or an `OTEL_EXPORTER_OTLP_*` variable is invalid.
    #[error("invalid OTLP exporter configuration: {0}")]
    Config(#[source] opentelemetry_otlp::ExporterBuildError),
    /// The final export or the shutdown failed (the collector is unreachable, ...).
    #[error("shutting down OTLP export: {0}")]
    Shutdown(#[source] opentelemetry_sdk::error::OTelSdkError),
}

/// Running export; [`Exporter::shutdown`] (or drop) flushes the last values.
pub struct Exporter {
    provider: Option<SdkMeterProvider>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Exporter").field("running", &self.provider.is_some()).finish()
    }
}

/// Starts exporting the instruments `register` puts on its meter to `endpoint` (e.g. `http://otel-collector:4317`) as
/// `service` (the `service.name` resource attribute; `OTEL_RESOURCE_ATTRIBUTES` adds more).
/// `interval` overrides `OTEL_METRIC_EXPORT_INTERVAL`. Other `OTEL_EXPORTER_OTLP_*` variables
/// (headers, timeout, compression) apply as usual.
pub fn start(
    endpoint: &str,
    service: &'static str,
    interval: Option<Duration>,
    register: impl FnOnce(&Meter),
) -> Result<Exporter, OtlpError> {
    // tonic's channel spawns its connection tasks on the runtime current at build time; this
    // one outlives every export and is independent of the component's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-export")
        .enable_all()
        .build()
        .map_err(OtlpError::Runtime)?;
    let exporter = {
        let _guard = runtime.enter();
        MetricExporter::builder().with_tonic().with_endpoint(endpoint).build().map_err(OtlpError::Config)?
    };
    let mut reader = PeriodicReader::builder(exporter);
    if let Some(interval) = interval {
        reader = reader.with_interval(interval);
    }
    let provider = SdkMeterProvider::builder()
        .with_resource(Resource::builder().with_service_name(service).build())
        .with_reader(reader.build())
        .build();
    // The SDK keeps the instruments' callbacks registered for the provider's lifetime.
    register(&provider.meter("tokentrail"));
    tracing::info!(endpoint, service, "exporting metrics over OTLP");
    Ok(Exporter { provider: Some(provider), runtime: Some(runtime) })
}

impl Exporter {
    /// Collects and exports the current values once more, then stops the reader and the
    /// runtime. Blocks until the export finished or timed out (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub fn shutdown(mut self) -> Result<(), OtlpError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), OtlpError> {
        let result = match self.provider.take() {
            Some(provider) => provider.shutdown().map_err(OtlpError::Shutdown),
            None => Ok(()),
        };
        // `shutdown_background`, not drop: the caller may be inside its own async runtime,
        // where dropping a runtime panics.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        result
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "OTLP export did not shut down cleanly");
        }
    }
}

#[cfg(test)]
#[path = "otlp_tests.rs"]
mod tests;
