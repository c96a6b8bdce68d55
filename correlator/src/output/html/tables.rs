//! The tables of the HTML report: client addresses per service account, legacy tokens, and
//! coverage.

use tokentrail_correlator_core::report::{LegacyTokenRow, UsageRow};
use tokentrail_correlator_core::verdict::Verdict;

use super::Page;
use crate::forensic::Analysis;

/// Client-address rows shown. Rows whose verdict is not `expected` are always shown; beyond
/// this many, expected rows are left to `usage.json`, so a fleet-sized run stays a few MB.
/// Legacy-token rows shown, for the same reason.
const MAX_LEGACY_ROWS: usize = 1_000;
/// Evidence files listed.
const MAX_FILES: usize = 200;

pub(super) fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Expected => "v-expected",
        Verdict::Unexpected => "v-unexpected",
        Verdict::Unknown => "v-unknown",
    }
}

/// The cluster cell in front of a row, in a report of several clusters.
fn cluster_cell(p: &mut Page, several: bool, cluster: Option<&String>) {
    if several {
        p.raw("<td class=\"nowrap\"><code>");
        p.evidence(crate::output::shown_cluster(cluster.map_or("", String::as_str))).raw("</code></td>");
    }
}

/// Every (service account, client address) pair, with who held the address and the verdict.
pub(super) fn usage(p: &mut Page, rows: &[UsageRow], several: bool) {
    p.raw("<section id=\"usage\">\n<h2>Client addresses by service account</h2>\n");
    if rows.is_empty() {
        p.raw("<p>No service-account token uses in the evidence.</p>\n</section>\n");
        return;
    }
    let (shown, left) = crate::output::fold::usage(rows);
    p.raw("<div class=\"scroll\"><table id=\"usage-table\"><thead><tr>");
    p.raw(if several { "<th>cluster</th>" } else { "" });
    p.raw("<th>service account</th><th>client address</th>");
    p.raw("<th>who held it</th><th>credentials</th><th class=\"num\">uses</th><th>first seen</th><th>last seen</th>");
    p.raw("<th>verdict</th></tr></thead><tbody>\n");
    for r in shown {
        let class = verdict_class(r.verdict);
        p.raw("<tr class=\"").raw(class).raw("\">");
        cluster_cell(p, several, r.cluster.as_ref());
        p.raw("<td class=\"nowrap\"><code>").evidence(&r.serviceaccount);
        p.raw("</code></td><td class=\"nowrap\"><code>");
        match r.source_ip {
            Some(ip) => p.val(ip),
            None => p.raw("none logged"),
        };
        p.raw("</code></td><td>").evidence(&r.place).raw("</td><td>");
        for (i, kind) in r.credentials.iter().enumerate() {
            p.raw(if i == 0 { "" } else { ", " }).text(kind);
        }
        p.raw("</td><td class=\"num\">").val(r.count).raw("</td><td class=\"mono\">").val(r.first_seen);
        p.raw("</td><td class=\"mono\">").val(r.last_seen).raw("</td><td class=\"verdict ").raw(class).raw("\">");
        p.val(r.verdict).raw("</td></tr>\n");
    }
    p.raw("</tbody></table></div>\n");
    if left > 0 {
        p.raw("<p class=\"note\">").val(left);
        p.raw(" more rows are not shown (those not expected first): <code>--out DIR</code> writes every row to usage.json.</p>\n");
    }
    p.raw("</section>\n");
}

