//! The Kafka security flags, declared once and flattened into `tokentrail aggregator`,
//! `tokentrail correlator` and `tokentrail standalone`: one name per setting everywhere
//! (`--kafka-security-protocol`, `--kafka-ca-file`, ...), each a key of the one
//! [`tokentrail_config::kafka::KafkaSecurity`] section (`security.protocol`, `security.tls.ca_file`, ...). Serialized, a
//! flag not given is null, and start-up lays them over the configuration file's section
//! (`kafka.security` in the aggregator's and standalone's files, `security` in the correlator's).
//!
//! Files only: a password, a key's password or a client secret is never a flag's value (it
//! would show in `ps` and in the pod spec); the flags name the files that hold them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokentrail_config::kafka::{KafkaSecurity, Mechanism};
use tokentrail_config::Problem;

use crate::startup::config_file::layer;

/// The Kafka security settings every component with Kafka clients takes.
#[derive(clap::Args, Clone, Debug, Default, Serialize)]
pub struct KafkaSecurityArgs {
    /// Kafka `security.protocol`: plaintext, ssl, sasl_plaintext or sasl_ssl [default:
    /// plaintext].
    #[arg(long = "kafka-security-protocol", value_name = "PROTOCOL",
          value_parser = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"])]
    #[serde(rename = "security.protocol")]
    pub protocol: Option<String>,
    /// CA certificate(s) (PEM) the brokers' certificates must chain to; absent: the system's.
    #[arg(long = "kafka-ca-file", value_name = "FILE")]
    #[serde(rename = "security.tls.ca_file")]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --kafka-key-file.
    #[arg(long = "kafka-cert-file", value_name = "FILE")]
    #[serde(rename = "security.tls.cert_file")]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long = "kafka-key-file", value_name = "FILE")]
    #[serde(rename = "security.tls.key_file")]
    pub key_file: Option<PathBuf>,
    /// A file holding the password of an encrypted --kafka-key-file.
    #[arg(long = "kafka-key-password-file", value_name = "FILE")]
    #[serde(rename = "security.tls.key_password_file")]
    pub key_password_file: Option<PathBuf>,
    /// SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, or OAUTHBEARER (tokens from an
    /// OAuth 2.0 token endpoint by the client-credentials grant: --kafka-oauth-*).
    #[arg(long = "kafka-sasl-mechanism", value_name = "MECHANISM", value_parser = Mechanism::ALL)]
    #[serde(rename = "security.sasl.mechanism")]
    pub mechanism: Option<String>,
    /// SASL user name (not a secret); or --kafka-sasl-username-file.
    #[arg(long = "kafka-sasl-username", value_name = "NAME")]
    #[serde(rename = "security.sasl.username")]
    pub username: Option<String>,
    /// A file holding the SASL user name.
    #[arg(long = "kafka-sasl-username-file", value_name = "FILE")]
    #[serde(rename = "security.sasl.username_file")]
    pub username_file: Option<PathBuf>,
    /// A file holding the SASL password (a mounted Secret's key).
    #[arg(long = "kafka-sasl-password-file", value_name = "FILE")]
    #[serde(rename = "security.sasl.password_file")]
    pub password_file: Option<PathBuf>,
    /// OAUTHBEARER: the OAuth 2.0 token endpoint (https://...; http:// only on loopback).
    #[arg(long = "kafka-oauth-token-endpoint", value_name = "URL")]
    #[serde(rename = "security.sasl.token_endpoint")]
    pub token_endpoint: Option<String>,
    /// OAUTHBEARER: the OAuth client id (not a secret).
    #[arg(long = "kafka-oauth-client-id", value_name = "ID")]
    #[serde(rename = "security.sasl.client_id")]
    pub client_id: Option<String>,
    /// OAUTHBEARER: a file holding the OAuth client secret (a mounted Secret's key).
    #[arg(long = "kafka-oauth-client-secret-file", value_name = "FILE")]
    #[serde(rename = "security.sasl.client_secret_file")]
    pub client_secret_file: Option<PathBuf>,
    /// OAUTHBEARER: the scope of the token request (space-separated); absent: none is sent.
    #[arg(long = "kafka-oauth-scope", value_name = "SCOPE")]
    #[serde(rename = "security.sasl.scope")]
    pub scope: Option<String>,
    /// OAUTHBEARER: CA certificate(s) (PEM) of the token endpoint's certificate; absent: the
    /// system's.
    #[arg(long = "kafka-oauth-ca-file", value_name = "FILE")]
    #[serde(rename = "security.sasl.ca_file")]
    pub oauth_ca_file: Option<PathBuf>,
}

/// The section alone, as a document to read it from.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    #[serde(default)]
    security: KafkaSecurity,
}

