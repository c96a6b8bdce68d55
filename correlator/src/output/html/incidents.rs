//! The incidents: for each, its severity and title, a strip of its story on a time axis (exec,
//! mint, Secret reads, each foreign use, rotation, deletion, 401s, numbered as the story below
//! it), the story step by step with what each use did, and links to its member findings.
//!
//! Drawn as inline SVG with one mark per story step, never one per request: a story holds a
//! bounded number of steps (one per credential and address), so the page stays small.

use std::collections::BTreeMap;

use tokentrail_correlator_core::incident::{Incident, Step, StepKind};
use tokentrail_correlator_core::report::Report;
use tokentrail_correlator_core::time::SECOND;
use tokentrail_correlator_core::Finding;
use tokentrail_correlator_core::Timestamp;

use super::{sev_class, Page};

// Geometry, in viewBox units (the strip scales to the page width).
const WIDTH: f64 = 1200.0;
const X0: f64 = 20.0;
const X1: f64 = 1180.0;
const HEIGHT: f64 = 64.0;
const LINE_Y: f64 = 30.0;

/// The incidents section; absent when there is none.
pub(super) fn section(p: &mut Page, report: &Report) {
    p.raw("<section id=\"incidents\">\n<h2>Incidents</h2>\n");
    if report.incidents.is_empty() {
        p.raw("<p>No incidents: no finding of misuse.</p>\n");
    }
    let (shown, left_out) = super::super::fold::incidents(&report.incidents);
    let by_id = super::super::fold::by_id(&report.findings);
    for (n, i) in shown.iter().enumerate() {
        incident(p, n, i, &by_id);
    }
    if left_out > 0 {
        p.raw("<p class=\"note\">").val(left_out).raw(" more incidents are not shown (the first ");
        p.val(super::super::fold::INCIDENTS)
            .raw(" are): <code>--format incidents</code> or <code>--out DIR</code> has every one.</p>\n");
    }
    p.raw("</section>\n");
}

fn incident(p: &mut Page, n: usize, i: &Incident, findings: &BTreeMap<&str, &Finding>) {
    p.raw("<article class=\"incident f-").raw(i.severity.as_str()).raw("\" id=\"i-").text(&i.id).raw("\">\n");
    p.raw("<details open><summary><span class=\"chip ").raw(sev_class(i.severity)).raw("\">");
    p.raw(i.severity.as_str()).raw("</span><span class=\"title\">").evidence(&i.title).raw("</span></summary>\n");
    p.raw("<div class=\"body\">\n<dl class=\"facts\">\n<dt>When</dt><dd>").val(i.first_seen);
    p.raw(" to ").val(i.last_seen).raw("</dd>\n");
    for (label, items) in [
        ("Cluster", &i.clusters),
        ("Service accounts", &i.serviceaccounts),
        ("Principals", &i.principals),
        ("Credentials", &i.credentials),
    ] {
        if !items.is_empty() {
            p.raw("<dt>").raw(label).raw("</dt><dd><ul class=\"inline\">");
            for item in items {
                p.raw("<li><code>").evidence(item).raw("</code></li>");
            }
            p.raw("</ul></dd>\n");
        }
    }
    if !i.attacker_ips.is_empty() {
        p.raw("<dt>Attacker addresses</dt><dd>");
        super::code_list(p, i.attacker_ips.iter());
        p.raw("</dd>\n");
    }
    p.raw("</dl>\n");
    strip(p, n, i);
    p.raw("<ol class=\"story\">\n");
    for step in &i.story {
        p.raw("<li class=\"s-").raw(step.kind.as_str()).raw("\"><span class=\"mono\">").val(step.time);
        p.raw("</span> <span class=\"kind\">").raw(step.kind.as_str()).raw("</span> ").evidence(&step.text);
        if !step.details.is_empty() {
            p.raw("<ul class=\"plain details\">");
            for d in &step.details {
                p.raw("<li>").evidence(d).raw("</li>");
            }
            p.raw("</ul>");
        }
        p.raw("</li>\n");
    }
    p.raw("</ol>\n<p>Findings: </p><ul class=\"plain\">");
    for id in i.findings.iter().take(super::super::fold::INCIDENT_MEMBERS) {
        p.raw("<li><a href=\"#f-").text(id).raw("\"><code>").text(id).raw("</code></a>");
        if let Some(f) = findings.get(id.as_str()) {
            p.raw(" <span class=\"chip ").raw(sev_class(f.severity)).raw("\">").raw(f.severity.as_str());
            p.raw("</span> <code class=\"rule\">").raw(f.rule.id()).raw("</code>");
        }
        p.raw("</li>");
    }
    p.raw("</ul>\n");
    if i.findings.len() > super::super::fold::INCIDENT_MEMBERS {
        p.raw("<p class=\"note\">").val(i.findings.len() - super::super::fold::INCIDENT_MEMBERS);
        p.raw(" more: <code>--format incidents</code> lists every one.</p>\n");
    }
    if i.story_left_out > 0 {
        p.raw("<p class=\"note\">").val(i.story_left_out).raw(" more steps of the story are left out.</p>\n");
    }
    p.raw("<p class=\"muted\">Incident id <code>").text(&i.id).raw("</code></p>\n");
    p.raw("</div></details>\n</article>\n");
}

