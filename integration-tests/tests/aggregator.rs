//! The aggregator's audit path against the real broker: raw audit records of every format in,
//! the decoders' observations out (protobuf, keyed by service account, in order per key),
//! undecodable records in the dead-letter topic with where they came from, and restarts that
//! lose nothing.
#![allow(clippy::unwrap_used)] // helpers outside #[test] fns: a failed unwrap is a failed test

mod aggregator_support;

use std::collections::BTreeMap;
use std::time::Duration;

use aggregator_support::*;
use tokentrail_aggregator::Metrics;
use tokentrail_proto::wire::observation::v1 as pb;

const USE: &str = r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"9a2e0c4d-1111-4a6b-8c9d-0e1f2a3b4c5d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/configmaps/app","verb":"get","user":{"username":"system:serviceaccount:shop:api","extra":{"authentication.kubernetes.io/credential-id":["JTI=3f0c2b1e-0000-4000-8000-00000000000a"],"authentication.kubernetes.io/pod-name":["api-7d9f8-xk2lq"],"authentication.kubernetes.io/pod-uid":["0dd440a6-0000-4000-8000-000000000002"]}},"sourceIPs":["10.0.1.57"],"objectRef":{"resource":"configmaps","namespace":"shop","name":"app","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-03-01T10:05:00.000000Z"}"#;

fn escaped(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// One record per shape: EventList, EKS CloudWatch, AKS diagnostic, GKE LogEntry.
fn envelopes() -> Vec<Vec<u8>> {
    let second = USE.replace("9a2e0c4d-1111", "9a2e0c4d-2222").replace("10:05:00", "10:06:00");
    let event_list =
        format!(r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{USE},{second}]}}"#);
    let eks = format!(
        r#"{{"timestamp":1772359500004,"logStreamName":"kube-apiserver-audit-1234567890abcdef","message":{}}}"#,
        escaped(&USE.replace("9a2e0c4d-1111", "9a2e0c4d-3333"))
    );
    let aks = format!(
        r#"{{"records":[{{"category":"kube-audit","time":"2026-03-01T10:05:00.0040000Z","properties":{{"log":{},"stream":"stdout"}}}}]}}"#,
        escaped(&USE.replace("9a2e0c4d-1111", "9a2e0c4d-4444"))
    );
    let gke = r#"{"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{"principalEmail":"system:serviceaccount:shop:api"},"authorizationInfo":[{"granted":true}],"methodName":"io.k8s.core.v1.secrets.get","requestMetadata":{"callerIp":"10.8.0.14","callerSuppliedUserAgent":"kubectl/v1.28.9"},"resourceName":"core/v1/namespaces/shop/secrets/db","serviceName":"k8s.io","status":{"code":0}},"insertId":"5a3a3498","resource":{"type":"k8s_cluster","labels":{"cluster_name":"c1"}},"timestamp":"2024-05-12T05:13:08.760303Z","logName":"projects/p/logs/cloudaudit.googleapis.com%2Factivity"}"#;
    vec![event_list.into_bytes(), eks.into_bytes(), aks.into_bytes(), gke.as_bytes().to_vec()]
}

