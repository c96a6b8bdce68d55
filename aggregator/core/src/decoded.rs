//! What decoding appends to: observations for the engine, problems for the report, and counts.
//!
//! A driver keeps one [`Decoded`] per unit of work (a file, a Kafka batch), drains its
//! observations into the engine, prefixes each [`Problem`] with its file and line, and merges
//! the [`DecodeStats`] into its totals.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use tokentrail_proto::observation::UseView;
use tokentrail_proto::Observation;

/// Where decoded facts and problems go.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Observations for the engine, in input order.
    pub observations: Vec<Observation>,
    /// Bad records and dropped fields, with where they were.
    pub problems: Vec<Problem>,
    /// Counts of what was read.
    pub stats: DecodeStats,
    /// When set, token uses go here, as views of the input, instead of into `observations`.
    pub fold_uses: Option<UseFolder>,
    /// When set, at most this many problems are kept in `problems`; the rest are only counted
    /// (in [`DecodeStats::errors`]). `[{},{},...]` is a problem per two bytes: a few megabytes
    /// of it would otherwise keep gigabytes of messages.
    pub problem_limit: Option<usize>,
}

impl Decoded {
    /// Nothing decoded yet.
    pub fn new() -> Decoded {
        Decoded::default()
    }

    /// Hands a token use to the folder, or keeps an owned copy.
    pub(crate) fn token_use(&mut self, u: UseView<'_>) {
        match &self.fold_uses {
            Some(UseFolder(fold)) => fold(u),
            None => self.observations.push(Observation::TokenUse(u.into_owned())),
        }
    }

    /// Records a problem (unless [`Decoded::problem_limit`] are kept already) and counts it in
    /// [`DecodeStats::errors`].
    pub(crate) fn problem(&mut self, place: Place, message: impl Into<String>) {
        self.stats.errors += 1;
        if self.problem_limit.is_some_and(|limit| self.problems.len() >= limit) {
            return;
        }
        self.problems.push(Problem { line_in_value: place.line, record_index: place.record, message: message.into() });
    }
}

/// Takes each token use as it is decoded, borrowed from the input. A driver that folds uses
/// right away (`analyze`) spares every use its owned copy: a dozen strings allocated and freed
/// for each of the million lines of a large log.
#[derive(Clone)]
pub struct UseFolder(pub Arc<dyn Fn(UseView<'_>) + Send + Sync>);

impl fmt::Debug for UseFolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UseFolder")
    }
}

/// Where inside the value handed to [`decode_value`](crate::decode_value) something was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Place {
    /// 1-based line inside the value, when the value spans lines.
    pub line: Option<usize>,
    /// 0-based index of the record inside the innermost array (`items`, `records`, ...).
    pub record: Option<usize>,
}

