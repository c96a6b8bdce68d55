//! The subcommands that run a long-running component: each turns its flags (and, but for
//! standalone, its configuration file) into the component's configuration and hands it to the
//! shared start-up ([`crate::startup`]).

pub mod agent;
pub mod aggregator;
pub mod correlator;
pub mod standalone;
