//! Smoke tests of the real Kafka broker through rdkafka: the Kafka features tokentrail's pipeline
//! is built on work here, end to end, before any component relies on them.
//!
//! * topics with several partitions, made with the admin client (as deploy/ defines them);
//! * a consumer group with manual commits: what was committed is where the group resumes;
//! * a transactional read-process-write (`send_offsets_to_transaction`), the correlator's
//!   exactly-once step: a committed transaction makes its output and its input offsets visible
//!   together, an aborted one neither.
//!
//! Every wait is bounded by [`WAIT`] and says what it waited for. Every topic, group and
//! transactional id is unique (see `unique_name`), so the tests run in parallel on one broker,
//! and on a broker that earlier runs left things on.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokentrail_integration_tests::{kafka, unique_name};

/// The longest any single step may take. Generous for a loaded 2-core machine (the first group
/// or transaction also creates the broker's internal topics); a healthy run takes far less.
const WAIT: Duration = Duration::from_secs(60);

/// The value written to every partition of an output topic after the step under test: a
/// `read_committed` consumer delivers it only once everything before it is decided (committed or
/// aborted), so having read it on every partition means having read all there is to read.
const END: &str = "end-of-test";

#[tokio::test]
async fn admin_creates_topics_with_the_requested_partitions() {
    let topic = unique_name("smoke-admin");
    create_topics(&[(&topic, 3)]).await;

    let consumer: StreamConsumer = plain_consumer("read_uncommitted");
    let metadata = consumer.fetch_metadata(Some(&topic), WAIT).expect("topic metadata");
    let partitions = metadata.topics()[0].partitions().len();
    assert_eq!(partitions, 3, "topic {topic} has {partitions} partitions");
}

#[tokio::test]
async fn group_member_commits_manually_and_the_next_member_resumes_after_the_commit() {
    let topic = unique_name("smoke-group");
    let group = unique_name("smoke-group");
    create_topics(&[(&topic, 3)]).await;
    let first: Vec<_> = (0..30).map(|i| (i % 3, format!("first-{i}"))).collect();
    produce(&topic, &first).await;

    let member = group_consumer(&group, "read_committed");
    member.subscribe(&[&topic]).expect("subscribe");
    let received = receive(&member, first.len(), "the first batch in the group").await;
    // Commit what was processed (the offset after each partition's last message), not whatever
    // the consumer has fetched ahead: the pattern the pipeline's drivers follow.
    let mut processed = TopicPartitionList::new();
    for (partition, next) in next_offsets(&received) {
        processed.add_partition_offset(&topic, partition, Offset::Offset(next)).expect("offset");
    }
    member.commit(&processed, CommitMode::Sync).expect("commit");
    assert_eq!(
        committed(&member, &topic, 3),
        BTreeMap::from([(0, Some(10)), (1, Some(10)), (2, Some(10))]),
        "committed offsets of group {group}"
    );
    drop(member); // leaves the group, so the next member is assigned at once

    let second: Vec<_> = (0..6).map(|i| (i % 3, format!("second-{i}"))).collect();
    produce(&topic, &second).await;
    let member = group_consumer(&group, "read_committed");
    member.subscribe(&[&topic]).expect("subscribe");
    let received = receive(&member, second.len(), "the second batch in the group").await;
    // Had the commit been lost, the new member would start over at the first batch.
    assert_eq!(
        sorted_values(&received),
        sorted(second.iter().map(|(_, v)| v.clone())),
        "a new member of group {group} resumes after the committed offsets"
    );
}

#[tokio::test]
async fn committed_transaction_publishes_output_and_input_offsets_together() {
    let run = ReadProcessWrite::set_up("smoke-commit").await;
    run.process(Outcome::Commit).await;

    assert_eq!(
        run.read_output("read_committed").await,
        run.expected_output(),
        "read_committed sees the committed output"
    );
    let group = group_consumer(&run.group, "read_committed");
    assert_eq!(
        committed(&group, &run.input, 2),
        BTreeMap::from([(0, Some(4)), (1, Some(4))]),
        "the transaction committed the input offsets of group {}",
        run.group
    );
}

