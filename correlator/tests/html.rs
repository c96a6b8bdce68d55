//! The HTML report without a browser: what the page holds for the bundled example incident,
//! that it references nothing outside itself, that attacker-controlled evidence is escaped, and
//! that no token reaches it. `html_chromium.rs` renders the same page in a real browser.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod html_common;

use html_common::{analysis_of, example, hostile_evidence, TempDir};
use tokentrail_correlator::output::html;
use tokentrail_correlator_core::verdict::Verdict;

#[test]
fn example_report_opens_on_findings_then_timeline_tables_and_coverage() {
    let analysis = analysis_of(&example());
    let page = html::render(&analysis);
    let at = |needle: &str| page.find(needle).unwrap_or_else(|| panic!("{needle} missing from the page"));
    // Sections in the order a responder reads them.
    assert!(at("id=\"incidents\"") < at("id=\"findings\""));
    assert!(at("id=\"findings\"") < at("id=\"timeline\""));
    assert!(at("id=\"timeline\"") < at("id=\"usage\""));
    assert!(at("id=\"usage\"") < at("id=\"legacy\""));
    assert!(at("id=\"legacy\"") < at("id=\"coverage\""));
    // Every finding, most severe first, with its evidence and ATT&CK mapping.
    let report = &analysis.report;
    assert_eq!(page.matches("<article class=\"finding").count(), report.findings.len());
    let mut last = 0;
    for f in &report.findings {
        let pos = at(&format!("id=\"f-{}\"", f.id));
        assert!(pos > last, "finding {} out of order", f.id);
        last = pos;
        for id in &f.audit_ids {
            at(id);
        }
        for t in f.attack {
            at(t.id);
        }
    }
    at("curl/8.5.0");
    at("203.0.113.50");
    // The timeline of the victim's service account: the replay drawn as unexpected uses.
    let payments =
        report.timelines.iter().position(|t| t.serviceaccount == "payments/api").expect("payments/api timeline");
    let chart = &page[at(&format!("id=\"tl-{payments}\""))..];
    let chart = &chart[..chart.find("</svg>").unwrap()];
    assert!(chart.contains("<g class=\"b-unexpected\"><title>203.0.113.50 (off-cluster): 8 uses"), "{chart}");
    assert!(chart.contains("<g class=\"b-expected\"><title>10.244.1.12"));
    assert!(chart.contains("class=\"superseded\""), "the stolen credential's successor is marked");
    // Tables.
    assert_eq!(page.matches("<tr class=\"v-").count(), report.usage.len());
    at("legacy-exporter-token-abcde");
    at("ci-deployer-token");
    at("97.4%");
}

#[test]
fn the_incident_strip_marks_the_exec_the_mint_and_each_foreign_use() {
    let analysis = analysis_of(&example());
    let page = html::render(&analysis);
    let incident = &analysis.report.incidents[0];
    let at = |needle: &str| page.find(needle).unwrap_or_else(|| panic!("{needle} missing from the page"));
    let article = &page[at(&format!("id=\"i-{}\"", incident.id))..];
    let article = &article[..article.find("</article>").unwrap()];
    let strip = &article[article.find("<svg class=\"chart story-strip\"").unwrap()..];
    let strip = &strip[..strip.find("</svg>").unwrap()];
    // One mark per step, of its kind: two foreign uses (the legacy token, the pod's token).
    assert_eq!(strip.matches("<g class=\"m-").count(), incident.story.len());
    assert_eq!(strip.matches("<g class=\"m-exec\">").count(), 1);
    assert_eq!(strip.matches("<g class=\"m-mint\">").count(), 1);
    assert_eq!(strip.matches("<g class=\"m-foreign-use\">").count(), 2);
    assert!(
        strip.contains("exec: oidc:m.keller@shop.example ran exec into pod payments/api-6f9c7d8b5-k2x7p"),
        "{strip}"
    );
    // The story below it, and a link to every member finding.
    assert_eq!(article.matches("<li class=\"s-").count(), incident.story.len());
    for id in &incident.findings {
        assert!(article.contains(&format!("href=\"#f-{id}\"")), "no link to {id}");
    }
}

