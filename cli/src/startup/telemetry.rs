//! Metrics export of the long-running components: OTLP push and Prometheus pull, from one set
//! of instruments.
//!
//! Each component keeps its counters as atomics in its own `Metrics` (read by its tests) and
//! registers them as OpenTelemetry observable counters and gauges on the [`Meter`] handed to its
//! `telemetry::register` (the `opentelemetry` API only: the components never see the SDK or the
//! exporters). One `SdkMeterProvider` carries up to two readers:
//!
//! * OTLP/gRPC ([`Exports::otlp`]): the SDK's periodic reader exports every
//!   `OTEL_METRIC_EXPORT_INTERVAL` (60 s by default); [`Telemetry::shutdown`] exports the last
//!   values once more. The periodic reader runs on its own thread and the tonic channel on a
//!   one-worker runtime owned by [`Telemetry`], so export works the same whether the component
//!   runs a current-thread runtime (agent), a multi-thread one (aggregator) or a plain thread
//!   (correlator), and a slow collector never stalls the component's own runtime.
//! * Prometheus ([`Exports::prometheus`]): `opentelemetry-prometheus`'s reader, collected on
//!   each scrape ([`Telemetry::scrape`], served as `/metrics` by the probe listener,
//!   `tokentrail_aggregator::probes`). Names are the instruments' own (counters already end in
//!   `_total`; no suffix is added, no unit, no scope labels); `target_info` carries the resource.
//!
//! The resource names the process: `service.name` (`tokentrail-<component>`) and
//! `service.instance.id` ([`instance_id`]: the pod's name, else the host's), unless
//! `OTEL_RESOURCE_ATTRIBUTES` sets it. Nothing here runs unless a component was given an OTLP
//! endpoint ([`endpoint`]) or a listener for `/metrics`: no thread, no connection.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{MetricExporter, WithExportConfig};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::Resource;
use tokentrail_aggregator::probes::Scrape;

/// The standard environment variable naming the collector, used when no flag is given.
pub const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// The pod's name (downward API `metadata.name`): the `service.instance.id` of its metrics.
pub const POD_NAME_ENV: &str = "POD_NAME";

const INSTANCE_ID: &str = "service.instance.id";

/// The endpoint to export to: the flag, else [`ENDPOINT_ENV`]; `None` (export off) when neither
/// is set or both are empty.
pub fn endpoint(flag: Option<&str>) -> Option<String> {
    let from_env = || std::env::var(ENDPOINT_ENV).ok();
    flag.map(str::to_string).or_else(from_env).map(|e| e.trim().to_string()).filter(|e| !e.is_empty())
}