#[tokio::test]
async fn aborted_transaction_is_invisible_to_read_committed_consumers() {
    let run = ReadProcessWrite::set_up("smoke-abort").await;
    run.process(Outcome::Abort).await;

    assert_eq!(
        run.read_output("read_committed").await,
        Vec::<String>::new(),
        "read_committed sees nothing of the aborted transaction"
    );
    // The aborted records are in the log: a read_uncommitted consumer sees them. Without this,
    // the assertion above would also pass if nothing had been written at all.
    assert_eq!(
        run.read_output("read_uncommitted").await,
        run.expected_output(),
        "read_uncommitted sees the aborted output"
    );
    let group = group_consumer(&run.group, "read_committed");
    assert_eq!(
        committed(&group, &run.input, 2),
        BTreeMap::from([(0, None), (1, None)]),
        "the aborted transaction committed no input offsets for group {}",
        run.group
    );
}

/// A read-process-write step: 8 input records on 2 partitions, each processed into one output
/// record (its value upper-cased) on the same partition of the output topic.
struct ReadProcessWrite {
    input: String,
    output: String,
    group: String,
    inputs: Vec<(i32, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Commit,
    Abort,
}

impl ReadProcessWrite {
    async fn set_up(prefix: &str) -> Self {
        let run = Self {
            input: unique_name(&format!("{prefix}-in")),
            output: unique_name(&format!("{prefix}-out")),
            group: unique_name(prefix),
            inputs: (0..8).map(|i| (i % 2, format!("event-{i}"))).collect(),
        };
        create_topics(&[(&run.input, 2), (&run.output, 2)]).await;
        produce(&run.input, &run.inputs).await;
        run
    }

    fn expected_output(&self) -> Vec<String> {
        sorted(self.inputs.iter().map(|(_, v)| v.to_uppercase()))
    }

    /// Consumes every input in the group, writes the outputs and the group's input offsets in one
    /// transaction, ends it as `outcome` says, then writes [`END`] to every output partition.
    async fn process(&self, outcome: Outcome) {
        let consumer = group_consumer(&self.group, "read_committed");
        consumer.subscribe(&[&self.input]).expect("subscribe");
        let received = receive(&consumer, self.inputs.len(), "the input to process").await;

        let producer: FutureProducer = kafka()
            .client_config()
            // Makes the producer transactional (and idempotent); unique, because a second
            // producer with the same id would fence this one off.
            .set("transactional.id", unique_name("smoke-txn"))
            // Fail within the test's bound instead of librdkafka's default 5 minutes.
            .set("message.timeout.ms", millis(WAIT))
            .create()
            .expect("transactional producer");
        producer.init_transactions(WAIT).expect("init_transactions");
        producer.begin_transaction().expect("begin_transaction");
        for record in &received {
            let output = record.value.to_uppercase();
            let to = FutureRecord::<(), _>::to(&self.output).partition(record.partition).payload(&output);
            within("the transactional output's delivery", producer.send(to, WAIT))
                .await
                .map_err(|(error, _)| error)
                .expect("transactional send");
        }
        // The offsets to commit are the consumer's positions: the next record to read on each
        // partition, i.e. everything received was processed.
        let positions = consumer.position().expect("consumer positions");
        let group = consumer.group_metadata().expect("consumer group metadata");
        producer.send_offsets_to_transaction(&positions, &group, WAIT).expect("send_offsets_to_transaction");
        match outcome {
            Outcome::Commit => producer.commit_transaction(WAIT).expect("commit_transaction"),
            Outcome::Abort => producer.abort_transaction(WAIT).expect("abort_transaction"),
        }

        let ends: Vec<_> = (0..2).map(|partition| (partition, END.to_owned())).collect();
        produce(&self.output, &ends).await;
    }

