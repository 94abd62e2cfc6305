use std::path::{Path, PathBuf};

/// Everything that can go wrong reading, validating or writing data.
///
/// Variants that describe the user's input (a missing file, a bad column, bad values) are
/// "user errors": the CLI maps them to exit code 2. Each names the file and, where one is
/// involved, the column and how many rows are bad.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    #[error("{path}: parquet: {source}")]
    Parquet { path: PathBuf, source: parquet::errors::ParquetError },

    #[error("{file}: file not found (expected {expected})")]
    MissingFile { file: String, expected: String },

    #[error("{file}: missing column `{column}` (columns present: {present})")]
    MissingColumn { file: String, column: String, present: String },

    #[error("{file}: column `{column}` has type {found}, expected {expected}")]
    WrongType { file: String, column: String, found: String, expected: String },

    #[error("{file}: column `{column}` has {rows} null value(s); {what} must not be null")]
    Nulls { file: String, column: String, rows: usize, what: &'static str },

    #[error("{file}: the table is empty (0 rows)")]
    EmptyTable { file: String },

    #[error("{file}: column `{column}`: {rows} row(s) {problem}")]
    BadValues { file: String, column: String, rows: usize, problem: String },

    #[error(
        "{file}: column `track_id`: {rows} event(s) of {distinct} track id(s) not in tracks.parquet \
         (e.g. {examples}); set data.unknown_tracks: drop to drop them with a warning"
    )]
    UnknownTracks { file: String, rows: usize, distinct: usize, examples: String },

    #[error("{file}: could not be decoded: {reason}")]
    Undecodable { file: String, reason: String },

    #[error("{location}: {reason}")]
    BadLocation { location: String, reason: String },

    /// An S3 request failed; `access` when the credentials, the endpoint or the bucket are the
    /// problem (the user's to fix). The reason never holds credentials (see `store`).
    #[error("{location}: S3 {action} failed: {reason}{}", if *access { "; check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL and the bucket name" } else { "" })]
    Storage { location: String, action: &'static str, reason: String, access: bool },

    #[error(
        "the data covers only {days} distinct day(s) ({first}..{last}); an automatic split needs at least 3; \
         set preprocess.train_end and preprocess.target_end to dates"
    )]
    UnsplittableTimeLine { days: usize, first: String, last: String },

    #[error("{path}: not a valid artifact: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

impl DataError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }

    pub fn parquet(path: &Path, source: parquet::errors::ParquetError) -> Self {
        Self::Parquet { path: path.to_path_buf(), source }
    }

    pub fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        Self::Corrupt { path: path.to_path_buf(), reason: reason.into() }
    }

    /// True when the error describes the user's input rather than the machine or the program.
    /// A damaged artifact is input too: the set the user pointed a command at, to be rebuilt
    /// by a run, as a damaged data file is.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Io { .. } => false,
            Self::Storage { access, .. } => *access,
            _ => true,
        }
    }
}
