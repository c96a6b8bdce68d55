//! Peak memory of decoding one webhook body (what `max_decoded_bytes` bounds), per kind of
//! content: `cargo run --release -p tokentrail-aggregator --example decode_memory -- KIND MIB`
//! with KIND `empty-objects` (`{}` lines: a problem each) or `events` (token-use audit events).
//! Prints the body size and the process's peak RSS before and after; one run per process, as
//! the peak only grows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let kind = args.get(1).map_or("empty-objects", String::as_str);
    let mib: usize = args.get(2).map_or(32, |m| m.parse().unwrap());
    let size = mib << 20;
    let mut body = Vec::with_capacity(size + 4096);
    let mut i = 0u64;
    while body.len() < size {
        match kind {
            "empty-objects" => body.extend_from_slice(b"{}\n"),
            "events" => body.extend_from_slice(
                format!(
                    r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/secrets","verb":"list","user":{{"username":"system:serviceaccount:shop:web","extra":{{"authentication.kubernetes.io/credential-id":["JTI=jti-{i}"],"authentication.kubernetes.io/pod-name":["web-0"],"authentication.kubernetes.io/pod-uid":["uid-web-0"]}}}},"sourceIPs":["10.1.2.3"],"objectRef":{{"resource":"secrets","namespace":"shop"}},"responseStatus":{{"code":200}},"requestReceivedTimestamp":"2026-03-10T08:00:00.000000Z","stageTimestamp":"2026-03-10T08:00:00.000100Z"}}"#
                )
                .as_bytes(),
            ),
            other => panic!("unknown kind {other}"),
        }
        body.push(b'\n');
        i += 1;
    }
    let before = peak_rss_kib();
    let decoded = tokentrail_aggregator::source::decode_record(&body, usize::MAX);
    let after = peak_rss_kib();
    println!(
        "{kind}: body {} MiB, {} events, {} problems, {} observations; peak RSS {} MiB before decoding, {} MiB after ({:.1} bytes per body byte)",
        body.len() >> 20,
        decoded.content.stats.events,
        decoded.content.problems.len(),
        decoded.content.observations.len(),
        before >> 10,
        after >> 10,
        (after - before) as f64 * 1024.0 / body.len() as f64
    );
}