    /// Every output value (sorted, without the [`END`] markers) that a consumer with this
    /// `isolation.level` sees.
    async fn read_output(&self, isolation: &str) -> Vec<String> {
        let consumer: StreamConsumer = plain_consumer(isolation);
        let mut partitions = TopicPartitionList::new();
        for partition in 0..2 {
            partitions.add_partition_offset(&self.output, partition, Offset::Beginning).expect("offset");
        }
        consumer.assign(&partitions).expect("assign");
        let mut ends_seen = 0;
        let mut values = Vec::new();
        while ends_seen < 2 {
            let message = within(&format!("{isolation} records of {}", self.output), consumer.recv())
                .await
                .expect("consume output");
            match message.payload().map(String::from_utf8_lossy) {
                Some(value) if value == END => ends_seen += 1,
                Some(value) => values.push(value.into_owned()),
                None => panic!("record without a value at {}:{}", message.partition(), message.offset()),
            }
        }
        values.sort();
        values
    }
}

/// One consumed record, owned.
struct Record {
    partition: i32,
    offset: i64,
    value: String,
}

/// A member of consumer group `group` that commits only when told to.
fn group_consumer(group: &str, isolation: &str) -> StreamConsumer {
    kafka()
        .client_config()
        .set("group.id", group)
        // Offsets are committed by the test after processing, never on a timer.
        .set("enable.auto.commit", "false")
        // A group with no committed offset starts at the beginning, not at the end: the records
        // were produced before the group existed.
        .set("auto.offset.reset", "earliest")
        // Spelled out, because librdkafka's default (read_committed) differs from Java's.
        .set("isolation.level", isolation)
        .create()
        .expect("group consumer")
}

/// A consumer outside any group, for `assign` and metadata. librdkafka requires a group.id for
/// a consumer; a unique one that never commits stays out of every other test's way.
fn plain_consumer(isolation: &str) -> StreamConsumer {
    kafka()
        .client_config()
        .set("group.id", unique_name("smoke-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer")
}

async fn create_topics(topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = kafka().client_config().create().expect("admin client");
    let new: Vec<_> =
        topics.iter().map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1))).collect();
    // operation_timeout: the broker answers once the topics exist, not when it has merely
    // accepted the request, so producing right after does not race the creation.
    let options = AdminOptions::new().operation_timeout(Some(WAIT));
    for result in within("topic creation", admin.create_topics(&new, &options)).await.expect("create_topics") {
        result.unwrap_or_else(|(topic, code)| panic!("creating topic {topic}: {code}"));
    }
}

/// Writes `(partition, value)` records, each to its partition, and waits for every delivery.
async fn produce(topic: &str, records: &[(i32, String)]) {
    let producer: FutureProducer = kafka()
        .client_config()
        // Fail within the test's bound instead of librdkafka's default 5 minutes.
        .set("message.timeout.ms", millis(WAIT))
        .create()
        .expect("producer");
    for (partition, value) in records {
        let record = FutureRecord::<(), _>::to(topic).partition(*partition).payload(value);
        within(&format!("delivery to {topic}"), producer.send(record, WAIT))
            .await
            .map_err(|(error, _)| error)
            .expect("send");
    }
}

/// Receives exactly `count` records, or fails after [`WAIT`] without them.
async fn receive(consumer: &StreamConsumer, count: usize, what: &str) -> Vec<Record> {
    let mut records = Vec::with_capacity(count);
    let collect = async {
        while records.len() < count {
            let message = consumer.recv().await.expect("consume");
            records.push(Record {
                partition: message.partition(),
                offset: message.offset(),
                value: message.payload().map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default(),
            });
        }
    };
    if tokio::time::timeout(WAIT, collect).await.is_err() {
        panic!("timed out after {WAIT:?} waiting for {what}: got {} of {count} records", records.len());
    }
    records
}

/// The offset after the last received record of each partition: what to commit.
fn next_offsets(records: &[Record]) -> BTreeMap<i32, i64> {
    let mut next = BTreeMap::new();
    for record in records {
        let entry = next.entry(record.partition).or_insert(0);
        *entry = (*entry).max(record.offset + 1);
    }
    next
}

/// The group's committed offset of each partition `0..partitions` of `topic` (None: nothing
/// committed), as the broker reports it.
fn committed(consumer: &StreamConsumer, topic: &str, partitions: i32) -> BTreeMap<i32, Option<i64>> {
    let mut query = TopicPartitionList::new();
    for partition in 0..partitions {
        query.add_partition(topic, partition);
    }
    let answer = consumer.committed_offsets(query, WAIT).expect("committed offsets");
    answer
        .elements_for_topic(topic)
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(offset) => (e.partition(), Some(offset)),
            Offset::Invalid => (e.partition(), None),
            other => panic!("unexpected committed offset {other:?} for {topic}:{}", e.partition()),
        })
        .collect()
}

fn sorted_values(records: &[Record]) -> Vec<String> {
    sorted(records.iter().map(|r| r.value.clone()))
}

fn sorted(values: impl Iterator<Item = String>) -> Vec<String> {
    let mut values: Vec<_> = values.collect();
    values.sort();
    values
}

fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

/// Awaits `future` for at most [`WAIT`]; panics naming `what` if that is not enough.
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}
