//! A fake OTLP metrics collector for tests: the OTLP `MetricsService` over tonic on 127.0.0.1:0,
//! on a runtime of its own (as a real collector would run in another process), keeping every
//! export it receives. Components export to it through their real OTLP code (the `tokentrail`
//! binary's `cli/src/startup/telemetry.rs`), in-process or from a `tokentrail` process given its
//! [`Collector::endpoint`].
//!
//! Shared by `integration-tests/tests/*` (`mod otlp_support;`) and `cli/src/startup/telemetry_tests.rs`
//! (by `#[path]`): both need the same receiver and the same reading of an export.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test support: a failed step panics

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;

/// What one export request carried, for one resource (one exporting component).
#[derive(Clone, Debug, Default)]
pub struct Export {
    /// When the collector received it.
    pub received: Option<Instant>,
    /// The resource's string attributes (`service.name`, `service.instance.id`...).
    pub resource: BTreeMap<String, String>,
    /// Every metric, by name.
    pub metrics: BTreeMap<String, Metric>,
}

/// One metric of an export: its integer points by their attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metric {
    /// A monotonic sum (a counter), not a gauge.
    pub monotonic: bool,
    /// Each point's value, by its attributes (`key=value`, sorted; empty for a plain metric).
    pub points: BTreeMap<Vec<String>, i64>,
}

impl Metric {
    /// The sum of its points (for a metric with one point, its value).
    pub fn total(&self) -> i64 {
        self.points.values().sum()
    }

    /// The point whose attributes are exactly `attributes` (`key=value`).
    pub fn point(&self, attributes: &[&str]) -> Option<i64> {
        let mut key: Vec<String> = attributes.iter().map(|a| (*a).to_string()).collect();
        key.sort();
        self.points.get(&key).copied()
    }
}

impl Export {
    /// The `service.name` resource attribute.
    pub fn service(&self) -> Option<&str> {
        self.resource.get("service.name").map(String::as_str)
    }

    /// The total of metric `name` ([`Metric::total`]); `None` if the export lacks it.
    pub fn value(&self, name: &str) -> Option<i64> {
        self.metrics.get(name).map(Metric::total)
    }
}

/// The collector; stops when dropped.
pub struct Collector {
    addr: std::net::SocketAddr,
    received: Arc<Mutex<Vec<Export>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Collector {
    pub fn start() -> Collector {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        // Bound here, so the address is known at once; served on the collector's runtime (a
        // test may call this from inside its own, where `block_on` is not allowed).
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let service = MetricsServiceServer::new(Service(Arc::clone(&received)));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming).await
        });
        Collector { addr, received, runtime: Some(runtime) }
    }

    /// The OTLP/gRPC endpoint, for `--otlp-endpoint` or the binary's `telemetry::start`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every export received so far, oldest first.
    pub fn exports(&self) -> Vec<Export> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (blocking the thread) for the first export that satisfies `wanted`, received at
    /// `since` or later; panics after `timeout` naming `what`.
    pub fn wait_for(&self, what: &str, since: Instant, timeout: Duration, wanted: impl Fn(&Export) -> bool) -> Export {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self.exports().into_iter().find(|e| e.received.is_some_and(|at| at >= since) && wanted(e));
            if let Some(export) = found {
                return export;
            }
            assert!(Instant::now() < deadline, "no export with {what} within {timeout:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // Not a plain drop: the test may be inside an async runtime, where dropping one panics.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Keeps every export request, one [`Export`] per resource in it.
struct Service(Arc<Mutex<Vec<Export>>>);

#[tonic::async_trait]
impl MetricsService for Service {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let exports = read(&request.into_inner());
        self.0.lock().unwrap().extend(exports);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn read(request: &ExportMetricsServiceRequest) -> Vec<Export> {
    let received = Some(Instant::now());
    let mut exports = Vec::new();
    for rm in &request.resource_metrics {
        let mut export = Export { received, ..Export::default() };
        for kv in rm.resource.iter().flat_map(|r| &r.attributes) {
            if let Some(Value::StringValue(s)) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                export.resource.insert(kv.key.clone(), s.clone());
            }
        }
        for metric in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            let (points, monotonic) = match &metric.data {
                Some(Data::Sum(sum)) => (&sum.data_points, sum.is_monotonic),
                Some(Data::Gauge(g)) => (&g.data_points, false),
                other => panic!("unexpected data for {}: {other:?}", metric.name),
            };
            let points = points
                .iter()
                .map(|p| match p.value {
                    Some(number_data_point::Value::AsInt(v)) => (attributes(&p.attributes), v),
                    other => panic!("{}: not an integer: {other:?}", metric.name),
                })
                .collect();
            export.metrics.insert(metric.name.clone(), Metric { monotonic, points });
        }
        exports.push(export);
    }
    exports
}

/// A point's attributes as sorted `key=value` strings.
fn attributes(attributes: &[KeyValue]) -> Vec<String> {
    let mut out: Vec<String> = attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::IntValue(i)) => i.to_string(),
                other => format!("{other:?}"),
            };
            format!("{}={value}", kv.key)
        })
        .collect();
    out.sort();
    out
}
