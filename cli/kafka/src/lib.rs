//! What every Kafka client of the components (aggregator, correlator, standalone, replay, the
//! start-up check) shares: [`secure`] sets the `security` section on its `ClientConfig`, and
//! returns the [`Login`] its context holds.
//!
//! SASL/OAUTHBEARER is done here rather than by librdkafka: librdkafka's own OIDC
//! (`sasl.oauthbearer.method=oidc`) needs libcurl, which it is built without (root Cargo.toml).
//! Instead each client's context turns on rdkafka's token refresh callback
//! (`ClientContext::ENABLE_REFRESH_OAUTH_TOKEN`) and answers it with [`Login::token`], which
//! fetches a token with the OAuth 2.0 client-credentials grant ([`fetch`], [`token`]). librdkafka
//! calls it when a client is made and again at 80% of each token's lifetime, from the thread
//! that polls the client, so a client that would not otherwise be polled before its first
//! request is polled once first (the correlator's transactional producer and restore consumer).
//! A failed fetch becomes librdkafka's authentication error, "Failed to acquire SASL
//! OAUTHBEARER token: token endpoint ... answered 401 ...", which librdkafka retries every 10 s
//! and the start-up check reports: as a refused login, or as an unreachable endpoint when
//! [`Login::failing_for_now`] says the fetch may pass by itself.
//!
//! A context implements two items of `ClientContext`:
//!
//! ```ignore
//! const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;
//! fn generate_oauth_token(&self, _: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
//!     self.login.token()
//! }
//! ```
//!
//! With any other mechanism librdkafka never calls it. Clients that need no context of their
//! own use [`LoginContext`].

pub mod fetch;
pub mod reports;
pub mod token;

pub use reports::Reports;

use std::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rdkafka::client::OAuthToken;
use rdkafka::consumer::ConsumerContext;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use tokentrail_config::kafka::{KafkaSecurity, OAuthClient, SecretError};

/// Sets `security`'s librdkafka properties on `config` (its secrets read from their files now)
/// and returns the login the client's context must hold.
pub fn secure(config: &mut ClientConfig, security: &KafkaSecurity) -> Result<Login, SecretError> {
    let properties = security.client_properties()?;
    for (k, v) in properties.iter() {
        config.set(k, v);
    }
    let source = properties.oauth().map(|client| Source { client: client.clone(), passing: AtomicBool::new(false) });
    Ok(Login(source.map(Arc::new)))
}

/// How a client gets its OAUTHBEARER tokens: the OAuth client of the security section, or
/// nothing with another mechanism.
#[derive(Clone, Debug, Default)]
pub struct Login(Option<Arc<Source>>);

#[derive(Debug)]
struct Source {
    client: OAuthClient,
    /// The last fetch failed in a way that may pass by itself ([`fetch::FetchError::passing`]).
    passing: AtomicBool,
}

impl Login {
    /// Whether the last token fetch failed in a way that may pass by itself (no answer in time,
    /// a connection refused, a 5xx or 429): librdkafka reports it as an authentication failure
    /// all the same, but it is an unreachable endpoint, not a refused login.
    pub fn failing_for_now(&self) -> bool {
        self.0.as_ref().is_some_and(|s| s.passing.load(Ordering::Relaxed))
    }

    /// A fresh token, for `ClientContext::generate_oauth_token`. Its error is the reason
    /// librdkafka reports.
    pub fn token(&self) -> Result<OAuthToken, Box<dyn Error>> {
        let source = self
            .0
            .as_ref()
            .ok_or("librdkafka asked for an OAUTHBEARER token, but the security section has no OAUTHBEARER settings")?;
        let fetched = fetch::fetch_blocking(&source.client);
        source.passing.store(fetched.as_ref().is_err_and(fetch::FetchError::passing), Ordering::Relaxed);
        match fetched {
            Ok(token) => {
                tracing::debug!(
                    principal = token.principal,
                    expires_ms = token.expires_ms,
                    "OAUTHBEARER token fetched"
                );
                Ok(OAuthToken { token: token.value, principal_name: token.principal, lifetime_ms: token.expires_ms })
            }
            Err(e) => {
                tracing::warn!(error = %e, "OAUTHBEARER token");
                Err(e.into())
            }
        }
    }
}

/// The context of a client that needs no other: rdkafka's default behaviour (its log and error
/// reports to the `log` crate, no delivery callback), and [`Login`].
#[derive(Clone, Debug, Default)]
pub struct LoginContext(pub Login);

impl ClientContext for LoginContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(&self, _: Option<&str>) -> Result<OAuthToken, Box<dyn Error>> {
        self.0.token()
    }
}

impl ConsumerContext for LoginContext {}

impl ProducerContext for LoginContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}
