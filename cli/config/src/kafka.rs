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
//! OAUTHBEARER (OAuth 2.0 client credentials, RFC 6749 §4.4) has no librdkafka properties
//! beyond the mechanism: the components fetch the token themselves (`tokentrail-kafka`), with
//! the [`OAuthClient`] that [`ClientProperties::oauth`] carries.
//!
//! ```json
//! "sasl": {"mechanism": "OAUTHBEARER", "token_endpoint": "https://idp.example/oauth2/token",
//!          "client_id": "tokentrail", "client_secret_file": "/etc/kafka/oauth/client-secret",
//!          "scope": "kafka"}
//! ```
//!
//! Secrets (a SASL password, a private key's password, an OAuth client secret) are only ever
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
    /// OAUTHBEARER: the OAuth 2.0 token endpoint of the identity provider
    /// (`https://HOST/PATH`; `http://` only on a loopback address, for tests).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// OAUTHBEARER: the client id (not a secret), sent with the secret as HTTP Basic
    /// authentication.
    #[serde(default)]
    pub client_id: Option<String>,
    /// OAUTHBEARER: a file holding the client secret (a mounted Secret's key).
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// OAUTHBEARER: the `scope` of the token request (space-separated); absent: none is sent,
    /// and the provider gives its default.
    #[serde(default)]
    pub scope: Option<String>,
    /// OAUTHBEARER: CA certificate(s) (PEM) the token endpoint's certificate must chain to (a
    /// private issuer); absent: the system's CA certificates.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
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
    /// Bearer tokens, fetched with the OAuth 2.0 client-credentials grant by the components
    /// themselves (librdkafka's own OIDC needs libcurl, which it is built without: root
    /// Cargo.toml).
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
            if sasl.mechanism == Mechanism::OAuthBearer {
                p.oauth = Some(sasl.oauth_client()?);
                return Ok(p);
            }
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
            self.oauth_problems(at, protocol, problems);
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
        let oauth = [
            ("token_endpoint", self.token_endpoint.is_some()),
            ("client_id", self.client_id.is_some()),
            ("client_secret_file", self.client_secret_file.is_some()),
            ("scope", self.scope.is_some()),
            ("ca_file", self.ca_file.is_some()),
        ];
        for (name, _) in oauth.iter().filter(|(_, set)| *set) {
            problems.push(Problem::new(key(name), format!("is for OAUTHBEARER, not {mechanism}")));
        }
        secret_file(&key("username_file"), self.username_file.as_deref(), problems);
        secret_file(&key("password_file"), self.password_file.as_deref(), problems);
    }

    fn oauth_problems(&self, at: &str, protocol: Protocol, problems: &mut Vec<Problem>) {
        let key = |k: &str| format!("{at}.{k}");
        let login = [
            ("username", self.username.is_some()),
            ("username_file", self.username_file.is_some()),
            ("password_file", self.password_file.is_some()),
        ];
        for (name, _) in login.iter().filter(|(_, set)| *set) {
            let message = "is not used with OAUTHBEARER (client_id and client_secret_file are)";
            problems.push(Problem::new(key(name), message));
        }
        match self.token_endpoint.as_deref().map(TokenEndpoint::parse) {
            None => problems.push(Problem::new(key("token_endpoint"), "is required with OAUTHBEARER")),
            Some(Err(e)) => problems.push(Problem::new(key("token_endpoint"), e)),
            Some(Ok(endpoint)) if !endpoint.https && self.ca_file.is_some() => {
                problems.push(Problem::new(key("ca_file"), "needs an https token_endpoint"));
            }
            Some(Ok(_)) => {}
        }
        match self.client_id.as_deref() {
            None => problems.push(Problem::new(key("client_id"), "is required with OAUTHBEARER")),
            Some(id) if id.trim().is_empty() => problems.push(Problem::new(key("client_id"), "is empty")),
            Some(_) => {}
        }
        if self.client_secret_file.is_none() {
            problems.push(Problem::new(key("client_secret_file"), "is required with OAUTHBEARER"));
        }
        if self.scope.as_deref().is_some_and(|s| s.trim().is_empty()) {
            problems.push(Problem::new(key("scope"), "is empty (leave it out for the provider's default)"));
        }
        if protocol == Protocol::SaslPlaintext {
            problems.push(Problem::new(
                key("mechanism"),
                "OAUTHBEARER sends its bearer token in clear: use protocol sasl_ssl",
            ));
        }
        secret_file(&key("client_secret_file"), self.client_secret_file.as_deref(), problems);
        readable(&key("ca_file"), self.ca_file.as_deref(), problems);
    }

    /// The OAuth client of an OAUTHBEARER section, its secret read now. The section's problems
    /// were reported before (`--check-config`, start-up): what is missing here is only named.
    fn oauth_client(&self) -> Result<OAuthClient, SecretError> {
        let missing = |what: &str| SecretError::Missing { what: what.to_string() };
        let file = self.client_secret_file.as_deref().ok_or_else(|| missing("client_secret_file"))?;
        let url = self.token_endpoint.as_deref().ok_or_else(|| missing("token_endpoint"))?;
        let endpoint = TokenEndpoint::parse(url).map_err(|_| missing("a valid token_endpoint"))?;
        Ok(OAuthClient {
            endpoint,
            client_id: self.client_id.clone().ok_or_else(|| missing("client_id"))?,
            client_secret: read_secret(file)?,
            scope: self.scope.clone(),
            ca_file: self.ca_file.clone(),
        })
    }
}

