//! The report on paper: text for people, finding JSON lines and OCSF for machines, a
//! self-contained HTML page ([`html`]), and an output directory with all of them.
//!
//! Nothing here may print token material: findings never hold any (the decoders never read
//! Secret data), and these writers only print what findings and the report hold.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use tokentrail_correlator_core::incident::{findings_count, request_line, Incident};
use tokentrail_correlator_core::ocsf::{detection_finding, incident_finding, Activity};
use tokentrail_correlator_core::report::{LegacyTokenRow, UsageRow};
use tokentrail_correlator_core::{Finding, Report, Severity};

use crate::forensic::Analysis;

pub mod fold;
pub mod html;
pub mod terminal;

use terminal::escape;

/// The program version written into OCSF metadata.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// One finding per line, `tokentrail.finding/v1`.
pub fn write_json(findings: &[Finding], out: &mut dyn Write) -> io::Result<()> {
    for f in findings {
        serde_json::to_writer(&mut *out, f)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// One incident per line, `tokentrail.incident/v1`.
pub fn write_incidents(incidents: &[Incident], out: &mut dyn Write) -> io::Result<()> {
    for i in incidents {
        serde_json::to_writer(&mut *out, i)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// One OCSF Detection Finding per line.
pub fn write_ocsf(findings: &[Finding], out: &mut dyn Write) -> io::Result<()> {
    for f in findings {
        serde_json::to_writer(&mut *out, &detection_finding(f, Activity::Create, VERSION))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// One OCSF Incident Finding per line, assigned to `group`: OCSF requires an incident's assignee
/// or assignee group, and the evidence names neither.
pub fn write_ocsf_incidents(
    incidents: &[Incident],
    findings: &[Finding],
    group: &str,
    out: &mut dyn Write,
) -> io::Result<()> {
    let by_id = fold::by_id(findings);
    for i in incidents {
        let members: Vec<&Finding> = i.findings.iter().filter_map(|id| by_id.get(id.as_str()).copied()).collect();
        serde_json::to_writer(&mut *out, &incident_finding(i, &members, group, Activity::Create, VERSION))?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Writes every output into `dir`: `incidents.jsonl`, `findings.jsonl`, `findings.ocsf.jsonl`, `report.txt`,
/// `report.html`, `usage.json`, `legacy-tokens.json`, `coverage.json`, and, given the group OCSF incidents are
/// assigned to, `incidents.ocsf.jsonl`.
pub fn write_dir(analysis: &Analysis, dir: &Path, ocsf_incident_group: Option<&str>) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let create = |name: &str| -> io::Result<io::BufWriter<std::fs::File>> {
        Ok(io::BufWriter::new(std::fs::File::create(dir.join(name))?))
    };
    let report = &analysis.report;
    write_incidents(&report.incidents, &mut create("incidents.jsonl")?)?;
    write_json(&report.findings, &mut create("findings.jsonl")?)?;
    write_ocsf(&report.findings, &mut create("findings.ocsf.jsonl")?)?;
    if let Some(group) = ocsf_incident_group {
        write_ocsf_incidents(&report.incidents, &report.findings, group, &mut create("incidents.ocsf.jsonl")?)?;
    }
    create("report.txt")?.write_all(text(analysis).as_bytes())?;
    html::write(analysis, &mut create("report.html")?)?;
    serde_json::to_writer_pretty(create("usage.json")?, &report.usage)?;
    serde_json::to_writer_pretty(create("legacy-tokens.json")?, &report.legacy_tokens)?;
    let coverage = serde_json::json!({
        "coverage": report.coverage,
        "verified_percent": (report.coverage.verified_percent() * 10.0).round() / 10.0,
        "evidence": analysis.decode,
        "files": analysis.files,
        "problems": analysis.problems,
        "outside_time_window": analysis.filtered,
    });
    serde_json::to_writer_pretty(create("coverage.json")?, &coverage)?;
    Ok(())
}

/// The human report: incidents with their stories, findings by severity, client addresses per
/// service account, legacy tokens, coverage.
pub fn text(analysis: &Analysis) -> String {
    let report = &analysis.report;
    let mut s = String::new();
    let counts: Vec<String> = Severity::DESCENDING
        .iter()
        .map(|sev| (sev, report.findings.iter().filter(|f| f.severity == *sev).count()))
        .filter(|(_, n)| *n > 0)
        .map(|(sev, n)| format!("{n} {sev}"))
        .collect();
    let several = several_clusters(report);
    let cluster = if several {
        Some(format!("s {}", report.coverage.clusters.keys().map(|c| shown_cluster(c)).collect::<Vec<_>>().join(", ")))
    } else {
        report.findings.iter().find_map(|f| f.cluster.clone()).map(|c| format!(" {c}"))
    };
    let _ = writeln!(
        s,
        "tokentrail: {}{}",
        if counts.is_empty() {
            String::from("no findings")
        } else {
            format!("{} ({})", findings_count(report.findings.len()), counts.join(", "))
        },
        cluster.map(|c| format!(" in cluster{c}")).unwrap_or_default(),
    );
    // With no findings there is no incident either: "Findings: none" below says it once.
    if !report.findings.is_empty() {
        section(&mut s, "Incidents");
    }
    if report.incidents.is_empty() && !report.findings.is_empty() {
        let _ = writeln!(s, "  none");
    }
    let (shown, left_out) = fold::incidents(&report.incidents);
    let by_id = fold::by_id(&report.findings);
    for i in shown {
        incident(&mut s, i, &by_id);
    }
    if left_out > 0 {
        let _ = writeln!(
            s,
            "  … {left_out} more incidents not shown (the first {} are): --format incidents or --out DIR has every one",
            fold::INCIDENTS
        );
    }
    section(&mut s, "Findings");
    if report.findings.is_empty() {
        let _ = writeln!(s, "  none");
    }
    let (shown, left_out) = fold::findings(&report.findings);
    for f in shown {
        finding(&mut s, f, several);
    }
    for (rule, n) in &left_out {
        let _ = writeln!(
            s,
            "  … {n} more {rule} findings not shown (each rule shows its first {}): --format json or --out DIR has every one",
            fold::FINDINGS_PER_RULE
        );
    }
    section(&mut s, "Client addresses by service account");
    usage(&mut s, &report.usage, several);
    section(&mut s, "Legacy (Secret-based, non-expiring) tokens");
    legacy(&mut s, &report.legacy_tokens, several);
    section(&mut s, "Coverage");
    coverage(&mut s, analysis);
    // Fields from the evidence were escaped where they were written (line breaks too); this
    // catches any other control character that reached the text.
    match terminal::escape_lines(&s) {
        std::borrow::Cow::Borrowed(_) => s,
        std::borrow::Cow::Owned(safe) => safe,
    }
}

/// Whether the report is of several clusters: then its findings and rows show their cluster
/// (a report of one says it once, in its first line).
pub fn several_clusters(report: &Report) -> bool {
    report.coverage.clusters.len() > 1
}

/// The clusters named by their evidence (a cloud export given without `NAME=`): each with the
/// field that named it and the first file that did, for a responder to check.
pub fn clusters_named_by_evidence(analysis: &Analysis) -> Vec<(&str, &'static str, String)> {
    let mut named: BTreeMap<&str, (&'static str, String)> = BTreeMap::new();
    for f in &analysis.files {
        if let (Some(cluster), Some(by)) = (&f.cluster, f.cluster_named_by) {
            named.entry(cluster).or_insert_with(|| (by, f.path.display().to_string()));
        }
    }
    named.into_iter().map(|(c, (by, file))| (c, by, file)).collect()
}

pub use tokentrail_correlator_core::report::shown_cluster;

/// The first column of a table row, in a report of several clusters.
fn cluster_cell(cluster: Option<&String>) -> String {
    shown_cluster(cluster.map_or("", String::as_str)).to_string()
}

/// A table, with a cluster column in front when `clusters` holds each row's cluster.
fn table_with_clusters(s: &mut String, header: &[&str; 7], rows: &[[String; 7]], clusters: Option<Vec<String>>) {
    match clusters {
        None => table(s, header, rows),
        Some(clusters) => {
            let [a, b, c, d, e, f, g] = *header;
            let rows: Vec<[String; 8]> = rows
                .iter()
                .zip(clusters)
                .map(|(row, cluster)| {
                    let [a, b, c, d, e, f, g] = row.clone();
                    [cluster, a, b, c, d, e, f, g]
                })
                .collect();
            table(s, &["CLUSTER", a, b, c, d, e, f, g], &rows);
        }
    }
}

fn section(s: &mut String, title: &str) {
    let _ = writeln!(s, "\n{title}\n{}", "-".repeat(title.len()));
}

fn incident(s: &mut String, i: &Incident, findings: &BTreeMap<&str, &Finding>) {
    let _ = writeln!(s, "\n{:<8}  {}", i.severity.as_str().to_uppercase(), escape(&i.title));
    let pad = "          ";
    let mut facts = vec![format!("{} … {}", i.first_seen, i.last_seen), findings_count(i.findings.len())];
    if !i.clusters.is_empty() {
        facts.push(format!("cluster {}", i.clusters.join(", ")));
    }
    let _ = writeln!(s, "{pad}{}", escape(&facts.join(" · ")));
    for (label, items) in [
        ("service accounts", i.serviceaccounts.join(", ")),
        ("principals", i.principals.join(", ")),
        ("attacker addresses", list(&i.attacker_ips)),
    ] {
        if !items.is_empty() {
            let _ = writeln!(s, "{pad}{label}: {}", escape(&items));
        }
    }
    if !i.story.is_empty() {
        let _ = writeln!(s, "{pad}story:");
    }
    let times: Vec<String> = i.story.iter().map(|step| step.time.to_string()).collect();
    let width = times.iter().map(String::len).max().unwrap_or(0);
    for (step, time) in i.story.iter().zip(&times) {
        let _ = writeln!(s, "{pad}  {time:<width$}  {:<18}  {}", step.kind.as_str(), escape(&step.text));
        for detail in &step.details {
            let _ = writeln!(s, "{pad}  {:<w$}  {}", "", escape(detail), w = width + 20);
        }
    }
    let _ = writeln!(s, "{pad}findings:");
    for id in i.findings.iter().take(fold::INCIDENT_MEMBERS) {
        let rule = findings.get(id.as_str()).map(|f| format!("  {} {}", f.severity, f.rule));
        let _ = writeln!(s, "{pad}  {id}{}", rule.unwrap_or_default());
    }
    if i.findings.len() > fold::INCIDENT_MEMBERS {
        let more = i.findings.len() - fold::INCIDENT_MEMBERS;
        let _ = writeln!(s, "{pad}  … {more} more (--format incidents lists every one)");
    }
    if i.story_left_out > 0 {
        let _ =
            writeln!(s, "{pad}story: {} more steps left out (the first {} are told)", i.story_left_out, i.story.len());
    }
    let _ = writeln!(s, "{pad}id {}", i.id);
}

fn finding(s: &mut String, f: &Finding, several: bool) {
    let _ = writeln!(s, "\n{:<8}  {}  {}", f.severity.as_str().to_uppercase(), f.rule, escape(&f.title));
    let mut facts = vec![format!("{} × {} … {}", f.count, f.first_seen, f.last_seen)];
    if !f.copies.is_empty() {
        // A finding about several clusters (`legacy-token-shared-across-clusters`) names them all.
        let clusters: std::collections::BTreeSet<&str> = f.copies.iter().map(|c| shown_cluster(&c.cluster)).collect();
        facts.push(format!("clusters {}", clusters.into_iter().collect::<Vec<_>>().join(", ")));
    } else if several {
        facts.push(format!("cluster {}", cluster_cell(f.cluster.as_ref())));
    }
    if let Some(sa) = &f.serviceaccount {
        facts.push(format!("serviceaccount {}/{}", sa.namespace, sa.name));
    }
    if let Some(c) = &f.credential {
        facts.push(match (&c.id, &c.secret) {
            (Some(id), _) => format!("{} {id}", c.kind),
            (None, Some(secret)) => format!("{} {secret}", c.kind),
            _ => c.kind.to_string(),
        });
    }
    if let Some(p) = &f.pod {
        let node = p.node.as_ref().map(|n| format!(" on {n}")).unwrap_or_default();
        facts.push(format!("pod {}/{}{node}", p.namespace, p.name));
    }
    let pad = "          ";
    let _ = writeln!(s, "{pad}{}", escape(&facts.join(" · ")));
    if let Some(ip) = f.source_ip {
        let _ = write!(s, "{pad}from {ip}");
        if !f.expected_ips.is_empty() {
            let _ = write!(s, ", expected {}", list(&f.expected_ips));
        }
        let _ = writeln!(s);
    } else if !f.source_ips.is_empty() {
        let _ = writeln!(s, "{pad}from {}", list(&f.source_ips));
    }
    if f.source_ip.is_some() && !f.source_ips.is_empty() {
        let _ = writeln!(s, "{pad}sourceIPs as logged: {}", list(&f.source_ips));
    }
    if !f.requests.is_empty() {
        let reqs: Vec<String> = f.requests.iter().take(5).map(request_line).collect();
        let more = if f.requests.len() > 5 { format!(" (+{} more)", f.requests.len() - 5) } else { String::new() };
        let _ = writeln!(s, "{pad}requests: {}{more}", escape(&reqs.join("; ")));
    }
    if !f.user_agents.is_empty() {
        let _ = writeln!(s, "{pad}user agents: {}", escape(&f.user_agents.join("; ")));
    }
    let attack: Vec<&str> = f.attack.iter().map(|t| t.id).collect();
    let _ = writeln!(s, "{pad}ATT&CK {}", attack.join(", "));
    if !f.audit_ids.is_empty() {
        let _ = writeln!(s, "{pad}audit IDs: {}", escape(&f.audit_ids.join(", ")));
    }
    // The explanation is the finding's argument: printed whole, never cut.
    let _ = writeln!(s, "{pad}{}", escape(&f.explanation));
    let _ = writeln!(s, "{pad}id {}", f.id);
}

fn usage(s: &mut String, rows: &[UsageRow], several: bool) {
    if rows.is_empty() {
        let _ = writeln!(s, "  no service-account token uses in the evidence");
        return;
    }
    let header = ["SERVICE ACCOUNT", "CLIENT ADDRESS", "WHO HELD IT", "USES", "FIRST SEEN", "LAST SEEN", "VERDICT"];
    let (rows, left) = fold::usage(rows);
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.serviceaccount.clone(),
                r.source_ip.map_or_else(|| String::from("-"), |ip| ip.to_string()),
                r.place.to_string(),
                r.count.to_string(),
                r.first_seen.to_string(),
                r.last_seen.to_string(),
                r.verdict.to_string(),
            ]
        })
        .collect();
    let clusters = several.then(|| rows.iter().map(|r| cluster_cell(r.cluster.as_ref())).collect());
    table_with_clusters(s, &header, &cells, clusters);
    if left > 0 {
        let _ = writeln!(
            s,
            "  … {left} more rows not shown (those not expected first): --out DIR writes every row to usage.json"
        );
    }
}

fn legacy(s: &mut String, rows: &[LegacyTokenRow], several: bool) {
    if rows.is_empty() {
        let _ = writeln!(s, "  none in the evidence");
        return;
    }
    let header = ["SECRET", "SERVICE ACCOUNT", "CREATED", "LAST-USED LABEL", "MOUNTED BY", "USES", "USED FROM"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                format!("{}/{}", r.namespace, r.secret),
                r.serviceaccount.clone().unwrap_or_else(|| String::from("-")),
                if r.exists { r.created.date() } else { String::from("(not in dump)") },
                r.last_used_label.clone().unwrap_or_else(|| String::from("-")),
                if r.mounted_by.is_empty() { String::from("-") } else { r.mounted_by.join(", ") },
                r.uses.to_string(),
                if r.source_ips.is_empty() { String::from("-") } else { list(&r.source_ips) },
            ]
        })
        .collect();
    let clusters = several.then(|| rows.iter().map(|r| cluster_cell(r.cluster.as_ref())).collect());
    table_with_clusters(s, &header, &cells, clusters);
}

fn coverage(s: &mut String, analysis: &Analysis) {
    let c = &analysis.report.coverage;
    let _ = writeln!(s, "  token uses      {} ({} duplicate stages folded)", c.token_uses, c.engine.duplicate_stages);
    let _ = writeln!(
        s,
        "  verified        {} ({:.1}%): {} expected, {} unexpected",
        c.verified,
        c.verified_percent(),
        c.expected,
        c.unexpected
    );
    let unverified: u64 = c.unverified.values().sum();
    if unverified > 0 {
        let _ = writeln!(s, "  not verified    {unverified}:");
        let mut reasons: Vec<(&String, &u64)> = c.unverified.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (why, n) in reasons {
            let _ = writeln!(s, "    {n:>10}  {why}");
        }
    }
    let kinds: Vec<String> = c.by_credential.iter().map(|(k, n)| format!("{k} {n}")).collect();
    if !kinds.is_empty() {
        let _ = writeln!(s, "  credentials     {}", kinds.join(", "));
    }
    let _ = writeln!(
        s,
        "  model           {} pods, {} nodes, {} token mints; cluster networks: {}",
        c.pods,
        c.nodes,
        c.mints,
        if c.cluster_networks.is_empty() {
            String::from("none known (add nodes.json or --cluster-network)")
        } else {
            c.cluster_networks.join(", ")
        },
    );
    for line in &c.learned {
        let _ = writeln!(s, "  learned         {line}");
    }
    if several_clusters(&analysis.report) {
        for (name, c) in &c.clusters {
            let _ = writeln!(
                s,
                "  cluster         {}: {} token uses, {} verified ({:.1}%), {} pods, {} nodes",
                shown_cluster(name),
                c.token_uses,
                c.verified,
                c.verified_percent(),
                c.pods,
                c.nodes
            );
        }
    }
    for (cluster, by, file) in clusters_named_by_evidence(analysis) {
        let _ = writeln!(s, "  named by        {}: the evidence, {by} in {}", escape(cluster), escape(&file));
    }
    let formats: Vec<String> = analysis.decode.by_format.iter().map(|(f, n)| format!("{f} {n}")).collect();
    let readable = analysis.files.iter().filter(|f| f.error.is_none() && f.skipped.is_none()).count();
    let _ = writeln!(
        s,
        "  evidence        {} of {} files read; {} records ({})",
        readable,
        analysis.files.len(),
        analysis.decode.events,
        if formats.is_empty() { String::from("none") } else { formats.join(", ") },
    );
    let skipped: Vec<String> = analysis
        .files
        .iter()
        .filter(|f| f.skipped.is_some())
        .map(|f| f.path.file_name().map_or_else(|| f.path.display().to_string(), |n| n.to_string_lossy().into_owned()))
        .collect();
    if !skipped.is_empty() {
        let _ = writeln!(s, "                  skipped, not JSON or YAML evidence: {}", escape(&skipped.join(", ")));
    }
    if analysis
        .decode
        .token_uses_by_format
        .get(&tokentrail_aggregator_core::Format::GkeLogEntry)
        .is_some_and(|n| *n > 0)
    {
        let _ = writeln!(
            s,
            "                  GKE audit entries carry no pod binding or credential id: only service-account-level checks ran on them"
        );
    }
    if analysis.decode.impersonated > 0 {
        let _ = writeln!(
            s,
            "                  {} impersonated requests judged by the real (impersonating) user",
            analysis.decode.impersonated
        );
    }
    if analysis.problems > 0 {
        let _ = writeln!(
            s,
            "  problems        {} bad records skipped (listed on stderr with file and line)",
            analysis.problems
        );
    }
    if analysis.filtered > 0 {
        let _ = writeln!(s, "  time window     {} requests outside --since/--until ignored", analysis.filtered);
    }
}

fn list(ips: &[std::net::IpAddr]) -> String {
    ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>().join(", ")
}

fn table<const N: usize>(s: &mut String, header: &[&str; N], rows: &[[String; N]]) {
    let rows: Vec<[String; N]> = rows.iter().map(|row| row.each_ref().map(|cell| escape(cell).into_owned())).collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |s: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::from(" ");
        for (cell, w) in cells.zip(widths) {
            let _ = write!(out, " {cell:<w$}");
        }
        let _ = writeln!(s, "{}", out.trim_end());
    };
    line(s, &mut header.iter().copied());
    for row in &rows {
        line(s, &mut row.iter().map(String::as_str));
    }
}
