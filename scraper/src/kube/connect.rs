//! The client: built from `[kubernetes]` by the usual kubeconfig rules.

use std::path::PathBuf;

use ::kube::Client;
use ::kube::config::{KubeConfigOptions, Kubeconfig};

use super::KubernetesConfig;

/// Why the cluster cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The kubeconfig could not be read.
    #[error("cannot read kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: ::kube::config::KubeconfigError,
    },
    /// No usable configuration was found.
    #[error("cannot configure the Kubernetes client: {0}")]
    Config(String),
    /// The client could not be built.
    #[error("cannot build the Kubernetes client: {0}")]
    Client(#[from] ::kube::Error),
}

/// Builds a client from `[kubernetes]`.
pub async fn connect(config: &KubernetesConfig) -> Result<Client, ConnectError> {
    let options = KubeConfigOptions {
        context: config.context.clone(),
        ..KubeConfigOptions::default()
    };
    let client_config = match &config.kubeconfig {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|source| ConnectError::Kubeconfig {
                    path: path.clone(),
                    source,
                })?;
            ::kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| ConnectError::Config(e.to_string()))?
        }
        None if config.context.is_some() => ::kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| ConnectError::Config(e.to_string()))?,
        None => ::kube::Config::infer()
            .await
            .map_err(|e| ConnectError::Config(e.to_string()))?,
    };
    Ok(Client::try_from(client_config)?)
}
