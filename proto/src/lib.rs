//! The contract between tokentrail's parts: what an observation is, and (feature `wire`) how it
//! travels between processes.
//!
//! The bottom of the crate graph (`docs/architecture.md`): the decoders
//! (`tokentrail-aggregator-core`) produce this vocabulary, the engine
//! (`tokentrail-correlator-core`) consumes it, and neither depends on the other. The vocabulary
//! and `wire` are pure: no I/O, no clock, and no protobuf unless `wire` is asked for.
//!
//! * [`observation`]: the engine's input language: token uses, mints, pod, node and
//!   service-account facts, agents' credential facts.
//! * [`time`]: event time ([`Timestamp`], microseconds since the epoch) and RFC 3339.
//! * [`net`]: networks ([`IpNet`]) and the client address of a request.
//!
//! With the `wire` feature (the crates at the Kafka and gRPC edges: agent, aggregator,
//! correlator), the `wire` module adds:
//!
//! * `wire::agent::v1` (`tokentrail.agent.v1`): the streaming attestation service node agents
//!   call on the aggregator: a snapshot of the node on connect, deltas after, sequence numbers
//!   and cumulative acks. Client and server stubs; bring your own transport (tonic `channel` or
//!   `server` feature).
//! * `wire::observation::v1` (`tokentrail.observation.v1`): the observations the aggregator
//!   writes to Kafka for the correlator, a mirror of [`observation`].
//! * `wire::{to_proto, from_proto}`: the conversions between the two, and the routing headers
//!   of the observations topic (`wire::BROADCAST_HEADER`, `wire::HOME_HEADER`).
//!
//! The `.proto` files are in `proto/proto/`; the Rust code in `src/gen/` is generated and checked
//! in, so no build needs `protoc`. After editing a `.proto` file run
//! `cargo run -p tokentrail-proto --example regen --features regen` (`-- --check` verifies).

#![deny(missing_docs)]

pub mod net;
pub mod observation;
pub mod time;

#[cfg(feature = "wire")]
pub mod wire;

pub use net::IpNet;
pub use observation::Observation;
pub use time::Timestamp;
