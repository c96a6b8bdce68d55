//! The tokentrail engine: a time-aware model of pods, addresses and credentials that turns
//! [`Observation`]s into findings.
//!
//! Pure: no I/O, no clock, no async runtime. The caller passes observations in (in any order)
//! and asks for a [`Report`]; the same engine runs inside `tokentrail analyze` and the correlator.
//!
//! Layout, in the order data flows:
//! * [`observation`]: the engine's input language, produced by the decoders. It and [`time`]
//!   and [`net`] are defined in `tokentrail-proto`, the contract the decoders share without
//!   depending on the engine, and re-exported here so the engine's API reads in its own terms.
//! * [`engine`]: the entry point. Deduplicates the stages of a request ([`dedup`]), reads its
//!   addresses under the settings, and folds it into the [`state`].
//! * [`state`]: the folded evidence: the [`model`] (pods, nodes, addresses over time) and the
//!   aggregates ([`usage`] for token uses, [`activity`] for mints, failures, exec, Secret reads),
//!   read by the rules, the report and expiry through its methods, never through the engine.
//! * [`verdict`]: was a credential used from where it belongs? Shared by rules, table, coverage.
//! * `rules`: the catalogue of docs/design.md §3.4, producing [`finding`]s.
//! * [`report`]: findings, client-address table, legacy-token inventory ([`legacy_tokens`]),
//!   coverage, built from a state and the settings; several clusters' reports merged, with
//!   [`shared_tokens`] (one legacy token in Secrets of several clusters) run over them.
//! * [`proxies`]: apiservers in front of aggregated apiservers, learned from forwarded requests.
//! * [`token_reads`]: foreign reads of token files that node agents saw.
//! * [`attestation`]: what node agents attested (credentials seen in pod volumes, how far each
//!   agent has reported), for `token-forged-mint`.
//! * [`expiry`]: what the streaming engine forgets, and when, so its state stays bounded.
//! * [`emit`]: which findings to send downstream, and when to send one again (a changed one).
//! * [`incident`]: findings that tell one story, grouped into incidents with that story in time
//!   order, for the report; [`incident_feed`] keeps them from a stream of findings and tells
//!   what changed (`tokentrail incidents`).
//! * [`ocsf`]: findings as OCSF Detection Findings, incidents as Incident Findings, for SIEMs.
//! * [`config`]: the engine's settings ([`EngineConfig`]).
//! * [`sample`], [`tally`], [`shared`] (values many samples hold alike, kept once), [`principals`], [`client`] (what a user agent says about its program
//!   and OS), [`hash`] (the maps keyed by evidence): small shared pieces.

#![deny(missing_docs)]

pub mod activity;
pub mod attestation;
pub mod changes;
pub mod client;
pub mod config;
pub mod dedup;
pub mod emit;
pub mod engine;
pub mod expiry;
pub mod finding;
pub mod hash;
pub mod incident;
pub mod incident_feed;
pub mod legacy_tokens;
pub mod model;
pub mod ocsf;
mod pairs;
pub mod principals;
pub mod proxies;
pub mod report;
mod rules;
pub mod sample;
pub mod shared;
pub mod shared_tokens;
pub mod state;
pub mod tally;
pub mod token_reads;
pub mod usage;
pub mod verdict;

pub use tokentrail_proto::{net, observation, time};

pub use config::EngineConfig;
pub use engine::Engine;
pub use finding::{Finding, Rule, Severity};
pub use net::IpNet;
pub use observation::Observation;
pub use report::Report;
pub use time::Timestamp;
