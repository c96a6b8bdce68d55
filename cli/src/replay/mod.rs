//! `tokentrail replay EVIDENCE...`: reruns an incident's evidence through the pipeline. The
//! files `analyze` reads (audit logs in any supported format, compressed or not, and `kubectl
//! get -o json` dumps) are sent as they are, cut at line or list-element boundaries
//! ([`records`]), to the audit webhook of an aggregator or of `tokentrail standalone`, or to a
//! raw audit topic ([`send`]): the aggregator decodes them as it decodes live input.
//!
//! Files go in the order named (directories in name order), so dumps named before the log
//! arrive before it; as fast as the receiver takes them (a backlog), or at `--rate`.

mod records;
mod send;

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokentrail_aggregator_core::{salvage, Layout, Limits};
use tokentrail_correlator::evidence;
use tokentrail_correlator::forensic::Progress;

use crate::kafka_args::KafkaSecurityArgs;
use crate::progress::Bar;
use records::{document_records, DocumentError, LineRecords, Record};
use send::{Target, Webhook, WebhookTls};

/// Send evidence files (audit logs, kubectl dumps) to an audit webhook or a raw audit topic,
/// to rerun an incident through the pipeline.
#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["to_webhook", "to_kafka"]))]
pub struct Args {
    /// Files or directories of evidence, sent in this order.
    #[arg(required = true, value_name = "EVIDENCE")]
    evidence: Vec<PathBuf>,
    /// POST to this audit webhook, e.g. `https://tokentrail-aggregator.tokentrail.svc:8443/`
    /// (`http://` for a plaintext trial).
    #[arg(long, value_name = "URL")]
    to_webhook: Option<String>,
    /// CA (PEM) of the webhook server's certificate.
    #[arg(long, value_name = "FILE", requires = "to_webhook")]
    webhook_ca: Option<PathBuf>,
    /// Client certificate (PEM) the webhook requires (as the apiserver's audit client).
    #[arg(long, value_name = "FILE", requires_all = ["to_webhook", "webhook_key"])]
    webhook_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, value_name = "FILE", requires = "webhook_cert")]
    webhook_key: Option<PathBuf>,
    /// The name the server's certificate must carry [default: the URL's host].
    #[arg(long, value_name = "NAME", requires = "to_webhook")]
    webhook_server_name: Option<String>,
    /// Produce to this raw audit topic (needs --bootstrap-servers).
    #[arg(long, value_name = "TOPIC", requires = "bootstrap_servers")]
    to_kafka: Option<String>,
    /// Kafka `bootstrap.servers`.
    #[arg(long, env = "TOKENTRAIL_KAFKA_BOOTSTRAP", value_name = "HOST:PORT[,...]")]
    bootstrap_servers: Option<String>,
    /// TLS and SASL of the producer.
    #[command(flatten)]
    kafka_security: KafkaSecurityArgs,
    /// The `cluster` header of every Kafka record, for a topic the aggregator does not map to
    /// a cluster.
    #[arg(long, value_name = "NAME", requires = "to_kafka")]
    cluster: Option<String>,
    /// Largest record (webhook body or Kafka record), in bytes: keep it under the receiver's
    /// limit (the webhook's `max_body_bytes`, the aggregator's `max_record_bytes`).
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    max_record_bytes: usize,
    /// Events (lines, list elements) per second; 0: as fast as the receiver takes them.
    #[arg(long, default_value_t = 0.0, value_name = "PER_SECOND")]
    rate: f64,
}

/// What was sent, and what was not.
#[derive(Debug, Default)]
struct Tally {
    records: u64,
    entries: u64,
    /// Records the receiver refused or never took, and files that could not be read.
    failures: u64,
}

/// Runs `tokentrail replay`; exit 0 when every record was taken, 1 when any was not (each
/// reported with its file and lines), 2 when the target cannot be set up.
pub fn run(args: Args) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokentrail replay: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(replay(args))
}

