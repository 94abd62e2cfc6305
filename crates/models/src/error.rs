use std::path::{Path, PathBuf};

use musicrec_data::DataError;

use crate::params::InvalidParameter;

/// Everything that can go wrong fitting, using, saving or loading a model.
///
/// All but `Io`, `Corrupt` and some `Data` errors describe the user's input (configuration or
/// data): the CLI maps them to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    InvalidParameter(#[from] InvalidParameter),

    #[error("{model}: nothing to train on: {reason}")]
    NothingToTrain { model: &'static str, reason: String },

    #[error(
        "{model}: the training matrix has {count} value(s) that are not finite and positive (e.g. {example}); listen counts must be > 0"
    )]
    BadTrainingValues { model: &'static str, count: usize, example: f32 },

    #[error("{model}: training failed: {reason}")]
    TrainingFailed { model: &'static str, reason: String },

    #[error("{model}: {what} is {found_rows} x {found_cols}, the model was trained on {rows} x {cols}")]
    ShapeMismatch {
        model: &'static str,
        what: &'static str,
        rows: usize,
        cols: usize,
        found_rows: usize,
        found_cols: usize,
    },

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}: not a valid model file: {reason}")]
    Corrupt { path: PathBuf, reason: String },

    #[error(transparent)]
    Data(#[from] DataError),
}

impl ModelError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }

    pub fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        Self::Corrupt { path: path.to_path_buf(), reason: reason.into() }
    }

    /// True when the error describes the user's input rather than the machine or the program.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::InvalidParameter(_)
            | Self::NothingToTrain { .. }
            | Self::BadTrainingValues { .. }
            | Self::TrainingFailed { .. }
            | Self::ShapeMismatch { .. }
            // A damaged model file is in the artifacts the user pointed at (`serve`, a rerun),
            // as a damaged parquet file is.
            | Self::Corrupt { .. } => true,
            Self::Io { .. } => false,
            Self::Data(e) => e.is_user_error(),
        }
    }
}
