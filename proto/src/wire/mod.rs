//! The protobuf side of the contract (feature `wire`): what crosses a process boundary.
//!
//! Protobuf appears at two edges only, and both use this module: the agents' gRPC stream to the
//! aggregator ([`agent::v1`]) and the observations topic between aggregator and correlator
//! ([`observation::v1`]). Inside a process observations are the domain types of
//! [`crate::observation`]: the aggregator's Kafka sink encodes with [`to_proto`], the
//! correlator decodes with [`from_proto`], and `tokentrail standalone` passes domain values
//! through memory without either.
//!
//! * [`convert`]: domain ⇄ `tokentrail.observation.v1` (pure), tested by a round trip.
//! * [`BROADCAST_HEADER`], [`HOME_HEADER`]: how the aggregator marks the copies of an
//!   observation it sends to every partition, and how the correlator tells which copy may raise
//!   findings (the aggregator's `route` module says which observations are broadcast).
//! * [`batch`]: several observations of one partition in one record, and how readers take any
//!   record of the topic apart.

pub mod batch;
pub mod convert;

pub use convert::{from_proto, to_proto};

/// `tokentrail.agent.v1`.
pub mod agent {
    /// Version 1 of the attestation protocol.
    pub mod v1 {
        #![allow(missing_docs, clippy::all, clippy::pedantic)]
        include!("../gen/tokentrail.agent.v1.rs");
    }
}

/// `tokentrail.observation.v1`.
pub mod observation {
    /// Version 1 of the observation stream.
    pub mod v1 {
        #![allow(missing_docs, clippy::all, clippy::pedantic)]
        include!("../gen/tokentrail.observation.v1.rs");
    }
}

/// Header on every broadcast copy of an observation (value `1`).
pub const BROADCAST_HEADER: &str = "tokentrail-broadcast";
/// Header on the one broadcast copy a correlator may raise findings from (value `1`).
pub const HOME_HEADER: &str = "tokentrail-home";
