use std::net::SocketAddr;

use musicrec_data::DataError;
use musicrec_models::ModelError;

/// Everything that can stop the service from starting or reloading.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("artifact set {dir} cannot be served: {reason}")]
    Artifacts { dir: String, reason: String },

    #[error(transparent)]
    Data(#[from] DataError),

    #[error(transparent)]
    Model(#[from] ModelError),

    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },

    #[error("service.redis_url `{url}`: {reason}")]
    Redis { url: String, reason: String },

    #[error("{what}: {reason}")]
    EventLog { what: String, reason: String },

    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
}

impl ServiceError {
    /// True when the error describes the user's input (artifacts, configuration, address)
    /// rather than the machine or the program.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Artifacts { .. } | Self::Bind { .. } | Self::Redis { .. } | Self::EventLog { .. } => true,
            Self::Data(e) => e.is_user_error(),
            Self::Model(e) => e.is_user_error(),
            Self::Serve(_) => false,
        }
    }
}
