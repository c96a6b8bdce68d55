//! The audit webhook's refusals over real sockets (mTLS on 127.0.0.1, a sink in memory): a
//! compression bomb and a body (decompressed) beyond `max_decoded_bytes` are 413 before anything
//! is decoded, a client certificate of the right CA but not in `allowed_client_names` is 403,
//! requests beyond `max_concurrent_requests` are 503 at once; each refusal is counted by reason.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::*;
use tokentrail_aggregator::config::WebhookConfig;
use tokentrail_aggregator::Metrics;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_and_an_oversized_decompressed_body_are_413_before_decoding() {
    let running = start(None, Some(WebhookConfig { max_decoded_bytes: 2 << 20, ..webhook_config() })).await;
    let addr = running.servers.bound.webhook.unwrap();

    // 16 MiB of zeros in about 16 KiB: a thousandfold; 100 times its size is under 2 MiB.
    let bomb = gzip(&vec![0u8; 16 << 20]);
    assert!(bomb.len() * 100 < 2 << 20, "{}", bomb.len());
    let (status, body) = post_tls(addr, "apiserver", &bomb).await.unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("max_inflation_ratio (100 times its"), "{body}");

    // Compresses less than a hundredfold, but decompresses beyond max_decoded_bytes (2 MiB).
    let big = event_list(8000);
    let compressed = gzip(&big);
    assert!(big.len() > 2 << 20 && big.len() < 100 * compressed.len(), "{} {}", big.len(), compressed.len());
    let (status, body) = post_tls(addr, "apiserver", &compressed).await.unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("decompressed, exceeds webhook.max_decoded_bytes (2097152 bytes)"), "{body}");
    // Not compressed at all, and over max_decoded_bytes all the same.
    let (status, body) = post_tls(addr, "apiserver", &big).await.unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("request body exceeds webhook.max_decoded_bytes"), "{body}");

    // A gzip batch within the limits is decoded as before.
    let (status, body) = post_tls(addr, "apiserver", &gzip(&event_list(20))).await.unwrap();
    assert_eq!(status, 200, "{body}");

    assert_eq!(running.metrics.webhook_requests_refused(), BTreeMap::from([("decoded_too_large", 3)]));
    assert_eq!(Metrics::get(&running.metrics.records_in_total), 1, "the refused bodies were not decoded");
    assert_eq!(Metrics::get(&running.metrics.events_decoded_total), 20);
    assert!(running.sink.observations() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_max_body_bytes_is_413_and_counted() {
    let running = start(None, Some(WebhookConfig { max_body_bytes: 4096, ..webhook_config() })).await;
    let addr = running.servers.bound.webhook.unwrap();
    let (status, body) = post_tls(addr, "apiserver", &event_list(30)).await.unwrap();
    assert_eq!(status, 413);
    assert!(body.contains("max_body_bytes (4096 bytes)"), "{body}");
    assert_eq!(running.metrics.webhook_requests_refused(), BTreeMap::from([("body_too_large", 1)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_certificate_of_the_same_ca_is_403_and_the_apiservers_is_served() {
    let running = start(None, Some(webhook_config())).await;
    let addr = running.servers.bound.webhook.unwrap();
    let batch = event_list(5);

    let (status, body) = post_tls(addr, "node", &batch).await.unwrap();
    assert_eq!(status, 403);
    assert!(body.contains("allowed_client_names"), "{body}");
    assert_eq!(running.sink.observations(), 0, "nothing of the node's body was decoded");

    let (status, _) = post_tls(addr, "apiserver", &batch).await.unwrap();
    assert_eq!(status, 200);
    assert!(running.sink.observations() > 0);
    assert_eq!(running.metrics.webhook_requests_refused(), BTreeMap::from([("client_not_allowed", 1)]));
    assert_eq!(Metrics::get(&running.metrics.records_in_total), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_max_concurrent_requests_are_503_at_once() {
    let running = start(None, Some(WebhookConfig { max_concurrent_requests: 1, ..webhook_config() })).await;
    let addr = running.servers.bound.webhook.unwrap();
    // Deliveries wait until the gate opens: the first request holds the only place.
    let held = running.sink.gate.clone().acquire_many_owned(GATE).await.unwrap();
    let first = tokio::spawn(async move { post_tls(addr, "apiserver", &event_list(2)).await.unwrap() });
    while Metrics::get(&running.metrics.records_in_total) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (status, body) = post_tls(addr, "apiserver", &event_list(2)).await.unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("max_concurrent_requests"), "{body}");

    drop(held);
    assert_eq!(first.await.unwrap().0, 200);
    assert_eq!(running.metrics.webhook_requests_refused(), BTreeMap::from([("overloaded", 1)]));
}
