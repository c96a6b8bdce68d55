//! The attestation variant of `token-forged-mint` through the real broker and the real
//! `tokentrail correlator` process: a pod-bound credential its node's agent never attested is
//! reported only once the agent has reported past the grace period, and never when the late
//! attestation arrives inside it. An attestation stamped 9999-12-31 (one that got past the
//! aggregator's clock check) does not move event time, not even once saved and restored.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod aggregator_support;

use std::net::IpAddr;
use std::time::Duration;

use aggregator_support::{create_topics, read_until, Out};
use prost::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokentrail_correlator_core::observation::{
    Credential, CredentialEvent, CredentialFact, FactSource, NodeFact, PodEvent, PodFact, Request, ServiceAccountRef,
    Stage, TokenUse,
};
use tokentrail_correlator_core::{Observation, Timestamp};
use tokentrail_integration_tests::{kafka, unique_name};

mod correlator_support;
use correlator_support::{by_id, correlator, outputs, stop};

const T0: i64 = 1_773_136_800_000_000; // 2026-03-10T10:00:00Z
const MINUTE: i64 = 60_000_000;

fn at(minutes: f64) -> Timestamp {
    Timestamp(T0 + (minutes * MINUTE as f64) as i64)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sa() -> ServiceAccountRef {
    ServiceAccountRef { namespace: "payments".into(), name: "api".into() }
}

fn bound(jti: &str) -> Credential {
    Credential::PodBound {
        jti: Some(jti.into()),
        pod_name: "api-1".into(),
        pod_uid: "uid-api".into(),
        node: Some("worker-1".into()),
    }
}

fn pod() -> Observation {
    Observation::Pod(PodFact {
        time: at(0.0),
        event: Some(PodEvent::Observed),
        source: Some(FactSource::Inventory),
        uid: Some("uid-api".into()),
        namespace: "payments".into(),
        name: "api-1".into(),
        node: Some("worker-1".into()),
        serviceaccount: Some("api".into()),
        host_network: Some(false),
        ips: vec![ip("10.244.1.12")],
        secret_volumes: vec![],
    })
}

/// The agent's report of its node (sent on every snapshot): its heartbeat.
fn heartbeat(minutes: f64) -> Observation {
    Observation::Node(NodeFact {
        time: at(minutes),
        source: Some(FactSource::Attestation),
        name: "worker-1".into(),
        addresses: vec![ip("10.0.1.11")],
        pod_cidrs: vec!["10.244.1.0/24".parse().unwrap()],
        os: None,
    })
}

fn held(jti: &str, minutes: f64) -> Observation {
    Observation::Credential(CredentialFact {
        time: at(minutes),
        event: CredentialEvent::Held,
        node: "worker-1".into(),
        pod_uid: "uid-api".into(),
        serviceaccount: sa(),
        credential: bound(jti),
        details: Default::default(),
    })
}

fn used(jti: &str, from: &str, minutes: f64) -> Observation {
    Observation::TokenUse(TokenUse {
        time: at(minutes),
        audit_id: unique_name("audit"),
        stage: Stage::ResponseComplete,
        serviceaccount: sa(),
        serviceaccount_uid: None,
        credential: bound(jti),
        source_ips: vec![ip(from)],
        user_agent: Some("api/1.0".into()),
        request: Request {
            verb: "get".into(),
            resource: Some("configmaps".into()),
            code: Some(200),
            ..Request::default()
        },
        stale_token: false,
    })
}

/// Produces observations as the aggregator would (protobuf, key = the service account) to a
/// one-partition topic, so order is the order given.
async fn produce(topic: &str, observations: &[Observation]) {
    let producer: FutureProducer = kafka().client_config().create().unwrap();
    for o in observations {
        let value = tokentrail_proto::wire::to_proto("prod", o).encode_to_vec();
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic).key("prod/payments/api").payload(&value);
        producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
    }
}

fn rules_from(out: &[Out], source_ip: &str) -> bool {
    by_id(out).values().any(|(_, v)| v["source_ip"] == source_ip)
}