/// Something in the input that could not be used, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// For documents: 1-based line inside the value (where the record starts, or where the
    /// JSON error is). `None` for a value on one line.
    pub line_in_value: Option<usize>,
    /// 0-based index of the record inside its array (`items`, `records`, `events`, a top-level
    /// array), when it was in one.
    pub record_index: Option<usize>,
    /// Lowercase; says what was wrong and, when useful, what to do. Never holds long strings
    /// from the input (they could be tokens).
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line_in_value {
            write!(f, "line {line}: ")?;
        }
        if let Some(record) = self.record_index {
            write!(f, "record {record}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// The evidence formats, for counts and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `audit.k8s.io` Event (v1, v1beta1, or no apiVersion), one per line or pretty-printed.
    AuditEvent,
    /// Audit webhook `EventList` batch.
    EventList,
    /// EKS control-plane log from CloudWatch (event JSON in `message`).
    EksCloudWatch,
    /// AKS diagnostic record (event JSON in `properties.log` or `log_s`).
    AksDiagnostic,
    /// GKE Cloud Logging `LogEntry` (`protoPayload`): no `user.extra`, so no pod binding.
    GkeLogEntry,
    /// An object inside a `kubectl get -o json` List (or `PodList`, ...).
    KubectlList,
    /// A single Kubernetes object (`kubectl get pod x -o json`).
    KubernetesObject,
}

impl Format {
    /// The kebab-case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Format::AuditEvent => "audit-event",
            Format::EventList => "event-list",
            Format::EksCloudWatch => "eks-cloudwatch",
            Format::AksDiagnostic => "aks-diagnostic",
            Format::GkeLogEntry => "gke-log-entry",
            Format::KubectlList => "kubectl-list",
            Format::KubernetesObject => "kubernetes-object",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Counts of what was decoded. Every record read is exactly one of: an event (counted in
/// `events` and `by_format`), ignored, or dropped with a problem.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DecodeStats {
    /// Events (audit events and relevant Kubernetes objects) read, per format.
    pub by_format: BTreeMap<Format, u64>,
    /// Events read in all formats.
    pub events: u64,
    /// Records of a known shape with nothing relevant: a ConfigMap in a List, a core/v1 Event,
    /// a Secret of another type, a non-audit log line in a provider export.
    pub ignored: u64,
    /// Problems recorded (a record dropped, or a field of it, such as one bad `sourceIPs` entry).
    pub errors: u64,
    /// Audit events with `impersonatedUser`: identity was taken from `user` only.
    pub impersonated: u64,
    /// Service-account token uses per format; GKE's carry no pod binding, so a report can say
    /// how many uses could not be verified for that reason.
    pub token_uses_by_format: BTreeMap<Format, u64>,
    /// Provider messages cut by the provider's size limit (CloudWatch `[Truncated...]`).
    pub truncated: u64,
}

impl DecodeStats {
    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: &DecodeStats) {
        for (format, n) in &other.by_format {
            *self.by_format.entry(*format).or_default() += n;
        }
        for (format, n) in &other.token_uses_by_format {
            *self.token_uses_by_format.entry(*format).or_default() += n;
        }
        self.events += other.events;
        self.ignored += other.ignored;
        self.errors += other.errors;
        self.impersonated += other.impersonated;
        self.truncated += other.truncated;
    }

    /// Counts one event read in `format`.
    pub(crate) fn event(&mut self, format: Format) {
        self.events += 1;
        *self.by_format.entry(format).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_adds_every_count() {
        let mut a = DecodeStats::default();
        a.event(Format::AuditEvent);
        a.impersonated = 1;
        let mut b = DecodeStats::default();
        b.event(Format::AuditEvent);
        b.event(Format::GkeLogEntry);
        b.token_uses_by_format.insert(Format::GkeLogEntry, 1);
        b.ignored = 2;
        b.errors = 3;
        b.truncated = 4;
        a.merge(&b);
        assert_eq!(a.events, 3);
        assert_eq!(a.by_format[&Format::AuditEvent], 2);
        assert_eq!(a.by_format[&Format::GkeLogEntry], 1);
        assert_eq!(a.token_uses_by_format[&Format::GkeLogEntry], 1);
        assert_eq!((a.ignored, a.errors, a.impersonated, a.truncated), (2, 3, 1, 4));
    }

    #[test]
    fn problems_past_the_limit_are_counted_not_kept() {
        let mut out = Decoded { problem_limit: Some(2), ..Decoded::new() };
        for _ in 0..5 {
            out.problem(Place::default(), "bad");
        }
        assert_eq!((out.problems.len(), out.stats.errors), (2, 5));
        let mut unbounded = Decoded::new();
        for _ in 0..5 {
            unbounded.problem(Place::default(), "bad");
        }
        assert_eq!((unbounded.problems.len(), unbounded.stats.errors), (5, 5));
    }

    #[test]
    fn formats_display_kebab_case() {
        assert_eq!(Format::EksCloudWatch.to_string(), "eks-cloudwatch");
        assert_eq!(serde_json::to_string(&Format::GkeLogEntry).unwrap(), "\"gke-log-entry\"");
        let p = Problem { line_in_value: Some(3), record_index: Some(1), message: "bad".into() };
        assert_eq!(p.to_string(), "line 3: record 1: bad");
    }
}
