//! How every Kafka client (aggregator, correlator, standalone's findings producer) connects:
//! one [`KafkaSecurity`] section, its checks ([`KafkaSecurity::problems`], run by
//! `--check-config` and at start-up), and the librdkafka properties it becomes
//! ([`KafkaSecurity::client_properties`]), which the components hand to their `ClientConfig`s.
//! This crate knows librdkafka's property names but not rdkafka: the components own the
//! clients.
//!
//! ```json
//! "security": {
//!   "protocol": "sasl_ssl",
//!   "tls": {"ca_file": "/etc/kafka/ca/ca.crt"},
//!   "sasl": {"mechanism": "SCRAM-SHA-512", "username": "tokentrail",
//!            "password_file": "/etc/kafka/user/password"}
//! }
//! ```
//!
//! Secrets (a SASL password, a private key's password) are only ever
//! read from files, mounted from Kubernetes Secrets: never from a flag, an environment variable
//! or a value in the configuration file. They are read when a client is made, so a restarted
//! process picks up a rotated Secret. Their values are never printed: [`ClientProperties`]
//! shows them as `[redacted]`, and problems name the file, never what is in it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Problem;

/// The security of a component's Kafka clients. The default is plaintext, as before this
/// section existed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSecurity {
    /// librdkafka's `security.protocol`.
    #[serde(default)]
    pub protocol: Protocol,
    /// TLS settings, for `ssl` and `sasl_ssl`; absent: the system's CA certificates and no
    /// client certificate.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// SASL settings, required for `sasl_plaintext` and `sasl_ssl`.
    #[serde(default)]
    pub sasl: Option<Sasl>,
}

/// `security.protocol`. Written in lowercase (`sasl_ssl`) or as Kafka writes it (`SASL_SSL`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// No TLS, no authentication.
    #[default]
    #[serde(alias = "PLAINTEXT")]
    Plaintext,
    /// TLS; with a client certificate, mutual TLS (the certificate is the identity).
    #[serde(alias = "SSL")]
    Ssl,
    /// SASL without TLS (SCRAM only: PLAIN would send the password in clear).
    #[serde(alias = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// SASL over TLS.
    #[serde(alias = "SASL_SSL")]
    SaslSsl,
}

impl Protocol {
    /// The value of librdkafka's `security.protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Plaintext => "plaintext",
            Protocol::Ssl => "ssl",
            Protocol::SaslPlaintext => "sasl_plaintext",
            Protocol::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the connection is TLS.
    pub fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    /// Whether the client authenticates with SASL.
    pub fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// TLS files (PEM).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// CA certificate(s) the brokers' certificates must chain to (Strimzi: the cluster CA
    /// Secret's `ca.crt`). Absent: the system's CA certificates (MSK, Confluent Cloud, Event
    /// Hubs have publicly trusted certificates).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Client certificate (chain) for mutual TLS (Strimzi: the KafkaUser Secret's `user.crt`);
    /// needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key (Strimzi: `user.key`); needs `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// A file holding the password of an encrypted `key_file`.
    #[serde(default)]
    pub key_password_file: Option<PathBuf>,
}

/// SASL authentication.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sasl {
    /// `sasl.mechanism`.
    pub mechanism: Mechanism,
    /// The user name (not a secret: it is in every broker log), for PLAIN and SCRAM; or
    /// `username_file`.
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the user name (e.g. a Confluent Cloud API key from a Secret); or
    /// `username`.
    #[serde(default)]
    pub username_file: Option<PathBuf>,
    /// A file holding the password (Strimzi: the KafkaUser Secret's `password`; Event Hubs:
    /// the connection string), for PLAIN and SCRAM.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

/// `sasl.mechanism`, as Kafka writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Mechanism {
    /// User name and password, sent as they are (only over TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// Bearer tokens. Known, so that it is refused with the reason: this build has no OIDC
    /// token fetching (librdkafka without libcurl, root Cargo.toml).
    #[serde(rename = "OAUTHBEARER")]
    OAuthBearer,
}

impl Mechanism {
    /// The value of librdkafka's `sasl.mechanism`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }

