//! The streaming correlator against the real broker, as a real process: the example incident's
//! audit log goes through the aggregator into the observations topic, and `tokentrail
//! correlator` turns it into findings exactly once, even when killed with SIGKILL mid-batch.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;
mod correlator_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aggregator_support::{incident_lines, produce_raw, read_committed_until, read_until, start, Out, Topics};
use correlator_support::{
    by_id, caught_up, committed, correlator, correlator_logging_to, correlator_with, kill9, outputs, stop, Outputs,
};
use tokentrail_integration_tests::{kafka, unique_name};

/// The findings an analysis of the same evidence reports, by rule and client address.
const EXPECTED: [&str; 4] =
    ["token-used-off-cluster", "exec-then-token-use", "xff-spoofed-source", "legacy-token-foreign-ip"];

fn has_expected(out: &[Out]) -> bool {
    let rules: Vec<String> =
        by_id(out).values().map(|(_, v)| v["rule"].as_str().unwrap_or_default().to_string()).collect();
    EXPECTED.iter().all(|r| rules.iter().any(|x| x == r))
}

/// Raw audit lines through the real aggregator into the observations topic; returns once the
/// observations of everything produced so far (`so_far`) are there.
async fn aggregate(t: &Topics, lines: &[Vec<u8>], so_far: &[Vec<u8>]) {
    produce_raw(&t.raw, lines, None).await;
    let running = start(t.config()).await;
    let want = aggregator_support::expected(so_far, "prod").len();
    read_until(&t.observations, "the aggregator's observations", Duration::from_millis(300), |o| {
        aggregator_support::count_observations(o) >= want
    })
    .await;
    running.stop().await;
}

/// The reference: what one uninterrupted correlator makes of the whole observations topic.
async fn reference(t: &Topics, name: &str) -> Findings {
    let reference = outputs(name, 3).await;
    let child = correlator(&t.observations, &reference, &unique_name(name), "300ms");
    let expected =
        by_id(&read_until(&reference.findings, "the reference findings", Duration::from_secs(3), has_expected).await);
    stop(child);
    expected
}

/// Findings by id: how many records created each, and its latest state.
type Findings = std::collections::BTreeMap<String, (usize, serde_json::Value)>;

