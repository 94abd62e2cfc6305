//! Where data and artifacts live. Every reader and writer goes through a `Location`, so the
//! S3 backend (object_store, `s3://bucket/prefix`) plugs in here without touching the stages.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::DataError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
}

impl Location {
    /// Parses a user-given location: a local path today. `s3://` URLs are recognised and
    /// refused with a clear message until the S3 backend lands, rather than being taken for a
    /// local directory named `s3:`.
    pub fn parse(text: &str) -> Result<Self, DataError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(DataError::BadLocation { location: "''".into(), reason: "empty location".into() });
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(DataError::BadLocation {
                location: text.to_string(),
                reason: format!("`{scheme}://` locations are not supported by this build; give a local directory"),
            });
        }
        Ok(Self::Local(PathBuf::from(text)))
    }

    pub fn local(path: impl Into<PathBuf>) -> Self {
        Self::Local(path.into())
    }

    pub fn join(&self, key: &str) -> Self {
        match self {
            Self::Local(p) => Self::Local(p.join(key)),
        }
    }

    /// The local filesystem path behind this location.
    pub fn as_path(&self) -> &Path {
        match self {
            Self::Local(p) => p,
        }
    }

    pub fn exists(&self) -> bool {
        self.as_path().exists()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_parse_and_urls_are_refused_clearly() {
        assert_eq!(Location::parse("data/x").unwrap(), Location::local("data/x"));
        let err = Location::parse("s3://bucket/prefix").unwrap_err().to_string();
        assert!(err.contains("s3://bucket/prefix") && err.contains("not supported"), "{err}");
        assert!(Location::parse("  ").is_err());
    }
}