    /// Every mechanism, for messages and flag values.
    pub const ALL: [&'static str; 4] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];
}

impl KafkaSecurity {
    /// Every problem with these settings, each with its key path under `at` (e.g.
    /// `kafka.security`): protocol, TLS and SASL sections that do not fit together, a mechanism
    /// without what it needs, and files that cannot be read. The files are opened, so this is
    /// what `--check-config` reports before a pod ever starts; what a secret file holds is
    /// never reported.
    pub fn problems(&self, at: &str) -> Vec<Problem> {
        let mut problems = Vec::new();
        let key = |k: &str| format!("{at}.{k}");
        let protocol = self.protocol;
        if let Some(tls) = &self.tls {
            if !protocol.tls() {
                problems.push(Problem::new(key("tls"), format!("needs protocol ssl or sasl_ssl, not {protocol}")));
            }
            tls.problems(&key("tls"), &mut problems);
        }
        match (&self.sasl, protocol.sasl()) {
            (None, true) => problems.push(Problem::new(key("sasl"), format!("is required with protocol {protocol}"))),
            (Some(sasl), false) => {
                let message = format!("needs protocol sasl_ssl or sasl_plaintext, not {protocol}");
                problems.push(Problem::new(key("sasl"), message));
                // Its own problems too: every problem at once.
                sasl.problems(&key("sasl"), protocol, &mut problems);
            }
            (Some(sasl), true) => sasl.problems(&key("sasl"), protocol, &mut problems),
            (None, false) => {}
        }
        problems
    }

    /// The librdkafka properties of these settings, secrets read from their files now. Every
    /// client of a component sets them (and sets nothing else about security).
    pub fn client_properties(&self) -> Result<ClientProperties, SecretError> {
        let mut p = ClientProperties::default();
        p.push("security.protocol", self.protocol.as_str());
        if self.protocol.tls() {
            let tls = self.tls.clone().unwrap_or_default();
            // No CA file: librdkafka looks for the system's CA bundle in the usual places,
            // whichever OpenSSL it was built with.
            p.push("ssl.ca.location", tls.ca_file.as_deref().map_or("probe".into(), path_string));
            if let Some(cert) = &tls.cert_file {
                p.push("ssl.certificate.location", path_string(cert));
            }
            if let Some(key) = &tls.key_file {
                p.push("ssl.key.location", path_string(key));
            }
            if let Some(file) = &tls.key_password_file {
                p.push_secret("ssl.key.password", read_secret(file)?);
            }
        }
        if let (Some(sasl), true) = (&self.sasl, self.protocol.sasl()) {
            p.push("sasl.mechanism", sasl.mechanism.as_str());
            match (&sasl.username, &sasl.username_file) {
                (Some(name), _) => p.push("sasl.username", name),
                (None, Some(file)) => p.push("sasl.username", read_secret(file)?),
                (None, None) => {}
            }
            if let Some(file) = &sasl.password_file {
                p.push_secret("sasl.password", read_secret(file)?);
            }
        }
        Ok(p)
    }
}

impl Tls {
    fn problems(&self, at: &str, problems: &mut Vec<Problem>) {
        let key = |k: &str| format!("{at}.{k}");
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => problems.push(Problem::new(key("key_file"), "is required with cert_file")),
            (None, Some(_)) => problems.push(Problem::new(key("cert_file"), "is required with key_file")),
            _ => {}
        }
        if self.key_password_file.is_some() && self.key_file.is_none() {
            problems.push(Problem::new(key("key_password_file"), "needs key_file"));
        }
        readable(&key("ca_file"), self.ca_file.as_deref(), problems);
        readable(&key("cert_file"), self.cert_file.as_deref(), problems);
        readable(&key("key_file"), self.key_file.as_deref(), problems);
        secret_file(&key("key_password_file"), self.key_password_file.as_deref(), problems);
    }
}

