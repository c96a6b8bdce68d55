//! No token string appears in anything the agent sends or logs: the tokens it attests, hostile
//! content it refuses, nor its own bearer token. Its own test binary, because it installs the
//! global `tracing` subscriber (TRACE, so tonic, hyper and h2 log too).

mod common;

use std::time::Duration;

use common::{config, is_snapshot, jtis_in, pod_token, start, token_a, Kubelet, TestServer, POD_A, POD_B, VOL};
use prost::Message;

#[tokio::test]
async fn no_token_string_appears_in_anything_sent_or_logged() {
    let logs = common::capture_logs_globally();
    let k = Kubelet::new();
    let tokens = [token_a("leak-1"), token_a("leak-2"), common::legacy_token("payments", "deployer", "deployer-token")];
    k.projected_token(POD_A, VOL, &tokens[0], "2025_06_28_09_00_00");
    k.secret_token(POD_A, "legacy", &tokens[2], "2025_06_28_09_00_00");
    // The agent's own credential for the aggregator must not leak either.
    let own = pod_token("agent-own", "tokentrail", "agent", "agent-x", "agent-uid", "worker-1", 1);
    let own_file = k.root().join("..agent-token");
    std::fs::write(&own_file, &own).unwrap();
    let server = TestServer::start().await;
    let mut c = config(&k, &server);
    c.sender.bearer_token_file = Some(own_file);
    let agent = start(c);
    server.wait_for("snapshot", Duration::from_secs(10), |m| m.iter().any(|(_, _, m)| is_snapshot(m))).await;
    k.projected_token(POD_A, VOL, &tokens[1], "2025_06_28_10_00_00");
    // Hostile content gets logged as refused: its content must not be.
    k.projected_token(POD_B, VOL, &format!("{}.extra", tokens[0]), "2025_06_28_10_00_00");
    server
        .wait_for("leak-2", Duration::from_secs(5), |m| {
            m.iter().any(|(_, _, m)| jtis_in(m).contains(&"leak-2".to_string()))
        })
        .await;
    agent.shutdown().await;

    assert_eq!(
        server.log.lock().unwrap().authorization,
        [format!("Bearer {own}")],
        "the server got the agent's bearer token"
    );
    let sent: Vec<u8> = server.messages().iter().flat_map(|m| m.encode_to_vec()).collect();
    let debug = format!("{:?}", server.messages());
    let logged = logs.text();
    assert!(logged.contains("credential attested"), "logs were captured: {logged}");
    assert!(logged.contains("token file refused"), "hostile content was logged: {logged}");
    for token in tokens.iter().chain([&own]) {
        let parts: Vec<&str> = token.split('.').collect();
        // The whole token, and each of its payload and signature segments (either is enough to
        // recognise or rebuild a token).
        for needle in [token.as_str(), parts[1], parts[2]] {
            assert!(!contains(&sent, needle.as_bytes()), "a token piece was sent");
            assert!(!debug.contains(needle), "a token piece is in a message");
            assert!(!logged.contains(needle), "a token piece was logged");
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
