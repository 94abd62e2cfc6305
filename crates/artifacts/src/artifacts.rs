//! The artifact store: one directory per stage, published atomically, manifest last, inside a
//! version of the whole set (see `versions`): a handle reads the stages of one version and a
//! run writes the stages of its own.
//!
//! A stage writes its outputs into a private staging directory. On success the previous
//! manifest is removed, the outputs are renamed into `artifacts/<stage>/` and the new manifest
//! is written last. A reader trusts only outputs that a manifest lists with a matching size,
//! so a kill at any moment leaves either the previous complete outputs or none.
//!
//! On S3 (`s3://bucket/prefix`) the local directory is a mirror and S3 is the truth. A commit
//! publishes locally, then the same way on S3: the stage's manifest object is deleted, every
//! output uploaded, the manifest object put last. A reader asks S3 for the manifest, checks
//! every listed object's size, and brings the mirror's copy of the stage up to date (same
//! protocol, manifest last) when it is not that manifest, then reads local files as ever.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use musicrec_data::Location;
use musicrec_data::atomic::write_atomic;
use musicrec_data::location::S3Location;
use musicrec_data::parquet_io::WrittenFile;
use musicrec_data::store::{self, Bucket};
use serde::{Deserialize, Serialize};

use crate::error::{ArtifactsError, Untrusted};
use crate::layout::MANIFEST_FILE;
use crate::rss;
use crate::versions::{Draft, Pinned};

const MANIFEST_FORMAT: u32 = 1;
const STAGING_DIR: &str = ".staging";

/// What a stage wrote and how it ran; the last file a stage writes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    pub stage: String,
    pub run_id: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_s: f64,
    pub peak_rss_bytes: Option<u64>,
    pub config_fingerprint: String,
    /// The configuration sections the stage used, as given.
    pub params: serde_json::Value,
    /// Data location and the run ids of the upstream stages whose outputs were read.
    pub inputs: BTreeMap<String, String>,
    pub outputs: Vec<OutputFile>,
    /// Stage-specific counts and findings (rows per window, dropped events, ...).
    pub summary: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputFile {
    pub file: String,
    pub rows: Option<u64>,
    pub bytes: u64,
}

/// The artifacts of one run: local, or on S3 with a local mirror. Every method that addresses a
/// stage's outputs takes its name: a `Stage`, or the name of a unit nested under one, such as a
/// shard's part (`shards/als/part-0000-of-0004`, see `layout::shards`).
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// The local directory: the artifacts themselves, or the mirror of `remote`.
    pub(crate) root: PathBuf,
    pub(crate) remote: Option<Remote>,
    /// Which version's stages this handle reads and writes.
    pub(crate) view: View,
}

/// Where the artifacts really are when they are on S3.
#[derive(Debug, Clone)]
pub(crate) struct Remote {
    pub(crate) bucket: Bucket,
    pub(crate) prefix: String,
}

impl Remote {
    pub(crate) fn key(&self, relative: &str) -> String {
        store::join_key(&self.prefix, relative)
    }
}

/// The version a handle addresses. Clones share it, so every reader of one handle sees the
/// same version, and a run's stages see each other's commits.
#[derive(Debug, Clone)]
pub(crate) enum View {
    /// Just opened: the version `CURRENT` names is pinned at the first stage read, once (an
    /// error reading the pointer is kept and returned by `manifest`).
    Unpinned(Arc<OnceLock<Result<Arc<Pinned>, String>>>),
    /// One published version (or the layout from before versions), read only.
    Pinned(Arc<Pinned>),
    /// The version a run is writing (`begin_version`).
    Draft(Arc<Mutex<Draft>>),
}

