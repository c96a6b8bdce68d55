//! Errors of the aggregator, with whether retrying can help.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Problems found in the configuration, all at once.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

impl From<Vec<tokentrail_config::Problem>> for ConfigError {
    fn from(problems: Vec<tokentrail_config::Problem>) -> ConfigError {
        ConfigError(problems.iter().map(ToString::to_string).collect())
    }
}

/// Why the aggregator could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A Kafka client could not be created or a Kafka request failed.
    #[error("kafka: {context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// A produced record was not acknowledged: nothing after the last commit is committed, so a
    /// restart reads it again.
    #[error("delivery to {topic} failed: {source}")]
    Delivery {
        /// The topic written to.
        topic: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// A secret file of `kafka.security` could not be read when a client was made.
    #[error("kafka.security: {0}")]
    Secret(#[from] tokentrail_config::kafka::SecretError),
    /// The gRPC server could not listen or failed.
    #[error("grpc server")]
    Grpc(#[source] tonic::transport::Error),
    /// The in-process sink no longer accepts input (`tokentrail standalone` is stopping): the
    /// sender retries later, against the restarted process.
    #[error("{0} is closed")]
    Closed(&'static str),
    /// Listening socket or TLS files.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl AggregatorError {
    /// Whether running again (a restart, with back-off) can succeed without operator action.
    pub fn is_retryable(&self) -> bool {
        match self {
            AggregatorError::Config(_) | AggregatorError::Secret(_) => false,
            // Brokers come back, leaders move, sockets free up: a restart resumes from the last
            // committed offsets, which is exactly the at-least-once promise.
            AggregatorError::Kafka { source, .. } => {
                !matches!(source, KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_))
            }
            // A record the broker will never take (too large) fails the same way every time.
            AggregatorError::Delivery { source, .. } => {
                source.rdkafka_error_code() != Some(RDKafkaErrorCode::MessageSizeTooLarge)
            }
            AggregatorError::Grpc(_) | AggregatorError::Closed(_) => true,
            AggregatorError::Io { source, .. } => {
                !matches!(source.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied)
            }
        }
    }

    pub(crate) fn kafka(context: impl Into<String>) -> impl FnOnce(KafkaError) -> AggregatorError {
        let context = context.into();
        move |source| AggregatorError::Kafka { context, source }
    }
}
