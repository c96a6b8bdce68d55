//! The report as one self-contained HTML page a responder can attach to a ticket.
//!
//! It opens on the incidents, each with its story on a time axis ([`incidents`]), then the
//! findings by severity, the timeline of every service account a finding names ([`timeline`]), the client-address table, the legacy-token inventory and coverage
//! ([`tables`]). Everything is in the file: the stylesheet ([`report.css`](html/report.css),
//! included at build time), the charts (SVG written here), the data. There is no script at all,
//! and a Content-Security-Policy of `default-src 'none'` tells the browser to fetch nothing, so
//! the page works offline and cannot call out even if something slipped into it.
//!
//! Evidence is attacker-controlled (user agents, names, anything a client puts in a request),
//! so no text reaches the page unescaped: [`Page`] accepts markup only as `&'static str`, and
//! every other string or value goes through its escaping. Like every writer here it prints only
//! what the report holds, and the report holds no token material.
//!
//! Size is bounded by the report, not by the events: findings, aggregated tables and
//! timelines drawn from fixed-size time buckets. Large tables are cut with a note saying where
//! the full data is (`--out` writes it as JSON).

mod incidents;
mod tables;
mod timeline;

use std::fmt::{self, Display, Write as _};
use std::io::{self, Write};

use tokentrail_correlator_core::finding::FindingRequest;
use tokentrail_correlator_core::{Finding, Severity, Timestamp};

use crate::forensic::Analysis;

/// The stylesheet, inline in every page.
const CSS: &str = include_str!("html/report.css");

/// Nothing may be fetched, and nothing may run: the page needs neither. Inline styles are the
/// only thing allowed, and with every fetch refused they cannot reach anything either.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

/// Evidence strings longer than this many characters are cut, so one huge user agent cannot
/// bloat the page.
const MAX_EVIDENCE_CHARS: usize = 400;

/// Writes the page.
pub fn write(analysis: &Analysis, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(render(analysis).as_bytes())
}

/// The whole page.
pub fn render(analysis: &Analysis) -> String {
    let report = &analysis.report;
    let mut p = Page::default();
    p.raw("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    p.raw("<meta http-equiv=\"Content-Security-Policy\" content=\"").raw(CSP).raw("\">\n");
    p.raw("<meta name=\"referrer\" content=\"no-referrer\">\n");
    p.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    p.raw("<title>tokentrail report");
    if let Some(c) = cluster(analysis) {
        p.raw(": ").text(&c);
    }
    p.raw("</title>\n<style>\n").raw(CSS).raw("</style>\n</head>\n<body>\n");
    header(&mut p, analysis);
    p.raw("<main>\n");
    incidents::section(&mut p, report);
    findings(&mut p, analysis);
    timeline::section(&mut p, report);
    let several = crate::output::several_clusters(report);
    tables::usage(&mut p, &report.usage, several);
    tables::legacy(&mut p, &report.legacy_tokens, several);
    tables::coverage(&mut p, analysis);
    p.raw("<footer>Written by tokentrail ").text(env!("CARGO_PKG_VERSION"));
    p.raw(". All times UTC. This page is self-contained: it runs no script and loads nothing.</footer>\n");
    p.raw("</main>\n</body>\n</html>\n");
    p.html
}

/// The cluster the report is of; in a report of several, their names.
fn cluster(analysis: &Analysis) -> Option<String> {
    let report = &analysis.report;
    if super::several_clusters(report) {
        let names: Vec<&str> = report.coverage.clusters.keys().map(|c| super::shown_cluster(c)).collect();
        return Some(names.join(", "));
    }
    report.findings.iter().find_map(|f| f.cluster.clone())
}

