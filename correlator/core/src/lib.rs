//! The tokentrail engine: a time-aware model of pods, addresses and credentials that turns
//! [`Observation`]s into findings.
//!
//! Pure: no I/O, no clock, no async runtime. The caller passes observations in (in any order)
//! and asks for findings; the same engine runs inside `tokentrail analyze` and the correlator.
//!
//! Layout:
//! * [`observation`]: the engine's input language, produced by the decoders.
//! * [`time`], [`net`]: event time and addresses.

pub mod net;
pub mod observation;
pub mod time;

pub use net::IpNet;
pub use observation::Observation;
pub use time::Timestamp;