impl Artifacts {
    /// Artifacts in a local directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into(), remote: None, view: View::Unpinned(Arc::default()) }
    }

    /// Artifacts at `location`. On S3 the credentials and the bucket are checked now, so a bad
    /// key fails before any work.
    pub fn open(location: &Location) -> Result<Self, ArtifactsError> {
        match location {
            Location::Local(path) => Ok(Self::new(path)),
            Location::S3(S3Location { bucket, key, mirror }) => {
                let bucket = Bucket::from_env(bucket)?;
                bucket.probe(key)?;
                Ok(Self::on_bucket(bucket, key, mirror.clone()))
            }
        }
    }

    /// Artifacts under `prefix` in `bucket`, mirrored in `mirror`.
    pub fn on_bucket(bucket: Bucket, prefix: &str, mirror: impl Into<PathBuf>) -> Self {
        Self {
            root: mirror.into(),
            remote: Some(Remote { bucket, prefix: prefix.to_string() }),
            view: View::Unpinned(Arc::default()),
        }
    }

    /// Whether the artifacts are on S3 (and `root` is their mirror).
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The local directory (on S3: the mirror).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the artifacts are, for people: `s3://bucket/prefix` or the absolute local path.
    pub fn location(&self) -> String {
        match &self.remote {
            Some(r) => r.bucket.url(&r.prefix),
            None => absolute(&self.root),
        }
    }

    /// Where output `file` of `stage` is, for people (see `location`).
    pub fn location_of(&self, stage: impl AsRef<str>, file: &str) -> String {
        let unit = self.unit_key(stage.as_ref());
        match &self.remote {
            Some(r) => r.bucket.url(&r.key(&format!("{unit}/{file}"))),
            None => absolute(&self.root.join(unit).join(file)),
        }
    }

    /// The local directory of `stage`'s outputs in this handle's version (on S3: its mirror,
    /// current once `manifest` returned).
    pub fn dir(&self, stage: impl AsRef<str>) -> PathBuf {
        self.root.join(self.unit_key(stage.as_ref()))
    }

    /// The key (relative to the root, `/`-separated) of `stage`'s directory in this handle's
    /// version, for `read_object` and run records.
    pub fn key_of(&self, stage: impl AsRef<str>) -> String {
        self.unit_key(stage.as_ref())
    }

    /// The key (relative to the root) of the directory holding unit `name` in this handle's
    /// version: the version that wrote it, when carried over.
    pub(crate) fn unit_key(&self, name: &str) -> String {
        match &self.view {
            View::Unpinned(_) => match self.pinned_view() {
                Ok(pinned) => pinned.unit_key(name),
                Err(_) => name.to_string(),
            },
            View::Pinned(pinned) => pinned.unit_key(name),
            View::Draft(draft) => draft.lock().expect("no panic while a draft is locked").unit_key(name),
        }
    }

    /// The version an unpinned handle reads, pinned at the first call.
    fn pinned_view(&self) -> Result<Arc<Pinned>, ArtifactsError> {
        match &self.view {
            View::Unpinned(once) => once
                .get_or_init(|| self.pin(None).map(Arc::new).map_err(|e| e.to_string()))
                .clone()
                .map_err(|reason| ArtifactsError::Pointer { location: self.location(), reason }),
            View::Pinned(pinned) => Ok(pinned.clone()),
            View::Draft(_) => unreachable!("drafts are not pinned"),
        }
    }

    /// The manifest of `stage`'s complete outputs, after checking every listed output exists
    /// with its recorded size (on S3: and after mirroring them locally). Outputs that are not
    /// there or not complete are `ArtifactsError::Incomplete`, with the reason.
    pub fn manifest(&self, stage: impl AsRef<str>) -> Result<Manifest, ArtifactsError> {
        let name = stage.as_ref();
        if matches!(self.view, View::Unpinned(_)) {
            self.pinned_view()?;
        }
        self.trusted_manifest(name)?.map_err(|reason| ArtifactsError::Incomplete {
            stage: name.to_string(),
            location: self.location_of(name, "").trim_end_matches('/').to_string(),
            reason,
        })
    }

    fn trusted_manifest(&self, name: &str) -> Result<Result<Manifest, Untrusted>, ArtifactsError> {
        let Some(remote) = &self.remote else { return Ok(self.local_manifest(name).map(|(m, _)| m)) };
        let unit = self.unit_key(name);
        let manifest_key = remote.key(&format!("{unit}/{MANIFEST_FILE}"));
        let Some(bytes) = remote.bucket.get(&manifest_key)? else { return Ok(Err(Untrusted::NoManifest)) };
        let manifest = match parse_manifest(&bytes) {
            Ok(m) => m,
            Err(reason) => return Ok(Err(reason)),
        };
        let keys: Vec<String> = manifest.outputs.iter().map(|o| remote.key(&format!("{unit}/{}", o.file))).collect();
        let heads = remote.bucket.head_many(&keys)?;
        if let Err(reason) = check_outputs(&manifest.outputs, |i| heads[i].as_ref().map(|h| h.size)) {
            return Ok(Err(reason));
        }
        if self.local_manifest(name).is_ok_and(|(_, local)| local == bytes) {
            return Ok(Ok(manifest));
        }
        tracing::info!(stage = name, from = %remote.bucket.url(&remote.key(&unit)), "mirroring the stage's outputs");
        let dir = self.dir(name);
        publish(&dir, &manifest.outputs, &bytes, |i, output, to| {
            let got = remote.bucket.download(&keys[i], to)?;
            match got {
                Some(got) if got.size == output.bytes => Ok(()),
                // Another writer replaced the stage meanwhile; this mirror stays without a manifest.
                _ => Err(ArtifactsError::ChangedDuringDownload { url: remote.bucket.url(&keys[i]) }),
            }
        })?;
        Ok(Ok(manifest))
    }

    /// The local manifest and its bytes, if every output it lists is there with its size.
    fn local_manifest(&self, name: &str) -> Result<(Manifest, Vec<u8>), Untrusted> {
        let dir = self.dir(name);
        let bytes = fs::read(dir.join(MANIFEST_FILE)).map_err(|_| Untrusted::NoManifest)?;
        let manifest = parse_manifest(&bytes)?;
        let sizes: Vec<Option<u64>> =
            manifest.outputs.iter().map(|o| fs::metadata(dir.join(&o.file)).ok().map(|m| m.len())).collect();
        check_outputs(&manifest.outputs, |i| sizes[i])?;
        Ok((manifest, bytes))
    }

    /// Writes `bytes` as object `key` (a `/`-separated path under the artifacts) atomically,
    /// and on S3 uploads it too. For records that are not a stage's outputs (run records).
    pub fn write_object(&self, key: &str, bytes: &[u8]) -> Result<(), ArtifactsError> {
        checked_key(key)?;
        write_atomic(self.root.join(key), bytes)?;
        if let Some(r) = &self.remote {
            r.bucket.put(&r.key(key), bytes.to_vec())?;
        }
        Ok(())
    }

    /// Object `key` (see `write_object`), or `None` if there is none; on S3 read from S3.
    pub fn read_object(&self, key: &str) -> Result<Option<Vec<u8>>, ArtifactsError> {
        checked_key(key)?;
        if let Some(r) = &self.remote {
            return Ok(r.bucket.get(&r.key(key))?);
        }
        let path = self.root.join(key);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ArtifactsError::io(path, e)),
        }
    }

    /// The keys of every object under `prefix` (a "directory": whole `/`-separated segments, so
    /// `runs` lists `runs/a.json`, not `runs2/b.json` nor an object named `runs`; empty: all),
    /// sorted; on S3 listed from S3. Temporary and staging files are not objects.
    pub fn list_objects(&self, prefix: &str) -> Result<Vec<String>, ArtifactsError> {
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty() {
            checked_key(prefix)?;
        }
        if let Some(r) = &self.remote {
            let strip = if r.prefix.is_empty() { String::new() } else { format!("{}/", r.prefix) };
            let listed = r.bucket.list(&r.key(prefix))?;
            return Ok(listed.into_iter().filter_map(|o| o.key.strip_prefix(&strip).map(str::to_string)).collect());
        }
        let mut keys = Vec::new();
        let start = if prefix.is_empty() { self.root.clone() } else { self.root.join(prefix) };
        if start.is_dir() {
            list_local(&start, prefix, &mut keys)?;
        }
        keys.sort();
        Ok(keys)
    }

    /// Starts writing `stage`'s outputs into a fresh staging directory. A run writes into its
    /// draft version; a shard's part goes beside its fitted model in any handle (scorers
    /// write no version); a handle on the layout from before versions writes in place.
    ///
    /// The manifest's `duration_s` and `peak_rss_bytes` count from this call, so a stage calls
    /// it first, before reading its inputs.
    pub fn begin(&self, stage: impl AsRef<str>, run_id: &str) -> Result<StageWriter, ArtifactsError> {
        let name = stage.as_ref();
        let key = self.write_key(name)?;
        let staging_root = self.root.join(STAGING_DIR);
        // Flat staging names, so abandoned ones of nested units are found and removed too.
        let flat = name.replace('/', ".");
        remove_abandoned_staging(&staging_root, &flat);
        let staging = staging_root.join(format!("{flat}-{}", std::process::id()));
        fs::create_dir_all(&staging).map_err(|e| ArtifactsError::io(&staging, e))?;
        rss::reset_peak_rss();
        Ok(StageWriter {
            artifacts: self.clone(),
            stage: name.to_string(),
            key,
            run_id: run_id.to_string(),
            staging,
            outputs: Vec::new(),
            inputs: BTreeMap::new(),
            started_at: chrono::Utc::now(),
            started: Instant::now(),
            committed: false,
        })
    }
}

