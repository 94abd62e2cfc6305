use std::path::PathBuf;

use musicrec_data::DataError;
use musicrec_models::InvalidParameter;

/// Everything that can go wrong building the ranker's training set, training it, or saving and
/// loading it.
#[derive(Debug, thiserror::Error)]
pub enum RankingError {
    #[error(transparent)]
    InvalidParameter(#[from] InvalidParameter),

    #[error("ranking: nothing to train on: {reason}")]
    NothingToTrain { reason: String },

    #[error("ranking: the gradient-boosting library failed: {0}")]
    Gbdt(String),

    #[error("ranking: the model has features {model:?}, the data has {data:?}")]
    FeatureMismatch { model: Vec<String>, data: Vec<String> },

    #[error("{path}: not a valid ranker model file: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    #[error(transparent)]
    Data(#[from] DataError),
}

impl RankingError {
    /// True when the error describes the user's input (configuration, data) rather than the
    /// machine or the program.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::InvalidParameter(_) | Self::NothingToTrain { .. } => true,
            Self::Gbdt(_) | Self::FeatureMismatch { .. } | Self::Corrupt { .. } => false,
            Self::Data(e) => e.is_user_error(),
        }
    }
}
