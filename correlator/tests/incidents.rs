//! Incidents over real evidence: the bundled example incident is one story (a user reads a token
//! Secret whose token is then used from outside, execs into a pod whose token is then replayed
//! and used after its rotation), so its findings of misuse must make one incident, with that
//! story in time order; and the text report must open on it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests say what failed through their panics

mod html_common;

use html_common::{analysis_of, example};
use tokentrail_correlator::output;
use tokentrail_correlator_core::incident::StepKind;
use tokentrail_correlator_core::{Rule, Severity};

#[test]
fn the_example_incident_is_one_incident_of_every_finding_of_misuse() {
    let report = analysis_of(&example()).report;
    assert_eq!(report.incidents.len(), 1, "{:#?}", report.incidents);
    let incident = &report.incidents[0];
    // The three critical findings, the high one and the three medium ones: every finding but the
    // low inventory items (legacy Secrets that exist).
    let misuse: Vec<&str> =
        report.findings.iter().filter(|f| f.severity > Severity::Low).map(|f| f.id.as_str()).collect();
    assert_eq!(misuse.len(), 7);
    assert_eq!(incident.findings, misuse, "every finding of misuse, in the report's order");
    let rules: Vec<Rule> =
        incident.findings.iter().map(|id| report.findings.iter().find(|f| &f.id == id).unwrap().rule).collect();
    for rule in [Rule::ExecThenTokenUse, Rule::TokenUsedOffCluster, Rule::SaTokenSecretRead, Rule::LegacyTokenForeignIp]
    {
        assert!(rules.contains(&rule), "{rule} missing from {rules:?}");
    }
    assert_eq!(incident.severity, Severity::Critical);
    assert_eq!(
        incident.title,
        "Service-account tokens of monitoring/legacy-exporter, payments/api taken by oidc:m.keller@shop.example and \
         used from 198.51.100.77, 203.0.113.50 (7 findings)"
    );
    assert_eq!(incident.clusters, ["shop-prod"]);
    // The story's span, not legacy-token-use's (which counts the exporter's own uses from 08:01).
    let span = (incident.first_seen.to_string(), incident.last_seen.to_string());
    assert_eq!(span, ("2026-03-10T09:51:57Z".into(), "2026-03-10T11:14:50.027000Z".into()));
    assert_eq!(incident.principals, ["oidc:m.keller@shop.example"]);
    let attackers: Vec<String> = incident.attacker_ips.iter().map(|ip| ip.to_string()).collect();
    assert_eq!(attackers, ["198.51.100.77", "203.0.113.50"]);
    assert_eq!(incident.serviceaccounts, ["monitoring/legacy-exporter", "payments/api"]);
}

#[test]
fn the_example_story_runs_from_the_secret_read_to_the_use_after_rotation() {
    let report = analysis_of(&example()).report;
    let story = &report.incidents[0].story;
    let steps: Vec<(String, StepKind)> = story.iter().map(|s| (s.time.to_string(), s.kind)).collect();
    let expected = [
        ("2026-03-10T09:51:57Z", StepKind::SecretRead),
        ("2026-03-10T10:03:18.060000Z", StepKind::ForeignUse),
        ("2026-03-10T10:06:31.845000Z", StepKind::Mint),
        ("2026-03-10T10:21:07.052000Z", StepKind::Exec),
        ("2026-03-10T10:26:40.118000Z", StepKind::ForeignUse),
        ("2026-03-10T10:55:50.917784Z", StepKind::Rotation),
        ("2026-03-10T11:14:50.027000Z", StepKind::UseAfterRotation),
    ];
    let expected: Vec<(String, StepKind)> = expected.iter().map(|(t, k)| (t.to_string(), *k)).collect();
    assert_eq!(steps, expected, "{story:#?}");
    assert!(story[1].text.starts_with("first foreign use: secret=monitoring/legacy-exporter-token-abcde"));
    assert_eq!(
        story[3].text,
        "oidc:m.keller@shop.example ran exec into pod payments/api-6f9c7d8b5-k2x7p from 198.51.100.23"
    );
    // What the replay did, with response codes: Secret reads, the pod it tried to create, probes.
    let replay = &story[4].details;
    assert!(
        replay
            .iter()
            .any(|d| d.starts_with("Secret reads: ") && d.contains("get secrets stripe-api-key in payments → 200")),
        "{replay:?}"
    );
    assert!(replay.iter().any(|d| d.contains("create pods in payments → 403")), "{replay:?}");
    assert!(
        replay
            .iter()
            .any(|d| d.starts_with("permission probes and refusals: ") && d.contains("selfsubjectrulesreviews")),
        "{replay:?}"
    );
    // Every step's findings are members.
    for step in story {
        assert!(step.findings.iter().all(|id| report.incidents[0].findings.contains(id)), "{step:?}");
    }
}

#[test]
fn the_text_report_opens_on_the_incident_and_keeps_every_finding() {
    let analysis = analysis_of(&example());
    let text = output::text(&analysis);
    let at = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle} missing from:\n{text}"));
    assert!(at("\nIncidents\n---------\n") < at("\nFindings\n--------\n"));
    let incident = &analysis.report.incidents[0];
    let section = &text[at("\nIncidents\n")..at("\nFindings\n")];
    assert!(section.contains(&format!("CRITICAL  {}", incident.title)), "{section}");
    assert!(section.contains("exec                oidc:m.keller@shop.example ran exec"), "{section}");
    assert!(section.contains(&format!("id {}", incident.id)), "{section}");
    for id in &incident.findings {
        assert!(section.contains(id.as_str()), "member {id} not listed");
        // And each finding is still printed in full below.
        assert!(text[at("\nFindings\n")..].contains(&format!("id {id}")));
    }
}

#[test]
fn incident_records_carry_their_schema_and_their_findings_ids() {
    let analysis = analysis_of(&example());
    let mut out = Vec::new();
    output::write_incidents(&analysis.report.incidents, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(v["schema"], "tokentrail.incident/v1");
    assert_eq!(v["severity"], "critical");
    let ids: Vec<&str> = v["findings"].as_array().unwrap().iter().map(|i| i.as_str().unwrap()).collect();
    let findings: Vec<&str> = analysis.report.findings.iter().map(|f| f.id.as_str()).collect();
    assert!(ids.iter().all(|id| findings.contains(id)));
    assert_eq!(v["story"][0]["kind"], "secret-read");
    assert!(v["story"][0]["time"].is_string());
}
