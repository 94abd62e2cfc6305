/// Everything that can stop a load test before it has a report.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    #[error("load test of {addr}: {reason}")]
    Target { addr: String, reason: String },

    #[error("cannot start the load generator's runtime: {0}")]
    Runtime(std::io::Error),

    #[error("a connection task of the load generator failed: {0}")]
    Connection(tokio::task::JoinError),
}

impl LoadtestError {
    /// True when the error describes the user's input (the service's address, the artifacts
    /// to draw users from) rather than the machine or the program.
    pub fn is_user_error(&self) -> bool {
        matches!(self, Self::Target { .. })
    }
}
