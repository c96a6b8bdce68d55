//! The wire contract between agent, aggregator and correlator (`tokentrail.agent.v1`).
//!
//! The protobuf definitions arrive with the node agent; until then this crate is empty on purpose.
