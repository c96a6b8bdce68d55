//! `tokentrail analyze`: options, then the forensic driver, then the report.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::engine_args::EngineArgs;
use clap::ValueEnum;
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
    /// Findings by severity, client-address table, legacy tokens, coverage.
    Text,
    /// `tokentrail.finding/v1` records, one per line.
    Json,
    /// OCSF 1.3 Detection Findings (class_uid 2004), one per line.
    Ocsf,
    /// One self-contained HTML page: findings, timeline, tables, coverage.
    Html,
}

/// Options of `tokentrail analyze`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Evidence files or directories (formats are detected from content).
    #[arg(required = true, value_name = "EVIDENCE")]
    evidence: Vec<PathBuf>,
    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also write every output (findings.jsonl, findings.ocsf.jsonl, report.txt, report.html,
    /// usage.json, legacy-tokens.json, coverage.json) into this directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Cluster name put on findings.
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// The engine's settings.
    #[command(flatten)]
    engine: EngineArgs,
    /// Ignore requests before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<Timestamp>,
    /// Ignore requests after this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<Timestamp>,
    /// Exit with status 3 when a finding at or above this severity exists.
    #[arg(long, value_name = "SEVERITY", value_parser = parse_severity)]
    fail_on: Option<Severity>,
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).ok_or_else(|| format!("{s:?} is not a time: write RFC 3339, e.g. 2026-03-01T10:00:00Z"))
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s).ok_or_else(|| format!("{s:?} is not a severity: use low, medium, high or critical"))
}

/// Runs the analysis and prints the report; returns the exit status.
pub fn run(args: Args) -> ExitCode {
    let mut engine = EngineConfig { cluster: args.cluster.clone(), ..EngineConfig::default() };
    args.engine.apply(&mut engine);
    let options = AnalyzeOptions {
        engine,
        since: args.since,
        until: args.until,
        problems_per_file: PROBLEMS_SHOWN_PER_FILE,
        ..AnalyzeOptions::default()
    };
    let bar = Bar::for_stderr();
    let mut report_problem = |p: &LocatedProblem| eprintln!("tokentrail: {p}");
    let analysis = forensic::analyze(&args.evidence, &options, &bar, &mut report_problem);
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
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let findings = &analysis.report.findings;
    let printed = match args.format {
        Format::Text => out.write_all(output::text(&analysis).as_bytes()),
        Format::Json => output::write_json(findings, &mut out),
        Format::Ocsf => output::write_ocsf(findings, &mut out),
        Format::Html => output::html::write(&analysis, &mut out),
    };
    if let Err(e) = printed.and_then(|()| out.flush()) {
        // A closed pipe (`| head`) is not an error worth a message.
        if e.kind() != io::ErrorKind::BrokenPipe {
            eprintln!("tokentrail: cannot write the report: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(dir) = &args.out {
        if let Err(e) = output::write_dir(&analysis, dir) {
            eprintln!("tokentrail: cannot write into {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    match args.fail_on {
        Some(threshold) if findings.iter().any(|f| f.severity >= threshold) => ExitCode::from(EXIT_FINDINGS),
        _ => ExitCode::SUCCESS,
    }
}
