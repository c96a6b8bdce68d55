//! The aggregator's configuration: one [`Config`], read from a JSON file (JSON is YAML, so a
//! ConfigMap can hold it as written), then overridden by flags (`tokentrail aggregator`).
//!
//! Durations are strings like `500ms`, `30s`, `5m` everywhere ([`tokentrail_config::duration`]),
//! as in the flags.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use tokentrail_config::kafka::{reserved_property, KafkaSecurity};
use tokentrail_config::{duration, Problem};

use crate::error::ConfigError;
pub use crate::inventory::convert::Kind;

/// Everything the aggregator needs to run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka: the raw audit topics read and the observations and dead-letter topics written.
    pub kafka: KafkaConfig,
    /// The gRPC attestation server for node agents; absent: no server.
    #[serde(default)]
    pub grpc: Option<GrpcConfig>,
    /// The HTTPS endpoint for the apiserver's audit webhook backend; absent: none.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// The plain-HTTP probe listener (`/healthz`, `/readyz`, `/metrics`) for Kubernetes and
    /// Prometheus; absent: none.
    #[serde(default)]
    pub health: Option<HealthConfig>,
    /// The cluster inventory feed: Pods, Nodes, ServiceAccounts and token Secrets watched on
    /// the cluster's API ([`crate::inventory`]); absent: none.
    #[serde(default)]
    pub inventory: Option<InventoryConfig>,
    /// Pods and token Secrets remembered to place observations that do not name their service
    /// account (see [`crate::route`]).
    #[serde(default = "default_directory_capacity")]
    pub directory_capacity: usize,
}

/// Kafka settings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub bootstrap_servers: String,
    /// Consumer group of the aggregators reading the raw audit topics.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Raw audit topics and the cluster each belongs to. Empty: no audit path (attestations only).
    #[serde(default)]
    pub audit_topics: Vec<AuditTopic>,
    /// Where observations go (protobuf `tokentrail.observation.v1.Observation`).
    #[serde(default = "default_observations_topic")]
    pub observations_topic: String,
    /// Where undecodable raw records go, unchanged, with the error in headers.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
    /// Raw records decoded, produced and committed together.
    #[serde(default = "default_batch_records")]
    pub batch_records: usize,
    /// Longest wait for a batch to fill before it is processed anyway.
    #[serde(default = "default_batch_linger", deserialize_with = "duration::deserialize")]
    pub batch_linger: Duration,
    /// Largest raw record (after decompression of a gzip or zstd value) that is decoded; larger
    /// ones go to the dead-letter topic.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: usize,
    /// How often the times of repeated node facts (kubelets' requests, agents' heartbeats) are
    /// broadcast as one progress record per cluster, instead of each repeat on every partition
    /// (`tokentrail_aggregator_core::node_reports`). Verdicts that wait for a node's agent wait
    /// up to this much longer.
    #[serde(default = "default_progress_interval", deserialize_with = "duration::deserialize")]
    pub progress_interval: Duration,
    /// Observations of one partition travel together, one record per partition and delivery
    /// (`tokentrail.observation.v1.ObservationBatch`), up to this many bytes before compression
    /// (the stream's cost is per record). 0: one record per observation, as aggregators before
    /// batches wrote; for a rolling upgrade while correlators that read only those still run.
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// TLS and SASL of every client (the consumer and the producer); absent: plaintext.
    #[serde(default)]
    pub security: KafkaSecurity,
    /// Extra librdkafka properties for every client (tuning such as `client.id` or
    /// `socket.keepalive.enable`); security is `security`'s, never set here.
    #[serde(default)]
    pub client: BTreeMap<String, String>,
}

/// One raw audit topic.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditTopic {
    /// Topic name.
    pub topic: String,
    /// The cluster its events come from. Absent: each record names it in a `cluster` header
    /// (records with neither go to the dead-letter topic). When both are present the
    /// configuration wins: whoever can write to a topic must not relabel its cluster.
    #[serde(default)]
    pub cluster: Option<String>,
}

