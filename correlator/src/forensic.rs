//! The forensic driver behind `tokentrail analyze`: evidence files in, a [`Report`] out.
//!
//! A thin loop around the pure pieces. The calling thread reads files in large newline-aligned
//! chunks (documents whole) and decoder threads turn chunks into observations. Token uses, nearly
//! all of an audit log, are folded right there on the decoder threads, as views borrowed from
//! the chunk (no owned copy of a use is ever made), into a few engines split by service account,
//! each locked for one use at a time, so the work is spread over the cores. Everything else
//! (pods, nodes, mints, Secret reads) goes to one engine thread, which at the end takes over the
//! token uses of the shards and evaluates the rules. The engine does not care about order, so
//! nothing is re-sequenced; memory is the engines' (pods, credentials, addresses) plus a few
//! chunks in flight.

use std::collections::BTreeMap;
use std::io::{self, BufRead, Read};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use tokentrail_aggregator_core::cluster_names::NamedBy;
use tokentrail_aggregator_core::{
    decode_line, decode_value, decode_yaml, is_whole_line, looks_like_yaml, Compression, DecodeStats, Decoded, Format,
    Layout, Limits, UseFolder,
};
use tokentrail_correlator_core::hash::persistent_hash;
use tokentrail_correlator_core::observation::UseView;
use tokentrail_correlator_core::{report, Engine, EngineConfig, Observation, Report, Timestamp};

use crate::clusters::{ClusterEvidence, Grouping};
use crate::evidence::{self, EvidenceFile};
use crate::output::terminal::escape;

/// Options of one analysis.
#[derive(Clone, Debug)]
pub struct AnalyzeOptions {
    /// Engine settings.
    pub engine: EngineConfig,
    /// Ignore requests before this time.
    pub since: Option<Timestamp>,
    /// Ignore requests after this time.
    pub until: Option<Timestamp>,
    /// Decoder threads.
    pub decoders: usize,
    /// Longest line accepted in a JSON-lines file; longer ones are reported and skipped.
    pub max_line: usize,
    /// Largest document (a file that is one JSON value) read whole.
    pub max_document: u64,
    /// How far a gzip or zstd file may expand before reading it stops with an error.
    pub decompression: Limits,
    /// Problems passed to the callback per file; the rest are only counted.
    pub problems_per_file: usize,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            engine: EngineConfig::default(),
            since: None,
            until: None,
            decoders: std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8),
            max_line: 16 << 20,
            max_document: 2 << 30,
            decompression: Limits::default(),
            problems_per_file: 10,
        }
    }
}

/// Progress of a long analysis, in bytes read from disk.
pub trait Progress: Sync {
    /// Reading starts; `total` bytes are on disk.
    fn start(&self, total: u64);
    /// `done` bytes of `total` have been read.
    fn update(&self, done: u64);
    /// Reading is over.
    fn finish(&self);
}

/// No progress display.
pub struct Quiet;

impl Progress for Quiet {
    fn start(&self, _: u64) {}
    fn update(&self, _: u64) {}
    fn finish(&self) {}
}

/// Something in the evidence that could not be used, with its file and line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocatedProblem {
    /// The file.
    pub path: PathBuf,
    /// 1-based line in the (decompressed) file, when known.
    pub line: Option<u64>,
    /// What was wrong.
    pub message: String,
}

impl std::fmt::Display for LocatedProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // File names and messages quote the evidence: shown escaped, never obeyed by a terminal.
        let path = self.path.display().to_string();
        let (path, message) = (escape(&path), escape(&self.message));
        match self.line {
            Some(line) => write!(f, "{path}:{line}: {message}"),
            None => write!(f, "{path}: {message}"),
        }
    }
}

/// What was read from one file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FileSummary {
    /// The file.
    pub path: PathBuf,
    /// The cluster its evidence was given for, in a run of several clusters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The field of the file's own records that named its cluster (a cloud export given without
    /// `NAME=`), e.g. `GKE resource.labels.cluster_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_named_by: Option<&'static str>,
    /// `lines` or `document`; absent when the file could not be opened.
    pub layout: Option<&'static str>,
    /// `gzip`, `zstd` or `none`.
    pub compression: Option<&'static str>,
    /// Records decoded.
    pub events: u64,
    /// Records decoded, by format.
    pub formats: BTreeMap<Format, u64>,
    /// Problems found.
    pub problems: u64,
    /// How many of them were passed to the callback in detail (the first few of each file).
    #[serde(skip)]
    pub problems_shown: u64,
    /// Why the file could not be read at all.
    pub error: Option<String>,
    /// Why a file found in a directory was passed over (it is neither JSON nor YAML evidence).
    pub skipped: Option<String>,
}

