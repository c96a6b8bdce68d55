//! The timeline: for each service account a finding names, its pods' lifetimes and its
//! credentials' lives and uses, one row per credential and client address, every use coloured
//! by verdict. All service accounts share one UTC time axis, so a replay lines up against the
//! legitimate uses around it.
//!
//! Drawn as inline SVG from the report's time buckets (at most 64 per row), never one mark per
//! request, and with a bounded number of rows and charts: the page stays small whatever the
//! size of the evidence.

use tokentrail_correlator_core::report::{Report, Timeline, TimelineCredential, TimelineUses};
use tokentrail_correlator_core::time::{Micros, SECOND};
use tokentrail_correlator_core::verdict::Verdict;
use tokentrail_correlator_core::Timestamp;

use super::Page;

/// Charts drawn; the report holds at most 100 timelines, most severe first.
const MAX_CHARTS: usize = 20;
/// Use rows (credential × client address) per chart. Rows with a verdict other than expected
/// are drawn first, so the replay is never the row left out.
const MAX_ROWS: usize = 30;
/// Pod rows per chart.
const MAX_PODS: usize = 8;

// Geometry, in viewBox units (the chart scales to the page width).
const WIDTH: f64 = 1200.0;
const PLOT_X0: f64 = 480.0;
const PLOT_X1: f64 = 1188.0;
/// Where the second label column (client address, node) starts.
const CLIENT_X: f64 = 178.0;
const AXIS_H: f64 = 20.0;
const ROW_H: f64 = 18.0;
const BAR_H: f64 = 12.0;
/// Narrowest mark, so a single request stays visible.
const MIN_MARK: f64 = 2.5;
/// Characters that fit in the first and second label columns at 11px monospace (6.6 units each).
const NAME_CHARS: usize = 25;
const CLIENT_CHARS: usize = 44;

/// The shared time axis.
#[derive(Clone, Copy)]
struct Axis {
    from: Timestamp,
    to: Timestamp,
}

impl Axis {
    /// The span of every drawn use, padded a little so marks at the ends stay visible.
    fn of(charts: &[&Timeline]) -> Option<Axis> {
        let uses = || charts.iter().flat_map(|t| &t.credentials).flat_map(|c| &c.uses);
        let first = uses().map(|u| u.first_seen).min()?;
        let last = uses().map(|u| u.last_seen).max()?;
        let span = (last.0 - first.0).max(60 * SECOND);
        let pad = span / 50;
        Some(Axis { from: first.plus(-pad), to: first.plus(span + pad) })
    }

    fn x(&self, t: Timestamp) -> f64 {
        let f = (t.0 - self.from.0) as f64 / (self.to.0 - self.from.0) as f64;
        PLOT_X0 + f.clamp(0.0, 1.0) * (PLOT_X1 - PLOT_X0)
    }

    fn contains(&self, t: Timestamp) -> bool {
        self.from <= t && t <= self.to
    }
}

pub(super) fn section(p: &mut Page, report: &Report) {
    p.raw("<section id=\"timeline\">\n<h2>Timeline <span class=\"muted\">(UTC)</span></h2>\n");
    let charts: Vec<&Timeline> = report.timelines.iter().take(MAX_CHARTS).collect();
    let Some(axis) = Axis::of(&charts) else {
        p.raw("<p>No token uses by the service accounts the findings name.</p>\n</section>\n");
        return;
    };
    p.raw("<p class=\"note\">Each service account a finding names, on one time axis from ").val(axis.from);
    p.raw(" to ").val(axis.to).raw(": one row per credential and client address, each mark a span of time ");
    p.raw("with uses in it (darker: more).</p>\n");
    legend(p);
    for (i, t) in report.timelines.iter().enumerate().take(MAX_CHARTS) {
        chart(p, i, t, axis);
    }
    if report.timelines.len() > MAX_CHARTS {
        p.raw("<p class=\"note\">").val(report.timelines.len() - MAX_CHARTS);
        p.raw(" more service accounts are named by findings; their uses are in the client-address table.</p>\n");
    }
    p.raw("</section>\n");
}

