//! The streaming correlator: the observations topic in, findings out, exactly once.
//!
//! One [`PartitionState`] per assigned input partition. Records are folded in as they arrive;
//! every `commit_interval` one Kafka transaction carries, for each partition that moved, the
//! findings now due, a snapshot of its state to the compacted changelog topic, and the input
//! offsets consumed. Nothing is produced outside a transaction, so a replica killed at any
//! instant leaves either all of a batch's effects or none: its successor restores the last
//! committed snapshot and resumes from the last committed offsets, and readers of the findings
//! topic (`isolation.level=read_committed`) see each finding once.
//!
//! Partitions revoked in a rebalance are simply dropped: their progress since the last commit
//! was never committed, so their next owner redoes it from the same snapshot and offsets.
//!
//! Every commit judges the state of each partition that moved, so the input offsets committed
//! are always of judged evidence. Judging reads the whole state; with `judging_share` below 1,
//! a large state is committed less often ([`pacing`]) rather than left behind by a backlog.
//!
//! Layout: [`config`] (settings), [`state`] (a partition's engines and emitter), [`changelog`]
//! (restoring a partition's snapshot), [`pacing`] (how often a large state is committed),
//! [`findings`] (a finding as a record), [`telemetry`]
//! ([`Metrics`] as OpenTelemetry instruments), this file (the loop). Flags, signals and the
//! worker thread: `tokentrail correlator` (`cli/src/component/correlator.rs`).

pub mod changelog;
pub mod config;
pub mod findings;
mod pacing;
pub mod state;
pub mod telemetry;

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::OAuthToken;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokentrail_config::kafka::KafkaSecurity;
use tokentrail_correlator_core::ocsf::Activity;
use tokentrail_correlator_core::time::SECOND;
use tokentrail_correlator_core::{Finding, Observation, Timestamp};
use tokentrail_kafka::{Login, LoginContext, Reports};
use tokentrail_proto::wire::batch::record_observations;
use tokentrail_proto::wire::from_proto;

pub use config::{CorrelatorConfig, FindingFormat};
pub use state::{PartitionState, Placement};

/// How long a Kafka control call (transactions, restore) may take before the run gives up.
pub(crate) const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a stop (SIGTERM) may take, from the signal to the Kafka clients closed: inside the
/// chart's 60 s grace period, after which Kubernetes kills the process. With the broker away a
/// final commit can wait out several control timeouts (librdkafka's transactional calls take
/// longer than the timeout they are given), and closing the consumer can block; what does not
/// finish in time is given up (nothing is lost: the partitions' next owner resumes from the last
/// commit). [`run`]'s last commit keeps to it as far as librdkafka lets it; its caller stops
/// waiting for [`run`] when it has passed.
pub const STOP_BUDGET: Duration = Duration::from_secs(40);

/// How long transactional calls may take: [`CONTROL_TIMEOUT`] each while running; during a
/// stop, what is left of the [`STOP_BUDGET`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Until(pub(crate) Option<Instant>);

impl Until {
    pub(crate) const RUNNING: Until = Until(None);

    pub(crate) fn timeout(self) -> Duration {
        match self.0 {
            None => CONTROL_TIMEOUT,
            Some(deadline) => deadline.saturating_duration_since(Instant::now()).min(CONTROL_TIMEOUT),
        }
    }

    pub(crate) fn passed(self) -> bool {
        self.0.is_some_and(|deadline| Instant::now() >= deadline)
    }
}

/// Why an input record, or one observation of a batch, was not folded in.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Neither a `tokentrail.observation.v1.Observation` nor an `ObservationBatch`.
    #[error("not an observation")]
    NotAnObservation(#[source] prost::DecodeError),
    /// An observation, of a kind added after this correlator was built.
    #[error("an observation of a kind this correlator does not know")]
    UnknownKind,
}

/// One observation of an input record.
#[derive(Debug)]
pub struct Input {
    /// The cluster it is about.
    pub cluster: String,
    /// What it says.
    pub observation: Observation,
    /// Which copy it is.
    pub placement: Placement,
}

