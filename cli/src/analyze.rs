//! `tokentrail analyze`: options, then the forensic driver, then the report.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::engine_args::EngineArgs;
use clap::ValueEnum;
use tokentrail_config::duration;
use tokentrail_correlator::clusters::{self, Arguments, Grouping};
use tokentrail_correlator::forensic::{self, AnalyzeOptions, LocatedProblem};
use tokentrail_correlator::output;
use tokentrail_correlator_core::{EngineConfig, Severity, Timestamp};

use crate::progress::Bar;

/// Exit status when `--fail-on` matched a finding.
const EXIT_FINDINGS: u8 = 3;
/// Exit status when no evidence could be read, or none of it was audit events.
const EXIT_NO_EVIDENCE: u8 = 1;
/// Bad records printed per file before the rest are only counted.
const PROBLEMS_SHOWN_PER_FILE: usize = 10;

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Incidents with their stories, findings by severity, client-address table, legacy tokens,
    /// coverage.
    Text,
    /// `tokentrail.finding/v1` records, one per line.
    Json,
    /// `tokentrail.incident/v1` records (findings that tell one story), one per line.
    Incidents,
    /// OCSF 1.3 Detection Findings (class_uid 2004), one per line; then, with
    /// `--ocsf-incident-group`, Incident Findings (class_uid 2005).
    Ocsf,
    /// One self-contained HTML page: findings, timeline, tables, coverage.
    Html,
}

/// Options of `tokentrail analyze`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Evidence files or directories (formats are detected from content); `-` reads standard
    /// input (e.g. `kubectl logs ... | tokentrail analyze -`). `NAME=PATH` gives cluster NAME's
    /// evidence (`prod-eu=/evidence/eu prod-us=us-audit.log.gz`): each cluster is analysed apart
    /// and the reports merged; plain paths belong to `--cluster`, or else to the cluster they
    /// name (a `collect` directory; per file, a GKE, EKS subscription or AKS export's records).
    /// A file whose name contains `=` is still read as that file.
    #[arg(required = true, value_name = "[NAME=]EVIDENCE")]
    evidence: Vec<PathBuf>,
    /// What to print on stdout.
    // `format`: the name of 0.1's flag, kept working.
    #[arg(short, long, alias = "format", value_enum, default_value_t = Format::Text, value_name = "FORMAT")]
    output: Format,
    /// Also write every output (incidents.jsonl, findings.jsonl, findings.ocsf.jsonl, report.txt,
    /// report.html, usage.json, legacy-tokens.json, coverage.json) into this directory.
    // `out`: the name of 0.1's flag, kept working.
    #[arg(long, alias = "out", value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Also write incidents as OCSF Incident Findings (`-o ocsf`, incidents.ocsf.jsonl in
    /// `--out-dir`), assigned to this group: OCSF requires an incident's assignee or assignee
    /// group, and the evidence names neither.
    #[arg(long, value_name = "GROUP")]
    ocsf_incident_group: Option<String>,
    /// Cluster name put on findings (those of evidence given without `NAME=`).
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// The engine's settings.
    #[command(flatten)]
    engine: EngineArgs,
    /// Ignore requests older than this: a duration before now (`1h`, `90m`, `7d`) or a time
    /// (RFC 3339).
    #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
    since: Option<Since>,
    /// Ignore requests before this time (RFC 3339), as kubectl's `--since-time`.
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "since")]
    since_time: Option<Timestamp>,
    /// Ignore requests after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<Timestamp>,
    /// Exit with status 3 when a finding at or above this severity exists.
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    fail_on: Option<Severity>,
}

/// `--since`: a time, or how long before now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Since {
    At(Timestamp),
    Ago(Duration),
}

impl Since {
    fn at(self, now: Timestamp) -> Timestamp {
        match self {
            Since::At(t) => t,
            Since::Ago(d) => {
                let micros = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
                Timestamp(now.0.saturating_sub(micros))
            }
        }
    }
}

/// Why a flag's value is not usable; clap prints it after the flag's name.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadValue(String);

fn parse_since(s: &str) -> Result<Since, BadValue> {
    if let Some(t) = Timestamp::parse(s) {
        return Ok(Since::At(t));
    }
    duration::parse(s).map(Since::Ago).map_err(|_| {
        BadValue(format!("{s:?} is neither a duration nor a time: write e.g. 1h, 90m, 7d or 2026-03-01T10:00:00Z"))
    })
}