async fn replay(args: Args) -> ExitCode {
    let target = match target(&args) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tokentrail replay: {e}");
            return ExitCode::from(2);
        }
    };
    let collected = evidence::collect(&args.evidence);
    let mut out = Sender { target, tally: Tally::default(), pace: Pace::new(args.rate), bar: Bar::for_stderr() };
    for e in &collected.errors {
        out.failed(&e.to_string());
    }
    out.bar.start(collected.files.iter().map(|f| f.size).sum());
    let progress = Arc::new(AtomicU64::new(0));
    for file in &collected.files {
        let path = file.path.display().to_string();
        let opened = match evidence::open(&file.path, Arc::clone(&progress), Limits::default()) {
            Ok(o) => o,
            Err(e) => {
                out.failed(&format!("{path}: cannot read: {e}"));
                continue;
            }
        };
        if !opened.looks_like_json {
            eprintln!("tokentrail replay: {path}: not JSON, skipped");
            continue;
        }
        let mut reader = opened.reader;
        match opened.layout {
            Layout::Lines => {
                let mut lines = LineRecords::new(args.max_record_bytes);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) => break,
                        Ok(_) => {
                            if let Some(record) = lines.push(&line) {
                                out.deliver(&path, record).await;
                            }
                        }
                        Err(e) => {
                            out.failed(&format!("{path}: reading stopped: {e}"));
                            break;
                        }
                    }
                    out.bar.update(progress.load(Ordering::Relaxed));
                }
                if let Some(record) = lines.finish() {
                    out.deliver(&path, record).await;
                }
            }
            Layout::Document => {
                let mut text = Vec::new();
                if let Err(e) = reader.read_to_end(&mut text) {
                    out.failed(&format!("{path}: cannot read: {e}"));
                    continue;
                }
                let lines = text.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
                match document_records(&text, lines, args.max_record_bytes) {
                    Ok(records) => {
                        for record in records {
                            out.deliver(&path, record).await;
                        }
                    }
                    // A document cut short: what came before the cut is sent, as analyze reads
                    // it, and the loss is reported and counted.
                    Err(DocumentError::NotJson(why)) => match salvage(&text) {
                        Some(kept) => {
                            let records = document_records(&kept.text, kept.kept_to_line, args.max_record_bytes);
                            let mut sent = 0;
                            for record in records.into_iter().flatten() {
                                sent += record.entries;
                                out.deliver(&path, record).await;
                            }
                            out.failed(&format!(
                                "{path}: cut short ({why}): the {sent} entries up to line {} were sent, the rest of \
                                 its {lines} lines is lost; replay the complete file if there is one",
                                kept.kept_to_line
                            ));
                        }
                        None => out.failed(&format!("{path}: not sent: not a JSON document: {why}")),
                    },
                    Err(e) => out.failed(&format!("{path}: not sent: {e}")),
                }
            }
        }
        out.bar.update(progress.load(Ordering::Relaxed));
    }
    out.bar.finish();
    let Tally { records, entries, failures } = out.tally;
    let files = collected.files.len();
    eprintln!("tokentrail replay: {entries} events in {records} records sent from {files} files; {failures} not sent");
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The target, paced, with the tally of what it took.
struct Sender {
    target: Target,
    tally: Tally,
    pace: Pace,
    bar: Bar,
}

impl Sender {
    /// Sends one record of `path`; a record not taken is reported with its lines and counted.
    async fn deliver(&mut self, path: &str, record: Record) {
        self.pace.wait(self.tally.entries).await;
        let ((first, last), entries) = (record.lines, record.entries);
        match self.target.send(record.bytes).await {
            Ok(()) => {
                self.tally.records += 1;
                self.tally.entries += entries;
            }
            Err(e) => {
                let lines = if first == last { format!("line {first}") } else { format!("lines {first}-{last}") };
                self.failed(&format!("{path}: {lines}: {e}"));
            }
        }
    }

    fn failed(&mut self, what: &str) {
        eprintln!("tokentrail replay: {what}");
        self.tally.failures += 1;
    }
}

fn target(args: &Args) -> Result<Target, String> {
    if let Some(url) = &args.to_webhook {
        let tls = WebhookTls {
            ca: args.webhook_ca.clone(),
            client: args.webhook_cert.clone().zip(args.webhook_key.clone()),
            server_name: args.webhook_server_name.clone(),
        };
        return Webhook::new(url, &tls).map(Target::Webhook).map_err(|e| e.to_string());
    }
    let topic = args.to_kafka.clone().unwrap_or_default();
    let bootstrap = args.bootstrap_servers.clone().unwrap_or_default();
    let security = args.kafka_security.security().map_err(|p| tokentrail_config::one_line(&p))?;
    Target::kafka(&bootstrap, &security, topic, args.cluster.clone()).map_err(|e| e.to_string())
}

/// Holds the sending back to `rate` events per second, from the first record.
struct Pace {
    per_second: f64,
    started: Instant,
}

impl Pace {
    fn new(per_second: f64) -> Pace {
        Pace { per_second, started: Instant::now() }
    }

    /// Waits until `sent` events are due.
    async fn wait(&self, sent: u64) {
        if self.per_second > 0.0 && self.per_second.is_finite() {
            let due = self.started + Duration::from_secs_f64(sent as f64 / self.per_second);
            tokio::time::sleep_until(due.into()).await;
        }
    }
}