/// Decodes an input record: the observations it carries in order (one, or a batch's: see
/// `tokentrail_proto::wire::batch`), each through the same conversion the aggregator encodes
/// with; an observation of a kind this correlator does not know is an error of its own, so the
/// rest of its batch is still folded in.
pub fn decode(
    key: &[u8],
    value: &[u8],
    headers: Option<&BorrowedHeaders>,
) -> Result<Vec<Result<Input, DecodeError>>, DecodeError> {
    let flag =
        |name: &str| headers.is_some_and(|h| h.iter().any(|x| x.key == name && x.value == Some(b"1".as_slice())));
    let entries = record_observations(key, value, flag).map_err(DecodeError::NotAnObservation)?;
    Ok(entries
        .into_iter()
        .map(|entry| {
            let (cluster, observation) =
                entry.observation.as_ref().and_then(from_proto).ok_or(DecodeError::UnknownKind)?;
            Ok(Input { cluster, observation, placement: placement(entry.broadcast, entry.home) })
        })
        .collect())
}

/// Which copy of an observation this is. The aggregator broadcasts what it cannot place
/// (docs/design.md §4; `aggregator/core/src/route.rs`) to every partition and marks one copy as home:
/// Secret reads and token Secrets make findings about themselves (not about a credential of this
/// partition), so only their home copy reports them, or every partition would report the same
/// finding; the other copies still tell this partition what it alone can judge
/// ([`PartitionState::observe_copy`]).
fn placement(broadcast: bool, home: bool) -> Placement {
    if broadcast && !home {
        Placement::Elsewhere
    } else {
        Placement::Own
    }
}