/// The gRPC attestation server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcConfig {
    /// Listen address (`0.0.0.0:7443`; tests use `127.0.0.1:0`).
    #[serde(default = "default_grpc_listen")]
    pub listen: SocketAddr,
    /// The cluster the agents run in.
    pub cluster: String,
    /// TLS; with `client_ca`, mTLS and node identity from the client certificate.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Largest attestation message accepted (decoded), in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Attestation streams served at once; more are refused (`RESOURCE_EXHAUSTED`).
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Requests being set up at once (tower concurrency limit, before a stream is open).
    #[serde(default = "default_concurrency")]
    pub concurrency_limit: usize,
    /// Time allowed to answer a request's headers (tower timeout; open streams are not cut).
    #[serde(default = "default_request_timeout", deserialize_with = "duration::deserialize")]
    pub request_timeout: Duration,
    /// Connections open at once (each holds a file descriptor); at the limit no more are
    /// accepted until one closes. One per node's agent, plus probes and reconnections.
    #[serde(default = "default_grpc_max_connections")]
    pub max_connections: usize,
    /// Time a client has to complete the TLS handshake.
    #[serde(default = "default_handshake_timeout", deserialize_with = "duration::deserialize")]
    pub handshake_timeout: Duration,
    /// A connection from which nothing was read for this long is closed. Agents' quiet streams
    /// stay open: the server pings every half of it (HTTP/2 keepalive) and their answers count.
    #[serde(default = "default_idle_timeout", deserialize_with = "duration::deserialize")]
    pub idle_timeout: Duration,
    /// Agents authenticate with their projected service-account token too, and their node
    /// is the token's node claim (docs/design.md §5). Absent: the node comes from the client
    /// certificate alone.
    #[serde(default)]
    pub agent_token: Option<AgentTokenConfig>,
    /// Accept the node an agent names in its messages without a credential proving it. Only
    /// for tests and trials without TLS: any client can then attest for any node.
    #[serde(default)]
    pub trust_agent_node_name: bool,
    /// How far ahead of this aggregator's clock an agent's times may be: a message stamped
    /// later (a skewed or hostile node's clock) is refused and counted, never delivered.
    #[serde(default = "default_max_clock_skew", deserialize_with = "duration::deserialize")]
    pub max_clock_skew: Duration,
}

/// How agents' projected tokens (`authorization: Bearer` on the stream) are verified: against
/// the issuer's keys (`jwks_file`) or by the apiserver (`token_review`), exactly one of them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTokenConfig {
    /// The audience of the agents' projected token volume.
    #[serde(default = "default_agent_audience")]
    pub audience: String,
    /// The agents' ServiceAccount, `namespace/name`: other pods on a node can obtain tokens
    /// for any audience, only the agent's account may attest.
    pub serviceaccount: String,
    /// The cluster's `--service-account-issuer` (the tokens' `iss`); required with `jwks_file`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The issuer's public keys as a JWKS document (`kubectl get --raw /openid/v1/jwks`). Re-read
    /// when a token names a key it does not hold (key rotation), at most every 10 s.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// Ask the apiserver instead (TokenReview; the aggregator's account needs
    /// `create tokenreviews`, e.g. the `system:auth-delegator` ClusterRole).
    #[serde(default)]
    pub token_review: Option<TokenReviewConfig>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway", deserialize_with = "duration::deserialize")]
    pub leeway: Duration,
}

/// The TokenReview client.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenReviewConfig {
    /// A kubeconfig file; absent: the in-cluster service account (or `$KUBECONFIG`).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// How long an answer is reused for the same token (keyed by the token's SHA-256, never
    /// the token), so reconnecting agents do not each cost an apiserver request.
    #[serde(default = "default_review_cache_ttl", deserialize_with = "duration::deserialize")]
    pub cache_ttl: Duration,
}

/// The probe listener: plain HTTP (a kubelet's probe presents no client certificate, Prometheus
/// scrapes without one), serving only `GET /healthz` (liveness), `GET /readyz` (readiness, see
/// [`crate::health`]) and `GET /metrics` ([`crate::probes`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Listen address.
    #[serde(default = "default_health_listen")]
    pub listen: SocketAddr,
}

