use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum TrackingError {
    #[error("run record store {key}: {source}")]
    Store { key: String, source: StoreError },

    #[error("{key}: not a run record: {reason}")]
    BadRecord { key: String, reason: String },

    #[error("no run `{id}` in {dir}; `musicrec runs list --artifacts DIR` lists the run ids")]
    UnknownRun { id: String, dir: String },

    /// The tracking server could not be reached or did not answer in time.
    #[error("MLflow {call}: {reason}")]
    Unreachable { call: String, reason: String },

    /// The tracking server answered with an error.
    #[error("MLflow {call}: HTTP {status}: {message}")]
    Refused { call: String, status: u16, message: String },

    /// A `runs` flag whose value cannot be used.
    #[error("{flag} {value}: {reason}")]
    BadQuery { flag: &'static str, value: String, reason: String },

    #[error("MLflow artifact upload to {uri}: {reason}")]
    Artifact { uri: String, reason: String },
}

impl TrackingError {
    /// True when the server is gone (rather than refusing one request): later calls of the run
    /// would only wait for their timeouts, so the run stops sending.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    /// True when the error describes the user's input (an id that does not exist, a flag, a
    /// record in the user's artifacts that cannot be read, as a damaged artifact is).
    pub fn is_user_error(&self) -> bool {
        matches!(self, Self::UnknownRun { .. } | Self::BadQuery { .. } | Self::BadRecord { .. })
    }
}