/// Why the correlator stopped.
#[derive(Debug, thiserror::Error)]
pub enum CorrelatorError {
    /// A Kafka client could not be created or a Kafka call failed; restart the process (state
    /// and offsets are consistent in Kafka: nothing is lost).
    #[error("kafka: {context}: {source}")]
    Kafka {
        /// What was being done.
        context: &'static str,
        /// The client's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// A partition's persisted state could not be read.
    #[error("changelog {topic} partition {partition}: {message}")]
    Restore {
        /// The changelog topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// What went wrong.
        message: String,
    },
    /// The consumer has no group membership to commit offsets under (it left the group).
    #[error("the consumer is not a member of its group; restart the process")]
    NotInGroup,
    /// A secret file of the `security` section could not be read when a client was made.
    #[error("security: {0}")]
    Secret(#[from] tokentrail_config::kafka::SecretError),
    /// State could not be serialised.
    #[error("state snapshot: {0}")]
    Snapshot(#[from] serde_json::Error),
}

/// What every Kafka client of the correlator is configured with: the brokers and the
/// `security` section (its secrets read from their files now); and the OAUTHBEARER login its
/// context holds.
fn client_config(config: &CorrelatorConfig) -> Result<(ClientConfig, Login), CorrelatorError> {
    clients(&config.bootstrap, &config.security)
}

/// The same for any component on these brokers (`tokentrail incidents`).
pub(crate) fn clients(bootstrap: &str, security: &KafkaSecurity) -> Result<(ClientConfig, Login), CorrelatorError> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    let login = tokentrail_kafka::secure(&mut c, security)?;
    Ok((c, login))
}

/// Partitions of `topic`. It must exist (deploy/ defines the topics; a typo must not create a
/// one-partition topic), and one created moments ago may not be in the metadata yet: asked
/// again for 10 s.
fn partitions_of(
    producer: &BaseProducer<LoginContext>,
    topic: &str,
    shutdown: &AtomicBool,
) -> Result<i32, CorrelatorError> {
    let give_up = Instant::now() + Duration::from_secs(10);
    // Brokers that do not answer are waited for longer, in short calls that let a stop in.
    let unanswered = Instant::now() + CONTROL_TIMEOUT;
    loop {
        let found = match producer.client().fetch_metadata(Some(topic), Duration::from_secs(2)) {
            Ok(metadata) => metadata.topics().first().map(|t| (t.error(), t.partitions().len())),
            Err(e) if Instant::now() > unanswered || shutdown.load(Ordering::Relaxed) => {
                return Err(kafka("reading the findings topic's metadata")(e));
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        match found {
            Some((None, n)) if n > 0 => return Ok(i32::try_from(n).unwrap_or(i32::MAX)),
            _ if Instant::now() < give_up => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                let missing = KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition);
                return Err(kafka("reading the findings topic's metadata")(missing));
            }
        }
    }
}

/// A duration as librdkafka's milliseconds.
pub(crate) fn millis(d: Duration) -> String {
    d.as_millis().to_string()
}

pub(crate) fn kafka(context: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> CorrelatorError {
    move |source| CorrelatorError::Kafka { context, source }
}

/// Counters the run keeps (read by tests and exported as metrics).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Input records folded into an engine.
    pub observations: AtomicU64,
    /// Input records that could not be decoded (skipped; counted, with topic/partition/offset logged).
    pub undecodable: AtomicU64,
    /// Findings produced (new and updates).
    pub findings: AtomicU64,
    /// The same, by rule.
    pub findings_by_rule: Mutex<BTreeMap<&'static str, u64>>,
    /// Transactions committed.
    pub transactions: AtomicU64,
    /// Transactions aborted (a produce or commit failed; the correlator then stops, and its
    /// restart redoes the work from the last committed offsets).
    pub transaction_aborts: AtomicU64,
    /// Seconds the slowest node's agent trails the latest event (a gauge, set after each
    /// commit; 0 before any agent reported).
    pub watermark_lag_seconds: AtomicU64,
    /// Partitions restored from the changelog.
    pub restores: AtomicU64,
    /// Changelog records written (changed entries and deletions).
    pub changelog_records: AtomicU64,
    /// Bytes of changelog values written.
    pub changelog_bytes: AtomicU64,
    /// Entries the engines hold (use groups, attested credentials, pods): a gauge, set after
    /// each commit.
    pub state_entries: AtomicU64,
    /// Judgements of the partitions' state for findings due (one per commit).
    pub judgements: AtomicU64,
    /// Milliseconds spent in them: against the wall clock, the share of time judging takes
    /// (held to `judging_share`).
    pub judging_milliseconds: AtomicU64,
    /// The replica has joined its group and restored the state of every partition of its first
    /// assignment (an empty one included: more replicas than partitions is not a fault): its
    /// readiness. It stays set through later rebalances, which every replica of the group goes
    /// through at once: turning them all unready then would tell Kubernetes (and a
    /// PodDisruptionBudget) nothing useful.
    pub assignment_restored: AtomicBool,
}

/// Assignment changes seen inside `poll`, applied by the loop right after it returns (and
/// OAUTHBEARER tokens).
#[derive(Default)]
struct Rebalances {
    events: Mutex<Vec<(bool, Vec<i32>)>>,
    login: Login,
    reports: Reports,
}

impl ClientContext for Rebalances {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
        self.login.token()
    }

    /// librdkafka's reports (a broker unreachable, a failed TLS handshake or login): the
    /// client retries by itself, the log says why it has to.
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(held_back) = self.reports.admit(&error.to_string()) {
            tracing::warn!(%error, reason, held_back, "consumer");
        }
    }
}

impl ConsumerContext for Rebalances {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (assigned, list) = match rebalance {
            Rebalance::Assign(list) => (true, *list),
            Rebalance::Revoke(list) => (false, *list),
            Rebalance::Error(_) => return,
        };
        let partitions = list.elements().iter().map(|e| e.partition()).collect();
        if let Ok(mut events) = self.events.lock() {
            events.push((assigned, partitions));
        }
    }
}