/// The formats that hold audit events (the rest describe the cluster: kubectl dumps).
const AUDIT_FORMATS: [Format; 5] =
    [Format::AuditEvent, Format::EventList, Format::EksCloudWatch, Format::AksDiagnostic, Format::GkeLogEntry];

impl FileSummary {
    /// Audit events read from the file.
    pub fn audit_events(&self) -> u64 {
        AUDIT_FORMATS.iter().filter_map(|f| self.formats.get(f)).sum()
    }

    /// What the file was taken for, in a few words, for a run that found no audit event.
    pub fn taken_for(&self) -> String {
        if let Some(e) = &self.error {
            return format!("could not be read: {e}");
        }
        if self.skipped.is_some() {
            return String::from("not JSON or YAML evidence: skipped");
        }
        let shape = match self.layout {
            Some("lines") => "JSON lines",
            Some("yaml") => "YAML documents",
            _ => "a JSON document",
        };
        let audit = self.audit_events();
        if audit > 0 {
            return format!("{shape}: {audit} audit events");
        }
        let objects: u64 = self.formats.values().sum();
        if objects > 0 {
            return format!("{shape}: {objects} Kubernetes objects (a kubectl dump), no audit events");
        }
        format!("{shape}, not audit events or a known kubectl list")
    }
}

/// The outcome of an analysis.
#[derive(Debug)]
pub struct Analysis {
    /// The engine's report.
    pub report: Report,
    /// What the decoders read, by format.
    pub decode: DecodeStats,
    /// Per file.
    pub files: Vec<FileSummary>,
    /// Problems, all counted; the callback saw each.
    pub problems: u64,
    /// Requests outside `--since`/`--until`.
    pub filtered: u64,
}

impl Analysis {
    /// Whether any evidence at all could be read.
    pub fn read_anything(&self) -> bool {
        self.files.iter().any(|f| f.error.is_none() && f.skipped.is_none())
    }

    /// Audit events read in every file.
    pub fn audit_events(&self) -> u64 {
        AUDIT_FORMATS.iter().filter_map(|f| self.decode.by_format.get(f)).sum()
    }
}

enum Job {
    Lines {
        file: usize,
        first_line: u64,
        bytes: Vec<u8>,
    },
    Document {
        file: usize,
        bytes: Vec<u8>,
    },
    /// Whole YAML documents, the first starting on `first_line`.
    Yaml {
        file: usize,
        first_line: u64,
        bytes: Vec<u8>,
    },
    /// A line that could not be read (too long, cut), passed along so it is reported in order
    /// with the rest.
    Problem {
        file: usize,
        line: u64,
        message: String,
    },
}

struct DecodedChunk {
    file: usize,
    /// The observations other than token uses (which the decoder folded itself), and the counts.
    content: Decoded,
    problems: Vec<(Option<u64>, String)>,
}

/// Engines that fold token uses, split by service account. All stages of one request share
/// its user, so each engine sees every stage of its requests and folds them exactly; and the
/// groups the rules read (service account, credential, client) never straddle two engines.
struct UseShards {
    engines: Vec<Mutex<Engine>>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    /// Token uses outside `--since`/`--until`.
    filtered: AtomicU64,
}

impl UseShards {
    /// `n` engines which between them keep as many recent audit IDs as one engine would.
    fn new(n: usize, options: &AnalyzeOptions) -> UseShards {
        let config =
            EngineConfig { dedup_capacity: (options.engine.dedup_capacity / n).max(1), ..options.engine.clone() };
        UseShards {
            engines: (0..n).map(|_| Mutex::new(Engine::new(config.clone()))).collect(),
            since: options.since,
            until: options.until,
            filtered: AtomicU64::new(0),
        }
    }