fn raw_lines() -> Vec<Vec<u8>> {
    incident_lines().into_iter().map(String::into_bytes).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_in_the_stream_becomes_findings_once_each() {
    let _serial = correlator_support::one_at_a_time().await;
    let lines = raw_lines();
    let t = Topics::create("corr-replay").await;
    aggregate(&t, &lines, &lines).await;
    let out = outputs("corr-replay", 3).await;
    let child = correlator(&t.observations, &out, &unique_name("corr-replay"), "300ms");
    let findings = read_until(&out.findings, "the replay's findings", Duration::from_secs(2), has_expected).await;
    stop(child);
    let ids = by_id(&findings);
    for (id, (creates, v)) in &ids {
        assert_eq!(*creates, 1, "finding {id} ({}) created {creates} times", v["rule"]);
    }
    let off = ids.values().find(|(_, v)| v["rule"] == "token-used-off-cluster").unwrap();
    assert_eq!(off.1["source_ip"], "203.0.113.50");
    assert_eq!(off.1["cluster"], "prod");
    // Each finding of a token use is on the findings partition numbered as the observations
    // partition of its service account: a frozen replica's transaction holds back only its own.
    let uses: Vec<&Out> =
        findings.iter().filter(|o| o.headers.get("rule").is_some_and(|r| r.starts_with("token-used"))).collect();
    assert!(!uses.is_empty());
    for o in uses {
        let v: serde_json::Value = serde_json::from_slice(&o.value).unwrap();
        let sa = &v["serviceaccount"];
        let key = format!("prod/{}/{}", sa["namespace"].as_str().unwrap(), sa["name"].as_str().unwrap());
        assert_eq!(o.partition, tokentrail_aggregator_core::route::key_partition(&key, 3), "{key}: {v}");
    }
}

/// Each finding's count and last use, by id: what two runs over the same evidence agree on.
fn counts(findings: &Findings) -> std::collections::BTreeMap<&str, (&serde_json::Value, &serde_json::Value)> {
    findings.iter().map(|(id, (_, v))| (id.as_str(), (&v["count"], &v["last_seen"]))).collect()
}

/// A replica whose state takes longer to judge than `--judging-share` of its commit interval
/// commits, and so judges, less often: every commit judges what it commits, so offsets a reader
/// sees committed are always of judged evidence. Here the share is so small that after its first
/// commit the replica commits again only when it stops: what it reads meanwhile is held, not
/// committed, and its stop judges and commits all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_paced_by_its_judging_share_commits_only_judged_input_and_its_stop_judges_the_rest() {
    let _serial = correlator_support::one_at_a_time().await;
    let lines = raw_lines();
    let (first, rest) = lines.split_at(lines.len() / 3);
    let t = Topics::create("corr-pace").await;
    aggregate(&t, first, first).await;
    let out = outputs("corr-pace", 3).await;
    // A judgement takes a microsecond at least: at this share the next would wait for years.
    let child =
        correlator_with(&t.observations, &out, &unique_name("corr-pace"), "300ms", &["--judging-share", "1e-12"]);
    let bootstrap = kafka().bootstrap();
    let started = std::time::Instant::now();
    let at_first_commit = loop {
        let offsets = committed(bootstrap, &out.group, &t.observations).await;
        if !offsets.is_empty() {
            break offsets;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the paced replica never committed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let findings_at_first_commit = by_id(
        &read_committed_until(&out.findings, "the first commit's findings", Duration::from_secs(1), |_| true).await,
    );

    // The rest of the evidence is read (the replica polls on) but neither committed nor judged.
    aggregate(&t, rest, &lines).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(committed(bootstrap, &out.group, &t.observations).await, at_first_commit, "no second commit");
    let held =
        by_id(&read_committed_until(&out.findings, "the findings while held", Duration::from_secs(1), |_| true).await);
    assert_eq!(counts(&held), counts(&findings_at_first_commit), "no findings without a commit");

    // The stop's last commit judges everything read and commits it with its offsets.
    stop(child);
    caught_up(bootstrap, &out.group, &t.observations, "the stopped replica").await;
    let got = by_id(
        &read_committed_until(&out.findings, "the findings after the stop", Duration::from_secs(1), has_expected).await,
    );
    let expected = reference(&t, "corr-pace-ref").await;
    assert_ne!(counts(&held), counts(&expected), "the held evidence made findings (else this test shows nothing)");
    assert_eq!(counts(&got), counts(&expected), "the findings of a replica judging at every commit");
    for (id, (creates, v)) in &got {
        assert_eq!(*creates, 1, "finding {id} ({}) created {creates} times", v["rule"]);
    }
}

/// What is in the observations topic is not always the aggregator's: a record that is no
/// observation, and a batch of 200,000 empty entries (two bytes each, 400 KB), between the
/// records of an incident. Each is skipped and counted, and named in the log by topic, partition
/// and offset, one line per record at most (and per kind of error one every 10 s): the batch
/// alone must not write 200,000 lines. The incident's findings come as from a clean topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_records_and_batches_are_skipped_and_logged_without_a_flood() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let _serial = correlator_support::one_at_a_time().await;
    let lines = raw_lines();
    let (first, rest) = lines.split_at(lines.len() / 2);
    let t = Topics::create("corr-bad").await;
    aggregate(&t, first, first).await;
    let producer: FutureProducer = kafka().client_config().create().unwrap();
    let empty_entries = [0x0a_u8, 0x00].repeat(200_000);
    let batch = OwnedHeaders::new().insert(Header { key: "tokentrail-batch", value: Some("1") });
    for partition in 0..3 {
        let not_an_observation = FutureRecord::<str, [u8]>::to(&t.observations)
            .partition(partition)
            .key("prod/shop/web")
            .payload(&b"\xff\xff\xff not protobuf"[..]);
        producer.send(not_an_observation, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
        let empty = FutureRecord::<str, [u8]>::to(&t.observations)
            .partition(partition)
            .payload(&empty_entries[..])
            .headers(batch.clone());
        producer.send(empty, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
    }
    // The rest after them (`aggregate` reads the topic back, and would stop at the garbage).
    produce_raw(&t.raw, rest, None).await;
    let running = start(t.config()).await;
    caught_up(kafka().bootstrap(), &t.group, &t.raw, "the aggregator").await;
    running.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("correlator.log");
    let out = outputs("corr-bad", 3).await;
    let child = correlator_logging_to(&t.observations, &out, &unique_name("corr-bad"), &log);
    let got = by_id(
        &read_committed_until(&out.findings, "the incident's findings", Duration::from_secs(1), has_expected).await,
    );
    caught_up(kafka().bootstrap(), &out.group, &t.observations, "the correlator").await;
    stop(child);
    for (id, (creates, v)) in &got {
        assert_eq!(*creates, 1, "finding {id} ({}) created {creates} times", v["rule"]);
    }
    let log = std::fs::read_to_string(&log).unwrap();
    let skipped: Vec<&str> = log.lines().filter(|l| l.contains("undecodable observations skipped")).collect();
    // Two kinds of error; within 10 s each is logged once, the others held back and counted.
    assert!((2..=6).contains(&skipped.len()), "{} lines: {skipped:#?}", skipped.len());
    let named = |needle: &str| {
        let topic = format!("topic=\"{}\"", t.observations);
        skipped.iter().any(|l| l.contains(needle) && l.contains(&topic) && l.contains("offset="))
    };
    assert!(named("skipped=200000"), "the empty batch, by topic and offset: {skipped:#?}");
    assert!(named("not an observation"), "the record that is no observation: {skipped:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correlator_killed_mid_batch_and_restarted_reports_what_an_uninterrupted_one_does() {
    let _serial = correlator_support::one_at_a_time().await;
    let lines = raw_lines();
    let (first, second) = lines.split_at(lines.len() * 6 / 10);
    let t = Topics::create("corr-kill").await;
    aggregate(&t, first, first).await;

    // The run under test commits every 2 s: it commits the first part, then is killed with the
    // second part consumed but not committed.
    let out = outputs("corr-kill", 3).await;
    let instance = unique_name("corr-kill");
    let child = correlator(&t.observations, &out, &instance, "2s");
    read_until(&out.findings, "the first committed findings", Duration::ZERO, |o| !o.is_empty()).await;
    aggregate(&t, second, &lines).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    kill9(child);
    let child = correlator(&t.observations, &out, &instance, "2s");
    let got =
        by_id(&read_until(&out.findings, "findings after the restart", Duration::from_secs(5), has_expected).await);
    stop(child);

    let expected = reference(&t, "corr-ref").await;

    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "the same findings");
    for (id, (creates, v)) in &got {
        assert_eq!(*creates, 1, "finding {id} ({}) created {creates} times across the crash", v["rule"]);
        let (_, want) = &expected[id];
        assert_eq!((&v["count"], &v["last_seen"]), (&want["count"], &want["last_seen"]), "finding {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_correlators_split_the_partitions_and_hand_them_over_without_losing_state() {
    let _serial = correlator_support::one_at_a_time().await;
    let lines = raw_lines();
    let (first, second) = lines.split_at(lines.len() / 2);
    let t = Topics::create("corr-pair").await;
    aggregate(&t, first, first).await;

    let out = outputs("corr-pair", 3).await;
    let a = correlator(&t.observations, &out, &unique_name("corr-a"), "300ms");
    read_until(&out.findings, "findings of the first half", Duration::ZERO, |o| !o.is_empty()).await;
    // A second replica joins: the group rebalances and it restores the partitions it takes.
    let b = correlator(&t.observations, &out, &unique_name("corr-b"), "300ms");
    tokio::time::sleep(Duration::from_secs(4)).await;
    aggregate(&t, second, &lines).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The first leaves: the survivor takes over its partitions, state included.
    stop(a);
    let got = by_id(&read_until(&out.findings, "every finding", Duration::from_secs(5), has_expected).await);
    stop(b);

    let expected = reference(&t, "corr-pair-ref").await;

    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "the same findings");
    for (id, (creates, v)) in &got {
        assert_eq!(*creates, 1, "finding {id} ({}) created {creates} times across the rebalances", v["rule"]);
        let (_, want) = &expected[id];
        assert_eq!((&v["count"], &v["last_seen"]), (&want["count"], &want["last_seen"]), "finding {id}");
    }
}

/// What a correlator of the version before the per-key changelog left: for each partition, the
/// findings it sent, its whole state as one record keyed by the partition number, and the
/// group's offsets at the end of what it read.
async fn leave_whole_state_snapshots(t: &Topics, out: &Outputs, partitions: i32, want: usize) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use tokentrail_correlator::stream::{findings, FindingFormat, PartitionState, Placement};

    let observations = read_until(&t.observations, "observations to fold", Duration::ZERO, |o| {
        aggregator_support::count_observations(o) >= want
    })
    .await;
    let producer: FutureProducer = kafka().client_config().create().unwrap();
    let config = tokentrail_correlator_core::EngineConfig::default();
    let clock = tokentrail_correlator::stream::now();
    for partition in 0..partitions {
        let mut state = PartitionState::default();
        for o in observations.iter().filter(|o| o.partition == partition) {
            let (cluster, observation) = tokentrail_proto::wire::from_proto(&o.observation()).unwrap();
            let copy = if o.is_extra_copy() { Placement::Elsewhere } else { Placement::Own };
            state.observe_copy(&cluster, observation, copy, &config);
        }
        for (finding, activity) in state.due(clock) {
            let value = findings::value(&finding, activity, FindingFormat::Json).unwrap();
            let record = FutureRecord::to(&out.findings)
                .key(&finding.id)
                .payload(&value)
                .headers(findings::headers(&finding, activity));
            producer.send(record, Duration::from_secs(10)).await.unwrap();
        }
        let snapshot = state.snapshot().unwrap();
        let key = partition.to_string();
        let record = FutureRecord::to(&out.changelog).partition(partition).key(&key).payload(&snapshot);
        producer.send(record, Duration::from_secs(10)).await.unwrap();
    }
    // The group's offsets: everything read so far.
    let consumer: BaseConsumer = kafka().client_config().set("group.id", &out.group).create().unwrap();
    let mut offsets = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        let (_, high) = consumer.fetch_watermarks(&t.observations, partition, Duration::from_secs(10)).unwrap();
        offsets.add_partition_offset(&t.observations, partition, rdkafka::Offset::Offset(high)).unwrap();
    }
    consumer.commit(&offsets, rdkafka::consumer::CommitMode::Sync).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changelog_of_whole_state_snapshots_is_taken_over_and_rewritten_as_entries() {
    let _serial = correlator_support::one_at_a_time().await;
    let lines = raw_lines();
    let (first, second) = lines.split_at(lines.len() * 6 / 10);
    let t = Topics::create("corr-upgrade").await;
    aggregate(&t, first, first).await;
    let out = outputs("corr-upgrade", 3).await;
    leave_whole_state_snapshots(&t, &out, 3, aggregator_support::expected(first, "prod").len()).await;

    // The new version takes over from the snapshots and offsets, and reads the rest.
    aggregate(&t, second, &lines).await;
    let child = correlator(&t.observations, &out, &unique_name("corr-upgrade"), "300ms");
    let got =
        by_id(&read_until(&out.findings, "findings after the upgrade", Duration::from_secs(3), has_expected).await);
    stop(child);

    let expected = reference(&t, "corr-upgrade-ref").await;
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "the same findings");
    for (id, (creates, v)) in &got {
        assert_eq!(*creates, 1, "finding {id} ({}) created {creates} times across the upgrade", v["rule"]);
    }

    // Each partition's old snapshot is deleted (a tombstone under its key), its state now entries.
    let deleted =
        |o: &[Out], p: i32| o.iter().any(|r| r.partition == p && r.key == p.to_string() && r.value.is_empty());
    let changelog = read_until(&out.changelog, "each old snapshot's tombstone", Duration::from_millis(500), |o| {
        (0..3).all(|p| deleted(o, p))
    })
    .await;
    for partition in 0..3 {
        let entries =
            changelog.iter().filter(|o| o.partition == partition && o.key.starts_with(&format!("{partition}\t")));
        assert!(entries.count() > 0, "partition {partition}: its state written as entries");
    }
}

/// A restore reads the changelog to its end with every transaction on it resolved. Right after
/// a replica commits, the broker may still be writing the commit markers when the partition's
/// next owner restores it (the markers follow the commit's answer), and a frozen replica's
/// transaction stays open until aborted: a read_committed reader's end (the last stable offset)
/// is then before that transaction, while the group's committed offsets wait for it. A restore
/// that stopped there would miss state whose input is never read again (in the broker drill: a
/// missed attestation, then a false `token-forged-mint`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_waits_for_a_transaction_still_open_on_the_changelog() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    use tokentrail_correlator::stream::changelog;
    use tokentrail_correlator::stream::{CorrelatorConfig, PartitionState};
    use tokentrail_correlator_core::observation::{
        Credential, Observation, Request, ServiceAccountRef, Stage, TokenUse,
    };
    use tokentrail_correlator_core::time::Timestamp;

    let _serial = correlator_support::one_at_a_time().await;
    let out = outputs("restore-open", 1).await;
    let mut config = CorrelatorConfig::new(kafka().bootstrap(), &out.group, unique_name("restore-open"));
    config.changelog_topic = out.changelog.clone();
    // One use of its own credential from an outside address each: a finding each, once restored.
    let replay = |n: i64| {
        Observation::TokenUse(TokenUse {
            time: Timestamp(1_772_359_200_000_000 + n * 60_000_000),
            audit_id: format!("restore-{n}"),
            stage: Stage::ResponseComplete,
            serviceaccount: ServiceAccountRef { namespace: "payments".into(), name: "api".into() },
            serviceaccount_uid: None,
            credential: Credential::PodBound {
                jti: Some(format!("jti-{n}")),
                pod_name: "api-1".into(),
                pod_uid: "uid-api".into(),
                node: Some("worker-1".into()),
            },
            source_ips: vec![format!("203.0.113.{n}").parse().unwrap()],
            user_agent: None,
            request: Request { verb: "get".into(), code: Some(200), ..Request::default() },
            stale_token: false,
        })
    };
    let mut state = PartitionState::default();
    state.track_changes();
    state.observe("prod", replay(1), &config.engine);
    let committed = state.changes();
    state.observe("prod", replay(2), &config.engine);
    let open = state.changes();

    let producer: ThreadedProducer<DefaultProducerContext> =
        kafka().client_config().set("transactional.id", unique_name("restore-open-writer")).create().unwrap();
    let timeout = Duration::from_secs(30);
    producer.init_transactions(timeout).unwrap();
    let write = |changes: &[tokentrail_correlator_core::changes::Change]| {
        producer.begin_transaction().unwrap();
        for c in changes {
            let key = changelog::record_key(0, &c.key);
            let value = c.value.clone().unwrap_or_default();
            producer.send(BaseRecord::to(&out.changelog).partition(0).key(&key).payload(&value)).unwrap();
        }
        producer.flush(timeout).unwrap();
    };
    write(&committed);
    producer.commit_transaction(timeout).unwrap();
    // The second transaction's records are at the broker, its commit not yet.
    write(&open);
    let restore = |shutdown: Arc<AtomicBool>| {
        let config = config.clone();
        tokio::task::spawn_blocking(move || changelog::restore(&config, 0, &shutdown))
    };
    let restoring = restore(Arc::default());
    // A replica asked to stop while its restore waits gives the partition up rather than wait.
    let stopping = Arc::new(AtomicBool::new(false));
    let given_up = restore(stopping.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!restoring.is_finished(), "the restore ended before the open transaction was resolved");
    stopping.store(true, Ordering::Relaxed);
    let given_up = tokio::time::timeout(Duration::from_secs(20), given_up)
        .await
        .expect("a restore asked to stop still waits for the open transaction");
    assert!(given_up.unwrap().unwrap().is_none(), "a restore asked to stop restores nothing");
    producer.commit_transaction(timeout).unwrap();
    let mut restored = restoring.await.unwrap().unwrap().expect("not stopped").state;
    let findings = restored.due(Timestamp::MIN);
    assert_eq!(findings.len(), 2, "both uses restored, the later one from the transaction that was open");
}