/// Runs until `shutdown` is set, then commits what it holds and returns.
pub fn run(config: &CorrelatorConfig, metrics: &Metrics, shutdown: &AtomicBool) -> Result<(), CorrelatorError> {
    let (consumer, producer, output) = match start(config, shutdown) {
        Ok(started) => started,
        // A stop asked for while the brokers kept the start waiting (an outage): nothing was
        // taken yet, so nothing is lost, and the failure it cut short is no error.
        Err(e) if shutdown.load(Ordering::Relaxed) => {
            tracing::warn!(error = %e, "stopped before the start was done");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let mut owned: BTreeMap<i32, Owned> = BTreeMap::new();
    let mut next_commit = Instant::now() + config.commit_interval;
    let undecodable_reports = Reports::default();
    while !shutdown.load(Ordering::Relaxed) {
        // The producer's events: an OAUTHBEARER token refresh is due at 80% of the token's
        // lifetime, and only commits poll it otherwise (none while no input arrives).
        producer.poll(Duration::ZERO);
        let polled = consumer.poll(Duration::from_millis(100));
        apply_rebalances(&consumer, config, metrics, &mut owned, shutdown)?;
        match polled {
            Some(Ok(message)) => {
                let partition = message.partition();
                // A record of a partition revoked in this very poll: its next owner reads it.
                let Some(part) = owned.get_mut(&partition) else { continue };
                part.next_offset = Some(message.offset() + 1);
                part.dirty = true;
                let skipped = fold_record(part, &message, metrics, config);
                if let Some(Skipped { count, entry, error }) = skipped {
                    metrics.undecodable.fetch_add(count, Ordering::Relaxed);
                    // One line per record, and per kind of error at most one every 10 s: a batch
                    // is thousands of entries for a few bytes each, and a hostile or broken
                    // producer must not be able to flood the log. The counter has them all.
                    if let Some(held_back) = undecodable_reports.admit(&error.to_string()) {
                        let (topic, offset) = (message.topic(), message.offset());
                        tracing::warn!(topic, partition, offset, entry, skipped = count, held_back, %error, "undecodable observations skipped");
                    }
                }
            }
            Some(Err(e)) => consumer_error(&consumer, e, &consumer.context().reports)?,
            None => {}
        }
        let dirty = owned.values().any(|p| p.dirty);
        if dirty && Instant::now() >= next_commit {
            // Every interval from the last commit's start, as the flag says: counted from its
            // end, each commit's own round trips to the broker would add to every finding's
            // wait. But at least half an interval after its end, so that a commit slower than
            // the interval (a large backlog, a slow broker) still leaves input to batch into
            // the next transaction instead of committing after every record.
            //
            // And paced: with `judging_share` below 1, a state large enough that judging it
            // would take more than that share of the time is committed, and judged, less often.
            let began = Instant::now();
            let result = commit(&consumer, &producer, &output, metrics, &mut owned, Until::RUNNING);
            next_commit = (began + config.commit_interval).max(Instant::now() + config.commit_interval / 2);
            if let Ok(judging) = &result {
                next_commit = next_commit.max(pacing::next_judgement(began, *judging, config.judging_share));
            }
            if let Err(e) = result {
                if !shutdown.load(Ordering::Relaxed) {
                    return Err(e);
                }
                // The stop was asked for while this commit waited (a broker away): the stop's own
                // last commit would have failed the same way, and that is no error. The state has
                // moved past what the changelog holds, so nothing more is committed from it.
                tracing::warn!(error = %e, "last commit not done; the partitions' next owner redoes the work since the previous one");
                owned.clear();
            }
        }
    }
    stop(consumer, producer, &output, metrics, &mut owned);
    Ok(())
}

/// The replica's clients: its group consumer, subscribed, and its transactional producer, its
/// transactions initialised; and where it writes.
fn start<'a>(
    config: &'a CorrelatorConfig,
    shutdown: &AtomicBool,
) -> Result<(BaseConsumer<Rebalances>, BaseProducer<LoginContext>, Output<'a>), CorrelatorError> {
    let (mut consumer_config, login) = client_config(config)?;
    let consumer: BaseConsumer<Rebalances> = consumer_config
        .set("group.id", &config.group)
        // Offsets are committed only inside the transaction that carries their effects.
        .set("enable.auto.commit", "false")
        // Read only committed observations (the aggregator may write transactionally).
        .set("isolation.level", "read_committed")
        // A new group starts at the beginning of the stream: nothing before it is skipped.
        .set("auto.offset.reset", "earliest")
        // Static membership: a replica restarted within the session timeout (a pod's restart)
        // gets its partitions back at once, without a rebalance of the whole group.
        .set("group.instance.id", &config.instance)
        .set("session.timeout.ms", millis(config.session_timeout))
        .create_with_context(Rebalances { login, ..Rebalances::default() })
        .map_err(kafka("creating the consumer"))?;
    consumer.subscribe(&[&config.observations_topic]).map_err(kafka("subscribing"))?;
    // State snapshots can be large; the changelog topic is created to accept them.
    let producer = transactional_producer(
        &config.bootstrap,
        &config.security,
        &config.instance,
        config.transaction_timeout,
        "67108864",
    )?;
    let findings_partitions = partitions_of(&producer, &config.findings_topic, shutdown)?;
    Ok((consumer, producer, Output { config, findings_partitions }))
}

/// What of an input record could not be folded in.
struct Skipped {
    /// Observations skipped (the whole record counts one).
    count: u64,
    /// The first one's entry in its batch; none: the record itself is not an observation.
    entry: Option<usize>,
    /// The first one's error.
    error: DecodeError,
}

/// Folds one input record's observations into its partition's state; returns what was skipped.
fn fold_record(
    part: &mut Owned,
    message: &BorrowedMessage<'_>,
    metrics: &Metrics,
    config: &CorrelatorConfig,
) -> Option<Skipped> {
    let inputs =
        match decode(message.key().unwrap_or_default(), message.payload().unwrap_or_default(), message.headers()) {
            Ok(inputs) => inputs,
            Err(error) => return Some(Skipped { count: 1, entry: None, error }),
        };
    let mut skipped: Option<Skipped> = None;
    for (entry, input) in inputs.into_iter().enumerate() {
        match input {
            Ok(input) => fold(part, input, metrics, config),
            Err(error) => match &mut skipped {
                Some(s) => s.count += 1,
                None => skipped = Some(Skipped { count: 1, entry: Some(entry), error }),
            },
        }
    }
    skipped
}

/// Folds one observation into its partition's state.
fn fold(part: &mut Owned, input: Input, metrics: &Metrics, config: &CorrelatorConfig) {
    // Counted as before copies from elsewhere were judged: a Secret read or token Secret counts
    // on its home partition only.
    let self_reporting = matches!(input.observation, Observation::SecretRead(_) | Observation::TokenSecret(_));
    if input.placement == Placement::Own || !self_reporting {
        metrics.observations.fetch_add(1, Ordering::Relaxed);
    }
    part.state.observe_copy(&input.cluster, input.observation, input.placement, &config.engine);
}

/// Where a replica writes: its configuration, and the findings topic's partition count (read at
/// start).
struct Output<'a> {
    config: &'a CorrelatorConfig,
    findings_partitions: i32,
}