fn legend(p: &mut Page) {
    p.raw("<div class=\"legend\">");
    for (class, what) in
        [("sw-expected", "expected use"), ("sw-unexpected", "unexpected use"), ("sw-unknown", "unverified use")]
    {
        p.raw("<span><svg width=\"14\" height=\"10\"><rect class=\"").raw(class);
        p.raw("\" width=\"14\" height=\"10\"/></svg>").raw(what).raw("</span>");
    }
    p.raw("<span><svg width=\"22\" height=\"10\"><rect class=\"sw-pod\" x=\"1\" y=\"1\" width=\"20\" height=\"8\"/></svg>pod alive</span>");
    p.raw("<span><svg width=\"10\" height=\"10\"><line class=\"sw-deleted\" x1=\"5\" y1=\"0\" x2=\"5\" y2=\"10\"/></svg>pod deleted</span>");
    p.raw("<span><svg width=\"22\" height=\"10\"><line class=\"sw-life\" x1=\"0\" y1=\"5\" x2=\"22\" y2=\"5\"/></svg>credential life</span>");
    p.raw("<span><svg width=\"10\" height=\"10\"><circle class=\"sw-mint\" cx=\"5\" cy=\"5\" r=\"3.5\"/></svg>minted</span>");
    p.raw("<span><svg width=\"10\" height=\"12\"><line class=\"sw-superseded\" x1=\"5\" y1=\"0\" x2=\"5\" y2=\"12\"/></svg>");
    p.raw("superseded (the pod's next credential in use)</span></div>\n");
}

/// The credentials drawn, each with the uses drawn, in order of first use.
fn pick_rows(t: &Timeline) -> (Vec<(&TimelineCredential, Vec<&TimelineUses>)>, usize) {
    let suspicious = |c: &TimelineCredential| c.uses.iter().any(|u| u.verdict != Verdict::Expected);
    let mut order: Vec<usize> = (0..t.credentials.len()).collect();
    // Stable: within each group credentials keep their order of first use.
    order.sort_by_key(|&i| !suspicious(&t.credentials[i]));
    let mut picked: Vec<(usize, Vec<&TimelineUses>)> = Vec::new();
    let (mut rows, mut left_out) = (0, 0);
    for i in order {
        let c = &t.credentials[i];
        let mut uses: Vec<&TimelineUses> = c.uses.iter().collect();
        uses.sort_by_key(|u| (u.verdict == Verdict::Expected, u.first_seen));
        let room = MAX_ROWS - rows;
        left_out += uses.len().saturating_sub(room);
        uses.truncate(room);
        if uses.is_empty() {
            continue;
        }
        rows += uses.len();
        picked.push((i, uses));
    }
    picked.sort_by_key(|(i, _)| *i);
    (picked.into_iter().map(|(i, uses)| (&t.credentials[i], uses)).collect(), left_out)
}