#[test]
fn the_report_carries_each_named_service_accounts_timeline() {
    let report = analysis_of(&example()).report;
    // Most severe first: the legacy token replayed off-cluster, then the stolen pod token.
    let names: Vec<&str> = report.timelines.iter().map(|t| t.serviceaccount.as_str()).collect();
    assert_eq!(names, ["monitoring/legacy-exporter", "payments/api", "shop/ci-deployer"]);
    let payments = &report.timelines[1];
    assert_eq!(payments.cluster.as_deref(), Some("shop-prod"));
    let pods: Vec<&str> = payments.pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(pods, ["payments/api-6f9c7d8b5-k2x7p", "payments/api-6f9c7d8b5-r8m4q"]);
    let stolen = payments.credentials.iter().find(|c| c.name == "JTI=c9ee6a53-a5bd-4d07-8517-9a7c26e04043").unwrap();
    assert_eq!(stolen.pod.as_deref(), Some("payments/api-6f9c7d8b5-k2x7p"));
    assert!(stolen.minted.is_some(), "the kubelet's TokenRequest is in the log");
    let superseded = stolen.superseded.expect("the pod moved on to its next credential");
    let replay = stolen.uses.iter().find(|u| u.source_ip == Some("203.0.113.50".parse().unwrap())).unwrap();
    assert_eq!((replay.verdict, replay.count, replay.place.as_str()), (Verdict::Unexpected, 8, "off-cluster"));
    assert!(replay.last_seen > superseded, "the replay outlived the credential");
    // Credentials in order of first use; every use counted in some bucket, none twice.
    let firsts: Vec<_> = payments.credentials.iter().map(|c| c.uses.iter().map(|u| u.first_seen).min()).collect();
    assert!(firsts.windows(2).all(|w| w[0] <= w[1]));
    for u in report.timelines.iter().flat_map(|t| &t.credentials).flat_map(|c| &c.uses) {
        let bucketed: u64 = u.over_time.iter().map(|(_, _, n)| u64::from(n)).sum();
        assert_eq!(bucketed, u.count);
        assert!(u.over_time.iter().all(|(from, to, _)| from <= u.last_seen && to > u.first_seen));
    }
}

#[test]
fn the_page_references_nothing_outside_itself() {
    let page = html::render(&analysis_of(&example()));
    let head = &page[..page.find("</head>").unwrap()];
    // The policy comes before anything it governs.
    let csp = head.find("http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';").expect("CSP");
    assert!(csp < head.find("<style>").unwrap());
    for forbidden in ["<script", "<link", "<img", "<iframe", "<object", "@import", "url(", "http:", "https:", "src="] {
        assert!(!page.contains(forbidden), "the page holds {forbidden}");
    }
    // Links are in-page anchors only.
    for href in page.match_indices("href=\"").map(|(i, _)| &page[i + 6..]) {
        assert!(href.starts_with('#'), "link out of the page: {}", &href[..href.find('"').unwrap()]);
    }
}

#[test]
fn example_report_is_small() {
    let page = html::render(&analysis_of(&example()));
    eprintln!("report.html for examples/incident: {} bytes", page.len());
    assert!(page.len() < 300_000, "{} bytes", page.len());
}

#[test]
fn no_token_from_the_evidence_reaches_the_page() {
    let page = html::render(&analysis_of(&example()));
    let secrets = std::fs::read_to_string(example().join("sa_secrets.json")).unwrap();
    let dump: serde_json::Value = serde_json::from_str(&secrets).unwrap();
    let tokens: Vec<&str> =
        dump["items"].as_array().unwrap().iter().filter_map(|s| s["data"]["token"].as_str()).collect();
    assert_eq!(tokens.len(), 2, "the example holds two tokens");
    for token in tokens {
        // Any 24 characters of the base64 form, or of the JWT inside it, would be a leak.
        for window in token.as_bytes().windows(24).step_by(11) {
            assert!(!page.contains(std::str::from_utf8(window).unwrap()), "token fragment in the page");
        }
    }
    // A JWT's header, however encoded, starts with `eyJ` (`{"`).
    assert!(!page.contains("eyJ"), "something JWT-shaped in the page");
}

#[test]
fn markup_in_evidence_is_shown_as_text() {
    let dir = TempDir::new("html-hostile");
    hostile_evidence(&dir.0);
    let analysis = analysis_of(&dir.0);
    assert!(
        analysis.report.findings.iter().any(|f| f.user_agents.iter().any(|ua| ua.contains("<script>"))),
        "the hostile user agent must reach a finding for this test to mean anything: {:#?}",
        analysis.report.findings
    );
    let page = html::render(&analysis);
    assert!(!page.contains("<script"), "a script element in the page");
    assert!(!page.contains("<img"), "an img element in the page");
    assert!(!page.contains("<b>7f"), "markup from a pod name in the page");
    assert!(!page.contains("\"onmouseover"), "an attribute broke out of its quotes");
    assert!(
        page.contains("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;")
    );
    assert!(page.contains("&lt;/td&gt;&lt;script&gt;alert(3)&lt;/script&gt;"));
}
