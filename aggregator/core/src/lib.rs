//! Pure decoding and normalisation of Kubernetes audit evidence.
//!
//! Turns bytes (audit events, provider wrappers, `kubectl get -o json` dumps) into the engine's
//! [`Observation`](tokentrail_proto::Observation)s. No tokio, no Kafka, no file system:
//! callers hand in bytes or a reader.
//!
//! How a driver uses it, for one file or one message:
//! 1. [`detect_compression`] on the first bytes, then [`decompress_bounded`] the reader (or
//!    [`decompress`], bounding what is read yourself);
//! 2. [`strip_bom`], then [`detect_layout_in`] on the first lines (or [`detect_layout`] on the
//!    first line of a text known to start at a line's start);
//! 3. [`decode_line`] on every line ([`Layout::Lines`]) or [`decode_value`] on the whole text
//!    ([`Layout::Document`]), into one [`Decoded`] per unit of work, then [`DecodeStats::merge`].
//!
//! Layout:
//! * [`compression`], [`layout`]: what the bytes are before any JSON is read.
//! * [`decode`]: the entry point; recognises every supported shape by its content and unwraps
//!   arrays and lists.
//! * `audit_event`: the serde shape of one top-level object (an audit `Event`, and the keys that
//!   tell the other shapes apart), read once, borrowing from the input.
//! * `providers`: EKS CloudWatch, AKS diagnostic and GKE Cloud Logging envelopes.
//! * [`cluster_names`]: the cluster those envelopes name (GKE `resource.labels.cluster_name`,
//!   EKS `logGroup`, AKS `resourceId`), read from a file's start.
//! * `scan`: the fast reader of one object into that shape, which jumps over what is not read;
//!   serde_json reads whatever it gives up on.
//! * `normalize`: one audit event to observations (the hot path).
//! * `objects`, `inventory`: Kubernetes objects (Pod, Node, ServiceAccount, Secret) and the
//!   facts an inventory dump yields.
//! * [`node_reports`]: which node facts are broadcast, and the progress that stands for repeats.
//! * [`yaml`]: YAML evidence (`gcloud logging read`, audit events kept as YAML), converted
//!   document by document to the JSON the decoders take.
//! * [`decoded`]: what decoding appends to: observations, problems, [`DecodeStats`].
//! * `json`: borrowing JSON helpers.
//!
//! Nothing here copies token material: Secret `data`/`stringData` and TokenRequest `status`
//! are never deserialized, and problem messages elide long quoted strings.

#![deny(missing_docs)]

pub mod cluster_names;
pub mod compression;
pub mod decode;
pub mod decoded;
pub mod layout;
pub mod node_reports;
pub mod route;
pub mod salvage;
pub mod yaml;

mod audit_event;
mod inventory;
mod json;
mod normalize;
mod objects;
mod providers;
mod scan;

pub use compression::{decompress, decompress_bounded, detect_compression, Compression, Limits};
pub use decode::{decode_line, decode_value};
pub use decoded::{DecodeStats, Decoded, Format, Problem, UseFolder};
pub use layout::{detect_layout, detect_layout_in, is_whole_line, strip_bom, Layout};
pub use objects::TOKEN_SHA256_ANNOTATION;
pub use salvage::{salvage, Salvaged};
pub use yaml::{decode_yaml, looks_like_yaml};