/// The audit webhook endpoint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Listen address.
    #[serde(default = "default_webhook_listen")]
    pub listen: SocketAddr,
    /// The cluster whose apiserver posts here.
    pub cluster: String,
    /// TLS; `client_ca` makes the apiserver's client certificate required (`node_dns_name` is
    /// not used here).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Largest request body, in bytes; larger ones are refused with 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Largest body after decompression (gzip or zstd), in bytes; larger ones are refused with 413.
    #[serde(default = "default_max_decoded_bytes")]
    pub max_decoded_bytes: usize,
    /// Largest ratio of decompressed to compressed size; a body inflating more (a compression
    /// bomb) is refused with 413 before it is decoded. Audit JSON compresses about 10 to 30 times.
    #[serde(default = "default_max_inflation_ratio")]
    pub max_inflation_ratio: usize,
    /// Requests served at once; more are answered 503 at once (the apiserver retries), so that
    /// memory stays bounded by about this many decoded bodies.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
    /// Time allowed for a request, from its headers to the answer (reading the body included);
    /// beyond it the answer is 503 and the apiserver retries.
    #[serde(default = "default_webhook_request_timeout", deserialize_with = "duration::deserialize")]
    pub request_timeout: Duration,
    /// Connections open at once; at the limit no more are accepted until one closes.
    #[serde(default = "default_webhook_max_connections")]
    pub max_connections: usize,
    /// Time a client has to complete the TLS handshake.
    #[serde(default = "default_handshake_timeout", deserialize_with = "duration::deserialize")]
    pub handshake_timeout: Duration,
    /// Time a client has to send a request's headers (HTTP/1.1), counted from their first byte.
    #[serde(default = "default_header_read_timeout", deserialize_with = "duration::deserialize")]
    pub header_read_timeout: Duration,
    /// A connection with no request under way from which nothing was read for this long is
    /// closed (checked again after a request ends: closed within twice this).
    #[serde(default = "default_idle_timeout", deserialize_with = "duration::deserialize")]
    pub idle_timeout: Duration,
    /// Client certificate names allowed to post (the subject CN or a DNS name of the
    /// certificate, e.g. the apiserver's audit client certificate's CN); others are refused with
    /// 403. Empty: any certificate `tls.client_ca` signed. Required when the agents' CA is the
    /// same file: a node's certificate must not post audit events.
    #[serde(default)]
    pub allowed_client_names: Vec<String>,
    /// Serve plain HTTP without client authentication: tests and trials only.
    #[serde(default)]
    pub insecure_plaintext: bool,
}

/// The cluster inventory feed ([`crate::inventory`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryConfig {
    /// The cluster watched: the cluster of its observations.
    pub cluster: String,
    /// A kubeconfig file; absent: the in-cluster service account (or `$KUBECONFIG`).
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// What is watched: `pods`, `nodes`, `serviceaccounts`, `secrets` (token Secrets, metadata
    /// only). Leaving out `secrets` lets the aggregator's account go without any access to
    /// Secrets, at the price of the legacy-token rules.
    #[serde(default = "default_inventory_kinds")]
    pub kinds: Vec<Kind>,
    /// Leader election among replicas: only the Lease's holder watches. Absent: this replica
    /// watches (one replica, or duplicates accepted).
    #[serde(default)]
    pub lease: Option<LeaseConfig>,
}

/// The `coordination.k8s.io/v1` Lease replicas compete for ([`crate::inventory::lease`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseConfig {
    /// Its namespace (the aggregator's own).
    pub namespace: String,
    /// Its name.
    #[serde(default = "default_lease_name")]
    pub name: String,
    /// How long a holder's term lasts without renewal (renewed every third of it); after a
    /// holder dies, another replica takes over within this.
    #[serde(default = "default_lease_duration", deserialize_with = "duration::deserialize")]
    pub duration: Duration,
    /// Who this replica is in the Lease; absent: `$POD_NAME` (else the host name) and the
    /// process id.
    #[serde(default)]
    pub identity: Option<String>,
}

impl InventoryConfig {
    /// Every kind, for `cluster`, read with the in-cluster account (or `$KUBECONFIG`), no lease.
    pub fn new(cluster: impl Into<String>) -> InventoryConfig {
        InventoryConfig { cluster: cluster.into(), kubeconfig: None, kinds: default_inventory_kinds(), lease: None }
    }

    /// Adds what is wrong with it to `problems`.
    pub fn check(&self, problems: &mut Vec<Problem>) {
        if self.cluster.is_empty() || self.cluster.contains('/') {
            problems.push(Problem::new("inventory.cluster", "is empty or contains '/'"));
        }
        if self.kinds.is_empty() {
            problems.push(Problem::new(
                "inventory.kinds",
                "is empty: name some of pods, nodes, serviceaccounts, secrets, or remove the inventory section",
            ));
        }
        if let Some(l) = &self.lease {
            for (key, value) in [("namespace", &l.namespace), ("name", &l.name)] {
                if value.is_empty() || value.contains('/') {
                    problems.push(Problem::new(format!("inventory.lease.{key}"), "is empty or contains '/'"));
                }
            }
            if l.duration < Duration::from_secs(3) {
                problems.push(Problem::new(
                    "inventory.lease.duration",
                    "must be at least 3s (the Lease is renewed every third of it)",
                ));
            }
            if l.identity.as_deref().is_some_and(str::is_empty) {
                problems.push(Problem::new("inventory.lease.identity", "is empty"));
            }
        }
    }
}