/// An OAuth 2.0 token endpoint, checked: `https://`, or `http://` on a loopback address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEndpoint {
    /// As written in the configuration (it names the endpoint in messages).
    pub url: String,
    /// `https`.
    pub https: bool,
    /// The host, without an IPv6 address's brackets.
    pub host: String,
    /// The port (443 or 80 when the URL has none).
    pub port: u16,
    /// The path and query (`/` when the URL has none).
    pub path: String,
}

impl TokenEndpoint {
    /// `url` checked, or what is wrong with it. Plain HTTP would send the client secret in
    /// clear: it is accepted only on this machine's loopback address (tests, a sidecar).
    pub fn parse(url: &str) -> Result<TokenEndpoint, String> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("{url} is not an https:// URL"));
        };
        let (authority, path) = rest.find(['/', '?']).map_or((rest, "/"), |i| rest.split_at(i));
        if authority.contains('@') {
            return Err(format!("{url}: credentials in the URL are not allowed (client_secret_file holds the secret)"));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(|| format!("{url}: unclosed [ in the host"))?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(format!("{url}: no host"));
        }
        let port = match port {
            None if https => 443,
            None => 80,
            Some(p) => p.parse::<u16>().ok().filter(|&p| p > 0).ok_or_else(|| format!("{url}: bad port {p:?}"))?,
        };
        if !https && !loopback(host) {
            return Err(format!(
                "{url}: the token endpoint must be https (http:// only on a loopback address: the client \
                 secret would cross the network in clear)"
            ));
        }
        let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
        if path.contains(|c: char| c.is_whitespace() || c.is_control() || c == '#') {
            return Err(format!("{url}: the path has spaces, control characters or a fragment"));
        }
        Ok(TokenEndpoint { url: url.to_string(), https, host: host.to_string(), port, path })
    }
}

