//! Agents authenticated by their projected service-account token, over real sockets (mTLS on
//! 127.0.0.1:0) with the real broker behind the aggregator:
//! * against the issuer's keys (a JWKS file of an RSA key made at test time with the openssl
//!   CLI, RS256 as kube-apiserver signs): the token's node claim decides which node an agent
//!   may attest for; a token for node A attesting node B, a bad signature, another audience, an
//!   expired token, another service account and no token at all are refused and counted, and
//!   none of it disturbs a connected agent; a stream ends when its token expires;
//! * through TokenReview, answered by a fake apiserver over HTTPS in the test: the real agent's
//!   `authorization: Bearer` header is reviewed, answers are cached by the token's hash, and
//!   what the apiserver refuses is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns

mod aggregator_support;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aggregator_support::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents, RSA_PKCS1_SHA256};
use tokentrail_aggregator::config::{AgentTokenConfig, GrpcConfig, TlsConfig};
use tokentrail_aggregator::Metrics;
use tokentrail_proto::wire::agent::v1 as agent;
use tokentrail_proto::wire::agent::v1::attestation_client::AttestationClient;
use tokentrail_proto::wire::observation::v1 as pb;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_rustls::rustls;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
const AUDIENCE: &str = "tokentrail-aggregator";
const AGENT_ACCOUNT: &str = "tokentrail/tokentrail-agent";

#[allow(clippy::disallowed_methods)] // tokens are minted for the aggregator's real clock
fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// An RSA signing key made for this run by the openssl CLI (nothing secret is committed).
struct IssuerKey {
    pair: RsaKeyPair,
    kid: String,
}

