use std::path::PathBuf;

use musicrec_data::DataError;

use crate::layout::MANIFEST_FILE;

/// Everything that can go wrong reading or publishing artifacts.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactsError {
    /// A stage's outputs cannot be used: not run, or not completely published.
    #[error("stage `{stage}` has no complete outputs in {location} ({reason})")]
    Incomplete { stage: String, location: String, reason: Untrusted },

    #[error("unknown stage `{name}`; stages are: {valid}")]
    UnknownStage { name: String, valid: String },

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// A key of `write_object`, `read_object` or `list_objects` that is not a plain relative path.
    #[error("{key}: {reason}")]
    BadKey { key: String, reason: String },

    /// Another writer replaced the stage while this mirror downloaded it.
    #[error("{url}: changed while being downloaded; try again")]
    ChangedDuringDownload { url: String },

    /// `CURRENT` or a version's index cannot be used.
    #[error("{location}: {reason}")]
    Pointer { location: String, reason: String },

    #[error("no version `{version}` in {location}; versions there: {known} (musicrec runs versions)")]
    UnknownVersion { version: String, location: String, known: String },

    /// A handle on a published version was asked to write a stage: only a run's draft does.
    #[error("unit `{unit}` of a published version in {location} cannot be written; a run writes its own version")]
    NotWritable { unit: String, location: String },

    /// Another writer switched `CURRENT` after this run started (possible only on S3, when a
    /// lease expired): the run's version stays unpublished.
    #[error(
        "{location}: another writer published a version since this run started from version {expected}; this \
         run's version was not published"
    )]
    PointerMoved { location: String, expected: String },

    /// Another process holds the writer lock.
    #[error(
        "the artifacts at {location} are being written by another process ({holder}); wait for it with \
             `musicrec run --wait`, or stop it"
    )]
    Busy { location: String, holder: String },

    /// Storage and S3 errors, which name their path or URL.
    #[error(transparent)]
    Data(#[from] DataError),
}

/// Why a stage's manifest or one of its outputs is not to be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    #[error("no {MANIFEST_FILE}")]
    NoManifest,

    #[error("{MANIFEST_FILE} is not a valid manifest: {0}")]
    InvalidManifest(String),

    #[error("manifest format {found}, this program reads {reads}")]
    ManifestFormat { found: u32, reads: u32 },

    #[error("{file} is missing")]
    MissingOutput { file: String },

    #[error("{file} has {size} bytes, the manifest says {expected}")]
    OutputSize { file: String, size: u64, expected: u64 },
}

impl ArtifactsError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// Why the outputs cannot be used, for messages that name the stage and place already:
    /// the reason of `Incomplete`, the whole error otherwise.
    pub fn reason(&self) -> String {
        match self {
            Self::Incomplete { reason, .. } => reason.to_string(),
            other => other.to_string(),
        }
    }

    /// True when the error describes the user's input (a stage not run, a stage name, bad S3
    /// credentials) rather than the machine or the program.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Incomplete { .. }
            | Self::UnknownStage { .. }
            | Self::UnknownVersion { .. }
            | Self::Pointer { .. } => true,
            Self::Data(e) => e.is_user_error(),
            Self::Io { .. }
            | Self::BadKey { .. }
            | Self::ChangedDuringDownload { .. }
            | Self::NotWritable { .. }
            | Self::PointerMoved { .. }
            | Self::Busy { .. } => false,
        }
    }
}