fn lines(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
    incident_lines()[range].iter().map(|l| l.clone().into_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_in_the_decoders_observations_out_keyed_and_ordered_per_service_account() {
    formats_through(256 * 1024).await;
}

/// The same with batches off (`kafka.batch_max_bytes: 0`): one record per observation, as
/// correlators that read no batches need during a rolling upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_batches_every_observation_is_a_record_of_its_own() {
    formats_through(0).await;
}

async fn formats_through(batch_max_bytes: usize) {
    let t = Topics::create("agg-formats").await;
    let incident = lines(0..120);
    let envelopes = envelopes();
    produce_raw(&t.raw, &incident, None).await;
    produce_raw(&t.raw, &envelopes, None).await;
    let dev = vec![USE.replace("9a2e0c4d-1111", "9a2e0c4d-5555").into_bytes()];
    produce_raw(&t.unmapped, &dev, Some("dev")).await;

    let mut want = expected(&incident, "prod");
    want.extend(expected(&envelopes, "prod"));
    want.extend(expected(&dev, "dev"));
    want.sort();
    assert!(want.len() > 100, "{} observations expected", want.len());

    let mut config = t.config();
    config.kafka.batch_max_bytes = batch_max_bytes;
    let running = start(config).await;
    let out = read_until(&t.observations, "every observation", Duration::from_secs(2), |o| {
        count_observations(o) >= want.len()
    })
    .await;
    let metrics = running.metrics.clone();
    running.stop().await;

    assert_eq!(observed(&out), want, "observations are exactly the decoders' (no loss, no duplicate)");
    // Node facts: only those that add something are broadcast, and together they say all the
    // decoders' say; the rest (a kubelet's every request) are counted as repeats.
    let mut want_nodes = NodeKnowledge::new();
    expected_node_knowledge(&incident, "prod", &mut want_nodes);
    expected_node_knowledge(&envelopes, "prod", &mut want_nodes);
    expected_node_knowledge(&dev, "dev", &mut want_nodes);
    assert!(!want_nodes.is_empty());
    assert_eq!(node_knowledge(&out), want_nodes, "every node's addresses, pod CIDRs and OS");
    let decoded_node_facts: usize = incident
        .iter()
        .chain(&envelopes)
        .chain(&dev)
        .map(|r| {
            let mut d = tokentrail_aggregator_core::Decoded::new();
            tokentrail_aggregator_core::decode_value(r, &mut d);
            d.observations.iter().filter(|o| matches!(o, tokentrail_correlator_core::Observation::Node(_))).count()
        })
        .sum();
    let broadcast_node_facts = out
        .iter()
        .filter(|o| !o.is_extra_copy() && matches!(o.observation().kind, Some(pb::observation::Kind::Node(_))))
        .count();
    assert!(broadcast_node_facts < decoded_node_facts, "{broadcast_node_facts} of {decoded_node_facts}");
    assert_eq!(Metrics::get(&metrics.node_repeats_total), (decoded_node_facts - broadcast_node_facts) as u64);
    assert_eq!(Metrics::get(&metrics.dead_letters_total), 0);
    assert_eq!(Metrics::get(&metrics.records_in_total), (incident.len() + envelopes.len() + dev.len()) as u64);
    // Records: with batches, several observations each (what makes the stream cheap); without,
    // one each (broadcast copies and the progress sent on stop counted in both).
    let (records, observations) =
        (Metrics::get(&metrics.observation_records_out_total), Metrics::get(&metrics.observations_out_total));
    assert!(observations >= out.len() as u64, "{observations} counted, {} read", out.len());
    if batch_max_bytes == 0 {
        assert_eq!(records, observations);
    } else {
        assert!(records * 5 < observations, "{records} records for {observations} observations");
    }

    // Partitions: the aggregator places records itself; each key where librdkafka's own
    // partitioner puts it (as aggregators before batches let it), so a rolling upgrade splits
    // no service account across partitions.
    let keyed: BTreeMap<&str, i32> = out
        .iter()
        .filter(|o| !o.headers.contains_key("tokentrail-broadcast"))
        .map(|o| (o.key.as_str(), o.partition))
        .collect();
    assert!(keyed.len() > 3);
    let librdkafka = librdkafka_partitions(&t.observations, keyed.keys().copied()).await;
    assert_eq!(keyed.into_iter().map(|(k, p)| (k.to_string(), p)).collect::<BTreeMap<_, _>>(), librdkafka);

    // Keys: every token use under its account; broadcasts on every partition.
    for o in &out {
        match o.observation().kind.unwrap() {
            pb::observation::Kind::TokenUse(u) => {
                let sa = u.serviceaccount.unwrap();
                let cluster = o.observation().cluster;
                assert_eq!(o.key, format!("{cluster}/{}/{}", sa.namespace, sa.name));
            }
            pb::observation::Kind::Node(_) => assert!(o.headers.contains_key("tokentrail-broadcast")),
            _ => {}
        }
    }
    let dev_use = out.iter().find(|o| o.observation().cluster == "dev").expect("the header's cluster");
    assert_eq!(dev_use.key, "dev/shop/api");
    let broadcasts: BTreeMap<&str, usize> =
        out.iter().filter(|o| o.headers.contains_key("tokentrail-broadcast")).fold(BTreeMap::new(), |mut m, o| {
            *m.entry(o.key.as_str()).or_default() += 1;
            m
        });
    for (key, copies) in &broadcasts {
        assert_eq!(copies % 3, 0, "{key}: a copy on each of the 3 partitions");
    }

    // Order: per key, the audit IDs of token uses come out in the order they went in.
    let mut input_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in incident_lines()[0..120].iter() {
        let mut decoded = tokentrail_aggregator_core::Decoded::new();
        tokentrail_aggregator_core::decode_value(line.as_bytes(), &mut decoded);
        for o in &decoded.observations {
            if let tokentrail_correlator_core::Observation::TokenUse(u) = o {
                let key = format!("prod/{}/{}", u.serviceaccount.namespace, u.serviceaccount.name);
                input_order.entry(key).or_default().push(u.audit_id.clone());
            }
        }
    }
    for (key, ids) in &input_order {
        let got: Vec<String> = out
            .iter()
            .filter(|o| &o.key == key)
            .filter_map(|o| match o.observation().kind {
                Some(pb::observation::Kind::TokenUse(u)) if u.request.as_ref().is_some() => Some(u.audit_id),
                _ => None,
            })
            .collect();
        assert_eq!(&got, ids, "order of token uses of {key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_record_is_a_dead_letter_with_its_origin_and_the_stream_goes_on() {
    let t = Topics::create("agg-dlq").await;
    let good = lines(0..3);
    produce_raw(&t.raw, &good[0..1], None).await;
    produce_raw(&t.raw, &[b"{\"kind\":\"Event\",\"auditID\": not json".to_vec()], None).await; // offset 1
    produce_raw(&t.raw, &good[1..3], None).await;
    produce_raw(&t.unmapped, &[USE.as_bytes().to_vec()], None).await; // no cluster header

    let running = start(t.config()).await;
    let want = expected(&good, "prod");
    let out = read_until(&t.observations, "the good records", Duration::from_millis(500), |o| {
        count_observations(o) >= want.len()
    })
    .await;
    let dead = read_until(&t.dead, "two dead letters", Duration::from_millis(500), |o| o.len() >= 2).await;
    let metrics = running.metrics.clone();
    running.stop().await;

    assert_eq!(observed(&out), want, "records after the bad one are still decoded");
    assert_eq!(dead.len(), 2, "{dead:?}");
    let bad = dead.iter().find(|d| d.headers["tokentrail-source-topic"] == t.raw).unwrap();
    assert_eq!(bad.value, b"{\"kind\":\"Event\",\"auditID\": not json", "the raw record, unchanged");
    assert_eq!(bad.headers["tokentrail-source-partition"], "0");
    assert_eq!(bad.headers["tokentrail-source-offset"], "1");
    assert_eq!(bad.headers["tokentrail-decoded-events"], "0");
    assert_eq!(bad.headers["tokentrail-cluster"], "prod");
    assert!(!bad.headers["tokentrail-error"].is_empty());
    let nameless = dead.iter().find(|d| d.headers["tokentrail-source-topic"] == t.unmapped).unwrap();
    assert!(nameless.headers["tokentrail-error"].contains("no cluster"), "{:?}", nameless.headers);
    assert_eq!(Metrics::get(&metrics.dead_letters_total), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_restart_resumes_after_the_last_commit_exactly() {
    let t = Topics::create("agg-restart").await;
    let all = lines(0..incident_lines().len());
    let (first, second) = all.split_at(200);
    let mut config = t.config();
    config.kafka.batch_records = 25;

    produce_raw(&t.raw, first, None).await;
    let running = start(config.clone()).await;
    let want_first = expected(first, "prod");
    read_until(&t.observations, "the first half", Duration::from_millis(500), |o| {
        count_observations(o) >= want_first.len()
    })
    .await;
    running.stop().await;

    produce_raw(&t.raw, second, None).await;
    let running = start(config).await;
    let want = expected(&all, "prod");
    let out =
        read_until(&t.observations, "everything", Duration::from_secs(2), |o| count_observations(o) >= want.len())
            .await;
    running.stop().await;
    assert_eq!(observed(&out), want, "a graceful restart neither loses nor repeats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_in_the_middle_of_a_batch_loses_nothing_and_repeats_at_most_the_uncommitted() {
    let t = Topics::create("agg-crash").await;
    let all = lines(0..incident_lines().len());
    let mut config = t.config();
    config.kafka.batch_records = 50;
    produce_raw(&t.raw, &all, None).await;

    let running = start(config.clone()).await;
    // Crash as soon as anything came out: the batch in flight is not committed.
    read_until(&t.observations, "the first output", Duration::ZERO, |o| !o.is_empty()).await;
    let committed_before_crash = Metrics::get(&running.metrics.commits_total);
    running.crash().await;

    let running = start(config).await;
    let want = expected(&all, "prod");
    let out = read_until(&t.observations, "everything after the crash", Duration::from_secs(2), |o| {
        let got = observed(o);
        want.iter().all(|w| got.binary_search(w).is_ok())
    })
    .await;
    running.stop().await;
    let got = observed(&out);
    // No loss: every expected observation, as many times as expected at least.
    let mut rest = got.clone();
    for w in &want {
        let i = rest.binary_search(w).unwrap_or_else(|_| panic!("an observation was lost"));
        rest.remove(i);
    }
    // Repeats: at most what the uncommitted batches (one in flight, one being filled) decode into.
    let per_record = all.iter().map(|r| expected(std::slice::from_ref(r), "prod").len()).max().unwrap();
    assert!(
        rest.len() <= 2 * 50 * per_record,
        "{} repeated after the crash ({committed_before_crash} commits before it)",
        rest.len()
    );
}

/// Where librdkafka's default partitioner puts a record of each key on `topic` (produced there:
/// the test's readers are done with it by then).
async fn librdkafka_partitions<'a>(topic: &str, keys: impl Iterator<Item = &'a str>) -> BTreeMap<String, i32> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = tokentrail_integration_tests::kafka().client_config().create().unwrap();
    let mut placed = BTreeMap::new();
    for key in keys {
        let record = FutureRecord::to(topic).key(key).payload("probe");
        let delivered = producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
        placed.insert(key.to_string(), delivered.partition);
    }
    placed
}
