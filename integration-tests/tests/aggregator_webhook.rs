//! The aggregator's audit webhook endpoint with the real broker behind it: an `EventList` POSTed
//! the way the apiserver's webhook backend does becomes observations; an oversized body is
//! refused with 413; an undecodable one is a dead letter; over HTTPS a client without a
//! certificate from the configured CA is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod aggregator_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aggregator_support::*;
use tokentrail_aggregator::config::{TlsConfig, WebhookConfig};
use tokentrail_aggregator::Metrics;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

const LIMIT: usize = 64 * 1024;

fn tls(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../agent/tests/data/tls").join(name)
}

async fn start_webhook(t: &Topics, with_tls: bool) -> Running {
    let mut config = t.config();
    config.kafka.audit_topics.clear();
    config.webhook = Some(WebhookConfig {
        tls: with_tls.then(|| TlsConfig {
            client_ca: Some(tls("ca.pem")),
            ..TlsConfig::new(tls("server.pem"), tls("server.key"))
        }),
        max_body_bytes: LIMIT,
        insecure_plaintext: !with_tls,
        ..WebhookConfig::new("127.0.0.1:0".parse().unwrap(), "onprem")
    });
    start(config).await
}

/// One HTTP/1.1 POST, written by hand (the status line is all the test needs).
async fn post<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, body: &[u8]) -> std::io::Result<u16> {
    let head = format!(
        "POST /audit HTTP/1.1\r\nhost: tokentrail\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    status.ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))
}

fn event_list(lines: &[String]) -> Vec<u8> {
    format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#, lines.join(","))
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_list_in_observations_out_oversized_is_413_garbage_is_a_dead_letter() {
    let t = Topics::create("agg-webhook").await;
    let running = start_webhook(&t, false).await;
    let addr = running.webhook.unwrap();
    let lines = incident_lines();
    let batch = event_list(&lines[0..30]);
    assert!(batch.len() < LIMIT);

    assert_eq!(post(TcpStream::connect(addr).await.unwrap(), &batch).await.unwrap(), 200);
    let big = event_list(&lines[0..120]);
    assert!(big.len() > LIMIT);
    assert_eq!(post(TcpStream::connect(addr).await.unwrap(), &big).await.unwrap(), 413);
    assert_eq!(
        post(TcpStream::connect(addr).await.unwrap(), b"{\"kind\":\"EventList\",\"items\":[").await.unwrap(),
        200
    );

    let want = expected(&[batch], "onprem");
    let out = read_until(&t.observations, "the batch's observations", Duration::from_millis(500), |o| {
        count_observations(o) >= want.len()
    })
    .await;
    let dead = read_until(&t.dead, "the dead letter", Duration::from_millis(200), |o| !o.is_empty()).await;
    let metrics = running.metrics.clone();
    running.stop().await;

    assert_eq!(observed(&out), want, "the batch's observations, once (the 413 body produced nothing)");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].headers["tokentrail-source-topic"], "webhook");
    assert_eq!(dead[0].headers["tokentrail-cluster"], "onprem");
    assert_eq!(Metrics::get(&metrics.dead_letters_total), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_requires_a_client_certificate_from_the_configured_ca() {
    let t = Topics::create("agg-webhook-tls").await;
    let running = start_webhook(&t, true).await;
    let addr = running.webhook.unwrap();
    let read = |n: &str| std::fs::read(tls(n)).unwrap();
    let connector = |with_identity: bool| {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls_pki_types::CertificateDer::from_pem_slice(&read("ca.pem")).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = if with_identity {
            let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&read("client.pem"))
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&read("client.key")).unwrap();
            builder.with_client_auth_cert(certs, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    };
    let name = rustls_pki_types::ServerName::try_from("aggregator.test").unwrap();
    let batch = event_list(&incident_lines()[0..5]);

    let stream = connector(true).connect(name.clone(), TcpStream::connect(addr).await.unwrap()).await.unwrap();
    assert_eq!(post(stream, &batch).await.unwrap(), 200);

    // TLS 1.3 finishes the client's side of the handshake before the server checks the client
    // certificate: the refusal shows on the first read or write.
    let refused = match connector(false).connect(name, TcpStream::connect(addr).await.unwrap()).await {
        Err(_) => true,
        Ok(stream) => post(stream, &batch).await.is_err(),
    };
    assert!(refused, "a client without a certificate must not be served");

    let metrics = running.metrics.clone();
    running.stop().await;
    assert_eq!(Metrics::get(&metrics.records_in_total), 1);
}
