//! The generated types encode and decode, and the service has the path the aggregator serves.

use prost::Message;
use tokentrail_proto::wire::agent::v1::{
    agent_message, AgentMessage, Credential, CredentialLocation, NodeSnapshot, VolumeKind,
};

#[test]
fn agent_message_round_trips() {
    let msg = AgentMessage {
        agent_id: "a1".into(),
        sequence: 7,
        node_name: "worker-1".into(),
        observed_at_micros: 1_700_000_000_000_000,
        body: Some(agent_message::Body::Snapshot(NodeSnapshot {
            credentials: vec![Credential {
                location: Some(CredentialLocation {
                    pod_uid: "uid-1".into(),
                    volume_kind: VolumeKind::Projected as i32,
                    volume: "kube-api-access-abcde".into(),
                    file: "token".into(),
                }),
                jti: Some("jti-1".into()),
                audiences: vec!["https://kubernetes.default.svc".into()],
                issued_at_micros: Some(1_700_000_000_000_000),
                ..Default::default()
            }],
            ..Default::default()
        })),
    };
    let bytes = msg.encode_to_vec();
    assert_eq!(AgentMessage::decode(bytes.as_slice()).unwrap(), msg);
}

#[test]
fn attestation_service_is_named_in_its_package() {
    use tokentrail_proto::wire::agent::v1::attestation_server::AttestationServer;
    assert_eq!(<AttestationServer<()> as tonic::server::NamedService>::NAME, "tokentrail.agent.v1.Attestation");
}