/// A transactional producer, its transactions initialised. `instance` is stable per process
/// (a replica's name): a restart under it fences the old one and aborts its open transaction. A
/// frozen process's open transaction holds back read_committed readers only
/// `transaction_timeout`. `max_bytes`: the largest record it writes.
pub(crate) fn transactional_producer(
    bootstrap: &str,
    security: &KafkaSecurity,
    instance: &str,
    transaction_timeout: Duration,
    max_bytes: &str,
) -> Result<BaseProducer<LoginContext>, CorrelatorError> {
    let (mut producer_config, login) = clients(bootstrap, security)?;
    let producer: BaseProducer<LoginContext> = producer_config
        .set("transactional.id", instance)
        .set("transaction.timeout.ms", millis(transaction_timeout))
        .set("message.max.bytes", max_bytes)
        .set("compression.type", "lz4")
        .create_with_context(LoginContext(login))
        .map_err(kafka("creating the producer"))?;
    // With OAUTHBEARER the producer connects once it has a token, which librdkafka asks for
    // through a poll: init_transactions does not poll. 100 ms of events (a poll of 0 serves
    // only one).
    producer.poll(Duration::from_millis(100));
    // One call, not calls of a second that would see a stop sooner: a process that exits while
    // its start is refused (a TLS handshake the brokers fail) must not have a thread inside a
    // fresh librdkafka call as the process's exit handlers tear OpenSSL down (CI saw it killed by
    // a signal). A stop asked for meanwhile ends the start when the call returns ([`run`]).
    producer.init_transactions(CONTROL_TIMEOUT).map_err(kafka("initialising transactions"))?;
    Ok(producer)
}

