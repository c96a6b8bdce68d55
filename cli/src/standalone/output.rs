//! Where `tokentrail standalone` writes findings: stdout or a file (one JSON object per line,
//! an update repeating its finding's id), or a Kafka topic (key = finding id, the correlator's
//! headers). Each batch is flushed (or acknowledged by the broker) before the next is built, so
//! what was written survives the process; a crash may repeat the last batch's findings, never
//! lose one that was reported as written.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use tokentrail_config::kafka::KafkaSecurity;
use tokentrail_correlator_core::ocsf::Activity;
use tokentrail_correlator_core::Finding;
use tokentrail_kafka::LoginContext;

use super::StandaloneError;
use tokentrail_correlator::stream::{findings, FindingFormat};

/// Where findings go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Standard output.
    Stdout,
    /// A file, appended to.
    File(PathBuf),
    /// A Kafka topic.
    Kafka {
        /// `bootstrap.servers`.
        bootstrap: String,
        /// TLS and SASL of the producer (boxed: the other destinations are a path at most).
        security: Box<KafkaSecurity>,
        /// The topic (it must exist).
        topic: String,
    },
}

impl std::str::FromStr for Destination {
    type Err = String;

    /// `-` (stdout), `kafka:TOPIC` (with a bootstrap set elsewhere), or a file path.
    fn from_str(s: &str) -> Result<Destination, String> {
        match s {
            "" => Err("an empty destination: write -, a file path or kafka:TOPIC".into()),
            "-" => Ok(Destination::Stdout),
            _ => match s.strip_prefix("kafka:") {
                Some("") => Err("kafka: needs a topic, as kafka:TOPIC".into()),
                Some(topic) => {
                    Ok(Destination::Kafka { bootstrap: String::new(), security: Box::default(), topic: topic.into() })
                }
                None => Ok(Destination::File(PathBuf::from(s))),
            },
        }
    }
}

/// An open destination.
pub enum Output {
    /// Lines to standard output.
    Stdout(FindingFormat),
    /// Lines appended to a file.
    File { path: PathBuf, writer: BufWriter<File>, format: FindingFormat },
    /// Records to a topic.
    Kafka { producer: FutureProducer<LoginContext>, topic: String, format: FindingFormat },
}

/// How long a findings record may wait for the broker before the run stops.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

impl Output {
    /// Opens the destination.
    pub fn open(destination: &Destination, format: FindingFormat) -> Result<Output, StandaloneError> {
        Ok(match destination {
            Destination::Stdout => Output::Stdout(format),
            Destination::File(path) => {
                let file = File::options()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| StandaloneError::Output { path: path.clone(), source })?;
                Output::File { path: path.clone(), writer: BufWriter::new(file), format }
            }
            Destination::Kafka { bootstrap, security, topic } => {
                let mut config = ClientConfig::new();
                config.set("bootstrap.servers", bootstrap);
                let login = tokentrail_kafka::secure(&mut config, security)?;
                let producer = config
                    // Retries neither duplicate nor reorder findings; implies acks=all.
                    .set("enable.idempotence", "true")
                    .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
                    .create_with_context(LoginContext(login))
                    .map_err(|source| StandaloneError::Kafka { context: "creating the findings producer", source })?;
                Output::Kafka { producer, topic: topic.clone(), format }
            }
        })
    }

    /// Writes one batch of findings and makes it durable.
    pub async fn write(&mut self, batch: &[(Finding, Activity)]) -> Result<(), StandaloneError> {
        match self {
            Output::Stdout(format) => {
                let mut out = std::io::stdout().lock();
                lines(&mut out, batch, *format).map_err(|source| output_error(Path::new("stdout"), source))
            }
            Output::File { path, writer, format } => {
                lines(writer, batch, *format).map_err(|source| output_error(path, source))
            }
            Output::Kafka { producer, topic, format } => {
                let mut deliveries = Vec::with_capacity(batch.len());
                for (finding, activity) in batch {
                    let value = findings::value(finding, *activity, *format)?;
                    let mut record = FutureRecord::to(topic)
                        .key(&finding.id)
                        .payload(&value)
                        .headers(findings::headers(finding, *activity));
                    loop {
                        match producer.send_result(record) {
                            Ok(delivery) => break deliveries.push(delivery),
                            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                                record = back;
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            Err((source, _)) => {
                                return Err(StandaloneError::Kafka { context: "producing a finding", source })
                            }
                        }
                    }
                }
                for delivery in deliveries {
                    match delivery.await {
                        Ok(Ok(_)) => {}
                        Ok(Err((source, _))) => {
                            return Err(StandaloneError::Kafka { context: "delivering a finding", source })
                        }
                        Err(_) => {
                            let source = KafkaError::Canceled;
                            return Err(StandaloneError::Kafka { context: "delivering a finding", source });
                        }
                    }
                }
                Ok(())
            }
        }
    }
}

fn lines(out: &mut impl Write, batch: &[(Finding, Activity)], format: FindingFormat) -> std::io::Result<()> {
    for (finding, activity) in batch {
        let value = findings::value(finding, *activity, format).map_err(std::io::Error::other)?;
        out.write_all(&value)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

fn output_error(path: &Path, source: std::io::Error) -> StandaloneError {
    StandaloneError::Output { path: path.to_path_buf(), source }
}