/// `localhost` or a loopback IP address (127.0.0.0/8, ::1).
fn loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What an OAUTHBEARER client needs to fetch its tokens: the client-credentials grant's
/// endpoint, client and (read) secret. `Debug` shows the secret as `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthClient {
    /// Where tokens come from.
    pub endpoint: TokenEndpoint,
    /// The client id.
    pub client_id: String,
    /// The client secret (never printed).
    pub client_secret: String,
    /// The `scope` of the request, if any.
    pub scope: Option<String>,
    /// The CA of the endpoint's certificate; absent: the system's.
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("endpoint", &self.endpoint.url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("scope", &self.scope)
            .field("ca_file", &self.ca_file)
            .finish()
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
    /// A setting the secret goes with is missing (the section was not checked first).
    #[error("sasl: {what} is required with OAUTHBEARER")]
    Missing {
        /// The setting.
        what: String,
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

/// librdkafka properties, secrets among them: `Debug` shows the secrets as `[redacted]`. With
/// OAUTHBEARER, also the OAuth client the clients' contexts fetch their tokens with.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientProperties {
    entries: Vec<(&'static str, String, bool)>,
    oauth: Option<OAuthClient>,
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

    /// With `sasl.mechanism` OAUTHBEARER: where and as whom the clients get their tokens.
    pub fn oauth(&self) -> Option<&OAuthClient> {
        self.oauth.as_ref()
    }
}

impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (k, v, secret) in &self.entries {
            map.entry(k, if *secret { &"[redacted]" } else { v });
        }
        if let Some(oauth) = &self.oauth {
            map.entry(&"oauth", oauth);
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
    fn oauthbearer_becomes_the_mechanism_and_an_oauth_client_with_its_secret_read_and_redacted() {
        let f = Files::new();
        let s = check(&f.json(
            r#"{"protocol": "sasl_ssl", "sasl": {"mechanism": "OAUTHBEARER",
                "token_endpoint": "https://idp.example:8443/oauth2/token?tenant=a", "client_id": "tokentrail",
                "client_secret_file": "@password", "scope": "kafka read", "ca_file": "@ca.crt"}}"#,
        ))
        .unwrap();
        let p = s.client_properties().unwrap();
        assert_eq!(p.get("sasl.mechanism"), Some("OAUTHBEARER"));
        // librdkafka gets no user name, password or OIDC settings: the token comes from our callback.
        assert_eq!(
            (p.get("sasl.username"), p.get("sasl.password"), p.get("sasl.oauthbearer.method")),
            (None, None, None)
        );
        let oauth = p.oauth().unwrap();
        assert_eq!(oauth.client_secret, "s3cret");
        assert_eq!(oauth.client_id, "tokentrail");
        assert_eq!(oauth.scope.as_deref(), Some("kafka read"));
        let e = &oauth.endpoint;
        assert_eq!(
            (e.https, e.host.as_str(), e.port, e.path.as_str()),
            (true, "idp.example", 8443, "/oauth2/token?tenant=a")
        );
        for shown in [format!("{p:?}"), format!("{oauth:?}")] {
            assert!(!shown.contains("s3cret") && shown.contains("[redacted]"), "{shown}");
        }
        // Other mechanisms carry no OAuth client.
        let scram = check(&f.json(
            r#"{"protocol": "sasl_ssl", "sasl": {"mechanism": "SCRAM-SHA-256", "username": "u", "password_file": "@password"}}"#,
        ))
        .unwrap();
        assert!(scram.client_properties().unwrap().oauth().is_none());
    }

    #[test]
    fn oauthbearer_problems_are_named_by_key() {
        let f = Files::new();
        let err = check(r#"{"protocol": "sasl_ssl", "sasl": {"mechanism": "OAUTHBEARER"}}"#).unwrap_err();
        assert_eq!(
            err,
            [
                "security.sasl.token_endpoint: is required with OAUTHBEARER",
                "security.sasl.client_id: is required with OAUTHBEARER",
                "security.sasl.client_secret_file: is required with OAUTHBEARER",
            ]
        );
        let err = check(&f.json(
            r#"{"protocol": "sasl_plaintext", "sasl": {"mechanism": "OAUTHBEARER", "username": "u",
                "token_endpoint": "http://idp.example/token", "client_id": " ", "client_secret_file": "@missing",
                "scope": "", "ca_file": "@ca.crt"}}"#,
        ))
        .unwrap_err();
        let missing = f.path("missing");
        assert_eq!(
            err,
            [
                "security.sasl.username: is not used with OAUTHBEARER (client_id and client_secret_file are)".to_string(),
                "security.sasl.token_endpoint: http://idp.example/token: the token endpoint must be https (http:// only \
                 on a loopback address: the client secret would cross the network in clear)"
                    .to_string(),
                "security.sasl.client_id: is empty".to_string(),
                "security.sasl.scope: is empty (leave it out for the provider's default)".to_string(),
                "security.sasl.mechanism: OAUTHBEARER sends its bearer token in clear: use protocol sasl_ssl".to_string(),
                format!("security.sasl.client_secret_file: cannot read {missing}: No such file or directory (os error 2)"),
            ]
        );
        // The OAuth keys belong to OAUTHBEARER only.
        let err = check(&f.json(
            r#"{"protocol": "sasl_ssl", "sasl": {"mechanism": "SCRAM-SHA-512", "username": "u",
                "password_file": "@password", "token_endpoint": "https://idp.example/token"}}"#,
        ))
        .unwrap_err();
        assert_eq!(err, ["security.sasl.token_endpoint: is for OAUTHBEARER, not SCRAM-SHA-512"]);
        // A CA file for a plain-HTTP (loopback) endpoint is a mistake.
        let err = check(&f.json(
            r#"{"protocol": "sasl_ssl", "sasl": {"mechanism": "OAUTHBEARER", "token_endpoint": "http://127.0.0.1:8080/t",
                "client_id": "c", "client_secret_file": "@password", "ca_file": "@ca.crt"}}"#,
        ))
        .unwrap_err();
        assert_eq!(err, ["security.sasl.ca_file: needs an https token_endpoint"]);
    }

    #[test]
    fn token_endpoints_are_https_or_http_on_loopback() {
        let ok = |url: &str| TokenEndpoint::parse(url).unwrap();
        let e = ok("https://login.example.com/tenant/oauth2/v2.0/token");
        assert_eq!(
            (e.https, e.host.as_str(), e.port, e.path.as_str()),
            (true, "login.example.com", 443, "/tenant/oauth2/v2.0/token")
        );
        let e = ok("http://127.0.0.1:40123/token");
        assert_eq!((e.https, e.host.as_str(), e.port, e.path.as_str()), (false, "127.0.0.1", 40123, "/token"));
        let e = ok("http://[::1]:8080");
        assert_eq!((e.host.as_str(), e.port, e.path.as_str()), ("::1", 8080, "/"));
        assert_eq!(ok("http://localhost/t").port, 80);
        assert_eq!(ok("http://127.8.9.10/t").host, "127.8.9.10");
        for (url, why) in [
            ("ftp://idp/token", "is not an https:// URL"),
            ("idp.example/token", "is not an https:// URL"),
            ("http://10.0.0.1/token", "must be https"),
            ("http://localhost.evil.example/token", "must be https"),
            ("https:///token", "no host"),
            ("https://idp:0/token", "bad port"),
            ("https://idp:99999/token", "bad port"),
            ("https://user:pw@idp/token", "credentials in the URL"),
            ("https://idp/to ken", "spaces"),
            ("https://[::1/token", "unclosed"),
        ] {
            let err = TokenEndpoint::parse(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
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
