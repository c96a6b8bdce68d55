//! One token request to the endpoint (driver): a connection per request (a refresh comes once
//! per token lifetime, so nothing is kept open), HTTP/1.1, TLS with rustls unless the endpoint
//! is plain HTTP on loopback (`TokenEndpoint::parse` allows nothing else).
//!
//! librdkafka asks for a token from whichever thread polls the client, which may be a thread of
//! the component's own tokio runtime (a `StreamConsumer`): [`fetch_blocking`] therefore runs the
//! request on a thread and runtime of its own, and waits for it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokentrail_config::kafka::OAuthClient;

use crate::token::{basic_auth, form_body, parse_answer, AnswerError, Token};

/// How long one request may take, connection and TLS handshake included. librdkafka asks
/// again 10 s after a failure.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// The largest answer read (a token response is a few KiB).
const MAX_ANSWER: usize = 256 * 1024;

/// Why no token came. Every message names the endpoint, never the secret or a token.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The endpoint answered, but with no token.
    #[error("token endpoint {url} {source}")]
    Answer {
        /// The endpoint.
        url: String,
        /// What it answered.
        #[source]
        source: AnswerError,
    },
    /// No answer: the connection, the TLS handshake or the HTTP exchange failed.
    #[error("token endpoint {url}: {reason}")]
    Exchange {
        /// The endpoint.
        url: String,
        /// What failed.
        reason: String,
    },
    /// No answer in time.
    #[error("token endpoint {url} did not answer within {}s", TIMEOUT.as_secs())]
    Timeout {
        /// The endpoint.
        url: String,
    },
}

impl FetchError {
    /// Whether it may pass by itself: no answer (a connection refused, a timeout) or an
    /// endpoint that is failing or busy (5xx, 429). A refusal (another 4xx) or a 2xx without a
    /// token is a setting to fix.
    pub fn passing(&self) -> bool {
        match self {
            FetchError::Exchange { .. } | FetchError::Timeout { .. } => true,
            FetchError::Answer { source: AnswerError::Refused { status, .. }, .. } => *status >= 500 || *status == 429,
            FetchError::Answer { source: AnswerError::NotAToken { .. }, .. } => false,
        }
    }
}

/// A token for `client`, fetched now on a thread of its own (see the module's comment).
pub fn fetch_blocking(client: &OAuthClient) -> Result<Token, FetchError> {
    let url = client.endpoint.url.clone();
    let exchange = |reason: String| FetchError::Exchange { url: url.clone(), reason };
    std::thread::scope(|scope| {
        let request = scope.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| exchange(format!("starting the request's runtime: {e}")))?;
            runtime.block_on(async {
                tokio::time::timeout(TIMEOUT, fetch(client))
                    .await
                    .map_err(|_| FetchError::Timeout { url: url.clone() })?
            })
        });
        request.join().map_err(|_| exchange("the request's thread panicked".into()))?
    })
}

/// A token for `client`: the client-credentials grant, its answer read.
#[allow(clippy::disallowed_methods)] // a driver: the answer's reading takes the time as an argument
pub async fn fetch(client: &OAuthClient) -> Result<Token, FetchError> {
    let url = &client.endpoint.url;
    let exchange = |reason: String| FetchError::Exchange { url: url.clone(), reason };
    let (status, body) = post(client).await.map_err(exchange)?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    parse_answer(status, &body, &client.client_id, now_ms)
        .map_err(|source| FetchError::Answer { url: url.clone(), source })
}

/// The POST, its status and body; or what failed, without the endpoint's name (the caller adds it).
async fn post(client: &OAuthClient) -> Result<(u16, Bytes), String> {
    let e = &client.endpoint;
    // The port only when it is not the scheme's own, as browsers and curl send it.
    let host = if e.host.contains(':') { format!("[{}]", e.host) } else { e.host.clone() };
    let host_header = if e.port == if e.https { 443 } else { 80 } { host } else { format!("{host}:{}", e.port) };
    let request = Request::post(e.path.as_str())
        .header(hyper::header::HOST, host_header)
        .header(hyper::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(hyper::header::ACCEPT, "application/json")
        .header(hyper::header::AUTHORIZATION, basic_auth(&client.client_id, &client.client_secret))
        .body(Full::new(Bytes::from(form_body(client.scope.as_deref()))))
        .map_err(|e| format!("the request: {e}"))?;
    let tcp = tokio::net::TcpStream::connect((e.host.as_str(), e.port))
        .await
        .map_err(|err| format!("connecting to {}:{}: {err}", e.host, e.port))?;
    let handshake = |err: hyper::Error| format!("HTTP: {err}");
    let response = if e.https {
        let (connector, name) = tls(&e.host, client.ca_file.as_deref())?;
        let stream = connector.connect(name, tcp).await.map_err(|err| format!("TLS handshake: {err}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(handshake)?;
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(handshake)?
    } else {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(handshake)?;
        tokio::spawn(connection);
        sender.send_request(request).await.map_err(handshake)?
    };
    let status = response.status().as_u16();
    let body = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|err| format!("reading the answer: {err}"))?
        .to_bytes();
    Ok((status, body))
}

/// The TLS client for `host`: its certificate must chain to `ca_file`, or to the system's CA
/// certificates without one.
fn tls(host: &str, ca_file: Option<&Path>) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>), String> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    match ca_file {
        Some(ca) => {
            let bad = |err: String| format!("ca_file {}: {err}", ca.display());
            for cert in CertificateDer::pem_file_iter(ca).map_err(|err| bad(err.to_string()))? {
                roots.add(cert.map_err(|err| bad(err.to_string()))?).map_err(|err| bad(err.to_string()))?;
            }
        }
        None => {
            // Unreadable certificates among the system's are skipped; none at all is an error.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err("no CA certificates found on this system: set the token endpoint's ca_file".into());
            }
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS: {err}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|err| format!("{host} is not a server name: {err}"))?;
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_settings_to_fix_and_no_answer_or_a_failing_endpoint_may_pass() {
        let url = "https://idp/token".to_string();
        let answer = |status| FetchError::Answer {
            url: url.clone(),
            source: AnswerError::Refused { status, detail: String::new() },
        };
        assert!(!answer(400).passing() && !answer(401).passing() && !answer(403).passing());
        assert!(answer(429).passing() && answer(500).passing() && answer(503).passing());
        let not_a_token = FetchError::Answer {
            url: url.clone(),
            source: AnswerError::NotAToken { status: 200, reason: "no access_token" },
        };
        assert!(!not_a_token.passing());
        assert!(FetchError::Timeout { url: url.clone() }.passing());
        let refused = FetchError::Exchange { url, reason: "connecting to idp:443: Connection refused".into() };
        assert!(refused.passing());
        assert_eq!(refused.to_string(), "token endpoint https://idp/token: connecting to idp:443: Connection refused");
    }
}