/// Outputs of one stage in the making. Dropped without `commit`, it removes everything it
/// wrote (and the artifacts directory itself if it was created empty for it).
pub struct StageWriter {
    artifacts: Artifacts,
    stage: String,
    /// Where the outputs go, relative to the root.
    key: String,
    run_id: String,
    staging: PathBuf,
    outputs: Vec<OutputFile>,
    inputs: BTreeMap<String, String>,
    started_at: chrono::DateTime<chrono::Utc>,
    started: Instant,
    committed: bool,
}

impl StageWriter {
    /// Where to write output `file` (inside the staging directory).
    pub fn path(&self, file: &str) -> PathBuf {
        self.staging.join(file)
    }

    /// Records a finished parquet output.
    pub fn add_parquet(&mut self, written: WrittenFile) {
        let file = written.path.file_name().expect("outputs have file names").to_string_lossy().into_owned();
        self.outputs.push(OutputFile { file, rows: Some(written.rows), bytes: written.bytes });
    }

    /// Records a finished non-tabular output (a matrix, a JSON file).
    pub fn add_file(&mut self, file: &str, bytes: u64) {
        self.outputs.push(OutputFile { file: file.to_string(), rows: None, bytes });
    }

    /// Writes a whole non-tabular output (JSON, markdown, PNG) atomically and records it.
    pub fn write_file(&mut self, file: &str, bytes: &[u8]) -> Result<(), ArtifactsError> {
        let written = write_atomic(self.path(file), bytes)?;
        self.add_file(file, written);
        Ok(())
    }