    /// Folds one use into its service account's engine. The lock is held for that use alone:
    /// uncontended most of the time (there are more engines than decoders), and cheap.
    fn fold(&self, u: UseView<'_>) {
        if !within(u.time, self.since, self.until) {
            self.filtered.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let shard = (persistent_hash(u.serviceaccount) % self.engines.len() as u64) as usize;
        let mut engine = self.engines[shard].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        engine.observe_use_view(u);
    }

    fn into_engines(self) -> impl Iterator<Item = Engine> {
        self.engines.into_iter().map(|m| m.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// Size of the chunks handed to decoder threads.
const CHUNK: usize = 1 << 20;

/// Reads every evidence path and evaluates it. `on_problem` sees every path that is not read
/// (missing, refused, passed over) and the first [`AnalyzeOptions::problems_per_file`] bad
/// records of each file as they are found; all bad records are counted.
pub fn analyze(
    paths: &[PathBuf],
    options: &AnalyzeOptions,
    progress: &dyn Progress,
    on_problem: &mut (dyn FnMut(&LocatedProblem) + Send),
) -> Analysis {
    analyze_found(evidence::collect(paths), options, progress, on_problem)
}

/// [`analyze`] of the files found already.
fn analyze_found(
    found: evidence::Collected,
    options: &AnalyzeOptions,
    progress: &dyn Progress,
    on_problem: &mut (dyn FnMut(&LocatedProblem) + Send),
) -> Analysis {
    let evidence::Collected { files, errors, passed_over } = found;
    let mut summaries: Vec<FileSummary> = files.iter().map(|f| summary(f, None)).collect();
    summaries.extend(not_read(errors, passed_over, on_problem));
    let total: u64 = files.iter().map(|f| f.size).sum();
    progress.start(total);
    let read = Arc::new(AtomicU64::new(0));
    let mut folded = Folded {
        engine: Engine::new(options.engine.clone()),
        decode: DecodeStats::default(),
        per_file: vec![PerFile::default(); files.len()],
        shown: vec![0; files.len()],
        problems: 0,
        filtered: 0,
    };

    // A few more shards than decoders, so two decoders rarely wait for the same lock.
    let shards = Arc::new(UseShards::new(options.decoders.max(1) * 4, options));
    let folder = {
        let shards = Arc::clone(&shards);
        UseFolder(Arc::new(move |u| shards.fold(u)))
    };

    let outcomes = std::thread::scope(|scope| {
        let (job_tx, job_rx) = sync_channel::<Job>(options.decoders * 2);
        let (out_tx, out_rx) = sync_channel::<DecodedChunk>(options.decoders * 2);
        let (pool_tx, pool_rx) = channel::<Vec<u8>>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for _ in 0..options.decoders.max(1) {
            let (rx, tx, pool, folder) = (Arc::clone(&job_rx), out_tx.clone(), pool_tx.clone(), folder.clone());
            let limit = options.problems_per_file;
            scope.spawn(move || decoder(&rx, &tx, &pool, &folder, limit));
        }
        drop(pool_tx);
        drop(out_tx);
        let files_ref = &files;
        let folded_ref = &mut folded;
        let on_problem_ref = &mut *on_problem;
        let engine_thread = scope.spawn(move || {
            for d in out_rx {
                folded_ref.fold(d, &files_ref[..], options, on_problem_ref);
            }
        });
        let outcomes: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(index, file)| read_file(index, file, options, &read, &job_tx, &pool_rx, progress))
            .collect();
        drop(job_tx);
        engine_thread.join().expect("engine thread panicked");
        outcomes
    });
    progress.finish();
    for (index, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(FileRead::Skipped) => {
                let path = files[index].path.clone();
                on_problem(&LocatedProblem {
                    path,
                    line: None,
                    message: String::from("skipped: not JSON or YAML evidence"),
                });
                summaries[index].skipped = Some(String::from("not JSON or YAML evidence"));
            }
            Ok(FileRead::Done { layout, compression }) => {
                summaries[index].layout = Some(layout);
                summaries[index].compression = Some(compression);
            }
            Err(e) => {
                let path = files[index].path.clone();
                let message = e.to_string();
                on_problem(&LocatedProblem { path, line: None, message: message.clone() });
                summaries[index].error = Some(message);
                folded.problems += 1;
            }
        }
    }
    for ((summary, per_file), shown) in
        summaries.iter_mut().zip(std::mem::take(&mut folded.per_file)).zip(&folded.shown)
    {
        summary.events = per_file.events;
        summary.problems = per_file.problems;
        summary.formats = per_file.formats;
        summary.problems_shown = *shown as u64;
    }
    // The same files named in another order give the same report.
    summaries.sort_by(|a, b| a.path.cmp(&b.path));
    drop(folder);
    let shards = Arc::into_inner(shards).expect("every decoder has finished with the shards");
    let Folded { mut engine, decode, problems, mut filtered, .. } = folded;
    filtered += shards.filtered.load(Ordering::Relaxed);
    engine.absorb_uses(shards.into_engines());
    let report = engine.report();
    // Freeing the engine (a map entry per pod, credential and client, a few strings each) takes
    // a noticeable share of a large run; nothing waits for it, so it happens on the side.
    std::thread::spawn(move || drop(engine));
    Analysis { report, decode, files: summaries, problems, filtered }
}

/// [`analyze_clusters`] of grouped evidence ([`crate::clusters::group`]): the paths that could
/// not be walked while grouping are reported and listed as files not read, as [`analyze`]
/// reports its own.
pub fn analyze_grouping(
    grouping: Grouping,
    options: &AnalyzeOptions,
    progress: &dyn Progress,
    on_problem: &mut (dyn FnMut(&LocatedProblem) + Send),
) -> Analysis {
    let Grouping { clusters, errors, passed_over, .. } = grouping;
    // Reported first, as `analyze` reports its own paths not read before reading the rest.
    let unread = not_read(errors, passed_over, on_problem);
    let mut analysis = analyze_clusters(&clusters, options, progress, on_problem);
    analysis.files.extend(unread);
    analysis
}

/// [`analyze`] for the evidence of several clusters: each cluster's in its own engine (under
/// `options.engine` with that cluster's name), so equal namespaces, names and addresses of two
/// clusters never meet; the reports are merged ([`tokentrail_correlator_core::report::merge`])
/// and each file summary names its cluster. One group is exactly [`analyze`].
pub fn analyze_clusters(
    clusters: &[ClusterEvidence],
    options: &AnalyzeOptions,
    progress: &dyn Progress,
    on_problem: &mut (dyn FnMut(&LocatedProblem) + Send),
) -> Analysis {
    if let [one] = clusters {
        let options = AnalyzeOptions {
            engine: EngineConfig { cluster: one.cluster.clone(), ..options.engine.clone() },
            ..options.clone()
        };
        let mut analysis = analyze_found(found(one), &options, progress, on_problem);
        for f in &mut analysis.files {
            f.cluster_named_by = one.named_by(&f.path).map(NamedBy::field);
            if f.cluster_named_by.is_some() {
                // What named it is shown with the name.
                f.cluster.clone_from(&one.cluster);
            }
        }
        return analysis;
    }
    let mut reports = Vec::new();
    let mut merged = Analysis {
        report: report::merge([]),
        decode: DecodeStats::default(),
        files: Vec::new(),
        problems: 0,
        filtered: 0,
    };
    for c in clusters {
        let options = AnalyzeOptions {
            engine: EngineConfig { cluster: c.cluster.clone(), ..options.engine.clone() },
            ..options.clone()
        };
        let a = analyze_found(found(c), &options, progress, on_problem);
        reports.push((c.cluster.clone().unwrap_or_default(), a.report));
        merged.decode.merge(&a.decode);
        merged.files.extend(a.files.into_iter().map(|f| FileSummary {
            cluster: c.cluster.clone(),
            cluster_named_by: c.named_by(&f.path).map(NamedBy::field),
            ..f
        }));
        merged.problems += a.problems;
        merged.filtered += a.filtered;
    }
    merged.report = report::merge(reports);
    merged
}

/// Reports the paths that could not be read and those passed over; the first are listed as
/// files with their error.
fn not_read(
    errors: Vec<evidence::EvidenceError>,
    passed_over: Vec<evidence::PassedOver>,
    on_problem: &mut (dyn FnMut(&LocatedProblem) + Send),
) -> Vec<FileSummary> {
    let mut summaries = Vec::new();
    for e in errors {
        let path = e.path().to_path_buf();
        on_problem(&LocatedProblem { path: path.clone(), line: None, message: e.reason() });
        let error = match &e {
            evidence::EvidenceError::Unreadable { source, .. } => source.to_string(),
            evidence::EvidenceError::NotAFile { .. } => e.reason(),
        };
        let missing = EvidenceFile { path, size: 0, explicit: true };
        summaries.push(FileSummary { error: Some(error), ..summary(&missing, None) });
    }
    for p in passed_over {
        on_problem(&LocatedProblem { path: p.path, line: None, message: format!("skipped: {}", p.reason) });
    }
    summaries
}

/// A cluster's files: its paths walked, and the files of plain paths found while grouping.
fn found(c: &ClusterEvidence) -> evidence::Collected {
    let mut found = evidence::collect(&c.paths);
    found.files.extend(c.files.iter().map(|f| f.file.clone()));
    found
}

/// What was read from one file so far.
#[derive(Clone, Default)]
struct PerFile {
    events: u64,
    problems: u64,
    formats: BTreeMap<Format, u64>,
}

/// What the engine thread accumulates.
struct Folded {
    engine: Engine,
    decode: DecodeStats,
    /// Records and problems per file.
    per_file: Vec<PerFile>,
    /// Problems passed to the callback per file.
    shown: Vec<usize>,
    problems: u64,
    filtered: u64,
}

impl Folded {
    fn fold(
        &mut self,
        d: DecodedChunk,
        files: &[EvidenceFile],
        options: &AnalyzeOptions,
        on_problem: &mut (dyn FnMut(&LocatedProblem) + Send),
    ) {
        let path = &files[d.file].path;
        for (line, message) in d.problems {
            if self.shown[d.file] < options.problems_per_file {
                self.shown[d.file] += 1;
                on_problem(&LocatedProblem { path: path.clone(), line, message });
            }
        }
        // Every problem is counted, kept in detail or not.
        self.problems += d.content.stats.errors;
        let file = &mut self.per_file[d.file];
        file.events += d.content.stats.events;
        file.problems += d.content.stats.errors;
        for (format, n) in &d.content.stats.by_format {
            *file.formats.entry(*format).or_default() += n;
        }
        self.decode.merge(&d.content.stats);
        for obs in d.content.observations {
            if in_window(&obs, options.since, options.until) {
                self.engine.observe(obs);
            } else {
                self.filtered += 1;
            }
        }
    }
}

fn summary(file: &EvidenceFile, layout: Option<&'static str>) -> FileSummary {
    FileSummary {
        path: file.path.clone(),
        cluster: None,
        cluster_named_by: None,
        layout,
        compression: None,
        events: 0,
        formats: BTreeMap::new(),
        problems: 0,
        problems_shown: 0,
        error: None,
        skipped: None,
    }
}

/// Requests are cut to `--since`/`--until`; facts about pods, nodes and objects are kept, since
/// they describe the cluster the requests ran in.
fn in_window(obs: &Observation, since: Option<Timestamp>, until: Option<Timestamp>) -> bool {
    let is_request = matches!(
        obs,
        Observation::TokenUse(_)
            | Observation::TokenMint(_)
            | Observation::AuthFailure(_)
            | Observation::PodAccess(_)
            | Observation::SecretRead(_)
    );
    !is_request || within(obs.time(), since, until)
}

fn within(t: Timestamp, since: Option<Timestamp>, until: Option<Timestamp>) -> bool {
    since.is_none_or(|s| t >= s) && until.is_none_or(|u| t <= u)
}

/// What became of one file.
enum FileRead {
    /// Read; its layout and compression.
    Done { layout: &'static str, compression: &'static str },
    /// Found in a directory and not JSON (a README, a script): passed over.
    Skipped,
}

/// Why a file could not be read at all, or stopped part-way (the jobs already sent still
/// count). The message goes into the report as written: each names its cause.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    /// Not a regular file, unreadable, or a compression bomb.
    #[error("cannot open: {0}")]
    Open(#[source] io::Error),
    /// Reading failed before the first line was whole.
    #[error("read failed: {0}")]
    Read(#[source] io::Error),
    /// Reading failed part-way.
    #[error("read failed after line {line}: {source}")]
    ReadAfter {
        /// The last line read.
        line: u64,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Named on the command line, and neither JSON nor YAML.
    #[error("not JSON or YAML evidence: expected audit events, a provider's export or `kubectl get -o json` output")]
    NotEvidence,
    /// One JSON document over `max_document`.
    #[error("a single JSON document larger than {mib} MiB; split it, or export one event per line")]
    JsonDocumentTooLarge {
        /// The limit, in MiB.
        mib: u64,
    },
    /// One YAML document over `max_document`.
    #[error("a YAML document larger than {mib} MiB at line {line}: the rest of the file is skipped")]
    YamlDocumentTooLarge {
        /// The limit, in MiB.
        mib: u64,
        /// Where the file was cut.
        line: u64,
    },
    /// One YAML line over `max_line`.
    #[error("line {line} is longer than {mib} MiB: the rest of the file is skipped")]
    LineTooLong {
        /// The line.
        line: u64,
        /// The limit, in MiB.
        mib: usize,
    },
    /// The decoder threads are gone (one panicked).
    #[error("decoders stopped")]
    DecodersStopped,
}

/// Reads one file into jobs.
fn read_file(
    index: usize,
    file: &EvidenceFile,
    options: &AnalyzeOptions,
    read: &Arc<AtomicU64>,
    jobs: &SyncSender<Job>,
    pool: &Receiver<Vec<u8>>,
    progress: &dyn Progress,
) -> Result<FileRead, ReadError> {
    let opened = evidence::open(&file.path, Arc::clone(read), options.decompression).map_err(ReadError::Open)?;
    let compression = match opened.compression {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    };
    let mut reader = opened.reader;
    if !opened.looks_like_json {
        // The reader holds at least the file's first line (up to its first 64 KiB) in its buffer.
        let head = reader.fill_buf().map_err(ReadError::Read)?;
        if looks_like_yaml(head) {
            return read_yaml(index, &mut reader, options, read, jobs, progress)
                .map(|()| FileRead::Done { layout: "yaml", compression });
        }
        if file.explicit {
            return Err(ReadError::NotEvidence);
        }
        return Ok(FileRead::Skipped);
    }
    match opened.layout {
        Layout::Document => {
            let mut bytes = Vec::new();
            let limit = options.max_document;
            (&mut reader).take(limit + 1).read_to_end(&mut bytes).map_err(ReadError::Read)?;
            if bytes.len() as u64 > limit {
                return Err(ReadError::JsonDocumentTooLarge { mib: limit >> 20 });
            }
            progress.update(read.load(Ordering::Relaxed));
            jobs.send(Job::Document { file: index, bytes }).map_err(|_| ReadError::DecodersStopped)?;
            Ok(FileRead::Done { layout: "document", compression })
        }
        Layout::Lines => {
            let source = Source { index, offset: opened.offset, reader: &mut reader };
            read_lines(source, options, read, jobs, pool, progress)
                .map(|()| FileRead::Done { layout: "lines", compression })
        }
    }
}

/// The text of one JSON-lines file.
struct Source<'r> {
    /// The file's index.
    index: usize,
    /// Where `reader` starts in the decompressed text.
    offset: u64,
    reader: &'r mut dyn Read,
}

/// Cuts a JSON-lines text into newline-aligned chunks. A line longer than `max_line` is skipped
/// and reported by its number. A text that starts or ends mid-line (a piece cut out of a log by
/// `tail -c` or `split -b`) is read from its first whole line to its last, and each cut is
/// reported with its byte offset. Chunk buffers come back from the decoders through `pool`, so
/// the same few buffers carry the whole file (fresh multi-megabyte buffers would cost a page
/// fault per 4 KiB).
fn read_lines(
    source: Source<'_>,
    options: &AnalyzeOptions,
    read: &Arc<AtomicU64>,
    jobs: &SyncSender<Job>,
    pool: &Receiver<Vec<u8>>,
    progress: &dyn Progress,
) -> Result<(), ReadError> {
    let Source { index, mut offset, reader } = source;
    let stopped = || ReadError::DecodersStopped;
    let report = |line: u64, message: String| {
        jobs.send(Job::Problem { file: index, line, message }).map_err(|_| ReadError::DecodersStopped)
    };
    let mut line = 1u64;
    // The unfinished last line of the previous read; `offset` is where it starts.
    let mut carry: Vec<u8> = Vec::new();
    let mut skipping = false;
    // The first line has not been seen whole yet.
    let mut first = true;
    loop {
        let mut buf = pool.try_recv().unwrap_or_else(|_| Vec::with_capacity(CHUNK * 2));
        buf.clear();
        buf.extend_from_slice(&carry);
        carry.clear();
        // `take` + `read_to_end` fill the spare capacity directly: no zeroing of each chunk first.
        let n = (&mut *reader)
            .take(CHUNK as u64)
            .read_to_end(&mut buf)
            .map_err(|source| ReadError::ReadAfter { line, source })?;
        let eof = n == 0;
        progress.update(read.load(Ordering::Relaxed));
        if skipping {
            // Inside an over-long line: drop bytes up to its end.
            match memchr::memchr(b'\n', &buf) {
                Some(end) => {
                    buf.drain(..=end);
                    offset += end as u64 + 1;
                    line += 1;
                    skipping = false;
                }
                None if eof => return Ok(()),
                None => {
                    offset += buf.len() as u64;
                    continue;
                }
            }
        }
        if first {
            let end = memchr::memchr(b'\n', &buf);
            if end.is_some() || eof {
                first = false;
                let end = end.unwrap_or(buf.len());
                if is_cut(&buf[..end]) {
                    let message = format!(
                        "starts mid-line (a piece cut out of a larger log?): its first {end} bytes, the end of a \
                         cut line, skipped; read from byte offset {}",
                        offset + end as u64 + 1
                    );
                    report(line, message)?;
                    buf.drain(..(end + 1).min(buf.len()));
                    offset += end as u64 + 1;
                    line += 1;
                }
            }
        }
        let cut = if eof { buf.len() } else { memchr::memrchr(b'\n', &buf).map_or(0, |i| i + 1) };
        if cut == 0 && !eof {
            // No line ends in this read: keep reading, unless the line is already too long.
            if buf.len() > options.max_line {
                report(line, format!("line longer than {} MiB skipped", options.max_line >> 20))?;
                skipping = true;
                first = false;
                offset += buf.len() as u64;
            } else {
                carry = buf;
            }
            continue;
        }
        carry.extend_from_slice(&buf[cut..]);
        buf.truncate(cut);
        if eof {
            // The last line, if it has no line break, may be the start of a cut line.
            let start = memchr::memrchr(b'\n', &buf).map_or(0, |i| i + 1);
            if is_cut(&buf[start..]) {
                let at = line + memchr::memchr_iter(b'\n', &buf[..start]).count() as u64;
                let message = format!(
                    "ends mid-line (a piece cut out of a larger log?): its last {} bytes, from byte offset {}, the \
                     start of a cut line, skipped",
                    buf.len() - start,
                    offset + start as u64
                );
                buf.truncate(start);
                if !buf.is_empty() {
                    jobs.send(Job::Lines { file: index, first_line: line, bytes: buf }).map_err(|_| stopped())?;
                }
                return report(at, message);
            }
        }
        let lines_in_chunk = memchr::memchr_iter(b'\n', &buf).count() as u64;
        offset += buf.len() as u64;
        if !buf.is_empty() {
            jobs.send(Job::Lines { file: index, first_line: line, bytes: buf }).map_err(|_| stopped())?;
        }
        line += lines_in_chunk;
        if eof {
            return Ok(());
        }
    }
}

/// Cuts a YAML text into chunks of whole documents (cut only where a `---` or `...` line starts
/// one), each about [`CHUNK`] long; one document may be up to `max_document` bytes, a line up
/// to `max_line`.
fn read_yaml(
    index: usize,
    reader: &mut dyn BufRead,
    options: &AnalyzeOptions,
    read: &Arc<AtomicU64>,
    jobs: &SyncSender<Job>,
    progress: &dyn Progress,
) -> Result<(), ReadError> {
    let send = |first_line: u64, bytes: Vec<u8>| {
        jobs.send(Job::Yaml { file: index, first_line, bytes }).map_err(|_| ReadError::DecodersStopped)
    };
    let mut chunk: Vec<u8> = Vec::with_capacity(CHUNK * 2);
    let mut first_line = 1u64;
    let mut line = 1u64;
    let mut text = Vec::new();
    // Bytes since the last document marker: the current document's size.
    let mut document = 0usize;
    loop {
        text.clear();
        let n = (&mut *reader)
            .take(options.max_line as u64 + 1)
            .read_until(b'\n', &mut text)
            .map_err(|source| ReadError::ReadAfter { line, source })?;
        if n == 0 {
            break;
        }
        if n > options.max_line {
            return Err(ReadError::LineTooLong { line, mib: options.max_line >> 20 });
        }
        let l = text.trim_ascii_end();
        let marker = l == b"---" || l.starts_with(b"--- ") || l == b"...";
        if marker {
            document = 0;
            if chunk.len() >= CHUNK {
                progress.update(read.load(Ordering::Relaxed));
                send(first_line, std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK * 2)))?;
                first_line = line;
            }
        }
        document += n;
        if document as u64 > options.max_document {
            return Err(ReadError::YamlDocumentTooLarge { mib: options.max_document >> 20, line });
        }
        chunk.extend_from_slice(&text);
        line += 1;
    }
    progress.update(read.load(Ordering::Relaxed));
    if !chunk.is_empty() {
        send(first_line, chunk)?;
    }
    Ok(())
}

/// Whether a line at the edge of a text is part of a line cut in two: not blank, and not one
/// or more whole JSON values.
fn is_cut(line: &[u8]) -> bool {
    !line.trim_ascii().is_empty() && !is_whole_line(line)
}

/// Decodes jobs until the readers are done. At most `problem_limit` problems of a job are kept
/// in detail; the rest are counted.
fn decoder(
    jobs: &Arc<Mutex<Receiver<Job>>>,
    out: &SyncSender<DecodedChunk>,
    pool: &Sender<Vec<u8>>,
    folder: &UseFolder,
    problem_limit: usize,
) {
    // A chunk's observations take a few hundred kilobytes: the vector is kept from one chunk
    // to the next, since growing it afresh each time costs more than decoding some events.
    let mut kept = Vec::new();
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let content = Decoded {
            observations: std::mem::take(&mut kept),
            fold_uses: Some(folder.clone()),
            problem_limit: Some(problem_limit),
            ..Decoded::new()
        };
        let mut decoded = match job {
            Job::Lines { file, first_line, bytes } => {
                let decoded = decode_lines(file, first_line, &bytes, content);
                // The reader may have finished; then the buffer is simply dropped.
                let _ = pool.send(bytes);
                decoded
            }
            Job::Problem { file, line, message } => {
                let mut content = content;
                content.stats.errors += 1;
                DecodedChunk { file, content, problems: vec![(Some(line), message)] }
            }
            Job::Yaml { file, first_line, bytes } => {
                let mut content = content;
                decode_yaml(&bytes, &mut content);
                let problems = placed_problems(&mut content, first_line);
                DecodedChunk { file, content, problems }
            }
            Job::Document { file, bytes } => {
                let mut content = content;
                decode_value(&bytes, &mut content);
                let problems = placed_problems(&mut content, 1);
                DecodedChunk { file, content, problems }
            }
        };
        // What is left (pods, mints, ...) goes to the engine thread in a vector of its size; the
        // large one stays here for the next chunk.
        let rest: Vec<Observation> = decoded.content.observations.drain(..).collect();
        kept = std::mem::replace(&mut decoded.content.observations, rest);
        decoded.content.fold_uses = None;
        if out.send(decoded).is_err() {
            return;
        }
    }
}