/// The story on a time axis: one numbered mark per step, its shape by kind.
fn strip(p: &mut Page, n: usize, i: &Incident) {
    let Some(first) = i.story.first().map(|s| s.time) else { return };
    let last = i.story.iter().map(|s| s.time).max().unwrap_or(first);
    let span = (last.0 - first.0).max(60 * SECOND);
    let x = |t: Timestamp| X0 + (t.0 - first.0) as f64 / span as f64 * (X1 - X0);
    p.raw("<svg class=\"chart story-strip\" id=\"is-").val(n).raw("\" viewBox=\"0 0 ").val(WIDTH).raw(" ");
    p.val(HEIGHT).raw("\" role=\"img\" aria-label=\"the incident's story on a time axis\">\n");
    p.raw("<line class=\"grid\" x1=\"").val(X0).raw("\" x2=\"").val(X1).raw("\" y1=\"").val(LINE_Y);
    p.raw("\" y2=\"").val(LINE_Y).raw("\"/>\n");
    p.raw("<text class=\"axis\" x=\"").val(X0).raw("\" y=\"").val(HEIGHT - 2.0).raw("\">").val(first).raw("</text>\n");
    p.raw("<text class=\"axis\" text-anchor=\"end\" x=\"").val(X1).raw("\" y=\"").val(HEIGHT - 2.0).raw("\">");
    p.val(last).raw("</text>\n");
    for (k, step) in i.story.iter().enumerate() {
        mark(p, k + 1, step, x(step.time));
    }
    p.raw("</svg>\n");
}

fn mark(p: &mut Page, number: usize, step: &Step, x: f64) {
    p.raw("<g class=\"m-").raw(step.kind.as_str()).raw("\"><title>").val(number).raw(". ").val(step.time);
    p.raw(" ").raw(step.kind.as_str()).raw(": ").evidence(&step.text).raw("</title>");
    let y = LINE_Y;
    match step.kind {
        StepKind::Exec | StepKind::TokenFileRead => {
            // A diamond.
            p.raw("<path d=\"M").val(format_args!("{x:.1} {:.1} l6 6 l-6 6 l-6 -6 z", y - 6.0)).raw("\"/>");
        }
        StepKind::Mint | StepKind::Rotation => {
            p.raw("<rect x=\"").val(format_args!("{:.1}", x - 5.0)).raw("\" y=\"").val(y - 5.0);
            p.raw("\" width=\"10\" height=\"10\"/>");
        }
        StepKind::Deletion | StepKind::AuthFailure => {
            // A cross.
            p.raw("<path d=\"M").val(format_args!("{:.1} {:.1} l12 12 m0 -12 l-12 12", x - 6.0, y - 6.0)).raw("\"/>");
        }
        StepKind::ForeignUse | StepKind::UseAfterRotation | StepKind::SecretRead => {
            p.raw("<circle cx=\"").val(format_args!("{x:.1}")).raw("\" cy=\"").val(y).raw("\" r=\"6\"/>");
        }
    }
    // Numbers alternate above and below the line, so neighbours stay readable.
    let label_y = if number % 2 == 1 { y - 10.0 } else { y + 20.0 };
    p.raw("<text text-anchor=\"middle\" x=\"").val(format_args!("{x:.1}")).raw("\" y=\"").val(label_y).raw("\">");
    p.val(number).raw("</text></g>\n");
}