/// Server certificate and, for mTLS, the CA that signs agents' certificates.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// CA (PEM) for agents' client certificates: mTLS is required when set.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// The DNS name an agent's client certificate must carry for the node it attests, with
    /// `{node}` standing for the node's name (one certificate per node, issued by whoever
    /// runs the agents' CA, e.g. cert-manager with the node name from the downward API).
    #[serde(default = "default_node_dns_name")]
    pub node_dns_name: String,
}

fn default_agent_audience() -> String {
    "tokentrail-aggregator".into()
}
fn default_leeway() -> Duration {
    Duration::from_secs(30)
}
fn default_review_cache_ttl() -> Duration {
    Duration::from_secs(60)
}
fn default_node_dns_name() -> String {
    "{node}.nodes.tokentrail".into()
}

fn default_inventory_kinds() -> Vec<Kind> {
    Kind::ALL.to_vec()
}
fn default_lease_name() -> String {
    "tokentrail-inventory".into()
}
fn default_lease_duration() -> Duration {
    Duration::from_secs(15)
}

fn default_directory_capacity() -> usize {
    1_000_000
}
fn default_group() -> String {
    "tokentrail-aggregator".into()
}
fn default_observations_topic() -> String {
    "tokentrail.observations".into()
}
fn default_dead_letter_topic() -> String {
    "tokentrail.dead-letter".into()
}
fn default_batch_records() -> usize {
    5000
}
fn default_batch_linger() -> Duration {
    Duration::from_millis(50)
}
/// Largest `kafka.batch_max_bytes`: the record must stay under librdkafka's default
/// `message.max.bytes` (1,000,000), and only an observation larger than the limit by itself
/// makes a batch larger than it.
const MAX_BATCH_BYTES: usize = 512 * 1024;

fn default_batch_max_bytes() -> usize {
    256 * 1024
}
fn default_progress_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_max_record_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_grpc_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7443))
}
fn default_health_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8080))
}
fn default_webhook_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn default_max_body_bytes() -> usize {
    32 * 1024 * 1024
}
fn default_max_decoded_bytes() -> usize {
    16 * 1024 * 1024
}
fn default_max_inflation_ratio() -> usize {
    100
}
fn default_max_concurrent_requests() -> usize {
    4
}
fn default_webhook_request_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_webhook_max_connections() -> usize {
    256
}
fn default_grpc_max_connections() -> usize {
    12_000
}
fn default_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_max_message_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_max_streams() -> usize {
    10_000
}
fn default_concurrency() -> usize {
    256
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_clock_skew() -> Duration {
    Duration::from_secs(5 * 60)
}

impl KafkaConfig {
    /// Defaults for everything but the broker.
    pub fn new(bootstrap_servers: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            group_id: default_group(),
            audit_topics: Vec::new(),
            observations_topic: default_observations_topic(),
            dead_letter_topic: default_dead_letter_topic(),
            batch_records: default_batch_records(),
            batch_linger: default_batch_linger(),
            max_record_bytes: default_max_record_bytes(),
            progress_interval: default_progress_interval(),
            batch_max_bytes: default_batch_max_bytes(),
            security: KafkaSecurity::default(),
            client: BTreeMap::new(),
        }
    }
}

impl GrpcConfig {
    /// Defaults for everything but the address and cluster.
    pub fn new(listen: SocketAddr, cluster: impl Into<String>) -> GrpcConfig {
        GrpcConfig {
            listen,
            cluster: cluster.into(),
            tls: None,
            max_message_bytes: default_max_message_bytes(),
            max_streams: default_max_streams(),
            concurrency_limit: default_concurrency(),
            request_timeout: default_request_timeout(),
            max_connections: default_grpc_max_connections(),
            handshake_timeout: default_handshake_timeout(),
            idle_timeout: default_idle_timeout(),
            agent_token: None,
            trust_agent_node_name: false,
            max_clock_skew: default_max_clock_skew(),
        }
    }
}