/// A consumer's error: logged, and the end of the run when it is fatal. A fatal error leaves the
/// consumer unusable for good (a static member fenced by its own instance id when its join's
/// response was lost to a coordinator that moved): exiting gets the process restarted under its
/// name, where living on would consume nothing. Nothing is lost: the open transaction is aborted
/// and the partitions resume from committed offsets.
/// Other errors repeat while their cause lasts (a broker away): `reports` keeps the log readable.
pub(crate) fn consumer_error<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    e: KafkaError,
    reports: &Reports,
) -> Result<(), CorrelatorError> {
    if let Some((code, reason)) = consumer.client().fatal_error() {
        tracing::error!(%code, %reason, "fatal consumer error; exiting to be restarted");
        return Err(CorrelatorError::Kafka { context: "consuming (fatal error)", source: e });
    }
    if let Some(held_back) = reports.admit(&e.to_string()) {
        tracing::warn!(error = %e, held_back, "consumer error");
    }
    Ok(())
}

/// The end of a run: the last commit and the clients' close, within [`STOP_BUDGET`]. A commit
/// that fails or runs out of time is aborted and logged, not an error: the stop was asked for,
/// and the next owner of the partitions redoes the work since the last commit.
fn stop(
    consumer: BaseConsumer<Rebalances>,
    producer: BaseProducer<LoginContext>,
    output: &Output<'_>,
    metrics: &Metrics,
    owned: &mut BTreeMap<i32, Owned>,
) {
    let started = Instant::now();
    // A quarter of the budget is left for the clients' close.
    let until = Until(Some(started + STOP_BUDGET * 3 / 4));
    if owned.values().any(|p| p.dirty) {
        match commit(&consumer, &producer, output, metrics, owned, until) {
            Ok(_) => tracing::info!(took_ms = started.elapsed().as_millis(), "last commit done"),
            Err(e) => tracing::warn!(
                error = %e,
                took_ms = started.elapsed().as_millis(),
                "last commit not done; the partitions' next owner redoes the work since the previous one"
            ),
        }
    }
    let closing = Instant::now();
    drop(consumer);
    drop(producer);
    tracing::info!(took_ms = closing.elapsed().as_millis(), "Kafka clients closed");
}

/// An input partition this replica owns, and what its next commit owes.
struct Owned {
    state: PartitionState,
    /// The offset after the last record read (none since the restore: no offset to commit).
    next_offset: Option<i64>,
    /// Records were read, or the state is to be written anew, since the last commit.
    dirty: bool,
    /// Restored from a whole-state snapshot of an older version, which the next commit deletes.
    old_snapshot: bool,
}