impl IssuerKey {
    fn generate(dir: &Path, kid: &str) -> IssuerKey {
        let path = dir.join(format!("{kid}.der"));
        let status = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-outform", "DER", "-out"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("the openssl CLI");
        assert!(status.success(), "openssl genpkey failed");
        // DER output of genpkey is PKCS#1 RSAPrivateKey with OpenSSL 3.0.
        let pair = RsaKeyPair::from_der(&std::fs::read(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        IssuerKey { pair, kid: kid.into() }
    }

    /// The JWKS document the apiserver serves at `/openid/v1/jwks`.
    fn jwks(&self) -> serde_json::Value {
        let public = RsaPublicKeyComponents::<Vec<u8>>::from(self.pair.public());
        let (n, e) = (public.n, public.e);
        serde_json::json!({"keys": [{"use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e)}]})
    }

    fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "RS256", "kid": self.kid});
        let signed =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut sig = vec![0; self.pair.public().modulus_len()];
        self.pair.sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), signed.as_bytes(), &mut sig).unwrap();
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// The claims of the agent pod's projected token for `node` (docs/kubernetes.md §4.1).
fn agent_claims(node: &str) -> serde_json::Value {
    let now = unix_now();
    serde_json::json!({
        "aud": [AUDIENCE], "exp": now + 3600, "iat": now - 60, "nbf": now - 60, "iss": ISSUER,
        "jti": format!("jti-agent-{node}"), "sub": "system:serviceaccount:tokentrail:tokentrail-agent",
        "kubernetes.io": {"namespace": "tokentrail", "node": {"name": node, "uid": format!("uid-{node}")},
            "pod": {"name": format!("tokentrail-agent-{node}"), "uid": format!("uid-agent-{node}")},
            "serviceaccount": {"name": "tokentrail-agent", "uid": "uid-sa"}}
    })
}

fn with(node: &str, change: impl FnOnce(&mut serde_json::Value)) -> serde_json::Value {
    let mut c = agent_claims(node);
    change(&mut c);
    c
}

async fn start_aggregator(t: &Topics, agent_token: AgentTokenConfig) -> Running {
    let mut config = t.config();
    config.kafka.audit_topics.clear();
    let mut g = GrpcConfig::new("127.0.0.1:0".parse().unwrap(), "prod");
    g.tls = Some(TlsConfig {
        client_ca: Some(test_tls("ca.pem")),
        node_dns_name: "agent.{node}.test".into(),
        ..TlsConfig::new(test_tls("server.pem"), test_tls("server.key"))
    });
    g.agent_token = Some(agent_token);
    config.grpc = Some(g);
    start(config).await
}

/// An open attestation stream: messages in, acknowledged sequences (or the refusal) out.
struct Stream {
    tx: tokio::sync::mpsc::Sender<agent::AgentMessage>,
    acks: tonic::Streaming<agent::AggregatorMessage>,
}

impl Stream {
    async fn open(addr: std::net::SocketAddr, token: Option<&str>) -> Result<Stream, tonic::Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        if let Some(t) = token {
            request.metadata_mut().insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        let acks = AttestationClient::new(mtls_channel(addr, true).await.unwrap()).attest(request).await?.into_inner();
        Ok(Stream { tx, acks })
    }

    /// Sends `m`; the sequence acknowledged, or the status the stream ended with.
    async fn send(&mut self, m: agent::AgentMessage) -> Result<u64, tonic::Status> {
        // A stream refused before its first message is closed already: its status tells why.
        let _ = self.tx.send(m).await;
        let answer = tokio::time::timeout(WAIT, self.acks.message()).await.expect("an answer")?;
        match answer.and_then(|a| a.body) {
            Some(agent::aggregator_message::Body::Ack(a)) => Ok(a.sequence),
            None => Err(tonic::Status::unknown("stream ended without an answer")),
        }
    }
}

/// Opens a stream with `token` and sends one snapshot: the first answer.
async fn attest_once(
    addr: std::net::SocketAddr,
    token: Option<&str>,
    m: agent::AgentMessage,
) -> Result<u64, tonic::Status> {
    Stream::open(addr, token).await?.send(m).await
}

fn pod_facts(out: &[Out]) -> Vec<(String, String)> {
    out.iter()
        .filter_map(|o| match o.observation().kind {
            Some(pb::observation::Kind::Pod(p)) => Some((p.name, p.node.unwrap_or_default())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_decides_the_node_and_bad_tokens_are_refused_without_disturbing_other_agents() {
    let t = Topics::create("agg-token-jwks").await;
    let dir = tempfile::tempdir().unwrap();
    let issuer = IssuerKey::generate(dir.path(), "key-1");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    let aggregator = start_aggregator(&t, AgentTokenConfig::jwks(AGENT_ACCOUNT, ISSUER, jwks)).await;
    let addr = aggregator.addr.unwrap();

    // The agent of worker-1 keeps its stream open through everything below.
    let mut healthy = Stream::open(addr, Some(&issuer.sign(&agent_claims("worker-1")))).await.unwrap();
    assert_eq!(healthy.send(snapshot("healthy", "worker-1", vec![attested_pod("web-1")])).await.unwrap(), 1);
    // An agent whose token expires in a few seconds: served until then, not after.
    let expiring = issuer.sign(&with("worker-1", |c| c["exp"] = (unix_now() + 4).into()));
    let mut short_lived = Stream::open(addr, Some(&expiring)).await.unwrap();
    assert_eq!(short_lived.send(snapshot("short-lived", "worker-1", vec![])).await.unwrap(), 1);

    // worker-1's token attesting a pod of worker-2: refused, and the pod counted.
    let token = issuer.sign(&agent_claims("worker-1"));
    let wrong_node = attest_once(addr, Some(&token), snapshot("liar", "worker-2", vec![attested_pod("db-1")])).await;
    assert_eq!(wrong_node.unwrap_err().code(), tonic::Code::PermissionDenied);
    // A valid token for worker-2 over worker-1's client certificate: mTLS still has its say.
    let token = issuer.sign(&agent_claims("worker-2"));
    let cert_mismatch =
        attest_once(addr, Some(&token), snapshot("liar-2", "worker-2", vec![attested_pod("db-2")])).await;
    assert_eq!(cert_mismatch.unwrap_err().code(), tonic::Code::PermissionDenied);

    let forger = IssuerKey::generate(dir.path(), "key-1");
    let now = unix_now();
    let bad_tokens = [
        ("signature", Some(forger.sign(&agent_claims("worker-1")))),
        ("audience", Some(issuer.sign(&with("worker-1", |c| c["aud"] = serde_json::json!([ISSUER]))))),
        ("expired", Some(issuer.sign(&with("worker-1", |c| c["exp"] = (now - 600).into())))),
        (
            "serviceaccount",
            Some(issuer.sign(&with("worker-1", |c| c["sub"] = "system:serviceaccount:shop:web".into()))),
        ),
        ("missing", None),
    ];
    for (reason, token) in &bad_tokens {
        let refused =
            attest_once(addr, token.as_deref(), snapshot(reason, "worker-1", vec![attested_pod("evil")])).await;
        assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated, "{reason}");
    }

    // The healthy agent's next message is still acknowledged on the same stream.
    let mut delta = snapshot("healthy", "worker-1", vec![]);
    delta.sequence = 2;
    delta.body = Some(agent::agent_message::Body::Delta(agent::NodeDelta {
        pods_upserted: vec![attested_pod("web-2")],
        ..Default::default()
    }));
    assert_eq!(healthy.send(delta).await.unwrap(), 2);
    let out = read_until(&t.observations, "the healthy agent's pods", Duration::from_millis(500), |o| {
        pod_facts(o).len() >= 2
    })
    .await;
    drop(healthy);
    let ended = tokio::time::timeout(WAIT, short_lived.acks.message()).await.expect("the stream ends at exp");
    assert_eq!(ended.unwrap_err().code(), tonic::Code::Unauthenticated, "ended by its token's expiry");
    let metrics = aggregator.metrics.clone();
    aggregator.stop().await;

    let mut pods = pod_facts(&out);
    pods.sort();
    // Pod facts go to every partition: one copy each.
    pods.dedup();
    assert_eq!(pods, [("web-1".to_string(), "worker-1".to_string()), ("web-2".into(), "worker-1".into())]);
    let refused: BTreeMap<&str, u64> = bad_tokens.iter().map(|(r, _)| (*r, 1)).collect();
    assert_eq!(metrics.agent_tokens_refused(), refused);
    assert_eq!(Metrics::get(&metrics.attestations_refused_total), 1, "db-1, attested by worker-1 for worker-2");
    assert_eq!(Metrics::get(&metrics.streams_refused_total), 7);
    assert_eq!(Metrics::get(&metrics.attestations_accepted_total), 3, "the healthy agent's two, the short-lived one's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_id_belongs_to_the_node_that_used_it_first() {
    let t = Topics::create("agg-token-agent-id").await;
    let dir = tempfile::tempdir().unwrap();
    let issuer = IssuerKey::generate(dir.path(), "key-1");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, issuer.jwks().to_string()).unwrap();
    let mut config = t.config();
    config.kafka.audit_topics.clear();
    let mut g = GrpcConfig::new("127.0.0.1:0".parse().unwrap(), "prod");
    // Tokens alone name the node (no client CA): two nodes from one test's credentials.
    g.tls = Some(TlsConfig::new(test_tls("server.pem"), test_tls("server.key")));
    g.agent_token = Some(AgentTokenConfig::jwks(AGENT_ACCOUNT, ISSUER, jwks));
    config.grpc = Some(g);
    let aggregator = start(config).await;
    let addr = aggregator.addr.unwrap();

    let mut victim = Stream::open(addr, Some(&issuer.sign(&agent_claims("worker-1")))).await.unwrap();
    assert_eq!(victim.send(snapshot("agent-w1", "worker-1", vec![attested_pod("web-1")])).await.unwrap(), 1);

    // A compromised worker-2 sends the victim's agent_id with the last sequence number: were it
    // taken, every later message of the victim would read as a resend and be dropped.
    let w2 = issuer.sign(&agent_claims("worker-2"));
    let mut hijack = snapshot("agent-w1", "worker-2", vec![]);
    hijack.sequence = u64::MAX;
    let refused = attest_once(addr, Some(&w2), hijack).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::PermissionDenied);
    // worker-2's own agent is served.
    let mut own = attested_pod("db-1");
    own.ips = vec!["10.244.2.7".into()];
    assert_eq!(attest_once(addr, Some(&w2), snapshot("agent-w2", "worker-2", vec![own])).await.unwrap(), 1);

    // The victim's next message is processed, not taken for a resend.
    let mut delta = snapshot("agent-w1", "worker-1", vec![]);
    delta.sequence = 2;
    delta.body = Some(agent::agent_message::Body::Delta(agent::NodeDelta {
        pods_upserted: vec![attested_pod("web-2")],
        ..Default::default()
    }));
    assert_eq!(victim.send(delta).await.unwrap(), 2);
    let out = read_until(&t.observations, "web-2 from worker-1", Duration::from_millis(500), |o| {
        pod_facts(o).iter().any(|(p, _)| p == "web-2")
    })
    .await;
    drop(victim);
    let metrics = aggregator.metrics.clone();
    aggregator.stop().await;

    let mut pods = pod_facts(&out);
    pods.sort();
    pods.dedup();
    let expected = [("db-1", "worker-2"), ("web-1", "worker-1"), ("web-2", "worker-1")];
    assert_eq!(pods, expected.map(|(p, n)| (p.to_string(), n.to_string())));
    assert_eq!(Metrics::get(&metrics.agent_ids_refused_total), 1);
    assert_eq!(Metrics::get(&metrics.attestations_accepted_total), 3, "the victim's two, worker-2's own");
    assert_eq!(Metrics::get(&metrics.attestations_resent_total), 0);
}

/// A fake apiserver answering `POST /apis/authentication.k8s.io/v1/tokenreviews` over HTTPS:
/// tokens it knows are authenticated as the agent's account on their node, others are not.
struct FakeApiserver {
    addr: std::net::SocketAddr,
    reviews: Arc<AtomicUsize>,
}

impl FakeApiserver {
    async fn start(known: HashMap<String, String>) -> FakeApiserver {
        let read = |n: &str| std::fs::read(test_tls(n)).unwrap();
        let certs = rustls_pki_types::pem::PemObject::pem_slice_iter(&read("server.pem")).map(Result::unwrap).collect();
        let key = rustls_pki_types::pem::PemObject::from_pem_slice(&read("server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reviews = Arc::new(AtomicUsize::new(0));
        let (known, counter) = (Arc::new(known), reviews.clone());
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let (acceptor, known, counter) = (acceptor.clone(), known.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let mut conn = BufReader::new(tls);
                    // HTTP/1.1 keep-alive: one request after the other on the connection.
                    while let Some(body) = read_request(&mut conn).await {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let answer = review(&known, &body).to_string();
                        let head = format!(
                            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                            answer.len()
                        );
                        let stream = conn.get_mut();
                        if stream.write_all(head.as_bytes()).await.is_err()
                            || stream.write_all(answer.as_bytes()).await.is_err()
                        {
                            return;
                        }
                        let _ = stream.flush().await;
                    }
                });
            }
        });
        FakeApiserver { addr, reviews }
    }

    fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig.yaml");
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters: [{{name: fake, cluster: {{server: 'https://{}', certificate-authority: '{}'}}}}]\n\
             contexts: [{{name: fake, context: {{cluster: fake, user: aggregator}}}}]\n\
             users: [{{name: aggregator, user: {{}}}}]\n",
            self.addr,
            test_tls("ca.pem").display()
        );
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Reads one request's body (`None` when the client hung up).
async fn read_request<S: tokio::io::AsyncRead + Unpin>(conn: &mut BufReader<S>) -> Option<Vec<u8>> {
    let mut length = 0;
    let mut request_line = String::new();
    conn.read_line(&mut request_line).await.ok().filter(|n| *n > 0)?;
    assert!(request_line.starts_with("POST /apis/authentication.k8s.io/v1/tokenreviews"), "{request_line}");
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).await.ok().filter(|n| *n > 0)?;
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    conn.read_exact(&mut body).await.ok()?;
    Some(body)
}

/// The apiserver's answer to a TokenReview: `authenticated` for a known token, with the
/// audiences asked for, the agent's account and its pod's node in `user.extra`.
fn review(known: &HashMap<String, String>, body: &[u8]) -> serde_json::Value {
    let request: serde_json::Value = serde_json::from_slice(body).unwrap();
    let token = request["spec"]["token"].as_str().unwrap_or_default();
    let status = match known.get(token) {
        Some(node) => serde_json::json!({"authenticated": true, "audiences": request["spec"]["audiences"],
            "user": {"username": "system:serviceaccount:tokentrail:tokentrail-agent", "uid": "uid-sa",
                     "groups": ["system:serviceaccounts", "system:authenticated"],
                     "extra": {"authentication.kubernetes.io/node-name": [node],
                               "authentication.kubernetes.io/pod-name": [format!("tokentrail-agent-{node}")]}}}),
        None => serde_json::json!({"authenticated": false, "error": "invalid bearer token", "user": {}}),
    };
    serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {},
                       "spec": request["spec"], "status": status})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_review_authenticates_the_real_agent_and_caches_by_token_hash() {
    let t = Topics::create("agg-token-review").await;
    let dir = tempfile::tempdir().unwrap();
    // Claims are read by the aggregator only for `exp` once the apiserver has said yes; the
    // signature is the fake apiserver's business (it knows these tokens by heart).
    let unsigned = |node: &str| {
        let claims = agent_claims(node).to_string();
        format!("{}.{}.c2ln", URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k"}"#), URL_SAFE_NO_PAD.encode(claims))
    };
    let (worker_1, stranger) = (unsigned("worker-1"), unsigned("worker-9"));
    let apiserver = FakeApiserver::start(HashMap::from([(worker_1.clone(), "worker-1".to_string())])).await;
    let aggregator =
        start_aggregator(&t, AgentTokenConfig::token_review(AGENT_ACCOUNT, Some(apiserver.kubeconfig(dir.path()))))
            .await;
    let addr = aggregator.addr.unwrap();

    // The real agent, its token file as the kubelet projects it.
    let token_file = dir.path().join("agent-token");
    std::fs::write(&token_file, &worker_1).unwrap();
    let kubelet = tempfile::tempdir().unwrap();
    let agent = RealAgent::start(kubelet.path(), addr, Some(token_file));
    agent.wait_for_ack().await;
    agent.stop().await;
    assert_eq!(apiserver.reviews.load(Ordering::SeqCst), 1);

    // The same token again: answered from the cache. Attesting worker-2 with it: refused.
    assert_eq!(
        attest_once(addr, Some(&worker_1), snapshot("again", "worker-1", vec![attested_pod("web-1")])).await.unwrap(),
        1
    );
    let wrong_node = attest_once(addr, Some(&worker_1), snapshot("liar", "worker-2", vec![attested_pod("db-1")])).await;
    assert_eq!(wrong_node.unwrap_err().code(), tonic::Code::PermissionDenied);
    assert_eq!(apiserver.reviews.load(Ordering::SeqCst), 1, "cached by the token's hash");
    // A token the apiserver does not authenticate.
    let refused = attest_once(addr, Some(&stranger), snapshot("stranger", "worker-1", vec![])).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::Unauthenticated);
    assert_eq!(apiserver.reviews.load(Ordering::SeqCst), 2);

    let metrics = aggregator.metrics.clone();
    aggregator.stop().await;
    assert_eq!(metrics.agent_tokens_refused(), BTreeMap::from([("not_authenticated", 1)]));
    assert_eq!(Metrics::get(&metrics.attestations_refused_total), 1, "db-1");
    assert!(Metrics::get(&metrics.attestations_accepted_total) >= 2);
}