fn chart(p: &mut Page, index: usize, t: &Timeline, axis: Axis) {
    p.raw("<div class=\"timeline\" id=\"tl-").val(index).raw("\">\n");
    p.raw("<h3><code>").evidence(&t.serviceaccount).raw("</code>");
    if let Some(c) = &t.cluster {
        p.raw(" <span class=\"muted\">cluster ").evidence(c).raw("</span>");
    }
    let unexpected: u64 =
        t.credentials.iter().flat_map(|c| &c.uses).filter(|u| u.verdict == Verdict::Unexpected).map(|u| u.count).sum();
    let n = t.credentials.len();
    p.raw(" <span class=\"muted\">").val(n).raw(plural(n, " credential, ", " credentials, "));
    p.val(t.pods.len()).raw(plural(t.pods.len(), " pod", " pods"));
    if unexpected > 0 {
        p.raw(", </span><span class=\"verdict v-unexpected\">").val(unexpected).raw(" unexpected uses</span>");
    } else {
        p.raw("</span>");
    }
    p.raw("</h3>\n");
    if t.credentials.is_empty() {
        p.raw("<p class=\"note\">No uses of this service account's tokens in the evidence.</p>\n</div>\n");
        return;
    }
    let (rows, rows_left_out) = pick_rows(t);
    // Pods of the drawn credentials first (by name: a pod's credentials name it), then the rest.
    let mut pods: Vec<_> = t.pods.iter().collect();
    pods.sort_by_key(|pod| !rows.iter().any(|(c, _)| c.pod.as_deref() == Some(pod.name.as_str())));
    pods.truncate(MAX_PODS);
    let use_rows: usize = rows.iter().map(|(_, u)| u.len()).sum();
    let height = AXIS_H + (pods.len() + use_rows) as f64 * ROW_H + 6.0;
    p.raw("<svg class=\"chart\" viewBox=\"0 0 ").val(WIDTH).raw(" ").val(height).raw("\" role=\"img\"");
    p.raw(" aria-label=\"timeline of ").evidence(&t.serviceaccount).raw("\">\n");
    grid(p, axis, height);
    let mut y = AXIS_H;
    for pod in &pods {
        p.raw("<g><title>pod ").evidence(&pod.name).raw(" (uid ").evidence(&pod.uid).raw(")");
        if let Some(node) = &pod.node {
            p.raw(" on node ").evidence(node);
        }
        p.raw(", alive from ").val(pod.first_seen);
        match pod.deleted {
            Some(d) => p.raw(", deleted ").val(d),
            None => p.raw(", not deleted in the evidence"),
        };
        for (ip, since) in &pod.addresses {
            p.raw("; address ").val(ip).raw(" from ").val(since);
        }
        p.raw("</title>");
        label(p, 6.0, y, &fit(&format!("pod {}", short_pod(&pod.name)), NAME_CHARS), None);
        let ips: Vec<String> = pod.addresses.iter().map(|(ip, _)| ip.to_string()).collect();
        let node = pod.node.as_deref().unwrap_or("node unknown");
        label(p, CLIENT_X, y, &fit(&format!("{node} {}", ips.join(" ")), CLIENT_CHARS), None);
        let end = pod.deleted.unwrap_or(axis.to).min(axis.to);
        let (x0, x1) = (axis.x(pod.first_seen), axis.x(end));
        rect(p, Some("pod"), (x0, y + 4.0), ((x1 - x0).max(MIN_MARK), BAR_H - 4.0), None);
        if let Some(d) = pod.deleted.filter(|d| axis.contains(*d)) {
            let x = axis.x(d);
            line(p, "deleted", (x, y + 1.0), (x, y + ROW_H - 1.0));
        }
        p.raw("</g>\n");
        y += ROW_H;
    }
    // Within the chart the service account's namespace goes without saying.
    let namespace = t.serviceaccount.split_once('/').map_or("", |(ns, _)| ns);
    for (c, uses) in &rows {
        y = credential(p, c, uses, axis, y, namespace);
    }
    p.raw("</svg>\n");
    let creds_left_out = t.credentials.len() - rows.len();
    let pods_left_out = t.pods.len() - pods.len();
    if rows_left_out > 0 || pods_left_out > 0 {
        p.raw("<p class=\"note\">Not drawn: ").val(rows_left_out).raw(plural(rows_left_out, " row", " rows"));
        if creds_left_out > 0 {
            p.raw(" (").val(creds_left_out).raw(plural(creds_left_out, " credential", " credentials"));
            p.raw(" not shown at all)");
        }
        p.raw(" and ").val(pods_left_out).raw(plural(pods_left_out, " pod", " pods"));
        p.raw("; rows with unexpected or unverified uses come first. ");
        p.raw("The client-address table has every address.</p>\n");
    }
    p.raw("</div>\n");
}

