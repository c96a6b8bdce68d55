//! The correlator: drivers around the engine of `tokentrail-correlator-core`.
//!
//! * [`forensic`]: `tokentrail analyze`, evidence files in, a report out; [`evidence`] finds and
//!   opens the files.
//! * [`output`]: the report as text, finding JSON lines, OCSF, and an output directory.
//!
//! The Kafka driver (one engine per partition, state in a changelog topic) joins these with the
//! streaming issue.

pub mod evidence;
pub mod forensic;
pub mod output;
