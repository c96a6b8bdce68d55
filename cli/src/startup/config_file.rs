//! Configuration files at start-up: `--check-config FILE`, and the settings a component runs
//! with: the file, then the environment and flags laid over it by one rule ([`layer`]), then
//! checked whole, every problem at once with its key path ([`tokentrail_config::check`]).
//!
//! Flags reach the file's key space by serialization: a component's settings flags derive
//! `Serialize` with the file's key as each field's name (`kafka.bootstrap_servers`: `bootstrap_servers`
//! in object `kafka`), and a flag not given serializes to null. clap has already put the
//! environment under the flags (`--instance` over `$POD_NAME`), so the order is file,
//! environment, flags.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use tokentrail_config::{one_line, Problem};

use super::exit;

/// `--config` and `--check-config` of the components that read a configuration file.
#[derive(clap::Args, Debug)]
pub struct FileArgs {
    /// Configuration file (JSON; its keys are the settings' names); the environment and flags
    /// override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Check this configuration file, report every problem in it, and exit (0: valid, 2: not)
    /// without starting anything.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub check_config: Option<PathBuf>,
}

/// The flags of a component with a configuration file: `--config` and `--check-config`, its
/// settings `S` (serialized as the file's keys), and the process flags.
#[derive(clap::Args, Debug)]
pub struct WithFile<S: clap::Args> {
    /// `--config`, `--check-config`.
    #[command(flatten)]
    pub files: FileArgs,
    /// The component's settings.
    #[command(flatten)]
    pub settings: S,
    /// Logging and metrics export.
    #[command(flatten)]
    pub process: super::ProcessArgs,
}

/// Why the settings are unusable.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file itself (unreadable, not JSON, or wrong).
    #[error("{}: {}", path.display(), one_line(problems))]
    File {
        /// The file.
        path: PathBuf,
        /// Everything wrong with it.
        problems: Vec<Problem>,
    },
    /// The file with the environment and flags laid over it.
    #[error("{}", one_line(.0))]
    Settings(Vec<Problem>),
    /// The flags could not be turned into the file's keys (a bug).
    #[error("flags as configuration keys")]
    Flags(#[source] serde_json::Error),
}

/// Reads and checks a configuration file, naming the file in an unreadable-file problem.
pub fn read<T: DeserializeOwned>(path: &Path, validate: impl FnOnce(&T) -> Vec<Problem>) -> Result<T, Vec<Problem>> {
    match std::fs::read_to_string(path) {
        Ok(text) => tokentrail_config::check(&text, validate),
        Err(e) => Err(vec![Problem::new("", format!("cannot read {}: {e}", path.display()))]),
    }
}

/// `--check-config FILE` of every component: `FILE: valid` on stdout and exit 0, or one
/// `FILE: PATH: MESSAGE` line per problem on stderr and exit 2.
pub fn check_command<T: DeserializeOwned>(path: &Path, validate: impl FnOnce(&T) -> Vec<Problem>) -> ExitCode {
    match read(path, validate) {
        Ok(_) => {
            println!("{}: valid", path.display());
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for p in problems {
                eprintln!("{}: {p}", path.display());
            }
            ExitCode::from(exit::BAD_CONFIG)
        }
    }
}

/// A component's settings flags as configuration keys, to be laid over the file ([`layer`]).
pub trait Flags {
    /// The keys the flags given set; `file` is the configuration file's document (an empty
    /// object without one), for a flag whose keys depend on what the file has.
    fn keys(&self, file: &Value) -> Result<Value, serde_json::Error>;
}

/// Most components' flags name one key each: their serialization, field name = key.
impl<S: Serialize> Flags for S {
    fn keys(&self, _file: &Value) -> Result<Value, serde_json::Error> {
        serde_json::to_value(self)
    }
}

