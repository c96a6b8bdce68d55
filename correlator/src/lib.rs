//! The correlator: drivers around the engine of `tokentrail-correlator-core`.
//!
//! * [`forensic`]: `tokentrail analyze`, evidence files in, a report out; [`evidence`] finds and
//!   opens the files; [`clusters`] groups them by cluster (`NAME=PATH`) for
//!   [`forensic::analyze_clusters`].
//! * [`output`]: the report as text, finding JSON lines, OCSF, and an output directory.
//!
//! * [`stream`]: the streaming correlator, the observations topic in, findings out, exactly once.
//!   Its [`PartitionState`](stream::PartitionState) (engines and emitter) and finding records
//!   ([`stream::findings`]) are also what `tokentrail standalone` (in the cli crate, above both
//!   aggregator and correlator) folds into and writes.
//! * [`incidents`]: `tokentrail incidents`, the findings topic in, incidents out, exactly once.

pub mod clusters;
pub mod evidence;
pub mod forensic;
pub mod incidents;
pub mod output;
pub mod stream;
