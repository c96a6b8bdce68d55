//! The node agent: attests which service-account credentials physically sit in which pod on
//! this node, so the correlator can tell a token used by its pod from the same token used by a
//! thief (docs/design.md §1, §4 gRPC, §5 security).
//!
//! It reads the kubelet pods directory read-only, decodes each token file's claims (never
//! keeping, logging or sending the token), and streams attestations to the aggregator over
//! `tokentrail.agent.v1`: a snapshot of the node on every connection, deltas after, resent until
//! acknowledged.
//!
//! Layout, pure cores first:
//! * [`claims`]: JWT payload → [`claims::Claims`] (pure).
//! * [`layout`]: the kubelet's directory layout and atomic-writer names (pure).
//! * [`state`]: the node's state and [`state::diff`] into deltas (pure).
//! * [`outbox`]: the bounded queue of unacknowledged messages (pure).
//! * [`backoff`]: reconnect delays with jitter (pure).
//! * [`pods`]: pod updates from a pod source and how they fold into the state (pure).
//! * [`kube_source`]: the pod source: this node's pods and Node from the Kubernetes API
//!   (kube-rs watchers; conversion pure).
//! * [`readers`]: who opened a token file (cgroup → pod, kubelet, runtime, host) and whether
//!   they may (pure).
//! * [`wire`]: state and deltas → protobuf (pure).
//! * [`scan`]: reading token files without following symlinks (file I/O).
//! * [`watch`]: inotify (driver).
//! * [`token_watch`]: fanotify opens of token files, `--watch-token-reads` (driver).
//! * [`sender`]: the gRPC client (driver).
//! * [`pipeline`]: [`run`], the loop that ties them together (driver).
//! * [`config`]: the configuration file (the flags' settings as JSON) and its checks.
//!
//! Flags, logging, the runtime, signals and metrics export are the `tokentrail` binary's
//! (`cli/src/component/agent.rs`).
//!
//! [`telemetry`] holds the counters and registers them on an OpenTelemetry meter.

pub mod backoff;
pub mod claims;
pub mod config;
pub mod error;
pub mod kube_source;
pub mod layout;
pub mod outbox;
pub mod pipeline;
pub mod pods;
pub mod readers;
pub mod scan;
pub mod sender;
pub mod state;
pub mod telemetry;
pub mod token_watch;
pub mod watch;
pub mod wire;

pub use error::{AgentError, SendError};
pub use pipeline::{run, Config};
pub use telemetry::Metrics;