    /// Records what the stage read: the data location or an upstream stage's run id.
    pub fn add_input(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.inputs.insert(name.into(), value.into());
    }

    /// Publishes the outputs and writes the manifest last, locally and then on S3. The summary
    /// is any serializable value (a stage's typed summary); the manifest keeps it as JSON so any
    /// stage's summary reads without knowing its type (run records, `runs` listings).
    pub fn commit(
        mut self,
        config_fingerprint: String,
        params: serde_json::Value,
        summary: &impl Serialize,
    ) -> Result<Manifest, ArtifactsError> {
        let summary = serde_json::to_value(summary).expect("stage summaries serialize");
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            stage: self.stage.clone(),
            run_id: self.run_id.clone(),
            started_at: self.started_at.to_rfc3339(),
            finished_at: chrono::Utc::now().to_rfc3339(),
            duration_s: self.started.elapsed().as_secs_f64(),
            peak_rss_bytes: rss::peak_rss_bytes(),
            config_fingerprint,
            params,
            inputs: std::mem::take(&mut self.inputs),
            outputs: std::mem::take(&mut self.outputs),
            summary,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifests serialize");
        let dir = self.artifacts.root.join(&self.key);
        publish(&dir, &manifest.outputs, &json, |_, output, to| {
            let from = self.staging.join(&output.file);
            fs::rename(&from, to).map_err(|e| ArtifactsError::io(to, e))
        })?;
        self.committed = true;
        if let Some(remote) = &self.artifacts.remote {
            upload_stage(remote, &self.key, &dir, &manifest.outputs, json)?;
        }
        if let View::Draft(draft) = &self.artifacts.view {
            draft.lock().expect("no panic while a draft is locked").wrote(&self.stage, &self.key);
        }
        Ok(manifest)
    }
}