impl KafkaSecurityArgs {
    /// The settings the flags alone make (`tokentrail replay`, which has no configuration
    /// file), or every problem with them, with its key path (`security.sasl.password_file`).
    pub fn security(&self) -> Result<KafkaSecurity, Vec<Problem>> {
        let mut document = Value::Object(Map::new());
        let flags = serde_json::to_value(self).map_err(|e| vec![Problem::new("security", e.to_string())])?;
        layer(&mut document, flags);
        tokentrail_config::check_value(document, |s: &Section| s.security.problems("security")).map(|s| s.security)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use tokentrail_config::kafka::Protocol;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaSecurityArgs,
    }

    /// The section the flags make, laid over `file` (a component's `security` section).
    fn security(file: serde_json::Value, flags: &[&str]) -> Result<KafkaSecurity, Vec<String>> {
        let cli =
            Cli::try_parse_from(std::iter::once("t").chain(flags.iter().copied())).map_err(|e| vec![e.to_string()])?;
        let mut document = serde_json::json!({ "security": file });
        layer(&mut document, serde_json::to_value(&cli.kafka).unwrap());
        let section =
            serde_json::from_value::<KafkaSecurity>(document["security"].take()).map_err(|e| vec![e.to_string()])?;
        let problems = section.problems("security");
        if problems.is_empty() {
            Ok(section)
        } else {
            Err(problems.iter().map(ToString::to_string).collect())
        }
    }

    #[test]
    fn no_flag_leaves_the_file_and_flags_make_or_change_the_section() {
        assert_eq!(security(serde_json::json!({}), &[]).unwrap(), KafkaSecurity::default());
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "pw").unwrap();
        let file = serde_json::json!({"protocol": "sasl_ssl", "sasl": {"mechanism": "PLAIN", "username": "file"}});
        let s = security(
            file,
            &["--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-password-file", password.to_str().unwrap()],
        )
        .unwrap();
        assert_eq!(s.protocol, Protocol::SaslSsl);
        let sasl = s.sasl.unwrap();
        assert_eq!(sasl.username.as_deref(), Some("file"));
        assert_eq!(sasl.password_file.as_deref(), Some(password.as_path()));
    }

    #[test]
    fn the_flags_alone_make_the_section_or_say_what_is_missing() {
        let cli = Cli::try_parse_from(["t", "--kafka-security-protocol", "ssl"]).unwrap();
        assert_eq!(cli.kafka.security().unwrap().protocol, Protocol::Ssl);
        let cli = Cli::try_parse_from(["t", "--kafka-security-protocol", "sasl_ssl"]).unwrap();
        let problems = cli.kafka.security().unwrap_err();
        assert_eq!(problems[0].to_string(), "security.sasl: is required with protocol sasl_ssl");
    }

    #[test]
    fn problems_name_the_section_keys_and_unknown_values_are_refused_by_clap() {
        let err = security(serde_json::json!({}), &["--kafka-security-protocol", "sasl_ssl"]).unwrap_err();
        assert_eq!(err, ["security.sasl: is required with protocol sasl_ssl"]);
        let err = security(serde_json::json!({}), &["--kafka-sasl-mechanism", "GSSAPI"]).unwrap_err();
        assert!(err[0].contains("invalid value 'GSSAPI'"), "{err:?}");
        // There is no flag for a password itself.
        assert!(security(serde_json::json!({}), &["--kafka-sasl-password", "x"]).is_err());
        assert!(security(serde_json::json!({}), &["--kafka-oauth-client-secret", "x"]).is_err());
    }

    #[test]
    fn the_oauth_flags_make_an_oauthbearer_section() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("client-secret");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let s = security(
            serde_json::json!({"protocol": "sasl_ssl"}),
            &[
                "--kafka-sasl-mechanism",
                "OAUTHBEARER",
                "--kafka-oauth-token-endpoint",
                "https://idp.example/oauth2/token",
                "--kafka-oauth-client-id",
                "tokentrail",
                "--kafka-oauth-client-secret-file",
                secret.to_str().unwrap(),
                "--kafka-oauth-scope",
                "kafka",
            ],
        )
        .unwrap();
        let sasl = s.sasl.unwrap();
        assert_eq!(sasl.mechanism, Mechanism::OAuthBearer);
        assert_eq!(sasl.token_endpoint.as_deref(), Some("https://idp.example/oauth2/token"));
        assert_eq!((sasl.client_id.as_deref(), sasl.scope.as_deref()), (Some("tokentrail"), Some("kafka")));
        assert_eq!(sasl.client_secret_file.as_deref(), Some(secret.as_path()));
        let err = security(
            serde_json::json!({"protocol": "sasl_ssl"}),
            &["--kafka-sasl-mechanism", "OAUTHBEARER", "--kafka-oauth-token-endpoint", "http://10.0.0.1/token"],
        )
        .unwrap_err();
        assert!(
            err[0].starts_with("security.sasl.token_endpoint: http://10.0.0.1/token: the token endpoint must be https"),
            "{err:?}"
        );
    }
}