fn header(p: &mut Page, analysis: &Analysis) {
    let report = &analysis.report;
    p.raw("<header class=\"top\"><div class=\"inner\">\n<h1>tokentrail: service-account token report");
    if let Some(c) = cluster(analysis) {
        p.raw(" <span class=\"muted\">cluster ").text(&c).raw("</span>");
    }
    p.raw("</h1>\n<p class=\"summary\">");
    if report.findings.is_empty() {
        p.raw("No findings.");
    } else {
        p.val(report.findings.len()).raw(if report.findings.len() == 1 { " finding: " } else { " findings: " });
        for sev in Severity::DESCENDING {
            let n = report.findings.iter().filter(|f| f.severity == sev).count();
            if n > 0 {
                p.raw("<span class=\"chip ").raw(sev_class(sev)).raw("\">");
                p.val(n).raw(" ").raw(sev.as_str()).raw("</span>");
            }
        }
    }
    p.raw("</p>\n");
    let c = &report.coverage;
    p.raw("<p>").val(c.token_uses).raw(" token uses in ").val(analysis.decode.events).raw(" records from ");
    let readable = analysis.files.iter().filter(|f| f.error.is_none()).count();
    p.val(readable).raw(if readable == 1 { " file" } else { " files" });
    if let Some((first, last)) = evidence_window(analysis) {
        p.raw(", ").val(first).raw(" to ").val(last);
    }
    p.raw("; ").val(format_args!("{:.1}", c.verified_percent())).raw("% verified.</p>\n");
    p.raw("<nav><a href=\"#incidents\">Incidents</a><a href=\"#findings\">Findings</a>");
    p.raw("<a href=\"#timeline\">Timeline</a>");
    p.raw("<a href=\"#usage\">Client addresses</a><a href=\"#legacy\">Legacy tokens</a>");
    p.raw("<a href=\"#coverage\">Coverage</a></nav>\n</div></header>\n");
}

/// First and last token use in the evidence.
fn evidence_window(analysis: &Analysis) -> Option<(Timestamp, Timestamp)> {
    let usage = &analysis.report.usage;
    let first = usage.iter().map(|r| r.first_seen).min()?;
    let last = usage.iter().map(|r| r.last_seen).max()?;
    Some((first, last))
}

fn findings(p: &mut Page, analysis: &Analysis) {
    let report = &analysis.report;
    p.raw("<section id=\"findings\">\n<h2>Findings</h2>\n");
    if report.findings.is_empty() {
        p.raw("<p>No findings: every token use that could be checked came from where it belongs.</p>\n");
    }
    let (shown, left_out) = super::fold::findings(&report.findings);
    let several = super::several_clusters(report);
    for sev in Severity::DESCENDING {
        let of: Vec<&Finding> = shown.iter().copied().filter(|f| f.severity == sev).collect();
        if of.is_empty() {
            continue;
        }
        p.raw("<h3><span class=\"chip ").raw(sev_class(sev)).raw("\">").raw(sev.as_str()).raw("</span> ");
        p.val(of.len()).raw(if of.len() == 1 { " finding" } else { " findings" }).raw("</h3>\n");
        for f in of {
            // Low findings are inventory (legacy Secrets that exist): folded, so the misuse stays on top.
            let open = f.severity > Severity::Low;
            let timeline = f.serviceaccount.as_ref().and_then(|sa| {
                let name = format!("{}/{}", sa.namespace, sa.name);
                // Equal names in two clusters are two timelines.
                report.timelines.iter().position(|t| t.serviceaccount == name && t.cluster == f.cluster)
            });
            finding(p, f, open, timeline, several);
        }
    }
    for (rule, n) in &left_out {
        p.raw("<p class=\"note\">")
            .val(n)
            .raw(" more <code>")
            .val(rule)
            .raw("</code> findings are not shown (each rule shows its first ");
        p.val(super::fold::FINDINGS_PER_RULE)
            .raw("): <code>--format json</code> or <code>--out DIR</code> has every one.</p>\n");
    }
    p.raw("</section>\n");
}