/// One credential: a row per client address, its life line behind, minted and superseded marks.
fn credential(
    p: &mut Page,
    c: &TimelineCredential,
    uses: &[&TimelineUses],
    axis: Axis,
    top: f64,
    namespace: &str,
) -> f64 {
    let first = uses.iter().map(|u| u.first_seen).min().unwrap_or(axis.from);
    let last = uses.iter().map(|u| u.last_seen).max().unwrap_or(axis.to);
    let born = c.minted.map_or(first, |m| m.min(first));
    let bottom = top + uses.len() as f64 * ROW_H;
    p.raw("<g><title>").text(c.kind).raw(" credential ").evidence(&c.name);
    if let Some(pod) = &c.pod {
        p.raw(" of pod ").evidence(pod);
    }
    if let Some(m) = c.minted {
        p.raw(", minted ").val(m);
    }
    if let Some(s) = c.superseded {
        p.raw(", superseded from ").val(s);
    }
    p.raw("</title>");
    let replayed = uses.iter().any(|u| u.verdict == Verdict::Unexpected);
    label(p, 6.0, top, &fit(&credential_label(c), NAME_CHARS), replayed.then_some("head v-unexpected"));
    for (i, _) in uses.iter().enumerate() {
        let mid = top + i as f64 * ROW_H + ROW_H / 2.0;
        line(p, "life", (axis.x(born), mid), (axis.x(last), mid));
    }
    if let Some(m) = c.minted.filter(|m| axis.contains(*m)) {
        p.raw("<circle class=\"mint\" cx=\"").val(f1(axis.x(m))).raw("\" cy=\"").val(f1(top + ROW_H / 2.0));
        p.raw("\" r=\"3.5\"/>");
    }
    if let Some(s) = c.superseded.filter(|s| axis.contains(*s)) {
        let x = axis.x(s);
        line(p, "superseded", (x, top), (x, bottom));
    }
    p.raw("</g>\n");
    let mut y = top;
    for u in uses {
        uses_row(p, u, axis, y, namespace);
        y += ROW_H;
    }
    y
}

/// The uses from one client address: a mark per time bucket, darker with more uses.
fn uses_row(p: &mut Page, u: &TimelineUses, axis: Axis, y: f64, namespace: &str) {
    let (class, bar) = match u.verdict {
        Verdict::Expected => ("v-expected", "b-expected"),
        Verdict::Unexpected => ("v-unexpected", "b-unexpected"),
        Verdict::Unknown => ("v-unknown", "b-unknown"),
    };
    p.raw("<g class=\"").raw(bar).raw("\"><title>");
    match u.source_ip {
        Some(ip) => p.val(ip),
        None => p.raw("no address logged"),
    };
    p.raw(" (").evidence(&u.place).raw("): ").val(u.count).raw(if u.count == 1 { " use, " } else { " uses, " });
    p.val(u.first_seen).raw(" to ").val(u.last_seen).raw(", ").val(u.verdict).raw("</title>");
    let ip = u.source_ip.map_or_else(|| String::from("-"), |ip| ip.to_string());
    let place = u.place.replacen(&format!("pod {namespace}/"), "pod ", 1);
    label(p, CLIENT_X, y, &fit(&format!("{ip} {place}"), CLIENT_CHARS), Some(class));
    if u.verdict == Verdict::Unexpected {
        // A band across the plot, so the row with the replay is the first thing the eye finds.
        rect(p, Some("alert"), (PLOT_X0, y), (PLOT_X1 - PLOT_X0, ROW_H), None);
    }
    let busiest = u.over_time.iter().map(|(_, _, n)| n).max().unwrap_or(1).max(1);
    let bar_y = y + (ROW_H - BAR_H) / 2.0;
    for (from, to, n) in u.over_time.iter() {
        // Buckets are clipped to the first and last use, which they can reach past.
        let (x0, x1) = (axis.x(from.max(u.first_seen)), axis.x(to.min(u.last_seen.plus(1))));
        let opacity = 0.45 + 0.55 * f64::from(n) / f64::from(busiest);
        rect(p, None, (x0, bar_y), ((x1 - x0).max(MIN_MARK), BAR_H), Some(opacity));
    }
    p.raw("</g>\n");
}

/// Vertical grid lines and time labels at a round step.
fn grid(p: &mut Page, axis: Axis, height: f64) {
    let step = tick_step(axis.to.0 - axis.from.0);
    let mut t = axis.from.0.div_euclid(step) * step + step;
    let mut last_day = None;
    while t <= axis.to.0 {
        let at = Timestamp(t);
        let x = axis.x(at);
        let stamp = at.to_string();
        let day = stamp.get(5..10).unwrap_or_default().to_string();
        let text = if step >= 86_400 * SECOND {
            day.clone()
        } else {
            let clock = if step < 60 * SECOND { stamp.get(11..19) } else { stamp.get(11..16) };
            let clock = clock.unwrap_or_default();
            // The date appears once, and again wherever the day changes.
            if last_day.as_ref() != Some(&day) {
                format!("{day} {clock}")
            } else {
                clock.to_string()
            }
        };
        last_day = Some(day);
        line(p, "grid", (x, AXIS_H - 4.0), (x, height));
        p.raw("<text class=\"axis\" x=\"").val(f1(x)).raw("\" y=\"12\" text-anchor=\"middle\">");
        p.text(&text).raw("</text>\n");
        t += step;
    }
}

