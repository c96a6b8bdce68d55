//! Pure decoding and normalisation of Kubernetes audit evidence.
//!
//! Turns bytes (audit events, provider wrappers, `kubectl get -o json` dumps) into the engine's
//! [`Observation`](tokentrail_correlator_core::Observation)s. No tokio, no Kafka, no file system:
//! callers hand in bytes or a reader.
