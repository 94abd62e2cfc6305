//! S3 (any S3-compatible endpoint) through `object_store`, behind a small blocking facade: the
//! pipeline is synchronous (rayon), so every call here blocks on one process-wide tokio
//! runtime. Endpoint, region and credentials come from the standard AWS environment
//! variables (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ALLOW_HTTP`, ...), read by `AmazonS3Builder::from_env`.
//!
//! Errors never carry credentials: only the S3 error code and message are kept from a server's
//! answer (its XML may echo the access key id and signing material), and the values of the
//! credential variables are masked in whatever text remains.
//!
//! Local mirrors: an S3 location is read through a local copy under `mirror_root()`; `fetch`
//! keeps a single object's copy current, with a hidden sidecar recording the size and etag the
//! copy was downloaded at.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart};

use crate::atomic::{AtomicFile, write_atomic};
use crate::error::DataError;

/// Files at least this large go up in a multipart upload, in parts of this size (S3 wants
/// parts of at least 5 MiB, except the last).
pub const MULTIPART_PART_BYTES: usize = 8 << 20;
/// Files, and parts of one multipart upload, in flight at once.
const UPLOAD_CONCURRENCY: usize = 4;
/// HEAD requests in flight at once when checking many objects.
const HEAD_CONCURRENCY: usize = 16;
/// The variables whose values must never be printed.
const SECRET_VARS: [&str; 3] = ["AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID"];

/// An object's bytes and the etag they were read at (`Bucket::get_tagged`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub bytes: Vec<u8>,
    pub etag: Option<String>,
}

/// `s3://bucket/key`.
pub fn url(bucket: &str, key: &str) -> String {
    if key.is_empty() { format!("s3://{bucket}") } else { format!("s3://{bucket}/{key}") }
}

/// `prefix/name`, or `name` under the bucket's root.
pub fn join_key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") }
}

/// Checks that `key` is relative and that each `/`-separated segment can also name a local
/// file or directory of a mirror: none empty, `.` or `..` (a mirror never escapes its root).
pub fn check_key(key: &str) -> Result<(), String> {
    if let Some(bad) = key.split('/').find(|s| s.is_empty() || *s == "." || *s == "..") {
        return Err(format!("the key `{key}` has an empty, `.` or `..` segment (`{bad}`)"));
    }
    if key.chars().any(|c| c.is_control() || c == '\\') {
        return Err(format!("the key `{key}` has a control character or a backslash"));
    }
    Ok(())
}

/// Where S3 locations are mirrored: `$MUSICREC_CACHE_DIR`, else `~/.cache/musicrec/s3`; an
/// S3 location `s3://bucket/prefix` mirrors to `<root>/bucket/prefix`.
pub fn mirror_root() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("MUSICREC_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache/musicrec/s3")),
        None => Err("neither MUSICREC_CACHE_DIR nor HOME is set: no directory for the local mirror".into()),
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    // A static runtime is never dropped, so a facade used inside the service's own runtime
    // (from its blocking threads) cannot trip tokio's "runtime dropped in async context".
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("musicrec-s3")
            .enable_all()
            .build()
            .expect("the S3 client's runtime starts (threads and timers only)")
    })
}

/// An object's size and etag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
}

impl From<object_store::ObjectMeta> for ObjectInfo {
    fn from(meta: object_store::ObjectMeta) -> Self {
        Self { key: meta.location.to_string(), size: meta.size, etag: meta.e_tag }
    }
}

/// One bucket, with blocking calls.
#[derive(Clone)]
pub struct Bucket {
    name: String,
    store: Arc<dyn ObjectStore>,
}

