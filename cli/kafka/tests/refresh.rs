//! The refresh cycle through the real librdkafka, no broker needed: a client made with
//! OAUTHBEARER asks its context for a token when it is made, hands the token to librdkafka
//! (which checks its lifetime and principal), and asks again at 80% of the token's lifetime.
//! A token endpoint of the test's own hands out JWTs that live 2 s, so a client polled for 5 s
//! asks at least twice; one whose tokens librdkafka refused would ask again only after 10 s.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rdkafka::producer::BaseProducer;
use rdkafka::ClientConfig;
use serde_json::json;
use tokentrail_config::kafka::KafkaSecurity;
use tokentrail_kafka::LoginContext;

/// Answers every request with a JWT that expires 2 s from now; returns its URL and request count.
#[allow(clippy::disallowed_methods)] // librdkafka checks the lifetime against the real clock
fn endpoint() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            counter.fetch_add(1, Ordering::Relaxed);
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
            let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
            let token = format!("{}.{}.", b64(json!({"alg": "none"})), b64(json!({"sub": "svc", "exp": now + 2.0})));
            let answer = json!({"access_token": token, "token_type": "Bearer"}).to_string();
            let _ = write!(
                reader.get_mut(),
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, count)
}

#[test]
fn a_client_asks_for_its_first_token_when_made_and_again_before_it_expires() {
    let (url, requests) = endpoint();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s\n").unwrap();
    let security: KafkaSecurity = serde_json::from_value(json!({"protocol": "sasl_ssl",
        "sasl": {"mechanism": "OAUTHBEARER", "token_endpoint": url, "client_id": "c", "client_secret_file": secret}}))
    .unwrap();
    let mut config = ClientConfig::new();
    // Nothing listens there: the token cycle does not need a broker.
    config.set("bootstrap.servers", "127.0.0.1:9");
    let login = tokentrail_kafka::secure(&mut config, &security).unwrap();
    let producer: BaseProducer<LoginContext> = config.create_with_context(LoginContext(login)).unwrap();
    producer.poll(Duration::from_secs(5));
    // The first token at once, the next at 80% of 2 s, and so on; allow for a slow machine.
    let asked = requests.load(Ordering::Relaxed);
    assert!(asked >= 2, "token requests in 5 s: {asked}");
}
