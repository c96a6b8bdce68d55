//! Where `tokentrail replay` sends records: the audit webhook of an aggregator or of
//! `tokentrail standalone` (HTTP POSTs, as the apiserver's webhook backend makes them), or a raw
//! audit topic (one Kafka record each, as a log shipper writes them).
//!
//! Both wait for the receiver to take each record before the next is read: the webhook's answer,
//! the broker's acknowledgement. A receiver that is busy (503, 429, a connection refused or
//! dropped) is asked again with back-off, as the apiserver does; one that refuses a record
//! (413, 400) is reported and the replay goes on.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokentrail_config::kafka::KafkaSecurity;
use tokentrail_kafka::LoginContext;

/// Attempts for one record while the receiver is busy or away, about a minute in all.
const ATTEMPTS: u32 = 8;

/// Why a record was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The receiver answered, and refused it.
    #[error("refused with {status}: {reason}")]
    Refused {
        /// The HTTP status.
        status: StatusCode,
        /// The receiver's explanation (its answer's body, shortened).
        reason: String,
    },
    /// The receiver stayed busy or away through every attempt.
    #[error("not taken after {ATTEMPTS} attempts: {0}")]
    Unavailable(String),
    /// The broker did not acknowledge it.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// A setting of the target that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The webhook URL.
    #[error("--to-webhook {url}: {reason}")]
    Url {
        /// As given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A certificate or key file.
    #[error("{}: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The Kafka client.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The Kafka security settings.
    #[error("kafka security: {0}")]
    Secret(#[from] tokentrail_config::kafka::SecretError),
}

/// The TLS files of the webhook connection.
#[derive(Debug, Default)]
pub struct WebhookTls {
    /// CA (PEM) of the server's certificate.
    pub ca: Option<PathBuf>,
    /// Client certificate chain and key (PEM), for a webhook that requires one.
    pub client: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must carry; absent: the URL's host.
    pub server_name: Option<String>,
}

/// Where records go.
pub enum Target {
    /// An audit webhook endpoint.
    Webhook(Webhook),
    /// A raw audit topic.
    Kafka {
        /// The producer.
        producer: FutureProducer<LoginContext>,
        /// The topic.
        topic: String,
        /// The `cluster` header put on every record, for topics the aggregator does not map.
        cluster: Option<String>,
    },
}

impl Target {
    /// A producer to `topic` on `bootstrap` with `security`.
    pub fn kafka(
        bootstrap: &str,
        security: &KafkaSecurity,
        topic: String,
        cluster: Option<String>,
    ) -> Result<Target, TargetError> {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap).set("linger.ms", "20").set("message.timeout.ms", "60000");
        let login = tokentrail_kafka::secure(&mut config, security)?;
        Ok(Target::Kafka { producer: config.create_with_context(LoginContext(login))?, topic, cluster })
    }

    /// Delivers one record, asking again while the receiver is busy.
    pub async fn send(&mut self, record: Vec<u8>) -> Result<(), SendError> {
        match self {
            Target::Webhook(webhook) => webhook.post(Bytes::from(record)).await,
            Target::Kafka { producer, topic, cluster } => {
                let headers = cluster.as_deref().map(|c| {
                    OwnedHeaders::new()
                        .insert(Header { key: tokentrail_aggregator::source::CLUSTER_HEADER, value: Some(c) })
                });
                let mut message = FutureRecord::<(), [u8]>::to(topic).payload(&record);
                if let Some(headers) = headers {
                    message = message.headers(headers);
                }
                producer.send(message, Duration::from_secs(60)).await.map_err(|(e, _)| e)?;
                Ok(())
            }
        }
    }
}

/// An HTTP/1.1 connection to a webhook, kept open across records and made again when lost.
pub struct Webhook {
    uri: Uri,
    host: String,
    port: u16,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl Webhook {
    /// A webhook at `url` (`https://HOST:PORT/PATH` or `http://...` for a plaintext trial).
    pub fn new(url: &str, tls: &WebhookTls) -> Result<Webhook, TargetError> {
        let bad = |reason: &str| TargetError::Url { url: url.to_string(), reason: reason.to_string() };
        let uri: Uri = url.parse().map_err(|_| bad("not a URL"))?;
        let host = uri.host().ok_or_else(|| bad("no host"))?.trim_matches(['[', ']']).to_string();
        let secure = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("the scheme must be https (or http for a plaintext trial)")),
        };
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tls = if secure { Some(connector(&host, tls)?) } else { None };
        Ok(Webhook { uri, host, port, tls, connection: None })
    }

    async fn post(&mut self, body: Bytes) -> Result<(), SendError> {
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                // 0.25, 0.5, 1, 2, 4, 8, 16 s.
                tokio::time::sleep(Duration::from_millis(250 << (attempt - 1))).await;
            }
            match self.post_once(body.clone()).await {
                Ok((status, _)) if status.is_success() => return Ok(()),
                Ok((status, reason))
                    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS =>
                {
                    last = format!("{status}: {reason}");
                }
                Ok((status, reason)) => return Err(SendError::Refused { status, reason }),
                Err(e) => {
                    self.connection = None;
                    last = e;
                }
            }
        }
        Err(SendError::Unavailable(last))
    }

    /// One POST: the status and the answer's body (shortened), or why there was no answer.
    async fn post_once(&mut self, body: Bytes) -> Result<(StatusCode, String), String> {
        if self.connection.as_ref().is_none_or(|c| c.is_closed()) {
            self.connection = Some(self.connect().await?);
        }
        let Some(connection) = self.connection.as_mut() else { return Err("not connected".into()) };
        connection.ready().await.map_err(|e| e.to_string())?;
        let request = Request::post(self.uri.clone())
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = connection.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let reason: String = String::from_utf8_lossy(&text).trim().chars().take(300).collect();
        Ok((status, reason))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("connecting to {}:{}: {e}", self.host, self.port))?;
        let handshake = |e: hyper::Error| format!("HTTP handshake: {e}");
        let sender = match &self.tls {
            Some((connector, name)) => {
                let stream = connector.connect(name.clone(), tcp).await.map_err(|e| format!("TLS handshake: {e}"))?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(handshake)?;
                tokio::spawn(connection);
                sender
            }
            None => {
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(handshake)?;
                tokio::spawn(connection);
                sender
            }
        };
        Ok(sender)
    }
}

/// The TLS client of a webhook on `host`.
fn connector(host: &str, tls: &WebhookTls) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>), TargetError> {
    let pem = |path: &Path, reason: String| TargetError::Pem { path: path.to_path_buf(), reason };
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    if let Some(ca) = &tls.ca {
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| pem(ca, e.to_string()))? {
            roots.add(cert.map_err(|e| pem(ca, e.to_string()))?).map_err(|e| pem(ca, e.to_string()))?;
        }
    } else {
        return Err(TargetError::Url {
            url: host.to_string(),
            reason: "https needs --webhook-ca, the CA of the server's certificate".to_string(),
        });
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TargetError::Url { url: host.to_string(), reason: e.to_string() })?
        .with_root_certificates(roots);
    let config = match &tls.client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| pem(cert, e.to_string()))?;
            let private = PrivateKeyDer::from_pem_file(key).map_err(|e| pem(key, e.to_string()))?;
            builder.with_client_auth_cert(chain, private).map_err(|e| pem(cert, e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    let name = tls.server_name.clone().unwrap_or_else(|| host.to_string());
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| TargetError::Url { url: name, reason: format!("not a server name: {e}") })?;
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), server_name))
}