fn plural(n: usize, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 {
        one
    } else {
        many
    }
}

fn line(p: &mut Page, class: &'static str, (x1, y1): (f64, f64), (x2, y2): (f64, f64)) {
    p.raw("<line class=\"").raw(class).raw("\" x1=\"").val(f1(x1)).raw("\" y1=\"").val(f1(y1));
    p.raw("\" x2=\"").val(f1(x2)).raw("\" y2=\"").val(f1(y2)).raw("\"/>");
}

fn rect(p: &mut Page, class: Option<&'static str>, (x, y): (f64, f64), (w, h): (f64, f64), opacity: Option<f64>) {
    p.raw("<rect");
    if let Some(class) = class {
        p.raw(" class=\"").raw(class).raw("\"");
    }
    p.raw(" x=\"").val(f1(x)).raw("\" y=\"").val(f1(y)).raw("\" width=\"").val(f1(w)).raw("\" height=\"").val(f1(h));
    if let Some(o) = opacity {
        p.raw("\" fill-opacity=\"").val(format_args!("{o:.2}"));
    }
    p.raw("\"/>");
}

/// The round step that puts at most ten ticks on a span.
fn tick_step(span: Micros) -> Micros {
    const STEPS: [i64; 20] = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 604_800,
        2_592_000,
    ];
    STEPS.iter().map(|s| s * SECOND).find(|s| span / s <= 10).unwrap_or(31_536_000 * SECOND)
}

fn label(p: &mut Page, x: f64, y: f64, text: &str, class: Option<&'static str>) {
    p.raw("<text");
    if let Some(class) = class {
        p.raw(" class=\"").raw(class).raw("\"");
    }
    p.raw(" x=\"").val(x).raw("\" y=\"").val(f1(y + 13.0)).raw("\">").evidence(text).raw("</text>");
}

/// `JTI 0d14eab6`: the first block of the UUID tells a service account's credentials apart (the
/// row's tooltip has it whole, and the pod row above names the pod).
fn credential_label(c: &TimelineCredential) -> String {
    match c.name.split_once('=') {
        Some(("JTI", jti)) => format!("JTI {}", jti.split('-').next().unwrap_or(jti)),
        Some(("secret", secret)) => format!("Secret {}", short_pod(secret)),
        Some((kind, rest)) => format!("{kind} {rest}"),
        None => c.name.clone(),
    }
}

/// A pod's name without its namespace, shortened from the left: the random suffix tells
/// replicas apart.
fn short_pod(name: &str) -> &str {
    name.rsplit_once('/').map_or(name, |(_, n)| n)
}

/// Cuts a label to `chars`, keeping the start (the address) and the end (a pod's suffix).
fn fit(text: &str, chars: usize) -> String {
    let n = text.chars().count();
    if n <= chars {
        return text.to_string();
    }
    let head = chars / 2;
    let tail = chars - head - 1;
    let start: String = text.chars().take(head).collect();
    let end: String = text.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

/// A coordinate with one decimal: enough for a 1200-unit chart, and it keeps the page small.
#[derive(Clone, Copy)]
struct F1(f64);

impl std::fmt::Display for F1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1}", self.0)
    }
}

fn f1(v: f64) -> F1 {
    F1(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_few() {
        assert_eq!(tick_step(4 * 3600 * SECOND), 1800 * SECOND);
        assert_eq!(tick_step(90 * SECOND), 10 * SECOND);
        assert_eq!(tick_step(30 * 86_400 * SECOND), 604_800 * SECOND);
    }

    #[test]
    fn long_labels_keep_their_end() {
        let s = fit("10.244.1.12 pod payments/api-6f9c7d8b5-k2x7p", 25);
        assert_eq!(s.chars().count(), 25);
        assert!(s.starts_with("10.244.1.12 ") && s.ends_with("-k2x7p"), "{s}");
        assert_eq!(fit("short", 25), "short");
    }
}