/// The decoded problems, placed in the file: lines inside the decoded text start at `first_line`.
fn placed_problems(content: &mut Decoded, first_line: u64) -> Vec<(Option<u64>, String)> {
    content
        .problems
        .drain(..)
        .map(|p| (p.line_in_value.map(|l| first_line + l as u64 - 1), located_message(p.record_index, p.message)))
        .collect()
}

/// A problem's message, with the record it is about when it was inside an array.
fn located_message(record: Option<usize>, message: String) -> String {
    match record {
        Some(r) => format!("record {r}: {message}"),
        None => message,
    }
}

fn decode_lines(file: usize, first_line: u64, bytes: &[u8], mut content: Decoded) -> DecodedChunk {
    let mut problems = Vec::new();
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
    for (offset, end) in ends.enumerate() {
        let text = bytes[start..end].trim_ascii();
        start = end + 1;
        if text.is_empty() {
            continue;
        }
        let line = first_line + offset as u64;
        let before = content.problems.len();
        decode_line(text, &mut content);
        for p in content.problems.drain(before..) {
            // It is counted already; past the limit, its message is not kept.
            if problems.len() >= content.problem_limit.unwrap_or(usize::MAX) {
                continue;
            }
            problems.push((Some(line), located_message(p.record_index, p.message)));
        }
    }
    DecodedChunk { file, content, problems }
}
