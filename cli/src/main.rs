//! `tokentrail`: the one binary. Each subcommand is a thin layer over a library's `run`.
//!
//! * [`startup`]: logging, metrics export, the runtime, signals and exit statuses, once for every
//!   component; configuration files and the flags laid over them.
//! * [`component`]: `agent`, `aggregator`, `correlator`, `incidents`, `standalone`: flags to
//!   configuration.
//! * [`analyze`], [`collect`]: the forensic subcommands.
//! * [`docs`]: shell completions and man pages.

mod analyze;
mod collect;
mod component;
mod docs;
mod engine_args;
mod kafka_args;
mod progress;
mod replay;
mod standalone;
mod startup;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Match every Kubernetes service-account token use to the pod it was issued to; report theft
/// and replay.
#[derive(Parser)]
#[command(name = "tokentrail", version = env!("TOKENTRAIL_VERSION"), about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Analyse collected evidence: audit logs (any common format, gzip/zstd) and `kubectl get
    /// -o json` dumps of serviceaccounts, service-account-token secrets, pods and nodes.
    Analyze(analyze::Args),
    /// Collect the inventory `analyze` needs (service accounts, token Secrets without their
    /// tokens, pods, nodes) through the Kubernetes API into an evidence directory.
    Collect(collect::Args),
    /// Send evidence (audit logs, kubectl dumps) to an audit webhook or a raw audit topic, to
    /// rerun an incident through the pipeline.
    Replay(Box<replay::Args>),
    /// Run the node agent (a DaemonSet): attest the service-account tokens on this node to the
    /// aggregator.
    Agent(component::agent::Args),
    /// Run the aggregator: attestations over gRPC and raw audit events from Kafka, merged into
    /// the observations topic.
    Aggregator(component::aggregator::Args),
    /// Run a correlator replica: the observations topic in, findings out, exactly once.
    Correlator(component::correlator::Args),
    /// Run the incidents process (one replica): the findings topic in, incidents out, exactly
    /// once.
    Incidents(component::incidents::Args),
    /// Run aggregator and correlator in one process, without Kafka: the audit webhook and agents
    /// in, findings to stdout, a file or a Kafka topic.
    // Boxed: its flags are many times the size of the other subcommands'.
    Standalone(Box<component::standalone::Args>),
    /// Print shell completions, e.g. `source <(tokentrail completions bash)`.
    Completions(docs::CompletionsArgs),
    /// Write man pages (tokentrail.1, tokentrail-analyze.1, ...) into a directory.
    Man(docs::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Analyze(args) => analyze::run(args),
        Command::Collect(args) => collect::run(args),
        Command::Replay(args) => replay::run(*args),
        Command::Agent(args) => component::agent::main(args),
        Command::Aggregator(args) => component::aggregator::main(args),
        Command::Correlator(args) => component::correlator::main(args),
        Command::Incidents(args) => component::incidents::main(args),
        Command::Standalone(args) => component::standalone::main(*args),
        Command::Completions(args) => docs::completions(&args),
        Command::Man(args) => docs::man(&args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_s_flags_are_consistent() {
        // clap's own checks (unique ids and groups, `requires` naming real flags), which otherwise
        // only run when a subcommand is used.
        super::Cli::command().debug_assert();
    }
}