fn apply_rebalances(
    consumer: &BaseConsumer<Rebalances>,
    config: &CorrelatorConfig,
    metrics: &Metrics,
    owned: &mut BTreeMap<i32, Owned>,
    shutdown: &AtomicBool,
) -> Result<(), CorrelatorError> {
    let events = match consumer.context().events.lock() {
        Ok(mut events) => std::mem::take(&mut *events),
        Err(_) => return Ok(()),
    };
    for (assigned, list) in events {
        for &partition in &list {
            if assigned {
                // Stopping: the partition is not taken (its records are skipped), its next owner
                // restores it.
                let Some(restored) = changelog::restore(config, partition, shutdown)? else { continue };
                metrics.restores.fetch_add(1, Ordering::Relaxed);
                // An old snapshot is written anew as entries by the next commit.
                let old = restored.from_snapshot;
                owned.insert(
                    partition,
                    Owned { state: restored.state, next_offset: None, dirty: old, old_snapshot: old },
                );
            } else {
                // Uncommitted progress goes with the partition: its next owner redoes it.
                owned.remove(&partition);
            }
        }
        // Each change in the log, with what the replica holds after it: rebalances are what
        // delay findings after a replica's restart.
        let holding: Vec<i32> = owned.keys().copied().collect();
        if assigned {
            tracing::info!(partitions = ?list, ?holding, "partitions assigned");
            metrics.assignment_restored.store(true, Ordering::Relaxed);
        } else {
            tracing::info!(partitions = ?list, ?holding, "partitions revoked");
        }
    }
    Ok(())
}

/// One transaction: due findings, state changes and input offsets of every dirty partition.
/// Returns how long judging them took.
fn commit(
    consumer: &BaseConsumer<Rebalances>,
    producer: &BaseProducer<LoginContext>,
    output: &Output<'_>,
    metrics: &Metrics,
    owned: &mut BTreeMap<i32, Owned>,
    until: Until,
) -> Result<Duration, CorrelatorError> {
    // Judged before the transaction begins, which then stays open only for its round trips to
    // the brokers: an open transaction holds back every read_committed reader of the
    // partitions it writes to.
    let judging = Instant::now();
    let due = judge(owned);
    let judging = judging.elapsed();
    metrics.judgements.fetch_add(1, Ordering::Relaxed);
    metrics.judging_milliseconds.fetch_add(u64::try_from(judging.as_millis()).unwrap_or(u64::MAX), Ordering::Relaxed);
    // The replica stops when the transaction fails: its state has moved past what the changelog
    // holds, and its successor restores from there.
    transaction(
        producer,
        until,
        || metrics.transaction_aborts.fetch_add(1, Ordering::Relaxed),
        || fill_and_commit(consumer, producer, output, metrics, owned, due, until),
    )?;
    metrics.transactions.fetch_add(1, Ordering::Relaxed);
    let size: usize = owned.values().map(|p| p.state.size()).sum();
    metrics.state_entries.store(size as u64, Ordering::Relaxed);
    let lag = owned.values().filter_map(|p| p.state.watermark_lag()).max().unwrap_or(0);
    metrics.watermark_lag_seconds.store((lag / SECOND) as u64, Ordering::Relaxed);
    for part in owned.values_mut() {
        part.dirty = false;
        part.old_snapshot = false;
    }
    Ok(judging)
}

/// The findings due now of every dirty partition, by partition.
fn judge(owned: &mut BTreeMap<i32, Owned>) -> BTreeMap<i32, Vec<(Finding, Activity)>> {
    let clock = now();
    owned.iter_mut().filter(|(_, p)| p.dirty).map(|(&partition, part)| (partition, part.state.due(clock))).collect()
}

/// Runs `body` (records, offsets, commit) in a transaction. When it fails the transaction is
/// aborted at once (`aborted` counts it) rather than left for the broker to time out: readers
/// (read_committed) move on sooner, and none of its records is ever seen.
pub(crate) fn transaction<T>(
    producer: &BaseProducer<LoginContext>,
    until: Until,
    aborted: impl FnOnce() -> T,
    body: impl FnOnce() -> Result<(), CorrelatorError>,
) -> Result<(), CorrelatorError> {
    producer.begin_transaction().map_err(kafka("beginning a transaction"))?;
    if let Err(e) = body() {
        let _ = producer.abort_transaction(until.timeout().max(Duration::from_secs(1)));
        aborted();
        return Err(e);
    }
    Ok(())
}