/// Secret-based (non-expiring) tokens: those in the dumps and those only seen in use.
pub(super) fn legacy(p: &mut Page, rows: &[LegacyTokenRow], several: bool) {
    p.raw("<section id=\"legacy\">\n<h2>Legacy (Secret-based, non-expiring) tokens</h2>\n");
    if rows.is_empty() {
        p.raw("<p>None in the evidence.</p>\n</section>\n");
        return;
    }
    p.raw("<div class=\"scroll\"><table id=\"legacy-table\"><thead><tr>");
    p.raw(if several { "<th>cluster</th>" } else { "" });
    p.raw("<th>Secret</th><th>service account</th>");
    p.raw("<th>created</th><th class=\"num\">age (days)</th><th>last-used label</th><th>invalid since</th>");
    p.raw("<th>mounted by</th><th class=\"num\">uses</th><th>used from</th></tr></thead><tbody>\n");
    for r in rows.iter().take(MAX_LEGACY_ROWS) {
        p.raw("<tr>");
        cluster_cell(p, several, r.cluster.as_ref());
        p.raw("<td><code>").evidence(&r.namespace).raw("/").evidence(&r.secret).raw("</code></td><td>");
        p.evidence(r.serviceaccount.as_deref().unwrap_or("-")).raw("</td><td class=\"mono\">");
        if r.exists {
            p.text(&r.created.date());
        } else {
            p.raw("not in the dumps");
        }
        p.raw("</td><td class=\"num\">");
        if let Some(days) = r.age_days {
            p.val(days);
        }
        p.raw("</td><td>").evidence(r.last_used_label.as_deref().unwrap_or("-")).raw("</td><td>");
        p.evidence(r.invalid_since.as_deref().unwrap_or("-")).raw("</td><td>");
        if r.mounted_by.is_empty() {
            p.raw("no known pod");
        }
        for (i, pod) in r.mounted_by.iter().enumerate() {
            p.raw(if i == 0 { "<code>" } else { ", <code>" }).evidence(pod).raw("</code>");
        }
        p.raw("</td><td class=\"num\">").val(r.uses).raw("</td><td>");
        for (i, ip) in r.source_ips.iter().enumerate() {
            p.raw(if i == 0 { "<code>" } else { ", <code>" }).val(ip).raw("</code>");
        }
        p.raw("</td></tr>\n");
    }
    p.raw("</tbody></table></div>\n");
    if rows.len() > MAX_LEGACY_ROWS {
        p.raw("<p class=\"note\">").val(rows.len() - MAX_LEGACY_ROWS);
        p.raw(" more are not shown: <code>--out DIR</code> writes all of them to legacy-tokens.json.</p>\n");
    }
    p.raw("</section>\n");
}