/// The client's own `Debug` shows the access key id; a bucket shows only its name, so whatever
/// holds one (artifacts, the service's settings) can be printed with `{:?}` safely.
impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Bucket {
    /// The bucket `name` at the endpoint and with the credentials of the AWS environment
    /// variables. Builds the client only; nothing is sent yet.
    pub fn from_env(name: &str) -> Result<Self, DataError> {
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 5,
            // Bounds how long an unreachable endpoint keeps a command waiting.
            retry_timeout: Duration::from_secs(60),
        };
        let store = AmazonS3Builder::from_env().with_bucket_name(name).with_retry(retry).build().map_err(|e| {
            DataError::Storage { location: url(name, ""), action: "client setup", reason: describe(&e), access: true }
        })?;
        Ok(Self::new(name, Arc::new(store)))
    }

    /// A bucket over any object store (tests use `object_store::memory::InMemory`).
    pub fn new(name: &str, store: Arc<dyn ObjectStore>) -> Self {
        Self { name: name.to_string(), store }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self, key: &str) -> String {
        url(&self.name, key)
    }

    fn error(&self, key: &str, action: &'static str, e: &object_store::Error) -> DataError {
        let text = e.to_string();
        // Without credentials in the environment the client asks the EC2 instance metadata
        // service; off EC2 that fails with an answer about the metadata service, not S3.
        if text.contains("/latest/api/token") || text.contains("/latest/meta-data/") {
            return DataError::Storage {
                location: self.url(key),
                action,
                reason: "no credentials: AWS_ACCESS_KEY_ID is not set and no EC2 instance role answered".into(),
                access: true,
            };
        }
        let reason = describe(e);
        let access =
            matches!(e, object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. })
                || ["NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"]
                    .iter()
                    .any(|code| reason.contains(code));
        DataError::Storage { location: self.url(key), action, reason, access }
    }

    /// Checks that the bucket answers with these credentials (one LIST of at most a page under
    /// `prefix`), so a bad key or a missing bucket is reported before any work starts.
    pub fn probe(&self, prefix: &str) -> Result<(), DataError> {
        let path = ObjectPath::from(prefix);
        let first = runtime().block_on(async { self.store.list(Some(&path)).next().await });
        match first {
            Some(Err(e)) => Err(self.error(prefix, "LIST", &e)),
            _ => Ok(()),
        }
    }

    /// The object's size and etag, or `None` if there is no such object.
    pub fn head(&self, key: &str) -> Result<Option<ObjectInfo>, DataError> {
        match runtime().block_on(self.store.head(&ObjectPath::from(key))) {
            Ok(meta) => Ok(Some(meta.into())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, "HEAD", &e)),
        }
    }

    /// `head` of every key, several in flight at once; results in the order of `keys`.
    pub fn head_many(&self, keys: &[String]) -> Result<Vec<Option<ObjectInfo>>, DataError> {
        runtime().block_on(async {
            let heads = futures_util::stream::iter(keys)
                .map(|key| async move {
                    match self.store.head(&ObjectPath::from(key.as_str())).await {
                        Ok(meta) => Ok(Some(meta.into())),
                        Err(object_store::Error::NotFound { .. }) => Ok(None),
                        Err(e) => Err(self.error(key, "HEAD", &e)),
                    }
                })
                .buffered(HEAD_CONCURRENCY);
            heads.collect::<Vec<_>>().await.into_iter().collect()
        })
    }

    /// The whole object, or `None` if there is no such object.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, DataError> {
        let result = runtime().block_on(async {
            let got = self.store.get(&ObjectPath::from(key)).await?;
            got.bytes().await
        });
        match result {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, "GET", &e)),
        }
    }

    /// Streams the object into `path` atomically (a reader sees the previous file or the whole
    /// new one); returns what was downloaded, or `None` if there is no such object.
    pub fn download(&self, key: &str, path: &Path) -> Result<Option<ObjectInfo>, DataError> {
        let fail = |e: &object_store::Error| self.error(key, "GET", e);
        runtime().block_on(async {
            let got = match self.store.get(&ObjectPath::from(key)).await {
                Ok(got) => got,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(fail(&e)),
            };
            let info = ObjectInfo::from(got.meta.clone());
            let mut file = AtomicFile::create(path)?;
            let mut stream = got.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| fail(&e))?;
                file.write_all(&chunk).map_err(|e| DataError::io(path, e))?;
            }
            let size = file.commit()?;
            if size != info.size {
                return Err(DataError::Storage {
                    location: self.url(key),
                    action: "GET",
                    reason: format!("got {size} bytes, the object has {}", info.size),
                    access: false,
                });
            }
            Ok(Some(info))
        })
    }

    /// Writes `bytes` as one object (S3 puts are atomic).
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<ObjectInfo, DataError> {
        runtime().block_on(self.put_async(key, bytes))
    }

    async fn put_async(&self, key: &str, bytes: Vec<u8>) -> Result<ObjectInfo, DataError> {
        let size = bytes.len() as u64;
        let put = self.store.put(&ObjectPath::from(key), PutPayload::from(bytes)).await;
        let put = put.map_err(|e| self.error(key, "PUT", &e))?;
        Ok(ObjectInfo { key: key.to_string(), size, etag: put.e_tag })
    }

    /// Uploads the file at `path` as object `key`: one put for a small file, a multipart upload
    /// (aborted on failure, so no parts linger) for one of `MULTIPART_PART_BYTES` or more. The
    /// object appears whole or not at all.
    pub fn upload(&self, path: &Path, key: &str) -> Result<ObjectInfo, DataError> {
        runtime().block_on(self.upload_async(path, key))
    }

    /// `upload` of every (file, key) pair, several at once (each object still appears whole or
    /// not at all); stops at the first failure.
    pub fn upload_many(&self, files: &[(PathBuf, String)]) -> Result<Vec<ObjectInfo>, DataError> {
        runtime().block_on(async {
            let uploads = futures_util::stream::iter(files)
                .map(|(path, key)| self.upload_async(path, key))
                .buffered(UPLOAD_CONCURRENCY);
            uploads.collect::<Vec<_>>().await.into_iter().collect()
        })
    }

    async fn upload_async(&self, path: &Path, key: &str) -> Result<ObjectInfo, DataError> {
        let size = fs::metadata(path).map_err(|e| DataError::io(path, e))?.len();
        if size < MULTIPART_PART_BYTES as u64 {
            return self.put_async(key, fs::read(path).map_err(|e| DataError::io(path, e))?).await;
        }
        let fail = |e: &object_store::Error| self.error(key, "multipart upload", e);
        let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
        let upload = self.store.put_multipart(&ObjectPath::from(key)).await.map_err(|e| fail(&e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART_BYTES);
        let mut buffer = vec![0u8; 1 << 20];
        let fed: Result<(), DataError> = async {
            loop {
                let n = file.read(&mut buffer).map_err(|e| DataError::io(path, e))?;
                if n == 0 {
                    return Ok(());
                }
                writer.wait_for_capacity(UPLOAD_CONCURRENCY).await.map_err(|e| fail(&e))?;
                writer.write(&buffer[..n]);
            }
        }
        .await;
        match fed {
            Ok(()) => {
                let put = writer.finish().await.map_err(|e| fail(&e))?;
                Ok(ObjectInfo { key: key.to_string(), size, etag: put.e_tag })
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    /// The whole object and its etag, or `None` if there is no such object: what a conditional
    /// `put_if` later names as the version it replaces.
    pub fn get_tagged(&self, key: &str) -> Result<Option<Tagged>, DataError> {
        let result = runtime().block_on(async {
            let got = self.store.get(&ObjectPath::from(key)).await?;
            let etag = got.meta.e_tag.clone();
            Ok::<_, object_store::Error>((got.bytes().await?, etag))
        });
        match result {
            Ok((bytes, etag)) => Ok(Some(Tagged { bytes: bytes.to_vec(), etag })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, "GET", &e)),
        }
    }

    /// Writes `bytes` as object `key` only if the object is still what the caller read: absent
    /// (`replaces` is `None`) or at etag `replaces`. `Ok(None)` when another writer changed it
    /// first (the server decides, so of two writers at most one wins); else the new etag.
    pub fn put_if(&self, key: &str, bytes: Vec<u8>, replaces: Option<&str>) -> Result<Option<String>, DataError> {
        use object_store::{PutMode, PutOptions, UpdateVersion};
        let mode = match replaces {
            None => PutMode::Create,
            Some(etag) => PutMode::Update(UpdateVersion { e_tag: Some(etag.to_string()), version: None }),
        };
        let put = runtime().block_on(self.store.put_opts(
            &ObjectPath::from(key),
            PutPayload::from(bytes),
            PutOptions { mode, ..PutOptions::default() },
        ));
        match put {
            Ok(put) => Ok(Some(put.e_tag.unwrap_or_default())),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(None),
            Err(e) => Err(self.error(key, "conditional PUT", &e)),
        }
    }

    /// Deletes the object; a missing object is not an error.
    pub fn delete(&self, key: &str) -> Result<(), DataError> {
        match runtime().block_on(self.store.delete(&ObjectPath::from(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, "DELETE", &e)),
        }
    }

    /// Every object under `prefix` (a key prefix on `/` boundaries; empty: the whole bucket).
    pub fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, DataError> {
        let path = ObjectPath::from(prefix);
        let listed = runtime().block_on(async {
            let prefix = (!prefix.is_empty()).then_some(&path);
            self.store.list(prefix).collect::<Vec<_>>().await
        });
        let mut objects = Vec::with_capacity(listed.len());
        for meta in listed {
            objects.push(meta.map_err(|e| self.error(prefix, "LIST", &e))?.into());
        }
        objects.sort_by(|a: &ObjectInfo, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Brings `mirror` up to date with object `key`: nothing to do when the sidecar says the
    /// local copy was downloaded at the object's current size and etag, else a download. A
    /// missing object is the layout's "file not found".
    pub fn fetch(&self, key: &str, mirror: &Path) -> Result<(), DataError> {
        let Some(remote) = self.head(key)? else {
            return Err(DataError::MissingFile { file: self.url(key), expected: "an object at this key".into() });
        };
        if is_current(mirror, &remote) {
            tracing::debug!(object = %self.url(key), mirror = %mirror.display(), "mirror is current");
            return Ok(());
        }
        tracing::info!(object = %self.url(key), bytes = remote.size, mirror = %mirror.display(), "downloading");
        let Some(got) = self.download(key, mirror)? else {
            return Err(DataError::MissingFile { file: self.url(key), expected: "an object at this key".into() });
        };
        record_mirrored(mirror, &got)
    }
}

/// The sidecar beside a mirrored file: `.<name>.s3`, holding `<size> <etag>`.
fn sidecar(mirror: &Path) -> PathBuf {
    let name = mirror.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    mirror.with_file_name(format!(".{name}.s3"))
}

fn sidecar_text(info: &ObjectInfo) -> String {
    format!("{} {}", info.size, info.etag.as_deref().unwrap_or("-"))
}

/// Whether the local copy is the object as it is now. Without an etag nothing proves it, so it
/// is downloaded again.
fn is_current(mirror: &Path, remote: &ObjectInfo) -> bool {
    remote.etag.is_some()
        && fs::metadata(mirror).is_ok_and(|m| m.len() == remote.size)
        && fs::read_to_string(sidecar(mirror)).is_ok_and(|text| text == sidecar_text(remote))
}

/// Records that `mirror` now holds the object `info` (written after the file itself, so a kill
/// in between costs a download, never a stale file taken for current).
pub fn record_mirrored(mirror: &Path, info: &ObjectInfo) -> Result<(), DataError> {
    write_atomic(sidecar(mirror), sidecar_text(info).as_bytes()).map(|_| ())
}

/// A server's complaint without the secrets: the S3 error code and message when the answer is
/// S3's XML, else the client's text with the credential variables' values masked.
fn describe(error: &dyn std::error::Error) -> String {
    let text = error.to_string();
    let element = |tag: &str| {
        let open = format!("<{tag}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&format!("</{tag}>"))? + start;
        Some(text[start..end].to_string())
    };
    const STATUS: &str = "status code: ";
    let reason = match (element("Code"), element("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        // The HTTP status without whatever body followed it (the server's, which may echo anything).
        _ => match text.find(STATUS) {
            Some(at) => {
                let status = &text[at + STATUS.len()..];
                format!("HTTP {}", status.split_once(':').map_or(status, |(s, _)| s).trim())
            }
            None => text.clone(),
        },
    };
    mask_secrets(reason)
}

fn mask_secrets(text: String) -> String {
    mask(text, SECRET_VARS.iter().filter_map(|var| std::env::var(var).ok()))
}

fn mask(mut text: String, secrets: impl Iterator<Item = String>) -> String {
    // Very short values would mask unrelated text and are no real credentials.
    for secret in secrets.filter(|s| s.len() >= 8) {
        text = text.replace(&secret, "[redacted]");
    }
    text
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    fn bucket() -> Bucket {
        Bucket::new("test", Arc::new(InMemory::new()))
    }

    #[test]
    fn keys_and_urls_join_without_empty_segments() {
        assert_eq!(join_key("", "a.parquet"), "a.parquet");
        assert_eq!(join_key("runs/x", "a.parquet"), "runs/x/a.parquet");
        assert_eq!(url("b", ""), "s3://b");
        assert_eq!(url("b", "p/k"), "s3://b/p/k");
        assert_eq!(format!("{:?}", bucket()), "Bucket { name: \"test\", .. }");
    }

    #[test]
    fn put_get_head_list_delete_round_trip() {
        let b = bucket();
        assert_eq!(b.get("p/x").unwrap(), None);
        assert_eq!(b.head("p/x").unwrap(), None);
        b.put("p/x", b"hello".to_vec()).unwrap();
        b.put("p/sub/y", b"!".to_vec()).unwrap();
        b.put("other/z", b"?".to_vec()).unwrap();
        assert_eq!(b.get("p/x").unwrap().as_deref(), Some(&b"hello"[..]));
        assert_eq!(b.head("p/x").unwrap().unwrap().size, 5);
        let keys: Vec<String> = b.list("p").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(keys, ["p/sub/y", "p/x"]);
        let heads = b.head_many(&["p/x".into(), "p/none".into(), "p/sub/y".into()]).unwrap();
        assert_eq!(heads.iter().map(|h| h.as_ref().map(|o| o.size)).collect::<Vec<_>>(), [Some(5), None, Some(1)]);
        b.delete("p/x").unwrap();
        b.delete("p/x").unwrap();
        assert_eq!(b.get("p/x").unwrap(), None);
        assert_eq!(b.list("").unwrap().len(), 2);
    }

    #[test]
    fn large_files_go_up_in_parts_and_come_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        let data: Vec<u8> = (0..MULTIPART_PART_BYTES * 2 + 12345).map(|i| (i % 251) as u8).collect();
        fs::write(&path, &data).unwrap();
        let b = bucket();
        let up = b.upload(&path, "a/big.bin").unwrap();
        assert_eq!(up.size, data.len() as u64);
        let back = dir.path().join("mirror/big.bin");
        let got = b.download("a/big.bin", &back).unwrap().unwrap();
        assert_eq!(got.size, data.len() as u64);
        assert!(fs::read(&back).unwrap() == data);
        assert_eq!(b.download("a/none", &dir.path().join("none")).unwrap(), None);
        let small = dir.path().join("small.bin");
        fs::write(&small, b"tiny").unwrap();
        let many = b.upload_many(&[(small.clone(), "m/1".into()), (path.clone(), "m/2".into()), (small, "m/3".into())]);
        assert_eq!(many.unwrap().iter().map(|o| o.size).collect::<Vec<_>>(), [4, data.len() as u64, 4]);
        let missing = b.upload_many(&[(dir.path().join("absent"), "m/4".into())]).unwrap_err().to_string();
        assert!(missing.contains("absent"), "{missing}");
        assert!(!dir.path().join("none").exists());
    }

    #[test]
    fn fetch_downloads_only_when_the_object_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mirror = dir.path().join("m/data.parquet");
        let b = bucket();
        b.put("d/data.parquet", b"version 1".to_vec()).unwrap();
        b.fetch("d/data.parquet", &mirror).unwrap();
        assert_eq!(fs::read(&mirror).unwrap(), b"version 1");
        // A local edit of the same size is not noticed by design (the mirror is ours), but a
        // new object version is.
        fs::write(&mirror, b"VERSION 1").unwrap();
        b.fetch("d/data.parquet", &mirror).unwrap();
        assert_eq!(fs::read(&mirror).unwrap(), b"VERSION 1", "same size and etag: no download");
        b.put("d/data.parquet", b"version 2!".to_vec()).unwrap();
        b.fetch("d/data.parquet", &mirror).unwrap();
        assert_eq!(fs::read(&mirror).unwrap(), b"version 2!");
        // A truncated local copy is downloaded again even though the sidecar matches.
        fs::write(&mirror, b"ver").unwrap();
        b.fetch("d/data.parquet", &mirror).unwrap();
        assert_eq!(fs::read(&mirror).unwrap(), b"version 2!");
        let err = b.fetch("d/none.parquet", &dir.path().join("m/none.parquet")).unwrap_err().to_string();
        assert!(err.contains("s3://test/d/none.parquet") && err.contains("not found"), "{err}");
    }

    #[derive(Debug)]
    struct Answer(String);
    impl std::fmt::Display for Answer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }
    impl std::error::Error for Answer {}

    #[test]
    fn errors_keep_the_s3_code_and_message_and_drop_signing_material() {
        let xml = "Error performing GET http://127.0.0.1:9000/b/k in 3ms - Server returned non-2xx status code: \
                   403 Forbidden: <?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>The \
                   request signature we calculated does not match</Message><AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId>\
                   <StringToSign>AWS4-HMAC-SHA256 x</StringToSign><SignatureProvided>abc</SignatureProvided></Error>";
        let text = describe(&Answer(xml.into()));
        assert_eq!(text, "SignatureDoesNotMatch: The request signature we calculated does not match");
        let html =
            "Error performing GET http://h/b/k - Server returned non-2xx status code: 500: <html>AKIDEXAMPLE</html>";
        assert_eq!(describe(&Answer(html.into())), "HTTP 500");
        let head = "Error performing HEAD http://h/b/k in 5ms - Server returned non-2xx status code: 403 Forbidden: ";
        assert_eq!(describe(&Answer(head.into())), "HTTP 403 Forbidden");
        let refused = "Error performing GET http://h/b/k - HTTP error: error sending request";
        assert_eq!(describe(&Answer(refused.into())), refused);
        let masked =
            mask("key wJalrXUtnFEMI/K7MDENG in a message".into(), ["wJalrXUtnFEMI/K7MDENG".to_string()].into_iter());
        assert_eq!(masked, "key [redacted] in a message");
    }
}
