use std::path::{Path, PathBuf};

use musicrec_data::DataError;

/// Everything that can go wrong bringing outside data in. All but `Io` describe the user's
/// input (the CLI exits with code 2); each names the file and, where one is involved, the
/// line or row and the column.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Data(#[from] DataError),

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{source_dir}: not a {format} data set: expected {expected} (found: {found})")]
    Layout { source_dir: String, format: &'static str, expected: String, found: String },

    #[error("{file}: line {line}: {reason}")]
    Line { file: String, line: u64, reason: String },

    #[error("{file}: line {line}, column `{column}`: `{value}` is not {expected}")]
    BadField { file: String, line: u64, column: String, value: String, expected: String },

    #[error("{file}: missing column `{column}` (columns present: {present})")]
    MissingColumn { file: String, column: String, present: String },

    #[error("{file}: column `{column}` has type {found}, expected {expected}")]
    WrongType { file: String, column: String, found: String, expected: String },

    #[error(
        "{file}: column `{column}` has {rows} null value(s) (the first at row {first_row}); {what} must not be null"
    )]
    Nulls { file: String, column: String, rows: usize, first_row: u64, what: &'static str },

    #[error("{file}: row {row}, column `{column}`: {reason}")]
    BadRow { file: String, row: u64, column: String, reason: String },

    #[error(
        "{kind} `{first}` and `{second}` get the same stable id {id}; import cannot tell them apart \
         (rename one in the source)"
    )]
    IdCollision { kind: &'static str, id: i64, first: String, second: String },

    #[error("{source_dir}: no events to import: {reason}")]
    NoEvents { source_dir: String, reason: String },

    #[error("{option}: {reason}")]
    BadOption { option: &'static str, reason: String },
}

impl ImportError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }

    /// True when the error describes the user's input rather than the machine.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Io { .. } => false,
            Self::Data(e) => e.is_user_error(),
            _ => true,
        }
    }
}
