//! Where data and artifacts live: a local path or `s3://bucket/prefix`. Readers always read
//! local files; an S3 location has a local mirror (see `store`) that `fetch` brings up to
//! date, so the parquet readers and the stages never see the difference.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::DataError;
use crate::store::{self, Bucket};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(S3Location),
}

/// An object or prefix in an S3 bucket, and the local directory or file that mirrors it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// The key (or key prefix) inside the bucket, without leading or trailing `/`; empty for
    /// the bucket's root.
    pub key: String,
    pub mirror: PathBuf,
}

/// The parts of an `s3://bucket/key` URL, checked: a bucket name S3 accepts and a key whose
/// segments can also name the mirror's directories (no empty, `.` or `..` segment, so the
/// mirror never escapes its cache directory).
pub fn parse_s3_url(text: &str) -> Result<(String, String), String> {
    let rest = text.strip_prefix("s3://").ok_or("not an s3:// URL")?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("no bucket name (expected s3://bucket/prefix)".into());
    }
    let bucket_chars = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(bucket_chars) {
        return Err(format!(
            "`{bucket}` is not a bucket name (3 to 63 characters: lowercase letters, digits, `-`, `.`)"
        ));
    }
    let key = key.trim_end_matches('/');
    if !key.is_empty() {
        store::check_key(key)?;
    }
    Ok((bucket.to_string(), key.to_string()))
}

impl Location {
    /// Parses a user-given location: `s3://bucket/prefix` or a local path. Any other
    /// `scheme://` is refused rather than taken for a local directory named `scheme:`.
    pub fn parse(text: &str) -> Result<Self, DataError> {
        let text = text.trim();
        let bad = |reason: String| DataError::BadLocation { location: format!("`{text}`"), reason };
        if text.is_empty() {
            return Err(bad("empty location".into()));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            if scheme != "s3" {
                return Err(bad(format!("`{scheme}://` is not supported; give a local path or s3://bucket/prefix")));
            }
            let (bucket, key) = parse_s3_url(text).map_err(bad)?;
            let mirror = store::mirror_root().map_err(bad)?.join(&bucket).join(&key);
            return Ok(Self::S3(S3Location { bucket, key, mirror }));
        }
        if text.starts_with("s3:") {
            return Err(bad("an S3 location is written s3://bucket/prefix".into()));
        }
        Ok(Self::Local(PathBuf::from(text)))
    }

    pub fn local(path: impl Into<PathBuf>) -> Self {
        Self::Local(path.into())
    }

    /// The location of `name` inside this one (a file in a directory, an object under a prefix).
    pub fn join(&self, name: &str) -> Self {
        match self {
            Self::Local(p) => Self::Local(p.join(name)),
            Self::S3(s) => Self::S3(S3Location {
                bucket: s.bucket.clone(),
                key: store::join_key(&s.key, name),
                mirror: s.mirror.join(name),
            }),
        }
    }

    /// The local filesystem path behind this location: the path itself, or an S3 location's
    /// mirror (current after `fetch`).
    pub fn as_path(&self) -> &Path {
        match self {
            Self::Local(p) => p,
            Self::S3(s) => &s.mirror,
        }
    }

    pub fn exists(&self) -> bool {
        self.as_path().exists()
    }

    /// Brings the local mirror of an S3 object up to date (a download unless the mirror
    /// already holds the object's size and etag); a local path is read in place.
    pub fn fetch(&self) -> Result<(), DataError> {
        match self {
            Self::Local(_) => Ok(()),
            Self::S3(s) => Bucket::from_env(&s.bucket)?.fetch(&s.key, &s.mirror),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::S3(s) => write!(f, "{}", store::url(&s.bucket, &s.key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_paths_and_s3_urls_parse() {
        assert_eq!(Location::parse("data/x").unwrap(), Location::local("data/x"));
        let Location::S3(s3) = Location::parse(" s3://my-bucket/runs/a/ ").unwrap() else { panic!("an S3 location") };
        assert_eq!((s3.bucket.as_str(), s3.key.as_str()), ("my-bucket", "runs/a"));
        assert!(s3.mirror.ends_with("my-bucket/runs/a"), "{}", s3.mirror.display());
        let Location::S3(root) = Location::parse("s3://my-bucket").unwrap() else { panic!("an S3 location") };
        assert_eq!(root.key, "");
        assert_eq!(
            Location::parse("s3://my-bucket/a").unwrap().join("f.parquet").to_string(),
            "s3://my-bucket/a/f.parquet"
        );
        assert_eq!(
            Location::parse("s3://my-bucket").unwrap().join("f.parquet").to_string(),
            "s3://my-bucket/f.parquet"
        );
    }

    #[test]
    fn bad_locations_say_what_is_wrong() {
        let cases = [
            ("gs://bucket/prefix", "`gs://` is not supported"),
            ("s3://", "no bucket name"),
            ("s3:///prefix", "no bucket name"),
            ("s3:/bucket/prefix", "written s3://bucket/prefix"),
            ("s3://Bad_Bucket/x", "not a bucket name"),
            ("s3://bucket/a//b", "empty, `.` or `..` segment"),
            ("s3://bucket/a/../../etc", "empty, `.` or `..` segment"),
            ("  ", "empty location"),
        ];
        for (text, expected) in cases {
            let err = Location::parse(text).unwrap_err();
            assert!(err.is_user_error());
            let err = err.to_string();
            assert!(err.contains(expected) && err.contains(text.trim()), "{text}: {err}");
        }
    }
}