/// The one publication protocol, for a commit and for a mirror alike: the old manifest goes
/// first (from then on the stage has no trusted outputs), `place` puts each output at its
/// final path, files the new manifest does not list go, the manifest is written last.
fn publish(
    dir: &Path,
    outputs: &[OutputFile],
    manifest_json: &[u8],
    mut place: impl FnMut(usize, &OutputFile, &Path) -> Result<(), ArtifactsError>,
) -> Result<(), ArtifactsError> {
    fs::create_dir_all(dir).map_err(|e| ArtifactsError::io(dir, e))?;
    let manifest_path = dir.join(MANIFEST_FILE);
    match fs::remove_file(&manifest_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ArtifactsError::io(manifest_path, e)),
    }
    for (i, output) in outputs.iter().enumerate() {
        place(i, output, &dir.join(&output.file))?;
    }
    remove_unlisted(dir, outputs)?;
    write_atomic(&manifest_path, manifest_json)?;
    Ok(())
}

/// `publish` on S3, from the stage's local directory: delete the manifest object, upload the
/// outputs (large ones in parts), put the manifest last, then delete objects of earlier runs
/// that it does not list.
fn upload_stage(
    remote: &Remote,
    unit: &str,
    dir: &Path,
    outputs: &[OutputFile],
    manifest_json: Vec<u8>,
) -> Result<(), ArtifactsError> {
    let started = Instant::now();
    let manifest_key = remote.key(&format!("{unit}/{MANIFEST_FILE}"));
    remote.bucket.delete(&manifest_key)?;
    let files: Vec<(PathBuf, String)> =
        outputs.iter().map(|o| (dir.join(&o.file), remote.key(&format!("{unit}/{}", o.file)))).collect();
    remote.bucket.upload_many(&files)?;
    remote.bucket.put(&manifest_key, manifest_json)?;
    let listed: Vec<String> = outputs.iter().map(|o| remote.key(&format!("{unit}/{}", o.file))).collect();
    for object in remote.bucket.list(&remote.key(unit))? {
        if object.key != manifest_key && !listed.contains(&object.key) {
            remote.bucket.delete(&object.key)?;
        }
    }
    tracing::info!(
        unit,
        to = %remote.bucket.url(&remote.key(unit)),
        files = outputs.len(),
        bytes = outputs.iter().map(|o| o.bytes).sum::<u64>(),
        seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
        "stage uploaded"
    );
    Ok(())
}

fn parse_manifest(bytes: &[u8]) -> Result<Manifest, Untrusted> {
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| Untrusted::InvalidManifest(e.to_string()))?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(Untrusted::ManifestFormat { found: manifest.format, reads: MANIFEST_FORMAT });
    }
    Ok(manifest)
}

/// Every listed output must exist (`size_of(i)` is `Some`) with its recorded size.
fn check_outputs(outputs: &[OutputFile], size_of: impl Fn(usize) -> Option<u64>) -> Result<(), Untrusted> {
    for (i, output) in outputs.iter().enumerate() {
        match size_of(i) {
            Some(size) if size == output.bytes => {}
            Some(size) => {
                return Err(Untrusted::OutputSize { file: output.file.clone(), size, expected: output.bytes });
            }
            None => return Err(Untrusted::MissingOutput { file: output.file.clone() }),
        }
    }
    Ok(())
}

pub(crate) fn checked_key(key: &str) -> Result<(), ArtifactsError> {
    store::check_key(key).map_err(|reason| ArtifactsError::BadKey { key: key.to_string(), reason })
}

pub(crate) fn absolute(path: &Path) -> String {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}

