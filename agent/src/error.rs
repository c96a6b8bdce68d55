//! Errors of the agent, with whether retrying can help.

/// Why the agent could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The kubelet pods directory cannot be read at all.
    #[error(transparent)]
    Root(#[from] crate::scan::RootError),
    /// The token-read watch was asked for and cannot start.
    #[error("token-read watch: {0}")]
    TokenWatch(#[from] crate::token_watch::WatchError),
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Why one connection to the aggregator failed. The sender always retries; the variant tells
/// the logs whether retrying can help without a configuration change.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The aggregator URL does not parse.
    #[error("invalid aggregator endpoint: {0}")]
    BadEndpoint(String),
    /// TCP or HTTP/2 connection failed.
    #[error("cannot connect to the aggregator")]
    Connect(#[source] tonic::transport::Error),
    /// The stream was refused or broke.
    #[error("attestation stream broke")]
    Rpc(#[source] tonic::Status),
    /// TLS files unreadable or unusable.
    #[error("tls: {0}")]
    Tls(String),
    /// The agent's own bearer token file is unreadable or not a header value (the path only).
    #[error("cannot use bearer token file {0}")]
    BearerToken(String),
}

impl SendError {
    /// Whether the same request can succeed later without operator action.
    pub fn is_retryable(&self) -> bool {
        match self {
            SendError::BadEndpoint(_) => false,
            // Files may appear or be fixed by a Secret update without restarting the agent.
            SendError::Connect(_) | SendError::BearerToken(_) | SendError::Tls(_) => true,
            SendError::Rpc(s) => !matches!(
                s.code(),
                tonic::Code::Unauthenticated
                    | tonic::Code::PermissionDenied
                    | tonic::Code::InvalidArgument
                    | tonic::Code::Unimplemented
            ),
        }
    }
}