impl WebhookConfig {
    /// Defaults for everything but the address and cluster (TLS still to be chosen).
    pub fn new(listen: SocketAddr, cluster: impl Into<String>) -> WebhookConfig {
        WebhookConfig {
            listen,
            cluster: cluster.into(),
            tls: None,
            max_body_bytes: default_max_body_bytes(),
            max_decoded_bytes: default_max_decoded_bytes(),
            max_inflation_ratio: default_max_inflation_ratio(),
            max_concurrent_requests: default_max_concurrent_requests(),
            request_timeout: default_webhook_request_timeout(),
            max_connections: default_webhook_max_connections(),
            handshake_timeout: default_handshake_timeout(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            allowed_client_names: Vec::new(),
            insecure_plaintext: false,
        }
    }
}

impl AgentTokenConfig {
    /// Tokens of `serviceaccount` (`namespace/name`) for the default audience, checked against
    /// the JWKS file of `issuer`.
    pub fn jwks(serviceaccount: impl Into<String>, issuer: impl Into<String>, jwks_file: PathBuf) -> AgentTokenConfig {
        AgentTokenConfig {
            audience: default_agent_audience(),
            serviceaccount: serviceaccount.into(),
            issuer: Some(issuer.into()),
            jwks_file: Some(jwks_file),
            token_review: None,
            leeway: default_leeway(),
        }
    }

    /// Tokens of `serviceaccount` for the default audience, reviewed by the apiserver that
    /// `kubeconfig` (or the environment) names.
    pub fn token_review(serviceaccount: impl Into<String>, kubeconfig: Option<PathBuf>) -> AgentTokenConfig {
        AgentTokenConfig {
            audience: default_agent_audience(),
            serviceaccount: serviceaccount.into(),
            issuer: None,
            jwks_file: None,
            token_review: Some(TokenReviewConfig { kubeconfig, cache_ttl: default_review_cache_ttl() }),
            leeway: default_leeway(),
        }
    }

    fn problems(&self, problems: &mut Vec<Problem>) {
        if self.audience.is_empty() {
            problems.push(Problem::new("grpc.agent_token.audience", "is empty"));
        }
        if !self
            .serviceaccount
            .split_once('/')
            .is_some_and(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
        {
            problems.push(Problem::new("grpc.agent_token.serviceaccount", "must be namespace/name"));
        }
        match (&self.jwks_file, &self.token_review) {
            (Some(_), Some(_)) | (None, None) => {
                problems.push(Problem::new("grpc.agent_token", "needs exactly one of jwks_file and token_review"))
            }
            (Some(_), None) if self.issuer.as_deref().is_none_or(str::is_empty) => {
                problems.push(Problem::new("grpc.agent_token.issuer", "is required with jwks_file"))
            }
            _ => {}
        }
    }
}

impl TlsConfig {
    /// Server TLS without client certificates.
    pub fn new(cert: PathBuf, key: PathBuf) -> TlsConfig {
        TlsConfig { cert, key, client_ca: None, node_dns_name: default_node_dns_name() }
    }
}

impl Config {
    /// A configuration with only Kafka set.
    pub fn new(kafka: KafkaConfig) -> Config {
        Config {
            kafka,
            grpc: None,
            webhook: None,
            health: None,
            inventory: None,
            directory_capacity: default_directory_capacity(),
        }
    }

    /// Parses a JSON configuration file's text, reporting every problem at once.
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        tokentrail_config::check(text, Config::problems).map_err(ConfigError::from)
    }

    /// Checks what serde cannot, reporting every problem at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::from(problems))
        }
    }

    /// Every problem serde cannot see, each with its key path.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            problems.push(Problem::new("kafka.bootstrap_servers", "is empty"));
        }
        for (name, topic) in
            [("observations_topic", &k.observations_topic), ("dead_letter_topic", &k.dead_letter_topic)]
        {
            if topic.is_empty() {
                problems.push(Problem::new(format!("kafka.{name}"), "is empty"));
            }
            if k.audit_topics.iter().any(|t| &t.topic == topic) {
                problems.push(Problem::new(format!("kafka.{name}"), format!("{topic:?} is also an audit topic")));
            }
        }
        if k.batch_records == 0 {
            problems.push(Problem::new("kafka.batch_records", "must be at least 1"));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&k.progress_interval) {
            // Under 100 ms it costs the broadcasts it saves; over a minute, the watermarks of
            // agents that heartbeat every 30 s fall behind.
            problems.push(Problem::new("kafka.progress_interval", "must be between 100ms and 60s"));
        }
        if k.batch_max_bytes > MAX_BATCH_BYTES {
            // librdkafka refuses records over its `message.max.bytes` (1,000,000 by default).
            problems.push(Problem::new(
                "kafka.batch_max_bytes",
                format!("must be at most {MAX_BATCH_BYTES} (0: no batches)"),
            ));
        }
        for (i, t) in k.audit_topics.iter().enumerate() {
            if t.topic.is_empty() {
                problems.push(Problem::new(format!("kafka.audit_topics[{i}].topic"), "is empty"));
            }
            if t.cluster.as_deref().is_some_and(|c| c.is_empty() || c.contains('/')) {
                problems.push(Problem::new(format!("kafka.audit_topics[{i}].cluster"), "is empty or contains '/'"));
            }
        }
        for key in k.client.keys() {
            if ["group.id", "enable.auto.commit", "bootstrap.servers", "enable.idempotence"].contains(&key.as_str()) {
                problems.push(Problem::new(
                    format!("kafka.client.{key}"),
                    "is set by the aggregator and cannot be overridden",
                ));
            } else if let Some(why) = reserved_property(key) {
                problems.push(Problem::new(format!("kafka.client.{key}"), format!("{why}: use kafka.security")));
            }
        }
        problems.extend(k.security.problems("kafka.security"));
        if let Some(g) = &self.grpc {
            g.check(&mut problems);
        }
        if let Some(w) = &self.webhook {
            w.check(&mut problems);
            w.check_against(self.grpc.as_ref(), &mut problems);
        }
        if let Some(i) = &self.inventory {
            i.check(&mut problems);
        }
        problems
    }
}