/// The body of one transaction: findings (`due`, by partition), changelog records, offsets,
/// commit.
fn fill_and_commit(
    consumer: &BaseConsumer<Rebalances>,
    producer: &BaseProducer<LoginContext>,
    output: &Output<'_>,
    metrics: &Metrics,
    owned: &mut BTreeMap<i32, Owned>,
    mut due: BTreeMap<i32, Vec<(Finding, Activity)>>,
    until: Until,
) -> Result<(), CorrelatorError> {
    let config = output.config;
    let mut offsets = TopicPartitionList::new();
    for (&partition, part) in owned.iter_mut().filter(|(_, p)| p.dirty) {
        for (finding, activity) in due.remove(&partition).unwrap_or_default() {
            let value = findings::value(&finding, activity, config.format)?;
            let headers = findings::headers(&finding, activity);
            let to = findings::partition(partition, output.findings_partitions);
            let record = BaseRecord::to(&config.findings_topic).partition(to).key(&finding.id);
            send(producer, record.payload(&value).headers(headers))?;
            metrics.findings.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut by_rule) = metrics.findings_by_rule.lock() {
                *by_rule.entry(finding.rule.id()).or_default() += 1;
            }
        }
        for change in part.state.changes() {
            let key = changelog::record_key(partition, &change.key);
            let record = BaseRecord::to(&config.changelog_topic).partition(partition).key(&key);
            metrics.changelog_records.fetch_add(1, Ordering::Relaxed);
            match &change.value {
                Some(value) => {
                    metrics.changelog_bytes.fetch_add(value.len() as u64, Ordering::Relaxed);
                    send(producer, record.payload(value))?;
                }
                None => send(producer, record)?,
            }
        }
        if part.old_snapshot {
            let key = changelog::snapshot_key(partition);
            send(producer, BaseRecord::to(&config.changelog_topic).partition(partition).key(&key))?;
        }
        if let Some(offset) = part.next_offset {
            offsets
                .add_partition_offset(&config.observations_topic, partition, Offset::Offset(offset))
                .map_err(kafka("listing offsets"))?;
        }
    }
    let group = consumer.group_metadata().ok_or(CorrelatorError::NotInGroup)?;
    resuming("adding offsets", until, |t| producer.send_offsets_to_transaction(&offsets, &group, t))?;
    resuming("committing", until, |t| producer.commit_transaction(t))
}

/// How many times a transactional call that timed out is made again before the replica gives up.
const RESUME_ATTEMPTS: u32 = 4;

/// Makes a transactional call again while librdkafka says calling again resumes it (a broker
/// away for a while: the call timed out, the transaction is intact). Giving up at the first
/// timeout would throw away a transaction that can still commit and stop the replica for a
/// restart; a transaction the broker has meanwhile aborted fails for good on the next call.
/// During a stop, calls stop when its budget has run out.
pub(crate) fn resuming(
    what: &'static str,
    until: Until,
    mut call: impl FnMut(Duration) -> KafkaResult<()>,
) -> Result<(), CorrelatorError> {
    let mut attempt = 1;
    loop {
        match call(until.timeout()) {
            Err(KafkaError::Transaction(e)) if e.is_retriable() && attempt < RESUME_ATTEMPTS && !until.passed() => {
                tracing::warn!(error = %e, attempt, "{what}: timed out; calling again to resume the transaction");
                attempt += 1;
            }
            result => return result.map_err(kafka(what)),
        }
    }
}

/// Produces one record, waiting for queue space instead of failing when the queue is full.
pub(crate) fn send<'a>(
    producer: &BaseProducer<LoginContext>,
    mut record: BaseRecord<'a, String, Vec<u8>>,
) -> Result<(), CorrelatorError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                producer.poll(Duration::from_millis(50));
                record = r;
            }
            Err((e, _)) => return Err(kafka("producing")(e)),
        }
    }
}

/// A shared flag a signal handler sets to stop [`run`].
pub fn shutdown_flag() -> Arc<AtomicBool> {
    Arc::new(AtomicBool::new(false))
}

/// This host's clock, for the engines that see no audit event to tell the time by (drivers
/// read it and hand it to [`PartitionState::due`]).
#[allow(clippy::disallowed_methods)] // a driver: the cores take time as an argument
pub fn now() -> Timestamp {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp(i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX))
}
