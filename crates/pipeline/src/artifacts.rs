//! The artifact store: one directory per stage, published atomically, manifest last.
//!
//! A stage writes its outputs into a private staging directory. On success the previous
//! manifest is removed, the outputs are renamed into `artifacts/<stage>/` and the new manifest
//! is written last. A reader trusts only outputs that a manifest lists with a matching size,
//! so a kill at any moment leaves either the previous complete outputs or none.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use musicrec_data::DataError;
use musicrec_data::atomic::write_atomic;
use musicrec_data::parquet_io::WrittenFile;
use serde::{Deserialize, Serialize};

use crate::error::PipelineError;
use crate::progress;
use crate::stage::Stage;

pub const MANIFEST_FILE: &str = "manifest.json";
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

#[derive(Debug, Clone)]
pub struct Artifacts {
    root: PathBuf,
}

impl Artifacts {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn stage_dir(&self, stage: Stage) -> PathBuf {
        self.dir_of(stage.as_str())
    }

    /// The directory of the stage called `name`; readers that list stages this build may not
    /// have (the report reads every model it finds) address stages by name.
    pub fn dir_of(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The manifest of a stage's complete outputs, after checking every listed output exists
    /// with its recorded size.
    pub fn manifest(&self, stage: Stage) -> Result<Manifest, String> {
        self.manifest_of(stage.as_str())
    }

    /// `manifest` of the stage called `name`.
    pub fn manifest_of(&self, name: &str) -> Result<Manifest, String> {
        let dir = self.dir_of(name);
        let path = dir.join(MANIFEST_FILE);
        let text = fs::read_to_string(&path).map_err(|_| format!("no {MANIFEST_FILE}"))?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| format!("{MANIFEST_FILE} is not a valid manifest: {e}"))?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(format!("manifest format {}, this program reads {MANIFEST_FORMAT}", manifest.format));
        }
        for output in &manifest.outputs {
            match fs::metadata(dir.join(&output.file)) {
                Ok(meta) if meta.len() == output.bytes => {}
                Ok(meta) => {
                    return Err(format!(
                        "{} has {} bytes, the manifest says {}",
                        output.file,
                        meta.len(),
                        output.bytes
                    ));
                }
                Err(_) => return Err(format!("{} is missing", output.file)),
            }
        }
        Ok(manifest)
    }

    /// The manifest of `stage`'s outputs that `needed_by` (a stage or a command) reads, or an
    /// error telling the user to run that stage first.
    pub fn require(&self, stage: Stage, needed_by: &'static str) -> Result<Manifest, PipelineError> {
        self.manifest(stage).map_err(|reason| PipelineError::MissingUpstream {
            stage: needed_by,
            upstream: stage.as_str(),
            dir: self.stage_dir(stage).display().to_string(),
            reason,
        })
    }

    /// Writes a whole object at `key` (a `/`-separated path under the root) atomically.
    pub fn write_object(&self, key: &str, bytes: &[u8]) -> Result<(), PipelineError> {
        write_atomic(self.root.join(key), bytes)?;
        Ok(())
    }

    /// The object at `key`, or `None` when there is none.
    pub fn read_object(&self, key: &str) -> Result<Option<Vec<u8>>, PipelineError> {
        let path = self.root.join(key);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(DataError::io(&path, e).into()),
        }
    }

    /// Keys (relative to the root, `/`-separated, sorted) of the objects whose key starts with
    /// `prefix`.
    pub fn list_objects(&self, prefix: &str) -> Result<Vec<String>, PipelineError> {
        // Only the directory the prefix ends in (and below) can hold matches.
        let dir_key = prefix.rsplit_once('/').map_or("", |(dir, _)| dir);
        let mut keys = Vec::new();
        let mut pending = vec![(self.root.join(dir_key), dir_key.to_string())];
        while let Some((dir, key)) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(DataError::io(&dir, e).into()),
            };
            for entry in entries {
                let entry = entry.map_err(|e| DataError::io(&dir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let child = if key.is_empty() { name } else { format!("{key}/{name}") };
                if entry.path().is_dir() {
                    pending.push((entry.path(), child));
                } else if child.starts_with(prefix) {
                    keys.push(child);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Starts writing a stage's outputs into a fresh staging directory.
    pub fn begin(&self, stage: Stage, run_id: &str) -> Result<StageWriter, PipelineError> {
        self.begin_named(stage.as_str(), run_id)
    }

    /// `begin` for the unit called `name`: a stage, or a nested unit such as a shard's part
    /// (`shards/als/part-0000-of-0004`).
    pub fn begin_named(&self, name: &str, run_id: &str) -> Result<StageWriter, PipelineError> {
        let staging_root = self.root.join(STAGING_DIR);
        // Flat staging names, so abandoned ones of nested units are found and removed too.
        let key = name.replace('/', ".");
        remove_abandoned_staging(&staging_root, &key);
        let staging = staging_root.join(format!("{key}-{}", std::process::id()));
        fs::create_dir_all(&staging).map_err(|e| DataError::io(&staging, e))?;
        progress::reset_peak_rss();
        Ok(StageWriter {
            artifacts: self.clone(),
            stage: name.to_string(),
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
    pub fn write_file(&mut self, file: &str, bytes: &[u8]) -> Result<(), PipelineError> {
        let written = write_atomic(self.path(file), bytes)?;
        self.add_file(file, written);
        Ok(())
    }

    /// Records what the stage read: the data location or an upstream stage's run id.
    pub fn add_input(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.inputs.insert(name.into(), value.into());
    }

    /// Publishes the outputs and writes the manifest last.
    pub fn commit(
        mut self,
        config_fingerprint: String,
        params: serde_json::Value,
        summary: serde_json::Value,
    ) -> Result<Manifest, PipelineError> {
        let dir = self.artifacts.dir_of(&self.stage);
        fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        let manifest_path = dir.join(MANIFEST_FILE);
        // From here until the new manifest lands, the stage has no trusted outputs.
        match fs::remove_file(&manifest_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DataError::io(&manifest_path, e).into()),
        }
        for output in &self.outputs {
            let (from, to) = (self.staging.join(&output.file), dir.join(&output.file));
            fs::rename(&from, &to).map_err(|e| DataError::io(&to, e))?;
        }
        remove_unlisted(&dir, &self.outputs)?;
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            stage: self.stage.clone(),
            run_id: self.run_id.clone(),
            started_at: self.started_at.to_rfc3339(),
            finished_at: chrono::Utc::now().to_rfc3339(),
            duration_s: self.started.elapsed().as_secs_f64(),
            peak_rss_bytes: progress::peak_rss_bytes(),
            config_fingerprint,
            params,
            inputs: std::mem::take(&mut self.inputs),
            outputs: std::mem::take(&mut self.outputs),
            summary,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifests serialize");
        write_atomic(&manifest_path, &json)?;
        self.committed = true;
        Ok(manifest)
    }
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
fn remove_unlisted(dir: &Path, outputs: &[OutputFile]) -> Result<(), PipelineError> {
    for entry in fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name != MANIFEST_FILE && !outputs.iter().any(|o| o.file == name) && entry.path().is_file() {
            fs::remove_file(entry.path()).map_err(|e| DataError::io(&entry.path(), e))?;
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
    use super::*;

    #[test]
    fn objects_are_written_read_and_listed_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = Artifacts::new(dir.path().join("art"));
        assert_eq!(artifacts.list_objects("runs/").unwrap(), Vec::<String>::new(), "no directory, no keys");
        assert_eq!(artifacts.read_object("runs/a.json").unwrap(), None);
        artifacts.write_object("runs/b.json", b"B").unwrap();
        artifacts.write_object("runs/a.json", b"A").unwrap();
        artifacts.write_object("runs/sub/c.json", b"C").unwrap();
        artifacts.write_object("runsx/d.json", b"D").unwrap();
        assert_eq!(artifacts.read_object("runs/a.json").unwrap().as_deref(), Some(&b"A"[..]));
        assert_eq!(artifacts.list_objects("runs/").unwrap(), ["runs/a.json", "runs/b.json", "runs/sub/c.json"]);
        assert_eq!(artifacts.list_objects("runs/a").unwrap(), ["runs/a.json"]);
        assert_eq!(artifacts.list_objects("").unwrap().len(), 4);
    }
}