/// The settings: `file` (checked on its own first, so its problems are reported as its own),
/// then `flags` laid over it ([`layer`]), then checked whole.
pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    flags: &impl Flags,
    validate: impl Fn(&T) -> Vec<Problem>,
) -> Result<T, LoadError> {
    let mut document = match file {
        Some(path) => {
            let file_problems = |problems| LoadError::File { path: path.to_path_buf(), problems };
            let text = std::fs::read_to_string(path)
                .map_err(|e| file_problems(vec![Problem::new("", format!("cannot read {}: {e}", path.display()))]))?;
            tokentrail_config::check::<T>(&text, &validate).map_err(file_problems)?;
            tokentrail_config::document(&text).map_err(|p| file_problems(vec![p]))?
        }
        None => Value::Object(Map::new()),
    };
    let keys = flags.keys(&document).map_err(LoadError::Flags)?;
    layer(&mut document, keys);
    tokentrail_config::check_value(document, validate).map_err(LoadError::Settings)
}

/// The one precedence rule: what `over` says replaces what `under` says, key by key. Objects
/// merge, lists add up (a repeatable flag adds to the file's list), any other value replaces,
/// and null or an empty list (a flag not given) changes nothing, nor does an object of such
/// (no section is made by flags that were not given). A key `a.b` is `b` in object `a`.
pub fn layer(under: &mut Value, over: Value) {
    if says_nothing(&over) {
        return;
    }
    match over {
        Value::Object(entries) => {
            if !under.is_object() {
                *under = Value::Object(Map::new());
            }
            let Value::Object(target) = under else { return };
            for (key, value) in entries {
                if says_nothing(&value) {
                    continue;
                }
                match key.split_once('.') {
                    Some((head, tail)) => {
                        let nested = Value::Object(Map::from_iter([(tail.to_string(), value)]));
                        layer(target.entry(head).or_insert(Value::Null), nested);
                    }
                    None => layer(target.entry(key).or_insert(Value::Null), value),
                }
            }
        }
        Value::Array(items) => match under {
            Value::Array(existing) => existing.extend(items),
            _ => *under = Value::Array(items),
        },
        scalar => *under = scalar,
    }
}

/// Null, an empty list, or an object of nothing but those: flags that were not given.
fn says_nothing(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Array(items) => items.is_empty(),
        Value::Object(entries) => entries.values().all(says_nothing),
        _ => false,
    }
}

/// Tests of the components' flags: `flags` (and `file`, as `--config`) parsed as a component's
/// [`WithFile`] and loaded as the component would.
#[cfg(test)]
pub fn load_for_test<S, T>(
    file: Option<&str>,
    flags: &[&str],
    validate: impl Fn(&T) -> Vec<Problem>,
) -> Result<T, String>
where
    S: clap::Args + Flags,
    T: DeserializeOwned,
{
    use clap::Parser;

    #[derive(Parser)]
    struct Cli<S: clap::Args> {
        #[command(flatten)]
        args: WithFile<S>,
    }

    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("component.json").to_string_lossy().to_string();
    let mut argv = vec!["component"];
    if let Some(text) = file {
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        argv.extend(["--config", &path]);
    }
    argv.extend(flags);
    let cli = Cli::<S>::try_parse_from(argv).map_err(|e| e.to_string())?;
    load(cli.args.files.config.as_deref(), &cli.args.settings, validate).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_replace_values_merge_objects_add_to_lists_and_null_keeps_the_file() {
        let mut file = json!({"a": 1, "kafka": {"bootstrap_servers": "file:9092", "group_id": "g"},
                              "nets": ["10.0.0.0/8"], "kept": "yes"});
        layer(
            &mut file,
            json!({"a": 2, "kafka.bootstrap_servers": "flag:9092", "grpc.tls.cert": "c.pem",
                   "nets": ["192.168.0.0/16"], "kept": null, "empty": [],
                   "webhook": {"tls.cert": null, "allowed": []}}),
        );
        assert_eq!(
            file,
            json!({"a": 2, "kafka": {"bootstrap_servers": "flag:9092", "group_id": "g"},
                   "grpc": {"tls": {"cert": "c.pem"}}, "nets": ["10.0.0.0/8", "192.168.0.0/16"], "kept": "yes"})
        );
    }
}