impl GrpcConfig {
    /// Adds what is wrong with it to `problems`.
    pub fn check(&self, problems: &mut Vec<Problem>) {
        if self.cluster.is_empty() || self.cluster.contains('/') {
            problems.push(Problem::new("grpc.cluster", "is empty or contains '/'"));
        }
        if self.tls.as_ref().is_some_and(|t| !t.node_dns_name.contains("{node}")) {
            problems.push(Problem::new("grpc.tls.node_dns_name", "must contain {node}"));
        }
        if self.tls.as_ref().and_then(|t| t.client_ca.as_ref()).is_none()
            && self.agent_token.is_none()
            && !self.trust_agent_node_name
        {
            problems.push(Problem::new(
                "grpc.tls.client_ca",
                "or grpc.agent_token is required (agents prove their node with a client certificate or \
                 their projected token) unless grpc.trust_agent_node_name is true (tests and trials only)",
            ));
        }
        let timeouts = [("handshake_timeout", self.handshake_timeout), ("idle_timeout", self.idle_timeout)];
        limits_check("grpc", self.max_connections, &timeouts, problems);
        if let Some(t) = &self.agent_token {
            t.problems(problems);
            if self.tls.is_none() {
                problems.push(Problem::new(
                    "grpc.tls",
                    "is required with grpc.agent_token: tokens must not cross the network in clear",
                ));
            }
        }
    }
}

impl WebhookConfig {
    /// Adds what is wrong with it to `problems`.
    pub fn check(&self, problems: &mut Vec<Problem>) {
        if self.cluster.is_empty() || self.cluster.contains('/') {
            problems.push(Problem::new("webhook.cluster", "is empty or contains '/'"));
        }
        if self.tls.as_ref().and_then(|t| t.client_ca.as_ref()).is_none() && !self.insecure_plaintext {
            problems.push(Problem::new(
                "webhook.tls.client_ca",
                "is required (the apiserver's client certificate) unless webhook.insecure_plaintext is true",
            ));
        }
        if self.tls.is_some() && self.insecure_plaintext {
            problems.push(Problem::new("webhook.insecure_plaintext", "excludes webhook.tls"));
        }
        let timeouts = [
            ("handshake_timeout", self.handshake_timeout),
            ("header_read_timeout", self.header_read_timeout),
            ("idle_timeout", self.idle_timeout),
            ("request_timeout", self.request_timeout),
        ];
        limits_check("webhook", self.max_connections, &timeouts, problems);
        for (key, value) in [
            ("max_concurrent_requests", self.max_concurrent_requests),
            ("max_inflation_ratio", self.max_inflation_ratio),
            ("max_decoded_bytes", self.max_decoded_bytes),
        ] {
            if value == 0 {
                problems.push(Problem::new(format!("webhook.{key}"), "must be at least 1"));
            }
        }
        if !self.allowed_client_names.is_empty() && self.tls.as_ref().and_then(|t| t.client_ca.as_ref()).is_none() {
            problems.push(Problem::new("webhook.allowed_client_names", "needs webhook.tls.client_ca"));
        }
        for (i, name) in self.allowed_client_names.iter().enumerate() {
            if name.trim().is_empty() {
                problems.push(Problem::new(format!("webhook.allowed_client_names[{i}]"), "is empty"));
            }
        }
    }

