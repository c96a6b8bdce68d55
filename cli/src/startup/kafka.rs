//! One connection to the Kafka brokers before a component starts its own clients, with the
//! component's settings: a TLS handshake or a login the brokers refuse ends the process at once
//! with librdkafka's reason and [`super::exit::KAFKA_REFUSED`], and brokers that do not answer
//! end it with their reason and [`super::exit::TEMPFAIL`]. Without it librdkafka retries such
//! connections for ever, and the component's first request fails much later with a timeout
//! that names no cause.
//!
//! librdkafka reports why a connection failed only to the client's error and log callbacks
//! (a refused login to both, a failed TLS handshake only to the log): the [`Recorder`] context
//! keeps those reports while a metadata request is retried. With OAUTHBEARER it also fetches the
//! token (`tokentrail_kafka::Login`): a token endpoint that refuses the client is a refused login,
//! reported with the endpoint's answer.

use std::error::Error;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::OAuthToken;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use tokentrail_config::kafka::{KafkaSecurity, SecretError};
use tokentrail_kafka::Login;

/// How long the brokers have to answer at start-up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the brokers could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// A secret file of the security section gave no secret.
    #[error("kafka security: {0}")]
    Secret(#[from] SecretError),
    /// librdkafka refused the settings themselves.
    #[error("kafka: the client settings are refused: {0}")]
    Client(#[source] KafkaError),
    /// The brokers refused the connection's security: the TLS handshake (an untrusted CA, a
    /// certificate for another name, a client certificate they do not trust) or the SASL login
    /// (wrong user or password, a mechanism they do not offer).
    #[error("kafka: connecting to {bootstrap} failed the TLS handshake or the login: {reason}")]
    Refused {
        /// `bootstrap.servers`.
        bootstrap: String,
        /// librdkafka's report.
        reason: String,
    },
    /// No broker answered in time (none listening, a network in between, a broker starting).
    #[error(
        "kafka: no broker at {bootstrap} answered within {}s (is it the address of a listener of \
         this security protocol?): {reason}",
        timeout.as_secs()
    )]
    Unreachable {
        /// `bootstrap.servers`.
        bootstrap: String,
        /// How long it waited.
        timeout: Duration,
        /// librdkafka's last report, or the metadata request's error.
        reason: String,
    },
}

/// Connects to `bootstrap` with `security` and asks for the cluster's metadata, for at most
/// `timeout`; returns early when the brokers refuse the connection's security.
pub fn check_connection(bootstrap: &str, security: &KafkaSecurity, timeout: Duration) -> Result<(), ConnectError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    let login = tokentrail_kafka::secure(&mut config, security)?;
    let client: BaseProducer<Recorder> =
        config.create_with_context(Recorder { login, ..Recorder::default() }).map_err(ConnectError::Client)?;
    // An OAUTHBEARER client connects only once it has a token, which librdkafka asks for
    // through a poll: 100 ms of events first (a poll of 0 serves only one).
    client.poll(Duration::from_millis(100));
    let deadline = Instant::now() + timeout;
    loop {
        let slice = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
        let result = client.client().fetch_metadata(None, slice);
        // Serves the error callbacks of what happened meanwhile.
        client.poll(Duration::ZERO);
        let last_error = match result {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if let Some(reason) = client.context().refusal() {
            return Err(ConnectError::Refused { bootstrap: bootstrap.into(), reason });
        }
        if Instant::now() >= deadline {
            let reason = client.context().last().unwrap_or_else(|| last_error.to_string());
            return Err(ConnectError::Unreachable { bootstrap: bootstrap.into(), timeout, reason });
        }
    }
}

/// Keeps librdkafka's error reports of one client.
#[derive(Default)]
struct Recorder {
    /// The first report of refused security, and the last report of any kind.
    reports: Mutex<(Option<String>, Option<String>)>,
    /// OAUTHBEARER tokens.
    login: Login,
}

impl Recorder {
    fn refusal(&self) -> Option<String> {
        self.reports.lock().ok().and_then(|r| r.0.clone())
    }

    fn last(&self) -> Option<String> {
        self.reports.lock().ok().and_then(|r| r.1.clone())
    }
}

/// Whether librdkafka's report says the brokers refused the connection's security rather than
/// that they could not be reached.
fn is_refusal(error: &KafkaError, reason: &str) -> bool {
    use RDKafkaErrorCode as C;
    let code = error.rdkafka_error_code();
    matches!(
        code,
        Some(
            C::SSL
                | C::Authentication
                | C::SaslAuthenticationFailed
                | C::UnsupportedSASLMechanism
                | C::IllegalSASLState
                | C::ClusterAuthorizationFailed
        )
    ) ||
    // A plaintext client at a TLS listener (or the other way round) sees a closed connection,
    // and librdkafka says what it may be.
    reason.contains("security.protocol")
}

impl Recorder {
    fn record(&self, refused: bool, reason: &str) {
        if let Ok(mut reports) = self.reports.lock() {
            if refused && reports.0.is_none() {
                reports.0 = Some(reason.to_string());
            }
            // "1/1 brokers are down" says less than the report of why, which came first.
            if reports.1.is_none() || !reason.contains("brokers are down") {
                reports.1 = Some(reason.to_string());
            }
        }
    }
}

impl ClientContext for Recorder {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
        self.login.token()
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "kafka connection check");
        // librdkafka reports every failed OAUTHBEARER token fetch as an authentication failure;
        // a token endpoint that did not answer (or failed, 5xx) is unreachable, not a refusal.
        let unreachable_issuer = reason.contains("OAUTHBEARER token") && self.login.failing_for_now();
        self.record(is_refusal(&error, reason) && !unreachable_issuer, reason);
    }

    /// A failed TLS handshake reaches only the log (librdkafka's `FAIL` lines), not the error
    /// callback.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(?level, fac, message, "kafka connection check: librdkafka");
        use RDKafkaLogLevel as L;
        if matches!(level, L::Emerg | L::Alert | L::Critical | L::Error | L::Warning) {
            // Our handshake refused the broker's certificate, or the broker refused ours (an
            // alert, seen when the first request is read).
            let tls = ["SSL handshake failed", "SSL alert", "certificate verify failed"];
            self.record(tls.iter().any(|t| message.contains(t)), message);
        }
    }
}

impl ProducerContext for Recorder {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}
