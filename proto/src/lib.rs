//! The wire contract between agent, aggregator and correlator.
//!
//! * [`agent::v1`] (`tokentrail.agent.v1`): the streaming attestation service node agents call
//!   on the aggregator: a snapshot of the node on connect, deltas after, sequence numbers and
//!   cumulative acks. Client and server stubs; bring your own transport (tonic `channel` or
//!   `server` feature).
//! * [`observation::v1`] (`tokentrail.observation.v1`): the observations the aggregator writes to
//!   Kafka for the correlator, a mirror of `tokentrail_correlator_core::observation` plus the
//!   agent-derived `CredentialFact`.
//!
//! The `.proto` files are in `proto/proto/`; the Rust code in `src/gen/` is generated and checked
//! in, so no build needs `protoc`. After editing a `.proto` file run
//! `cargo run -p tokentrail-proto --example regen --features regen` (`-- --check` verifies).
//! Conversions to domain types belong to the crates that own those types, not here.

/// `tokentrail.agent.v1`.
pub mod agent {
    /// Version 1 of the attestation protocol.
    pub mod v1 {
        #![allow(missing_docs, clippy::all, clippy::pedantic)]
        include!("gen/tokentrail.agent.v1.rs");
    }
}

/// `tokentrail.observation.v1`.
pub mod observation {
    /// Version 1 of the observation stream.
    pub mod v1 {
        #![allow(missing_docs, clippy::all, clippy::pedantic)]
        include!("gen/tokentrail.observation.v1.rs");
    }
}
