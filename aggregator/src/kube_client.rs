//! The Kubernetes API client of the TokenReview check and the inventory feed: from a kubeconfig
//! file when one is configured, else inferred (the pod's account, or `$KUBECONFIG`).

use std::path::{Path, PathBuf};

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum KubeClientError {
    /// The configured kubeconfig is unreadable or unusable.
    #[error("{}: {source}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// kube-rs's error.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No kubeconfig configured, and none found in the environment.
    #[error("no Kubernetes credentials ({0}): run in a pod with a service account, or name a kubeconfig")]
    Infer(#[source] kube::config::InferConfigError),
    /// The client could not be built from a usable configuration.
    #[error("kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

/// A client from `kubeconfig` (its current context), else the inferred configuration.
pub async fn client(kubeconfig: Option<&Path>) -> Result<kube::Client, KubeClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let bad = |source| KubeClientError::Kubeconfig { path: path.to_path_buf(), source };
            let file = kube::config::Kubeconfig::read_from(path).map_err(bad)?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(bad)?
        }
        None => kube::Config::infer().await.map_err(KubeClientError::Infer)?,
    };
    kube::Client::try_from(config).map_err(KubeClientError::Client)
}
