//! The aggregator: attestations over gRPC and audit events from Kafka, merged into one stream.
//!
//! Not built yet: decoding lives in `tokentrail-aggregator-core` and is already shared with
//! `tokentrail analyze`.