fn finding(p: &mut Page, f: &Finding, open: bool, timeline: Option<usize>, several: bool) {
    p.raw("<article class=\"finding f-").raw(f.severity.as_str()).raw("\" id=\"f-").text(&f.id).raw("\">\n");
    p.raw(if open { "<details open>" } else { "<details>" });
    p.raw("<summary><span class=\"chip ").raw(sev_class(f.severity)).raw("\">").raw(f.severity.as_str()).raw("</span>");
    p.raw("<code class=\"rule\">").raw(f.rule.id()).raw("</code>");
    p.raw("<span class=\"title\">").evidence(&f.title).raw("</span>");
    p.raw("</summary>\n<div class=\"body\">\n<p class=\"explanation\">").evidence(&f.explanation).raw("</p>\n");
    // Two columns: who and where on the left, what was done and its references on the right.
    p.raw("<div class=\"cols\"><dl class=\"facts\">\n");
    p.raw("<dt>When</dt><dd>").val(f.count).raw(if f.count == 1 { " request, " } else { " requests, " });
    p.val(f.first_seen);
    if f.last_seen != f.first_seen {
        p.raw(" to ").val(f.last_seen);
    }
    p.raw("</dd>\n");
    if !f.copies.is_empty() {
        // A finding about several clusters (`legacy-token-shared-across-clusters`): each copy.
        p.raw("<dt>Copies</dt><dd>");
        for (n, c) in f.copies.iter().enumerate() {
            if n > 0 {
                p.raw("<br>");
            }
            p.raw("<code>").evidence(super::shown_cluster(&c.cluster)).raw(": ").evidence(&c.namespace).raw("/");
            p.evidence(&c.secret).raw("</code>");
        }
        p.raw("</dd>\n");
    } else if several {
        let cluster = super::shown_cluster(f.cluster.as_deref().unwrap_or(""));
        p.raw("<dt>Cluster</dt><dd><code>").evidence(cluster).raw("</code></dd>\n");
    }
    if let Some(sa) = &f.serviceaccount {
        p.raw("<dt>Service account</dt><dd><code>").evidence(&sa.namespace).raw("/").evidence(&sa.name).raw("</code>");
        if let Some(i) = timeline {
            p.raw("<a class=\"jump\" href=\"#tl-").val(i).raw("\">timeline</a>");
        }
        p.raw("</dd>\n");
    }
    if let Some(c) = &f.credential {
        p.raw("<dt>Credential</dt><dd>").raw(c.kind);
        if let Some(id) = &c.id {
            p.raw(" <code>").evidence(id).raw("</code>");
        }
        if let Some(secret) = &c.secret {
            p.raw(" Secret <code>").evidence(secret).raw("</code>");
        }
        p.raw("</dd>\n");
    }
    if let Some(pod) = &f.pod {
        p.raw("<dt>Pod</dt><dd><code>").evidence(&pod.namespace).raw("/").evidence(&pod.name).raw("</code>");
        if let Some(node) = &pod.node {
            p.raw(" on node <code>").evidence(node).raw("</code>");
        }
        if let Some(uid) = &pod.uid {
            p.raw(" <span class=\"muted\">uid ").evidence(uid).raw("</span>");
        }
        p.raw("</dd>\n");
    }
    if let Some(ip) = f.source_ip {
        p.raw("<dt>Client address</dt><dd><code>").val(ip).raw("</code></dd>\n");
    }
    if !f.source_ips.is_empty() {
        let what = if f.source_ip.is_some() { "sourceIPs as logged" } else { "Client addresses" };
        p.raw("<dt>").raw(what).raw("</dt><dd>");
        code_list(p, f.source_ips.iter());
        p.raw("</dd>\n");
    }
    if !f.expected_ips.is_empty() {
        p.raw("<dt>Expected from</dt><dd>");
        code_list(p, f.expected_ips.iter());
        p.raw("</dd>\n");
    }
    if !f.user_agents.is_empty() {
        p.raw("<dt>User agents</dt><dd><ul class=\"plain\">");
        for ua in &f.user_agents {
            p.raw("<li><code>").evidence(ua).raw("</code></li>");
        }
        p.raw("</ul></dd>\n");
    }
    p.raw("</dl>\n<dl class=\"facts\">\n");
    if !f.requests.is_empty() {
        p.raw("<dt>Requests</dt><dd>");
        requests(p, &f.requests);
        p.raw("</dd>\n");
    }
    if !f.audit_ids.is_empty() {
        p.raw("<dt>Audit IDs</dt><dd><ul class=\"inline\">");
        for id in &f.audit_ids {
            p.raw("<li><code>").evidence(id).raw("</code></li>");
        }
        p.raw("</ul>");
        if f.count > f.audit_ids.len() as u64 {
            p.raw("<div class=\"note\">the earliest ").val(f.audit_ids.len()).raw(" of ").val(f.count).raw("</div>");
        }
        p.raw("</dd>\n");
    }
    p.raw("<dt>MITRE ATT&amp;CK</dt><dd><ul class=\"plain\">");
    for t in f.attack {
        p.raw("<li><code>").text(t.id).raw("</code> ").text(t.name).raw("</li>");
    }
    p.raw("</ul></dd>\n");
    if let Some(m) = f.rule.k8s_matrix() {
        p.raw("<dt>Kubernetes threat matrix</dt><dd>").text(m).raw("</dd>\n");
    }
    p.raw("<dt>Finding id</dt><dd><code>").text(&f.id).raw("</code></dd>\n");
    p.raw("</dl></div>\n</div></details>\n</article>\n");
}