/// The process's `service.instance.id`: `pod_name` (`$POD_NAME`) when set and not blank, else
/// the host's name (in a pod, also the pod's name, unless the pod sets `hostname`), else
/// `unknown`.
pub fn instance_id(pod_name: Option<String>) -> String {
    let host = || std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    [pod_name, host()]
        .into_iter()
        .flatten()
        .map(|n| n.trim().to_string())
        .find(|n| !n.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Which readers to start.
#[derive(Clone, Debug, Default)]
pub struct Exports {
    /// OTLP/gRPC to this collector endpoint (e.g. `http://otel-collector:4317`).
    pub otlp: Option<String>,
    /// Overrides `OTEL_METRIC_EXPORT_INTERVAL` (tests).
    pub otlp_interval: Option<Duration>,
    /// Collect on scrape for `/metrics`.
    pub prometheus: bool,
}

/// Why export could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The exporter's runtime could not be created.
    #[error("cannot start the OTLP exporter's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The endpoint or an `OTEL_EXPORTER_OTLP_*` variable is invalid.
    #[error("invalid OTLP exporter configuration: {0}")]
    Config(#[source] opentelemetry_otlp::ExporterBuildError),
    /// The Prometheus reader could not be built.
    #[error("cannot start the Prometheus exporter: {0}")]
    Prometheus(#[source] opentelemetry_sdk::error::OTelSdkError),
    /// The final export or the shutdown failed (the collector is unreachable, ...).
    #[error("shutting down OTLP export: {0}")]
    Shutdown(#[source] opentelemetry_sdk::error::OTelSdkError),
}

/// Running export; [`Telemetry::shutdown`] (or drop) flushes the last values.
pub struct Telemetry {
    provider: Option<SdkMeterProvider>,
    runtime: Option<tokio::runtime::Runtime>,
    scrape: Option<Scrape>,
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("running", &self.provider.is_some())
            .field("prometheus", &self.scrape.is_some())
            .finish()
    }
}

/// Starts the readers `exports` asks for, with the instruments `register` puts on the meter, as
/// `service` (the `service.name` resource attribute; `OTEL_RESOURCE_ATTRIBUTES` adds more).
/// `None`, with nothing started and `register` not called, when it asks for none. Other
/// `OTEL_EXPORTER_OTLP_*` variables (headers, timeout, compression) apply as usual.
pub fn start(
    exports: Exports,
    service: &'static str,
    register: impl FnOnce(&Meter),
) -> Result<Option<Telemetry>, TelemetryError> {
    if exports.otlp.is_none() && !exports.prometheus {
        return Ok(None);
    }
    let mut builder = SdkMeterProvider::builder().with_resource(resource(service));
    let mut runtime = None;
    if let Some(endpoint) = &exports.otlp {
        // tonic's channel spawns its connection tasks on the runtime current at build time;
        // this one outlives every export and is independent of the component's.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(TelemetryError::Runtime)?;
        let exporter = {
            let _guard = rt.enter();
            MetricExporter::builder().with_tonic().with_endpoint(endpoint).build().map_err(TelemetryError::Config)?
        };
        let mut reader = PeriodicReader::builder(exporter);
        if let Some(interval) = exports.otlp_interval {
            reader = reader.with_interval(interval);
        }
        builder = builder.with_reader(reader.build());
        runtime = Some(rt);
        tracing::info!(endpoint, service, "exporting metrics over OTLP");
    }
    let mut scrape = None;
    if exports.prometheus {
        let registry = prometheus::Registry::new();
        let reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .without_counter_suffixes()
            .without_units()
            .scope_info_enabled(false)
            .build()
            .map_err(TelemetryError::Prometheus)?;
        builder = builder.with_reader(reader);
        scrape = Some(Arc::new(move || exposition(&registry)) as Scrape);
    }
    let provider = builder.build();
    // The SDK keeps the instruments' callbacks registered for the provider's lifetime.
    register(&provider.meter("tokentrail"));
    Ok(Some(Telemetry { provider: Some(provider), runtime, scrape }))
}

/// `service.name`, and `service.instance.id` unless `OTEL_RESOURCE_ATTRIBUTES` gave one.
fn resource(service: &'static str) -> Resource {
    let from_env = Resource::builder().build();
    let builder = Resource::builder().with_service_name(service);
    if from_env.get(&opentelemetry::Key::from_static_str(INSTANCE_ID)).is_some() {
        return builder.build();
    }
    let id = instance_id(std::env::var(POD_NAME_ENV).ok());
    builder.with_attribute(KeyValue::new(INSTANCE_ID, id)).build()
}

/// The registry's metrics (the reader collects on `gather`) in the text format 0.0.4.
fn exposition(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder as _;
    let mut text = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut text) {
        // Only a failed write can fail it, and a Vec's does not.
        tracing::warn!(error = %e, "encoding /metrics");
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Shuts `telemetry` down if there is one, logging (not failing on) an unreachable collector:
/// the component's own work is done by then.
pub fn shutdown(telemetry: Option<Telemetry>) {
    if let Some(Err(e)) = telemetry.map(Telemetry::shutdown) {
        tracing::warn!(error = %e, "last metrics not exported");
    }
}

impl Telemetry {
    /// Renders `/metrics`, when Prometheus export was asked for.
    pub fn scrape(&self) -> Option<Scrape> {
        self.scrape.clone()
    }

    /// Collects and exports the current values once more over OTLP, then stops the readers and
    /// the runtime. Blocks until the export finished or timed out (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), TelemetryError> {
        let result = match self.provider.take() {
            Some(provider) => provider.shutdown().map_err(TelemetryError::Shutdown),
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

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "metrics export did not shut down cleanly");
        }
    }
}

#[cfg(test)]
#[path = "telemetry_tests.rs"]
mod tests;