impl Sasl {
    fn problems(&self, at: &str, protocol: Protocol, problems: &mut Vec<Problem>) {
        let key = |k: &str| format!("{at}.{k}");
        let mechanism = self.mechanism.as_str();
        if self.mechanism == Mechanism::OAuthBearer {
            problems.push(Problem::new(
                key("mechanism"),
                "OAUTHBEARER is not supported by this build: librdkafka fetches OIDC tokens with \
                 libcurl, which it is built without (use SCRAM, PLAIN or mutual TLS)",
            ));
            return;
        }
        match (&self.username, &self.username_file) {
            (Some(_), Some(_)) => problems.push(Problem::new(key("username"), "excludes username_file")),
            (None, None) => {
                problems.push(Problem::new(key("username"), format!("or username_file is required with {mechanism}")))
            }
            (Some(name), None) if name.trim().is_empty() => problems.push(Problem::new(key("username"), "is empty")),
            _ => {}
        }
        if self.password_file.is_none() {
            problems.push(Problem::new(key("password_file"), format!("is required with {mechanism}")));
        }
        if protocol == Protocol::SaslPlaintext && self.mechanism == Mechanism::Plain {
            problems.push(Problem::new(
                key("mechanism"),
                format!("{mechanism} sends its secret in clear: use protocol sasl_ssl (or SCRAM)"),
            ));
        }
        secret_file(&key("username_file"), self.username_file.as_deref(), problems);
        secret_file(&key("password_file"), self.password_file.as_deref(), problems);
    }
}

/// A problem at `key` when `path` is given and cannot be opened for reading as a file.
fn readable(key: &str, path: Option<&Path>, problems: &mut Vec<Problem>) {
    let Some(path) = path else { return };
    if let Err(e) = open(path) {
        problems.push(Problem::new(key, e));
    }
}

/// [`readable`], and the file holds something (a password file of only a newline is a mistake
/// librdkafka would report as a failed login, much later).
fn secret_file(key: &str, path: Option<&Path>, problems: &mut Vec<Problem>) {
    let Some(path) = path else { return };
    match read_secret(path) {
        Ok(_) => {}
        Err(e) => problems.push(Problem::new(key, e.to_string())),
    }
}

fn open(path: &Path) -> Result<(), String> {
    let what = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(what)?;
    if !meta.is_file() {
        return Err(format!("cannot read {}: not a file", path.display()));
    }
    std::fs::File::open(path).map(drop).map_err(what)
}

/// Why a secret file gave no secret. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is empty (or only a line break), or not UTF-8 text.
    #[error("{} is empty or not text", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// A secret file's content without its trailing line break (`echo secret > file`, or a
/// Secret made from such a file, ends with one that is not part of the secret).
fn read_secret(path: &Path) -> Result<String, SecretError> {
    let bytes = std::fs::read(path).map_err(|source| SecretError::Unreadable { path: path.into(), source })?;
    let text = String::from_utf8(bytes).map_err(|_| SecretError::Empty { path: path.into() })?;
    let secret = text.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        return Err(SecretError::Empty { path: path.into() });
    }
    Ok(secret.to_string())
}

fn path_string(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// librdkafka properties, secrets among them: `Debug` shows the secrets as `[redacted]`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientProperties {
    entries: Vec<(&'static str, String, bool)>,
}

impl ClientProperties {
    fn push(&mut self, key: &'static str, value: impl Into<String>) {
        self.entries.push((key, value.into(), false));
    }

    fn push_secret(&mut self, key: &'static str, value: String) {
        self.entries.push((key, value, true));
    }

    /// The properties, to set on a client's configuration.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.entries.iter().map(|(k, v, _)| (*k, v.as_str()))
    }

    /// The value of `key`, if set (tests).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|(_, v, _)| v.as_str())
    }
}

impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v, secret) in &self.entries {
            map.entry(k, if *secret { &"[redacted]" } else { v });
        }
        map.finish()
    }
}