fn forged(out: &[Out]) -> bool {
    by_id(out).values().any(|(_, v)| v["rule"] == "token-forged-mint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unattested_credential_is_forged_only_after_the_grace_and_not_when_attested_late() {
    let _serial = correlator_support::one_at_a_time().await;
    for late_attestation in [false, true] {
        let name = if late_attestation { "attest-late" } else { "attest-none" };
        let observations = unique_name(&format!("{name}-obs"));
        create_topics(&[(&observations, 1)]).await;
        let out = outputs(name, 1).await;
        let child = correlator(&observations, &out, &unique_name(name), "300ms");

        // The ghost credential is used at minute 10; the agent has reported up to minute 11.
        // The off-cluster canary makes a finding, so its arrival shows the batch was processed.
        produce(&observations, &[pod(), held("j-real", 0.0), used("j-ghost", "10.244.1.12", 10.0), heartbeat(11.0)])
            .await;
        produce(&observations, &[used("j-real", "203.0.113.1", 10.5)]).await;
        let first =
            read_until(&out.findings, "the first canary", Duration::from_secs(2), |o| rules_from(o, "203.0.113.1"))
                .await;
        assert!(!forged(&first), "{name}: no verdict while the agent has not reported past the grace");

        // Minute 13: past the grace. Either the attestation arrived late but inside it, or not.
        let mut second = Vec::new();
        if late_attestation {
            second.push(held("j-ghost", 9.9));
        }
        second.extend([heartbeat(13.0), used("j-real", "203.0.113.2", 13.5)]);
        produce(&observations, &second).await;
        let all = read_until(&out.findings, "the second canary", Duration::from_secs(3), |o| {
            rules_from(o, "203.0.113.2") && (late_attestation || forged(o))
        })
        .await;
        stop(child);
        assert_eq!(forged(&all), !late_attestation, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_future_attestation_in_saved_state_leaves_every_later_finding_intact() {
    let _serial = correlator_support::one_at_a_time().await;
    let observations = unique_name("far-future-obs");
    create_topics(&[(&observations, 1)]).await;
    let out = outputs("far-future", 1).await;
    let instance = unique_name("far-future");
    // A compromised worker-2 (one that got past the aggregator's clock check) stamps 9999-12-31.
    let end = Timestamp::parse("9999-12-31T23:59:59Z").unwrap();
    let hostile = [
        Observation::Credential(CredentialFact {
            time: end,
            event: CredentialEvent::Held,
            node: "worker-2".into(),
            pod_uid: "uid-evil".into(),
            serviceaccount: sa(),
            credential: Credential::PodBound {
                jti: Some("j-evil".into()),
                pod_name: "evil-1".into(),
                pod_uid: "uid-evil".into(),
                node: Some("worker-2".into()),
            },
            details: Default::default(),
        }),
        Observation::Node(NodeFact {
            time: end,
            source: Some(FactSource::Attestation),
            name: "worker-2".into(),
            addresses: vec![],
            pod_cidrs: vec![],
            os: None,
        }),
    ];

    // worker-1's ghost credential is used at minute 10; its agent has reported up to minute 11,
    // so the verdict waits. Had worker-2's time moved event time, the use would be expired now.
    let child = correlator(&observations, &out, &instance, "300ms");
    let first = [vec![pod(), held("j-real", 0.0)], hostile.to_vec()].concat();
    produce(&observations, &[first, vec![used("j-ghost", "10.244.1.12", 10.0), heartbeat(11.0)]].concat()).await;
    produce(&observations, &[used("j-real", "203.0.113.1", 10.5)]).await;
    let before =
        read_until(&out.findings, "the first canary", Duration::from_millis(500), |o| rules_from(o, "203.0.113.1"))
            .await;
    assert!(!forged(&before), "no verdict while worker-1's agent has not reported past the grace");
    stop(child);

    // The same instance restores the saved state; worker-1's agent reports past the grace.
    let child = correlator(&observations, &out, &instance, "300ms");
    produce(&observations, &[heartbeat(13.0), used("j-real", "203.0.113.2", 13.5)]).await;
    let all = read_until(&out.findings, "the forged mint after the restart", Duration::from_secs(1), |o| {
        rules_from(o, "203.0.113.2") && forged(o)
    })
    .await;
    stop(child);
    let findings = by_id(&all);
    assert!(findings.values().all(|(creates, _)| *creates == 1), "each reported once: {findings:?}");
}