fn requests(p: &mut Page, requests: &[FindingRequest]) {
    p.raw("<table class=\"requests\"><thead><tr><th>verb</th><th>resource</th><th>namespace</th><th>name</th>");
    p.raw("<th class=\"num\">code</th></tr></thead><tbody>\n");
    for r in requests {
        p.raw("<tr><td>").evidence(&r.verb).raw("</td><td>");
        p.evidence(r.resource.as_deref().unwrap_or("")).raw("</td><td>");
        p.evidence(r.namespace.as_deref().unwrap_or("")).raw("</td><td>");
        p.evidence(r.name.as_deref().unwrap_or("")).raw("</td><td class=\"num\">");
        if let Some(code) = r.code {
            p.val(code);
        }
        p.raw("</td></tr>\n");
    }
    p.raw("</tbody></table>");
}

fn code_list<T: Display>(p: &mut Page, items: impl Iterator<Item = T>) {
    p.raw("<ul class=\"inline\">");
    for item in items {
        p.raw("<li><code>").val(item).raw("</code></li>");
    }
    p.raw("</ul>");
}

fn sev_class(sev: Severity) -> &'static str {
    match sev {
        Severity::Critical => "sev-critical",
        Severity::High => "sev-high",
        Severity::Medium => "sev-medium",
        Severity::Low => "sev-low",
    }
}

/// HTML being written. Markup goes in only as `&'static str`, so it is always ours; every
/// other string and value is escaped on the way in.
#[derive(Default)]
pub(crate) struct Page {
    html: String,
}

impl Page {
    /// Appends markup written in this crate.
    pub(crate) fn raw(&mut self, markup: &'static str) -> &mut Self {
        self.html.push_str(markup);
        self
    }

    /// Appends text, escaped for element content and quoted attribute values alike.
    pub(crate) fn text(&mut self, s: &str) -> &mut Self {
        escape_into(&mut self.html, s);
        self
    }

    /// Appends a value's `Display`, escaped.
    pub(crate) fn val(&mut self, v: impl Display) -> &mut Self {
        // Escaper never fails; a Display impl that does leaves its partial output, harmlessly.
        let _ = write!(Escaper(&mut self.html), "{v}");
        self
    }

    /// Appends attacker-controllable text: escaped, with invisible and direction-changing
    /// characters shown as `\u{…}` (so a user agent cannot hide or reorder what it says), and
    /// cut at [`MAX_EVIDENCE_CHARS`].
    pub(crate) fn evidence(&mut self, s: &str) -> &mut Self {
        for (shown, (i, c)) in s.char_indices().enumerate() {
            if shown == MAX_EVIDENCE_CHARS {
                let _ = write!(self.html, "… ({} more bytes)", s.len() - i);
                break;
            }
            if c.is_control() || is_format_char(c) {
                let _ = write!(self.html, "\\u{{{:x}}}", u32::from(c));
            } else {
                escape_char(&mut self.html, c);
            }
        }
        self
    }
}

/// Bidirectional overrides and isolates, zero-width characters and the byte-order mark: they
/// change how neighbouring text reads without being seen.
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        escape_char(out, c);
    }
}

fn escape_char(out: &mut String, c: char) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        '\'' => out.push_str("&#39;"),
        c => out.push(c),
    }
}

/// A `fmt::Write` that escapes what is written through it.
struct Escaper<'a>(&'a mut String);

impl fmt::Write for Escaper<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(self.0, s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_values_are_escaped() {
        let mut p = Page::default();
        p.text("<script>alert('x')</script> & \"q\"").val(format_args!("<{}>", 1));
        assert_eq!(p.html, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;&lt;1&gt;");
    }

    #[test]
    fn evidence_shows_hidden_characters_and_is_cut() {
        let mut p = Page::default();
        p.evidence("curl\u{202e}txt.exe\u{0}<b>");
        assert_eq!(p.html, "curl\\u{202e}txt.exe\\u{0}&lt;b&gt;");
        let mut p = Page::default();
        p.evidence(&"a".repeat(MAX_EVIDENCE_CHARS + 10));
        assert!(p.html.ends_with("… (10 more bytes)"), "{}", p.html);
    }
}