/// Why a `kafka.client` style property (extra librdkafka settings) must not be set there: the
/// security section sets it, and secrets never go inline. `None`: it may be set.
pub fn reserved_property(key: &str) -> Option<&'static str> {
    let security = key == "security.protocol"
        || key.starts_with("sasl.")
        || ["ssl.ca.", "ssl.certificate.", "ssl.key.", "ssl.keystore."].iter().any(|p| key.starts_with(p));
    security.then_some("is set by the security section (secrets are read from files, never written inline)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Section {
        security: KafkaSecurity,
    }

    /// The section `text` as the `security` key of a document.
    fn check(text: &str) -> Result<KafkaSecurity, Vec<String>> {
        crate::check(&format!(r#"{{"security": {text}}}"#), |s: &Section| s.security.problems("security"))
            .map(|s| s.security)
            .map_err(|p| p.iter().map(ToString::to_string).collect())
    }

    struct Files(tempfile::TempDir);

    impl Files {
        fn new() -> Files {
            let dir = tempfile::tempdir().unwrap();
            for (name, content) in [
                ("ca.crt", "-----BEGIN CERTIFICATE-----\n"),
                ("user.crt", "cert"),
                ("user.key", "key"),
                ("password", "s3cret\n"),
                ("empty", "\n"),
                ("user", "api-key"),
            ] {
                std::fs::write(dir.path().join(name), content).unwrap();
            }
            Files(dir)
        }

        fn path(&self, name: &str) -> String {
            self.0.path().join(name).display().to_string()
        }

        /// `text` with `@name` replaced by the path of file `name`.
        fn json(&self, text: &str) -> String {
            let mut out = text.to_string();
            for name in ["ca.crt", "user.crt", "user.key", "password", "empty", "user", "missing"] {
                out = out.replace(&format!("@{name}"), &self.path(name));
            }
            out
        }
    }

    #[test]
    fn absent_is_plaintext_as_before() {
        let s = check("{}").unwrap();
        assert_eq!(s, KafkaSecurity::default());
        let p = s.client_properties().unwrap();
        assert_eq!(p.iter().collect::<Vec<_>>(), [("security.protocol", "plaintext")]);
    }

    #[test]
    fn scram_over_tls_becomes_librdkafka_properties_with_the_password_read_and_redacted() {
        let f = Files::new();
        let s = check(&f.json(
            r#"{"protocol": "SASL_SSL", "tls": {"ca_file": "@ca.crt"},
                "sasl": {"mechanism": "SCRAM-SHA-512", "username": "tokentrail", "password_file": "@password"}}"#,
        ))
        .unwrap();
        let p = s.client_properties().unwrap();
        assert_eq!(p.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(p.get("ssl.ca.location"), Some(f.path("ca.crt").as_str()));
        assert_eq!(p.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(p.get("sasl.username"), Some("tokentrail"));
        // The trailing line break is not part of the password.
        assert_eq!(p.get("sasl.password"), Some("s3cret"));
        let shown = format!("{p:?}");
        assert!(!shown.contains("s3cret") && shown.contains("\"sasl.password\": \"[redacted]\""), "{shown}");
    }

    #[test]
    fn mutual_tls_without_a_ca_file_probes_the_system_store() {
        let f = Files::new();
        let s = check(&f.json(r#"{"protocol": "ssl", "tls": {"cert_file": "@user.crt", "key_file": "@user.key"}}"#))
            .unwrap();
        let p = s.client_properties().unwrap();
        assert_eq!(p.get("ssl.ca.location"), Some("probe"));
        assert_eq!(p.get("ssl.certificate.location"), Some(f.path("user.crt").as_str()));
        assert_eq!(p.get("ssl.key.location"), Some(f.path("user.key").as_str()));
        assert_eq!(p.get("sasl.mechanism"), None);
        let plain = check(&f.json(
            r#"{"protocol": "sasl_ssl", "sasl": {"mechanism": "PLAIN", "username_file": "@user",
                "password_file": "@password"}}"#,
        ))
        .unwrap();
        let p = plain.client_properties().unwrap();
        assert_eq!((p.get("sasl.username"), p.get("ssl.ca.location")), (Some("api-key"), Some("probe")));
    }

    #[test]
    fn sections_that_do_not_fit_the_protocol_are_reported() {
        let f = Files::new();
        let err = check(&f.json(
            r#"{"protocol": "plaintext", "tls": {"ca_file": "@ca.crt"},
                "sasl": {"mechanism": "PLAIN", "username": "u", "password_file": "@password"}}"#,
        ))
        .unwrap_err();
        assert_eq!(
            err,
            [
                "security.tls: needs protocol ssl or sasl_ssl, not plaintext",
                "security.sasl: needs protocol sasl_ssl or sasl_plaintext, not plaintext"
            ]
        );
        let err = check(r#"{"protocol": "sasl_ssl"}"#).unwrap_err();
        assert_eq!(err, ["security.sasl: is required with protocol sasl_ssl"]);
        let err = check(&f.json(
            r#"{"protocol": "sasl_plaintext",
                "sasl": {"mechanism": "PLAIN", "username": "u", "password_file": "@password"}}"#,
        ))
        .unwrap_err();
        assert_eq!(err, ["security.sasl.mechanism: PLAIN sends its secret in clear: use protocol sasl_ssl (or SCRAM)"]);
        assert!(check(&f.json(
            r#"{"protocol": "sasl_plaintext",
                "sasl": {"mechanism": "SCRAM-SHA-256", "username": "u", "password_file": "@password"}}"#,
        ))
        .is_ok());
    }

    #[test]
    fn unknown_protocols_and_mechanisms_and_inline_passwords_are_refused() {
        let err = check(r#"{"protocol": "tls"}"#).unwrap_err();
        assert!(err[0].starts_with("security.protocol: unknown variant `tls`"), "{err:?}");
        let err = check(r#"{"protocol": "sasl_ssl", "sasl": {"mechanism": "GSSAPI", "username": "u"}}"#).unwrap_err();
        assert!(err[0].starts_with("security.sasl.mechanism: unknown variant `GSSAPI`"), "{err:?}");
        // A password can only come from a file.
        let err =
            check(r#"{"protocol": "sasl_ssl", "sasl": {"mechanism": "PLAIN", "username": "u", "password": "p"}}"#)
                .unwrap_err();
        assert!(err.iter().any(|e| e.starts_with("security.sasl.password: unknown field")), "{err:?}");
    }

    #[test]
    fn missing_unreadable_and_empty_files_are_named_without_their_content() {
        let f = Files::new();
        let err = check(&f.json(
            r#"{"protocol": "sasl_ssl", "tls": {"ca_file": "@missing", "cert_file": "@user.crt"},
                "sasl": {"mechanism": "SCRAM-SHA-256", "username": "u", "username_file": "@user",
                         "password_file": "@empty"}}"#,
        ))
        .unwrap_err();
        let missing = f.path("missing");
        assert_eq!(
            err,
            [
                "security.tls.key_file: is required with cert_file".to_string(),
                format!("security.tls.ca_file: cannot read {missing}: No such file or directory (os error 2)"),
                "security.sasl.username: excludes username_file".to_string(),
                format!("security.sasl.password_file: {} is empty or not text", f.path("empty")),
            ]
        );
        let err = check(&f.json(r#"{"protocol": "ssl", "tls": {"ca_file": "@ca.crt/.."}}"#)).unwrap_err();
        assert!(err[0].contains("cannot read"), "{err:?}");
        let err =
            check(r#"{"protocol": "sasl_ssl", "sasl": {"mechanism": "SCRAM-SHA-512", "username": " "}}"#).unwrap_err();
        assert_eq!(
            err,
            ["security.sasl.username: is empty", "security.sasl.password_file: is required with SCRAM-SHA-512"]
        );
    }

    #[test]
    fn oauthbearer_is_refused_with_the_reason() {
        let err = check(r#"{"protocol": "sasl_ssl", "sasl": {"mechanism": "OAUTHBEARER"}}"#).unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(err[0].starts_with("security.sasl.mechanism: OAUTHBEARER is not supported by this build"), "{err:?}");
    }

    #[test]
    fn security_properties_are_reserved_tuning_is_not() {
        for key in ["security.protocol", "sasl.password", "sasl.jaas.config", "ssl.key.password", "ssl.ca.location"] {
            assert!(reserved_property(key).is_some(), "{key}");
        }
        for key in ["linger.ms", "ssl.endpoint.identification.algorithm", "ssl.cipher.suites", "client.id"] {
            assert!(reserved_property(key).is_none(), "{key}");
        }
    }
}
