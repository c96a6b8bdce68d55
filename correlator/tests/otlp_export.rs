//! OTLP metrics export end to end: the correlator's `Metrics`, registered by the same code
//! `tokentrail correlator --otlp-endpoint` runs, reach a fake collector (the OTLP
//! `MetricsService` over tonic on 127.0.0.1:0) periodically and once more on shutdown.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use tokentrail_correlator::stream::{telemetry, Metrics};
use tokentrail_proto::otlp;
use tokio::sync::mpsc;

/// Forwards every export request to the test.
struct Collector(mpsc::UnboundedSender<ExportMetricsServiceRequest>);

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let _ = self.0.send(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// What one export carried: service name and, per metric, (value, is monotonic sum).
#[derive(Debug, Default)]
struct Export {
    service: Option<String>,
    metrics: BTreeMap<String, (i64, bool)>,
}

fn read(request: &ExportMetricsServiceRequest) -> Export {
    let mut export = Export::default();
    for rm in &request.resource_metrics {
        for kv in rm.resource.iter().flat_map(|r| &r.attributes) {
            if kv.key == "service.name" {
                if let Some(Value::StringValue(s)) = kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    export.service = Some(s.clone());
                }
            }
        }
        for metric in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            let (points, monotonic) = match &metric.data {
                Some(Data::Sum(sum)) => (&sum.data_points, sum.is_monotonic),
                Some(Data::Gauge(g)) => (&g.data_points, false),
                other => panic!("unexpected data for {}: {other:?}", metric.name),
            };
            let value = points
                .iter()
                .map(|p| match p.value {
                    Some(number_data_point::Value::AsInt(v)) => v,
                    other => panic!("{}: not an integer: {other:?}", metric.name),
                })
                .sum();
            export.metrics.insert(metric.name.clone(), (value, monotonic));
        }
    }
    export
}

/// Waits for an export in which `name` has `value`, skipping older ones.
fn wait_for(rx: &mut mpsc::UnboundedReceiver<ExportMetricsServiceRequest>, name: &str, value: i64) -> Export {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let request = match rx.try_recv() {
            Ok(r) => r,
            Err(_) if left.is_zero() => panic!("no export with {name} = {value} within 20 s"),
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        let export = read(&request);
        if export.metrics.get(name).map(|m| m.0) == Some(value) {
            return export;
        }
    }
}

#[test]
fn correlator_counters_reach_an_otlp_collector_periodically_and_on_shutdown() {
    // The collector runs on its own runtime, as a real one would in another process.
    let server = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    server.spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(Collector(tx)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let metrics = Arc::new(Metrics::default());
    metrics.observations.store(42, Ordering::Relaxed);
    metrics.findings.store(3, Ordering::Relaxed);
    metrics.findings_by_rule.lock().unwrap().extend([("token-used-off-cluster", 2), ("legacy-token-use", 1)]);
    metrics.watermark_lag_seconds.store(12, Ordering::Relaxed);
    let exporter = otlp::start(
        &format!("http://{addr}"),
        "tokentrail-correlator",
        Some(Duration::from_millis(200)),
        telemetry::instruments(&metrics),
    )
    .unwrap();

    // Periodic export: every instrument, counters monotonic, current values, the service named.
    let first = wait_for(&mut rx, "tokentrail_correlator_observations_total", 42);
    assert_eq!(first.service.as_deref(), Some("tokentrail-correlator"));
    let names: Vec<&str> = first.metrics.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "tokentrail_correlator_findings_by_rule_total",
            "tokentrail_correlator_findings_total",
            "tokentrail_correlator_observations_total",
            "tokentrail_correlator_restores_total",
            "tokentrail_correlator_state_entries",
            "tokentrail_correlator_transaction_aborts_total",
            "tokentrail_correlator_transactions_total",
            "tokentrail_correlator_undecodable_total",
            "tokentrail_correlator_watermark_lag_seconds",
        ]
    );
    assert_eq!(first.metrics["tokentrail_correlator_findings_total"], (3, true));
    // By rule: one point per rule, summed here.
    assert_eq!(first.metrics["tokentrail_correlator_findings_by_rule_total"], (3, true));
    assert_eq!(first.metrics["tokentrail_correlator_watermark_lag_seconds"], (12, false));
    assert_eq!(first.metrics["tokentrail_correlator_restores_total"], (0, true));

    // Values change between exports; shutdown exports the last ones before returning.
    metrics.observations.store(50, Ordering::Relaxed);
    metrics.transactions.store(7, Ordering::Relaxed);
    exporter.shutdown().unwrap();
    let mut last = None;
    while let Ok(request) = rx.try_recv() {
        last = Some(read(&request));
    }
    let last = last.expect("an export on shutdown");
    assert_eq!(last.metrics["tokentrail_correlator_observations_total"], (50, true));
    assert_eq!(last.metrics["tokentrail_correlator_transactions_total"], (7, true));
}

#[test]
fn nothing_starts_without_an_endpoint() {
    // With no flag, export follows only $OTEL_EXPORTER_OTLP_ENDPOINT, which tests do not set.
    if std::env::var_os(otlp::ENDPOINT_ENV).is_none() {
        let started = otlp::start_if_configured(None, "tokentrail-correlator", || panic!("instruments built")).unwrap();
        assert!(started.is_none());
    }
    // A blank flag (an empty value in a manifest) means off, not the variable.
    let blank = otlp::start_if_configured(Some(" "), "tokentrail-correlator", || panic!("instruments built")).unwrap();
    assert!(blank.is_none());
}