/// What share of token uses could be verified, why not the rest, and what evidence was read.
pub(super) fn coverage(p: &mut Page, analysis: &Analysis) {
    let c = &analysis.report.coverage;
    let unverified: u64 = c.unverified.values().sum();
    p.raw("<section id=\"coverage\">\n<h2>Coverage</h2>\n");
    p.raw("<p>").val(c.verified).raw(" of ").val(c.token_uses).raw(" token uses (");
    p.val(format_args!("{:.1}", c.verified_percent())).raw("%) were checked against the pod or Secret ");
    p.raw("the token belongs to: ");
    p.val(c.expected).raw(" <span class=\"verdict v-expected\">expected</span>, ").val(c.unexpected);
    p.raw(" <span class=\"verdict v-unexpected\">unexpected</span>; ").val(unverified);
    p.raw(" <span class=\"verdict v-unknown\">could not be verified</span>.</p>\n");
    if c.token_uses > 0 {
        // One bar, three parts, in proportion; viewBox units are per mille.
        let part = |n: u64| n as f64 * 1000.0 / c.token_uses as f64;
        p.raw("<svg class=\"coverage\" viewBox=\"0 0 1000 20\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"verified share\">");
        let mut x = 0.0;
        for (n, class, what) in [
            (c.expected, "b-expected", "expected"),
            (c.unexpected, "b-unexpected", "unexpected"),
            (unverified, "b-unknown", "not verified"),
        ] {
            if n == 0 {
                continue;
            }
            let w = part(n);
            p.raw("<rect class=\"").raw(class).raw("\" x=\"").val(format_args!("{x:.1}")).raw("\" y=\"0\" width=\"");
            p.val(format_args!("{w:.1}")).raw("\" height=\"20\">");
            p.raw("<title>").val(n).raw(" ").raw(what).raw("</title></rect>");
            x += w;
        }
        p.raw("</svg>\n");
    }
    p.raw("<dl class=\"facts\">\n<dt>Token uses</dt><dd>").val(c.token_uses).raw(" (");
    p.val(c.engine.duplicate_stages).raw(" duplicate stages of the same requests folded)</dd>\n");
    if unverified > 0 {
        p.raw("<dt>Not verified</dt><dd><ul class=\"plain\">");
        let mut reasons: Vec<(&String, &u64)> = c.unverified.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (why, n) in reasons {
            p.raw("<li>").val(n).raw(": ").text(why).raw("</li>");
        }
        p.raw("</ul></dd>\n");
    }
    p.raw("<dt>Credentials</dt><dd>");
    for (i, (kind, n)) in c.by_credential.iter().enumerate() {
        p.raw(if i == 0 { "" } else { ", " }).text(kind).raw(" ").val(n);
    }
    p.raw("</dd>\n<dt>Model</dt><dd>").val(c.pods).raw(" pods, ").val(c.nodes).raw(" nodes, ").val(c.mints);
    p.raw(" token mints</dd>\n<dt>Cluster networks</dt><dd>");
    if c.cluster_networks.is_empty() {
        p.raw("none known (add nodes.json or <code>--cluster-network</code>)");
    }
    for (i, net) in c.cluster_networks.iter().enumerate() {
        p.raw(if i == 0 { "<code>" } else { ", <code>" }).text(net).raw("</code>");
    }
    p.raw("</dd>\n");
    for (cluster, by, file) in crate::output::clusters_named_by_evidence(analysis) {
        p.raw("<dt>Cluster name</dt><dd>").text(cluster).raw(": named by the evidence, ").text(by).raw(" in <code>");
        p.evidence(&file).raw("</code></dd>\n");
    }
    let d = &analysis.decode;
    p.raw("<dt>Records</dt><dd>").val(d.events);
    for (i, (format, n)) in d.by_format.iter().enumerate() {
        p.raw(if i == 0 { " (" } else { ", " }).val(format).raw(" ").val(n);
    }
    p.raw(if d.by_format.is_empty() { "" } else { ")" }).raw("</dd>\n");
    if d.impersonated > 0 {
        p.raw("<dt>Impersonation</dt><dd>").val(d.impersonated);
        p.raw(" impersonated requests, judged by the real (impersonating) user</dd>\n");
    }
    if d.token_uses_by_format.get(&tokentrail_aggregator_core::Format::GkeLogEntry).is_some_and(|n| *n > 0) {
        p.raw("<dt>GKE</dt><dd>GKE audit entries carry no pod binding or credential id: only service-account-level ");
        p.raw("checks ran on them</dd>\n");
    }
    if analysis.problems > 0 {
        p.raw("<dt>Problems</dt><dd>").val(analysis.problems);
        p.raw(" bad records skipped (listed on stderr with file and line)</dd>\n");
    }
    if analysis.filtered > 0 {
        p.raw("<dt>Time window</dt><dd>").val(analysis.filtered);
        p.raw(" requests outside --since/--until ignored</dd>\n");
    }
    p.raw("</dl>\n");
    files(p, analysis);
    p.raw("</section>\n");
}

fn files(p: &mut Page, analysis: &Analysis) {
    p.raw("<h3>Evidence files</h3>\n<div class=\"scroll\"><table id=\"files-table\"><thead><tr><th>file</th>");
    p.raw("<th>layout</th><th>compression</th><th class=\"num\">records</th><th class=\"num\">problems</th>");
    p.raw("<th>error</th></tr></thead><tbody>\n");
    for f in analysis.files.iter().take(MAX_FILES) {
        p.raw("<tr><td><code>").evidence(&f.path.display().to_string()).raw("</code></td><td>");
        p.text(f.layout.unwrap_or("-")).raw("</td><td>");
        p.text(f.compression.unwrap_or("-")).raw("</td><td class=\"num\">");
        p.val(f.events).raw("</td><td class=\"num\">").val(f.problems).raw("</td><td>");
        p.evidence(f.error.as_deref().unwrap_or("")).raw("</td></tr>\n");
    }
    p.raw("</tbody></table></div>\n");
    if analysis.files.len() > MAX_FILES {
        p.raw("<p class=\"note\">").val(analysis.files.len() - MAX_FILES);
        p.raw(" more files; coverage.json lists them all.</p>\n");
    }
}
