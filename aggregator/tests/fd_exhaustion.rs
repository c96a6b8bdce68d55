//! The webhook when the process is out of file descriptors (its own test binary: it takes
//! every descriptor the process may have): accepting backs off instead of retrying at once, and
//! the waiting connection is served once descriptors are free again.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod support;

use std::fs::File;
use std::time::Duration;

use support::*;
use tokentrail_aggregator::config::WebhookConfig;
use tokentrail_aggregator::Metrics;
use tokio::net::TcpStream;

/// Opens /dev/null until the process may open no more; the files, or `None` when the limit
/// is too high to reach in a test.
fn exhaust_descriptors() -> Option<Vec<File>> {
    let mut files = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(f) if files.len() < 1_000_000 => files.push(f),
            Ok(_) => return None,
            Err(e) if e.raw_os_error() == Some(24) => return Some(files), // EMFILE
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_backs_off_while_out_of_file_descriptors_and_serves_the_connection_after() {
    let config =
        WebhookConfig { tls: None, insecure_plaintext: true, allowed_client_names: Vec::new(), ..webhook_config() };
    let running = start(None, Some(config)).await;
    let addr = running.servers.bound.webhook.unwrap();
    let counts = &running.metrics.webhook_connections;

    let Some(mut files) = exhaust_descriptors() else {
        panic!("the descriptor limit (ulimit -n) is too high for this test");
    };
    // One descriptor for the client's socket: the server's accept of it then fails (EMFILE)
    // while the connection waits in the kernel's queue.
    drop(files.pop());
    let client = TcpStream::connect(addr).await.unwrap();
    while Metrics::get(&counts.accept_errors_total) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let errors = Metrics::get(&counts.accept_errors_total);
    drop(files);

    // Retrying at once made millions of attempts (and warnings) in such a window; backing off
    // from 10 ms doubling to 1 s makes about eight.
    assert!((1..=20).contains(&errors), "{errors} failed accepts in 2 s");
    let (status, body) = post(client, &event_list(2)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(Metrics::get(&counts.accepted_total), 1);
    assert!(running.sink.observations() > 0);
}
