//! Where agents' tokens are checked (driver around the pure [`crate::token`]): the issuer's
//! keys from a JWKS file, or the apiserver's TokenReview API with a short cache.
//!
//! The clock is read here and passed in. Tokens are never logged or stored: the TokenReview
//! cache is keyed by the token's SHA-256.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use sha2::{Digest, Sha256};

use crate::config::{AgentTokenConfig, TokenReviewConfig};
use crate::error::AggregatorError;
use crate::token::{self, AgentIdentity, Expected, KeySet, Review, TokenRefusal};

/// A JWKS file is re-read for an unknown key at most this often (a flood of tokens with made-up
/// key ids must not become a flood of file reads).
const JWKS_REREAD_INTERVAL: Duration = Duration::from_secs(10);

/// TokenReview answers remembered at most; beyond, the cache starts over.
const MAX_CACHED_REVIEWS: usize = 10_000;

/// Why a token could not be checked at all (not a refusal of the token).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The TokenReview request failed (apiserver unreachable, forbidden, ...).
    #[error("token review failed")]
    Review(#[source] kube::Error),
}

/// Verifies agents' tokens.
pub struct Authenticator {
    expected: Expected,
    source: Source,
}

enum Source {
    Jwks { path: PathBuf, keys: Mutex<(KeySet, Instant)> },
    Review { client: kube::Client, cache_ttl: Duration, cache: Mutex<HashMap<[u8; 32], Cached>> },
}

#[derive(Clone)]
struct Cached {
    answer: Result<AgentIdentity, TokenRefusal>,
    until: Instant,
}

impl Authenticator {
    /// Reads the JWKS file or builds the TokenReview client.
    pub async fn new(config: &AgentTokenConfig) -> Result<Authenticator, AggregatorError> {
        let expected = Expected {
            issuer: config.issuer.clone().filter(|_| config.jwks_file.is_some()),
            audience: config.audience.clone(),
            serviceaccount: config.serviceaccount.clone(),
            leeway_secs: i64::try_from(config.leeway.as_secs()).unwrap_or(i64::MAX),
        };
        let source = match (&config.jwks_file, &config.token_review) {
            (Some(path), _) => {
                Source::Jwks { path: path.clone(), keys: Mutex::new((read_jwks(path)?, Instant::now())) }
            }
            (None, Some(review)) => Source::Review {
                client: review_client(review).await?,
                cache_ttl: review.cache_ttl,
                cache: Mutex::new(HashMap::new()),
            },
            (None, None) => {
                return Err(crate::error::ConfigError(vec!["grpc.agent_token has no key source".into()]).into())
            }
        };
        Ok(Authenticator { expected, source })
    }

    /// The identity `bearer` (the token, without `Bearer `) proves, or why it proves none.
    pub async fn check(&self, bearer: &str) -> Result<Result<AgentIdentity, TokenRefusal>, CheckError> {
        let now = unix_now();
        match &self.source {
            Source::Jwks { path, keys } => {
                let current = lock(keys).0.clone();
                let answer = token::verify(bearer, &current, &self.expected, now);
                if answer != Err(TokenRefusal::UnknownKey) {
                    return Ok(answer);
                }
                // The issuer may have rotated its keys since the file was read.
                let reread = {
                    let mut k = lock(keys);
                    if k.1.elapsed() < JWKS_REREAD_INTERVAL {
                        None
                    } else {
                        k.1 = Instant::now();
                        match read_jwks(path) {
                            Ok(fresh) => {
                                k.0 = fresh.clone();
                                Some(fresh)
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "keeping the previous key set");
                                None
                            }
                        }
                    }
                };
                Ok(match reread {
                    Some(keys) => token::verify(bearer, &keys, &self.expected, now),
                    None => answer,
                })
            }
            Source::Review { client, cache_ttl, cache } => {
                let key: [u8; 32] = Sha256::digest(bearer.as_bytes()).into();
                if let Some(hit) = lock(cache).get(&key).filter(|c| c.until > Instant::now()) {
                    // An identity outlives neither its token nor the cache entry.
                    return Ok(hit.answer.clone().and_then(|id| still_valid(id, now, self.expected.leeway_secs)));
                }
                let answer = self.review(client, bearer, now).await?;
                let mut cache = lock(cache);
                if cache.len() >= MAX_CACHED_REVIEWS {
                    cache.clear();
                }
                cache.insert(key, Cached { answer: answer.clone(), until: Instant::now() + *cache_ttl });
                Ok(answer)
            }
        }
    }

    async fn review(
        &self,
        client: &kube::Client,
        bearer: &str,
        now: i64,
    ) -> Result<Result<AgentIdentity, TokenRefusal>, CheckError> {
        // Read the claims first: a token that is not even a JWT costs no apiserver request.
        let claims = match token::decode_unverified(bearer) {
            Ok((claims, ..)) => claims,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let request = TokenReview {
            spec: TokenReviewSpec {
                token: Some(bearer.to_string()),
                audiences: Some(vec![self.expected.audience.clone()]),
            },
            ..Default::default()
        };
        let api: kube::Api<TokenReview> = kube::Api::all(client.clone());
        let answer = api.create(&PostParams::default(), &request).await.map_err(CheckError::Review)?;
        let status = answer.status.unwrap_or_default();
        let user = status.user.unwrap_or_default();
        let node_name =
            user.extra.as_ref().and_then(|e| e.get(token::NODE_NAME_EXTRA)).and_then(|v| v.first()).map(String::as_str);
        let audiences = status.audiences.unwrap_or_default();
        let review = Review {
            authenticated: status.authenticated.unwrap_or(false),
            username: user.username.as_deref(),
            audiences: &audiences,
            node_name,
        };
        Ok(token::from_review(&review, &claims, &self.expected)
            .and_then(|id| still_valid(id, now, self.expected.leeway_secs)))
    }
}

fn still_valid(id: AgentIdentity, now: i64, leeway: i64) -> Result<AgentIdentity, TokenRefusal> {
    if now > id.expires_at.saturating_add(leeway) {
        Err(TokenRefusal::Expired)
    } else {
        Ok(id)
    }
}

fn read_jwks(path: &PathBuf) -> Result<KeySet, AggregatorError> {
    let bytes = std::fs::read(path)
        .map_err(|source| AggregatorError::Io { context: format!("reading {}", path.display()), source })?;
    KeySet::from_jwks(&bytes).map_err(|e| {
        let cause = std::error::Error::source(&e).map(|c| format!(": {c}")).unwrap_or_default();
        crate::error::ConfigError(vec![format!("{}: {e}{cause}", path.display())]).into()
    })
}

async fn review_client(config: &TokenReviewConfig) -> Result<kube::Client, AggregatorError> {
    crate::kube_client::client(config.kubeconfig.as_deref())
        .await
        .map_err(|e| crate::error::ConfigError(vec![format!("token_review: {e}")]).into())
}

/// Seconds since the epoch, for [`crate::token`] (which takes the time as an argument).
#[allow(clippy::disallowed_methods)] // a driver: the cores take time as an argument
pub(crate) fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