fn parse_time(s: &str) -> Result<Timestamp, BadValue> {
    Timestamp::parse(s)
        .ok_or_else(|| BadValue(format!("{s:?} is not a time: write RFC 3339, e.g. 2026-03-01T10:00:00Z")))
}

fn parse_severity(s: &str) -> Result<Severity, BadValue> {
    Severity::parse(s).ok_or_else(|| BadValue(format!("{s:?} is not a severity: use low, medium, high or critical")))
}

/// This host's clock, for `--since DURATION`.
#[allow(clippy::disallowed_methods)] // a driver: "an hour ago" means the responder's hour
fn now() -> Timestamp {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Timestamp(i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX))
}

/// Runs the analysis and prints the report; returns the exit status.
pub fn run(args: Args) -> ExitCode {
    let mut engine = EngineConfig { cluster: args.cluster.clone(), ..EngineConfig::default() };
    args.engine.apply(&mut engine);
    let since = args.since.map(|s| s.at(now())).or(args.since_time);
    let options = AnalyzeOptions {
        engine,
        since,
        until: args.until,
        problems_per_file: PROBLEMS_SHOWN_PER_FILE,
        ..AnalyzeOptions::default()
    };
    let mut arguments = clusters::arguments(&args.evidence);
    let stdin = match Stdin::spool_if_named(&arguments) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "tokentrail: cannot read standard input into a temporary file: {e} (set $TMPDIR to a larger place)"
            );
            return ExitCode::from(EXIT_NO_EVIDENCE);
        }
    };
    for path in arguments.paths_mut() {
        *path = stdin.path_for(path);
    }
    let grouping = clusters::group(&arguments, args.cluster.as_deref(), options.decompression);
    say_how_clusters_were_told(&grouping, &stdin);
    let clusters: Vec<Option<String>> = grouping.clusters.iter().map(|c| c.cluster.clone()).collect();
    let bar = Bar::for_stderr();
    let mut report_problem =
        |p: &LocatedProblem| eprintln!("tokentrail: {}", LocatedProblem { path: stdin.shown(&p.path), ..p.clone() });
    let mut analysis = forensic::analyze_grouping(grouping, &options, &bar, &mut report_problem);
    for file in &mut analysis.files {
        file.path = stdin.shown(&file.path);
    }
    for file in &analysis.files {
        let not_shown = file.problems.saturating_sub(file.problems_shown);
        if not_shown > 0 {
            eprintln!(
                "tokentrail: {}: {not_shown} more bad records not shown; all are counted in the coverage section",
                output::terminal::escape(&file.path.display().to_string())
            );
        }
    }
    if !analysis.read_anything() {
        eprintln!("tokentrail: no evidence could be read; check the paths and permissions above");
        return ExitCode::from(EXIT_NO_EVIDENCE);
    }
    if analysis.audit_events() == 0 {
        // Dumps alone describe the cluster but hold no token use to verify: a report of "no
        // findings" would read as "nothing happened".
        for f in &analysis.files {
            let path = f.path.display().to_string();
            eprintln!("tokentrail: {}: {}", output::terminal::escape(&path), output::terminal::escape(&f.taken_for()));
        }
        eprintln!(
            "tokentrail: no audit events in the evidence, so no token use to verify; give the apiserver's audit log \
             (audit.k8s.io events, or an EKS, AKS or GKE export) with the dumps"
        );
        return ExitCode::from(EXIT_NO_EVIDENCE);
    }
    if clusters.len() > 1 {
        // A cluster whose evidence holds no audit event adds nothing to verify: say so, rather than
        // let its empty share of the report read as "nothing happened there".
        for c in &clusters {
            let files = analysis.files.iter().filter(|f| &f.cluster == c);
            if files.map(|f| f.audit_events()).sum::<u64>() == 0 {
                let name = output::shown_cluster(c.as_deref().unwrap_or(""));
                eprintln!(
                    "tokentrail: cluster {}: no audit events in its evidence, so no token use to verify there",
                    output::terminal::escape(name)
                );
            }
        }
    }
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let findings = &analysis.report.findings;
    let printed = match args.output {
        Format::Text => out.write_all(output::text(&analysis).as_bytes()),
        Format::Json => output::write_json(findings, &mut out),
        Format::Incidents => output::write_incidents(&analysis.report.incidents, &mut out),
        Format::Ocsf => output::write_ocsf(findings, &mut out).and_then(|()| match &args.ocsf_incident_group {
            Some(group) => output::write_ocsf_incidents(&analysis.report.incidents, findings, group, &mut out),
            None => Ok(()),
        }),
        Format::Html => output::html::write(&analysis, &mut out),
    };
    if let Err(e) = printed.and_then(|()| out.flush()) {
        // A closed pipe (`| head`) is not an error worth a message.
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("tokentrail: cannot write the report: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(dir) = &args.out_dir {
        if let Err(e) = output::write_dir(&analysis, dir, args.ocsf_incident_group.as_deref()) {
            eprintln!("tokentrail: cannot write into {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    match args.fail_on {
        Some(threshold) if findings.iter().any(|f| f.severity >= threshold) => ExitCode::from(EXIT_FINDINGS),
        _ => ExitCode::SUCCESS,
    }
}

/// Says on stderr which clusters the evidence named itself (a cloud export given without
/// `NAME=`), so a responder sees why its findings carry that name, and which files named
/// several clusters and so were left unnamed.
fn say_how_clusters_were_told(grouping: &Grouping, stdin: &Stdin) {
    let shown = |p: &std::path::Path| output::terminal::escape(&stdin.shown(p).display().to_string()).into_owned();
    for c in &grouping.clusters {
        let (Some(name), Some(first)) = (&c.cluster, c.files.iter().find(|f| f.named_by.is_some())) else { continue };
        let by = first.named_by.map_or("", |b| b.field());
        let naming = c.files.iter().filter(|f| f.named_by.is_some()).count();
        let more = if naming > 1 { format!(" and {} more", naming - 1) } else { String::new() };
        let silent = c.files.len() - naming;
        // Files that name no cluster join the only one named: say so, in case one is not its.
        let beside = match silent {
            0 => String::new(),
            1 => String::from("; 1 plain file beside it that names no cluster is taken as its too"),
            n => format!("; {n} plain files beside it that name no cluster are taken as its too"),
        };
        eprintln!(
            "tokentrail: cluster {}: named by the evidence ({by} in {}{more}){beside}",
            output::terminal::escape(name),
            shown(&first.file.path)
        );
    }
    let unnamed = grouping.clusters.iter().find(|c| c.cluster.is_none()).map_or(0, |c| c.files.len());
    let named_by_evidence = grouping.clusters.iter().any(|c| c.files.iter().any(|f| f.named_by.is_some()));
    if unnamed > 0 && (named_by_evidence || !grouping.several.is_empty()) {
        // Beside two clusters, a file that names none is not guessed onto either.
        eprintln!(
            "tokentrail: {unnamed} plain evidence files name no cluster, beside several that do: analysed apart, \
             as unnamed evidence; give them as NAME=PATH to put them with their cluster"
        );
    }
    for (path, names) in &grouping.several {
        eprintln!(
            "tokentrail: {}: its records name several clusters ({}): analysed as unnamed evidence, apart from \
             them; a file is given to one cluster as a whole, so split it per cluster, or give it as NAME=PATH",
            shown(path),
            output::terminal::escape(&names.join(", "))
        );
    }
}

/// Standard input, when an evidence path is `-`: copied into a temporary file first, because
/// the decoders read a file in ranges, in parallel, and more than once (its format is told
/// from its start). Reports name it `<stdin>`.
struct Stdin {
    spooled: Option<tempfile::NamedTempFile>,
}

impl Stdin {
    const NAME: &'static str = "<stdin>";

    fn spool_if_named(arguments: &Arguments) -> io::Result<Stdin> {
        let mut paths = arguments.named.iter().map(|(_, p)| p).chain(&arguments.plain);
        if !paths.any(|p| p.as_os_str() == "-") {
            return Ok(Stdin { spooled: None });
        }
        let mut file = tempfile::NamedTempFile::new()?;
        io::copy(&mut io::stdin().lock(), &mut file)?;
        file.flush()?;
        Ok(Stdin { spooled: Some(file) })
    }

    /// The path to read for an evidence path.
    fn path_for(&self, path: &std::path::Path) -> PathBuf {
        match &self.spooled {
            Some(file) if path.as_os_str() == "-" => file.path().to_path_buf(),
            _ => path.to_path_buf(),
        }
    }

    /// The path to show for a path that was read.
    fn shown(&self, path: &std::path::Path) -> PathBuf {
        match &self.spooled {
            Some(file) if file.path() == path => PathBuf::from(Self::NAME),
            _ => path.to_path_buf(),
        }
    }
}
