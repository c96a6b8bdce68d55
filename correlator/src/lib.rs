//! The correlator: drivers around the engine of `tokentrail-correlator-core`.
//!
//! * [`forensic`]: `tokentrail analyze`, evidence files in, a report out; [`evidence`] finds and
//!   opens the files.
//! * [`output`]: the report as text, finding JSON lines, OCSF, and an output directory.
//!
//! * [`stream`]: the streaming correlator, the observations topic in, findings out, exactly once.
//! * [`standalone`]: the aggregator's servers and the engine in one process, no Kafka between.
//! * [`engine_args`]: the engine's flags, shared by the three subcommands that run it.

pub mod engine_args;
pub mod evidence;
pub mod forensic;
pub mod output;
pub mod standalone;
pub mod stream;