/// Appends the keys of the files under `dir` (whose key is `prefix`), skipping hidden names:
/// temporary files, mirror sidecars and staging.
fn list_local(dir: &Path, prefix: &str, keys: &mut Vec<String>) -> Result<(), ArtifactsError> {
    for entry in fs::read_dir(dir).map_err(|e| ArtifactsError::io(dir, e))? {
        let entry = entry.map_err(|e| ArtifactsError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let key = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        let path = entry.path();
        if path.is_dir() {
            list_local(&path, &key, keys)?;
        } else {
            keys.push(key);
        }
    }
    Ok(())
}

/// Removes the staging directories of this stage left by processes that no longer run (killed
/// mid-stage); a live process's staging directory is never touched.
fn remove_abandoned_staging(staging_root: &Path, stage: &str) {
    let Ok(entries) = fs::read_dir(staging_root) else { return };
    let prefix = format!("{stage}-");
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Removes files of an earlier run that the new manifest does not list.
fn remove_unlisted(dir: &Path, outputs: &[OutputFile]) -> Result<(), ArtifactsError> {
    for entry in fs::read_dir(dir).map_err(|e| ArtifactsError::io(dir, e))? {
        let entry = entry.map_err(|e| ArtifactsError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != MANIFEST_FILE && !outputs.iter().any(|o| o.file == name) && entry.path().is_file() {
            fs::remove_file(entry.path()).map_err(|e| ArtifactsError::io(entry.path(), e))?;
        }
    }
    Ok(())
}

impl Drop for StageWriter {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.staging);
        // Only empty directories go, so earlier outputs are never touched.
        let _ = fs::remove_dir(self.artifacts.root.join(STAGING_DIR));
        if !self.committed {
            let _ = fs::remove_dir(&self.artifacts.root);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;

    use super::*;
    use crate::Stage;

    fn commit(artifacts: &Artifacts, stage: &str, run: &str, files: &[(&str, &[u8])]) -> Manifest {
        let mut out = artifacts.begin(stage, run).unwrap();
        for (file, bytes) in files {
            out.write_file(file, bytes).unwrap();
        }
        out.commit("fp".into(), serde_json::json!({}), &serde_json::json!({})).unwrap()
    }

    fn keys(bucket: &Bucket) -> Vec<String> {
        bucket.list("").unwrap().into_iter().map(|o| o.key).collect()
    }

    #[test]
    fn a_commit_lands_on_s3_and_another_mirror_reads_it() {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let bucket = Bucket::new("b", Arc::new(InMemory::new()));
        let writer = Artifacts::on_bucket(bucket.clone(), "runs/1", dirs.0.path());
        let written = commit(&writer, "als", "r1", &[("a.json", b"{}"), ("model.bin", b"12345")]);
        assert_eq!(keys(&bucket), ["runs/1/als/a.json", "runs/1/als/manifest.json", "runs/1/als/model.bin"]);

        let reader = Artifacts::on_bucket(bucket.clone(), "runs/1", dirs.1.path());
        assert_eq!(reader.manifest("als").unwrap(), written);
        assert_eq!(fs::read(dirs.1.path().join("als/model.bin")).unwrap(), b"12345");
        assert_eq!(
            fs::read(dirs.1.path().join("als").join(MANIFEST_FILE)).unwrap(),
            fs::read(dirs.0.path().join("als").join(MANIFEST_FILE)).unwrap()
        );
        assert_eq!(reader.location_of("als", "a.json"), "s3://b/runs/1/als/a.json");

        // A newer run replaces the outputs: old objects and the mirror's old files go.
        let newer = commit(&writer, "als", "r2", &[("model.bin", b"6789")]);
        assert_eq!(keys(&bucket), ["runs/1/als/manifest.json", "runs/1/als/model.bin"]);
        assert_eq!(reader.manifest("als").unwrap(), newer);
        assert_eq!(fs::read(dirs.1.path().join("als/model.bin")).unwrap(), b"6789");
        assert!(!dirs.1.path().join("als/a.json").exists());
        let err = reader.manifest(Stage::Bpr).unwrap_err();
        assert!(matches!(err, ArtifactsError::Incomplete { reason: Untrusted::NoManifest, .. }), "{err}");
        let err = err.to_string();
        assert!(err.contains("s3://b/runs/1/bpr") && err.contains("no manifest.json"), "{err}");
    }

    #[test]
    fn a_mirror_that_is_current_is_not_downloaded_again() {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let bucket = Bucket::new("b", Arc::new(InMemory::new()));
        let writer = Artifacts::on_bucket(bucket.clone(), "", dirs.0.path());
        commit(&writer, "eda", "r1", &[("stats.json", b"[1]")]);
        let reader = Artifacts::on_bucket(bucket.clone(), "", dirs.1.path());
        reader.manifest("eda").unwrap();
        // A mirror file edited in place (same size) shows that nothing was downloaded.
        let local = dirs.1.path().join("eda/stats.json");
        fs::write(&local, b"[2]").unwrap();
        reader.manifest("eda").unwrap();
        assert_eq!(fs::read(&local).unwrap(), b"[2]");
        // A mirror file of the wrong size is not the manifest's: the stage is mirrored again.
        fs::write(&local, b"[22]").unwrap();
        reader.manifest("eda").unwrap();
        assert_eq!(fs::read(&local).unwrap(), b"[1]");
    }

    #[test]
    fn s3_outputs_are_trusted_only_as_listed() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::new("b", Arc::new(InMemory::new()));
        let artifacts = Artifacts::on_bucket(bucket.clone(), "p", dir.path());
        commit(&artifacts, "matrices", "r1", &[("users.parquet", b"abc"), ("items.parquet", b"de")]);
        bucket.put("p/matrices/items.parquet", b"defg".to_vec()).unwrap();
        let reason = || artifacts.manifest("matrices").unwrap_err().reason();
        assert_eq!(reason(), "items.parquet has 4 bytes, the manifest says 2");
        bucket.delete("p/matrices/users.parquet").unwrap();
        assert_eq!(reason(), "users.parquet is missing");
        bucket.put("p/matrices/manifest.json", b"{".to_vec()).unwrap();
        assert!(reason().contains("not a valid manifest"));
        // The local copy does not stand in for S3.
        bucket.delete("p/matrices/manifest.json").unwrap();
        assert_eq!(reason(), "no manifest.json");
    }

    #[test]
    fn objects_are_written_read_and_listed_locally_and_on_s3() {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let bucket = Bucket::new("b", Arc::new(InMemory::new()));
        let remote = Artifacts::on_bucket(bucket.clone(), "p", dirs.0.path());
        let local = Artifacts::new(dirs.1.path());
        for artifacts in [&remote, &local] {
            artifacts.write_object("runs/a/run.json", b"a").unwrap();
            artifacts.write_object("runs/b/run.json", b"b").unwrap();
            artifacts.write_object("runs2/c.json", b"c").unwrap();
            assert_eq!(artifacts.read_object("runs/a/run.json").unwrap().as_deref(), Some(&b"a"[..]));
            assert_eq!(artifacts.read_object("runs/none.json").unwrap(), None);
            assert_eq!(artifacts.list_objects("runs/").unwrap(), ["runs/a/run.json", "runs/b/run.json"]);
            assert_eq!(artifacts.list_objects("runs/a").unwrap(), ["runs/a/run.json"]);
            assert_eq!(artifacts.list_objects("runs/a/run.json").unwrap(), Vec::<String>::new());
            assert_eq!(artifacts.list_objects("none").unwrap(), Vec::<String>::new());
            assert!(artifacts.write_object("../x", b"").is_err());
            assert!(artifacts.read_object("a//b").is_err());
        }
        assert_eq!(fs::read(dirs.0.path().join("runs/b/run.json")).unwrap(), b"b", "written to the mirror too");
        assert_eq!(keys(&bucket), ["p/runs/a/run.json", "p/runs/b/run.json", "p/runs2/c.json"]);
        // Another mirror of the same prefix reads and lists what S3 holds.
        let other = Artifacts::on_bucket(bucket, "p", dirs.2.path());
        assert_eq!(other.read_object("runs2/c.json").unwrap().as_deref(), Some(&b"c"[..]));
        assert_eq!(other.list_objects("").unwrap().len(), 3);
    }
}