    /// Adds a problem when the webhook would accept the agents' client certificates: the same
    /// CA file for both listeners and no allow-list lets any node post audit events.
    pub fn check_against(&self, grpc: Option<&GrpcConfig>, problems: &mut Vec<Problem>) {
        let ca = |t: Option<&TlsConfig>| t.and_then(|t| t.client_ca.clone());
        let shared = ca(self.tls.as_ref()).is_some_and(|w| Some(w) == ca(grpc.and_then(|g| g.tls.as_ref())));
        if shared && self.allowed_client_names.is_empty() {
            problems.push(Problem::new(
                "webhook.allowed_client_names",
                "is required when webhook.tls.client_ca is also grpc.tls.client_ca: any node's agent \
                 certificate could post audit events (better: separate CAs for agents and apiservers)",
            ));
        }
    }
}

/// The connection limits every listener has: at least one connection, no zero timeout.
fn limits_check(listener: &str, max_connections: usize, timeouts: &[(&str, Duration)], problems: &mut Vec<Problem>) {
    if max_connections == 0 {
        problems.push(Problem::new(format!("{listener}.max_connections"), "must be at least 1"));
    }
    for (key, timeout) in timeouts {
        if timeout.is_zero() {
            problems.push(Problem::new(format!("{listener}.{key}"), "must be longer than 0s"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let c = Config::from_json(
            r#"{"kafka": {"bootstrap_servers": "k:9092", "batch_linger": "20ms",
                "audit_topics": [{"topic": "audit.prod", "cluster": "prod"}, {"topic": "audit.shared"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.kafka.observations_topic, "tokentrail.observations");
        assert_eq!(c.kafka.batch_linger, Duration::from_millis(20));
        assert_eq!(c.kafka.audit_topics[1].cluster, None);
    }

    #[test]
    fn unknown_fields_and_every_problem_are_reported() {
        assert!(Config::from_json(r#"{"kafka": {"bootstrap_servers": "k", "tpoics": []}}"#).is_err());
        let err = Config::from_json(
            r#"{"kafka": {"bootstrap_servers": "", "observations_topic": "a", "audit_topics": [{"topic": "a"}],
                "client": {"enable.auto.commit": "true"}},
                "grpc": {"cluster": "prod"}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            [
                "kafka.bootstrap_servers: is empty",
                "kafka.observations_topic: \"a\" is also an audit topic",
                "kafka.client.enable.auto.commit: is set by the aggregator and cannot be overridden",
                "grpc.tls.client_ca: or grpc.agent_token is required (agents prove their node with a client \
                 certificate or their projected token) unless grpc.trust_agent_node_name is true (tests and trials only)",
            ]
        );
    }

    #[test]
    fn kafka_security_is_checked_under_its_key_and_security_properties_are_not_client_properties() {
        let err = Config::from_json(
            r#"{"kafka": {"bootstrap_servers": "k:9093", "security": {"protocol": "sasl_ssl"},
                "client": {"sasl.password": "inline", "security.protocol": "ssl", "client.id": "agg"}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            [
                "kafka.client.sasl.password: is set by the security section (secrets are read from files, never \
                 written inline): use kafka.security",
                "kafka.client.security.protocol: is set by the security section (secrets are read from files, \
                 never written inline): use kafka.security",
                "kafka.security.sasl: is required with protocol sasl_ssl",
            ]
        );
        let c = Config::from_json(r#"{"kafka": {"bootstrap_servers": "k:9093", "security": {"protocol": "SSL"}}}"#)
            .unwrap();
        assert_eq!(c.kafka.security.protocol, tokentrail_config::kafka::Protocol::Ssl);
    }

    #[test]
    fn agent_token_needs_one_key_source_an_account_and_tls() {
        let err = Config::from_json(
            r#"{"kafka": {"bootstrap_servers": "k:9092"},
                "grpc": {"cluster": "prod", "agent_token": {"serviceaccount": "agent", "jwks_file": "/jwks.json"}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            [
                "grpc.agent_token.serviceaccount: must be namespace/name",
                "grpc.agent_token.issuer: is required with jwks_file",
                "grpc.tls: is required with grpc.agent_token: tokens must not cross the network in clear",
            ]
        );
        let c = Config::from_json(
            r#"{"kafka": {"bootstrap_servers": "k:9092"}, "health": {"listen": "127.0.0.1:8080"},
                "grpc": {"cluster": "prod", "tls": {"cert": "c", "key": "k"},
                         "agent_token": {"serviceaccount": "tokentrail/agent", "token_review": {"cache_ttl": "30s"}}}}"#,
        )
        .unwrap();
        let token = c.grpc.unwrap().agent_token.unwrap();
        assert_eq!(token.audience, "tokentrail-aggregator");
        assert_eq!(token.token_review.unwrap().cache_ttl, Duration::from_secs(30));
    }

    #[test]
    fn type_errors_unknown_keys_and_rule_violations_are_reported_together_with_their_paths() {
        let err = Config::from_json(
            r#"{"kafka": {"bootstrap_servers": "k:9092", "batch_records": "many", "batch_linger": "soon",
                "audit_topics": [{"topic": "a", "cluster": "x/y"}, {"topic": "b", "clutser": "z"}]},
                "grpc": {"cluster": "prod", "listen": "nowhere", "trust_agent_node_name": true},
                "webhook": {"cluster": "prod", "insecure_plaintext": true, "tls": {"cert": "c", "key": "k", "client_ca": "ca"}}}"#,
        )
        .unwrap_err();
        let paths: Vec<&str> = err.0.iter().map(|p| p.split(": ").next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "grpc.listen",
                "kafka.audit_topics[1].clutser",
                "kafka.batch_linger",
                "kafka.batch_records",
                "kafka.audit_topics[0].cluster",
                "webhook.insecure_plaintext",
            ],
            "{err}"
        );
    }

    #[test]
    fn connection_and_request_limits_have_defaults_are_read_and_checked() {
        let c = Config::from_json(
            r#"{"kafka": {"bootstrap_servers": "k:9092"},
                "grpc": {"cluster": "prod", "trust_agent_node_name": true, "idle_timeout": "30s"},
                "webhook": {"cluster": "prod", "insecure_plaintext": true, "max_concurrent_requests": 2,
                            "max_inflation_ratio": 50, "header_read_timeout": "2s"}}"#,
        )
        .unwrap();
        let (g, w) = (c.grpc.unwrap(), c.webhook.unwrap());
        assert_eq!(
            (g.max_connections, g.idle_timeout, g.handshake_timeout),
            (12_000, Duration::from_secs(30), Duration::from_secs(10))
        );
        assert_eq!((w.max_concurrent_requests, w.max_inflation_ratio, w.max_connections), (2, 50, 256));
        assert_eq!((w.header_read_timeout, w.idle_timeout), (Duration::from_secs(2), Duration::from_secs(120)));
        assert!(w.allowed_client_names.is_empty());

        let err = Config::from_json(
            r#"{"kafka": {"bootstrap_servers": "k:9092"},
                "grpc": {"cluster": "prod", "max_connections": 0, "idle_timeout": "0s",
                         "tls": {"cert": "c", "key": "k", "client_ca": "ca.pem"}},
                "webhook": {"cluster": "prod", "max_concurrent_requests": 0, "handshake_timeout": "0ms",
                            "tls": {"cert": "c", "key": "k", "client_ca": "ca.pem"}}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            [
                "grpc.max_connections: must be at least 1",
                "grpc.idle_timeout: must be longer than 0s",
                "webhook.handshake_timeout: must be longer than 0s",
                "webhook.max_concurrent_requests: must be at least 1",
                "webhook.allowed_client_names: is required when webhook.tls.client_ca is also grpc.tls.client_ca: \
                 any node's agent certificate could post audit events (better: separate CAs for agents and apiservers)",
            ]
        );
        let allowed = Config::from_json(
            r#"{"kafka": {"bootstrap_servers": "k:9092"},
                "grpc": {"cluster": "prod", "tls": {"cert": "c", "key": "k", "client_ca": "ca.pem"}},
                "webhook": {"cluster": "prod", "allowed_client_names": ["kube-apiserver"],
                            "tls": {"cert": "c", "key": "k", "client_ca": "ca.pem"}}}"#,
        );
        assert_eq!(allowed.unwrap().webhook.unwrap().allowed_client_names, ["kube-apiserver"]);
        let err = Config::from_json(
            r#"{"kafka": {"bootstrap_servers": "k:9092"},
                "webhook": {"cluster": "prod", "insecure_plaintext": true, "allowed_client_names": [" "]}}"#,
        )
        .unwrap_err();
        assert_eq!(
            err.0,
            ["webhook.allowed_client_names: needs webhook.tls.client_ca", "webhook.allowed_client_names[0]: is empty"]
        );
    }
}
