//! Run-level publication: every pipeline run writes a new version of the artifact set, and one
//! small pointer, `CURRENT`, names the version readers use. It switches only when a run has
//! written every stage it runs, so a run killed or failed at any moment leaves the previous
//! version served and evaluated exactly as before.
//!
//! Layout under the artifacts root (the same keys locally and on S3):
//! - `versions/<id>/<unit>/`: the units (stages, a sharded stage's model) version `<id>` wrote,
//!   each published with the stage protocol (`artifacts`), manifest last;
//! - `versions/<id>/version.json`: the version's index, written when the run finishes: for every
//!   unit, the version whose directory holds it. A run carries the units it does not rerun over
//!   from the version it starts from by naming them here, so carrying costs one small file,
//!   never a copy, and works the same on a disk and on S3 (hard links would not exist on S3,
//!   and a server-side copy costs time per byte);
//! - `CURRENT`: the id of the current version. Locally replaced by rename (then the directory is
//!   synced); on S3 by a conditional put naming the etag read when the run started (or "absent"),
//!   so of two writers at most one switches it.
//!
//! A shard's part (`shards/<stage>/part-*`) is no version's unit: scorers run concurrently and
//! publish no version, so a part lives beside the fitted model it was scored with, in that
//! model's version directory, where the merge finds it.
//!
//! The layout from before versions (stage directories at the top, no `CURRENT`) is read as the
//! pseudo-version `legacy`, in place; the first run starts from it and carries its stages over by
//! reference like any version's. Nothing has to be moved or redone.
//!
//! Readers pin one version for their whole read (`Pinned`) and, locally (or in an S3 mirror),
//! hold a shared lock on the version's `.readers` file meanwhile; pruning skips a version whose
//! lock it cannot take, and everything that version's index names.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::sync::{Arc, Mutex};

use musicrec_data::atomic::write_atomic;
use serde::{Deserialize, Serialize};

use crate::artifacts::{Artifacts, View, checked_key};
use crate::error::ArtifactsError;
use crate::layout::{MANIFEST_FILE, Stage, shards};

/// The object naming the current version.
pub const POINTER: &str = "CURRENT";
/// Where versions live, under the root.
pub const VERSIONS_DIR: &str = "versions";
/// A version's index, in its directory.
pub const VERSION_FILE: &str = "version.json";
/// The pseudo-version of the layout from before versions: its units are at the top.
pub const LEGACY: &str = "legacy";
/// The file readers of a version hold a shared lock on (hidden: not an object).
const READERS_FILE: &str = ".readers";
const VERSION_FORMAT: u32 = 1;

/// A published version: its index and what the run that wrote it recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionRecord {
    pub format: u32,
    /// The version's id: the id of the run that wrote it.
    pub id: String,
    /// When the run published it (RFC 3339).
    pub published_at: String,
    /// The version the run started from (`legacy` for the layout from before versions).
    pub base: Option<String>,
    /// The run's input data and its fingerprint (see the run records).
    pub data: String,
    pub data_fingerprint: String,
    /// The units this version wrote itself, in the order written.
    pub written: Vec<String>,
    /// Every unit of the version and the version whose directory holds it.
    pub units: BTreeMap<String, String>,
}

impl VersionRecord {
    /// The units carried over from other versions.
    pub fn carried(&self) -> impl Iterator<Item = (&String, &String)> {
        self.units.iter().filter(|(_, holder)| **holder != self.id)
    }
}

/// What a run records about its version when it publishes it.
#[derive(Debug, Clone)]
pub struct Publication {
    pub data: String,
    pub data_fingerprint: String,
}

/// One version pinned for reading.
#[derive(Debug)]
pub(crate) struct Pinned {
    /// `None`: the layout from before versions (or nothing published yet).
    pub(crate) version: Option<String>,
    pub(crate) units: BTreeMap<String, String>,
    /// The shared lock that keeps pruning off this version while the handle lives.
    _lease: Option<File>,
}

impl Pinned {
    pub(crate) fn unit_key(&self, name: &str) -> String {
        match &self.version {
            None => name.to_string(),
            Some(id) => resolve(&self.units, id, name),
        }
    }
}

/// The version a run is writing: the index it started from, with its own units added as they
/// are committed.
#[derive(Debug)]
pub(crate) struct Draft {
    pub(crate) id: String,
    base: Option<String>,
    /// On S3, the pointer's etag when the run started (`None`: there was no pointer).
    pointer_etag: Option<String>,
    units: BTreeMap<String, String>,
    written: Vec<String>,
}

impl Draft {
    pub(crate) fn unit_key(&self, name: &str) -> String {
        resolve(&self.units, &self.id, name)
    }

    /// Records a committed unit (a part is not one: it lives beside its model).
    pub(crate) fn wrote(&mut self, name: &str, key: &str) {
        if key == unit_dir(&self.id, name) {
            self.units.insert(name.to_string(), self.id.clone());
            self.written.retain(|w| w != name);
            self.written.push(name.to_string());
        }
    }
}

/// The key of unit `name` in the directory of version `holder`.
pub(crate) fn unit_dir(holder: &str, name: &str) -> String {
    if holder == LEGACY { name.to_string() } else { format!("{VERSIONS_DIR}/{holder}/{name}") }
}

/// Where unit `name` is for a version with `units` (its own id `own`): the holder the index
/// names; a shard's part beside its model; a unit the version lacks in its own directory
/// (where nothing is, so it reads as missing).
fn resolve(units: &BTreeMap<String, String>, own: &str, name: &str) -> String {
    let holder = units
        .get(name)
        .or_else(|| shards::model_of_part(name).and_then(|model| units.get(&model)))
        .map_or(own, String::as_str);
    unit_dir(holder, name)
}

fn version_key(id: &str) -> String {
    format!("{VERSIONS_DIR}/{id}/{VERSION_FILE}")
}

/// A version id must be one plain key segment.
fn check_id(id: &str, location: &str) -> Result<(), ArtifactsError> {
    let plain = !id.is_empty() && !id.contains('/') && !id.starts_with('.') && checked_key(id).is_ok();
    if plain {
        Ok(())
    } else {
        Err(ArtifactsError::Pointer { location: location.to_string(), reason: format!("`{id}` is not a version id") })
    }
}

impl Artifacts {
    /// A handle on the version `CURRENT` names now (or on the layout from before versions when
    /// there is no pointer): what a reader that must see the newest publication uses, such as
    /// the service's reload.
    pub fn current(&self) -> Result<Artifacts, ArtifactsError> {
        Ok(self.with_view(View::Pinned(Arc::new(self.pin(None)?))))
    }

    /// A handle on version `id`, published or not current.
    pub fn version(&self, id: &str) -> Result<Artifacts, ArtifactsError> {
        Ok(self.with_view(View::Pinned(Arc::new(self.pin(Some(id))?))))
    }

    /// The id of the version this handle reads or writes (`None`: the layout from before
    /// versions, or nothing published yet).
    pub fn version_id(&self) -> Result<Option<String>, ArtifactsError> {
        match &self.view {
            View::Draft(draft) => Ok(Some(draft.lock().expect("no panic while a draft is locked").id.clone())),
            View::Pinned(pinned) => Ok(pinned.version.clone()),
            View::Unpinned(_) => Ok(self.current()?.version_id()?),
        }
    }

    fn with_view(&self, view: View) -> Artifacts {
        Artifacts { root: self.root.clone(), remote: self.remote.clone(), view }
    }

    /// Reads the pointer: the current version's id and, on S3, its etag.
    pub(crate) fn read_pointer(&self) -> Result<Option<(String, Option<String>)>, ArtifactsError> {
        let read = match &self.remote {
            Some(r) => r.bucket.get_tagged(&r.key(POINTER))?.map(|t| (t.bytes, t.etag)),
            None => self.read_object(POINTER)?.map(|bytes| (bytes, None)),
        };
        let Some((bytes, etag)) = read else { return Ok(None) };
        let id = String::from_utf8_lossy(&bytes).trim().to_string();
        check_id(&id, &self.location_of_key(POINTER))?;
        Ok(Some((id, etag)))
    }

    fn location_of_key(&self, key: &str) -> String {
        match &self.remote {
            Some(r) => r.bucket.url(&r.key(key)),
            None => crate::artifacts::absolute(&self.root.join(key)),
        }
    }

    /// The index of version `id`, or an error naming the versions there are.
    pub fn version_record(&self, id: &str) -> Result<VersionRecord, ArtifactsError> {
        check_id(id, &self.location())?;
        let key = version_key(id);
        let Some(bytes) = self.read_object(&key)? else {
            let known: Vec<String> = self.versions()?.into_iter().map(|v| v.id).collect();
            return Err(ArtifactsError::UnknownVersion {
                version: id.to_string(),
                location: self.location(),
                known: if known.is_empty() { "none".into() } else { known.join(", ") },
            });
        };
        let record: VersionRecord = serde_json::from_slice(&bytes).map_err(|e| ArtifactsError::Pointer {
            location: self.location_of_key(&key),
            reason: format!("not a version index: {e}"),
        })?;
        if record.format != VERSION_FORMAT || record.id != id {
            return Err(ArtifactsError::Pointer {
                location: self.location_of_key(&key),
                reason: format!(
                    "format {} of version `{}`, this program reads format {VERSION_FORMAT}",
                    record.format, record.id
                ),
            });
        }
        Ok(record)
    }

    /// Pins `id` (or the current version) for reading, holding its readers' lock. A version
    /// pruned between reading the pointer and taking the lock is read again from the pointer.
    pub(crate) fn pin(&self, id: Option<&str>) -> Result<Pinned, ArtifactsError> {
        for _ in 0..3 {
            let version = match id {
                Some(id) => Some(id.to_string()),
                None => self.read_pointer()?.map(|(id, _)| id),
            };
            let lease = self.reader_lease(version.as_deref().unwrap_or(LEGACY));
            let units = match &version {
                Some(v) => match self.version_record(v) {
                    Ok(record) => record.units,
                    Err(e @ ArtifactsError::UnknownVersion { .. }) if id.is_none() => {
                        // Pruned between reading the pointer and taking the lock: the pointer
                        // moved since; read it again. A pointer that stays is broken.
                        if self.read_pointer()?.map(|(now, _)| now) != version {
                            continue;
                        }
                        return Err(ArtifactsError::Pointer {
                            location: self.location_of_key(POINTER),
                            reason: format!("names a version that is not there: {e}"),
                        });
                    }
                    Err(e) => return Err(e),
                },
                None => BTreeMap::new(),
            };
            return Ok(Pinned { version, units, _lease: lease });
        }
        Err(ArtifactsError::Pointer { location: self.location(), reason: "the pointer keeps moving; try again".into() })
    }

    /// A shared lock on version `id`'s readers file, when its directory exists locally.
    fn reader_lease(&self, id: &str) -> Option<File> {
        let path = self.root.join(readers_key(id));
        if !path.parent().is_some_and(|p| p.is_dir()) {
            return None;
        }
        let file = File::options().create(true).truncate(false).write(true).open(&path).ok()?;
        file.lock_shared().ok()?;
        Some(file)
    }

    /// Starts the version of run `run_id`, from the version current now (the caller holds the
    /// writer lock, see `lock`). Every unit of that version is carried over until the run
    /// writes its own.
    pub fn begin_version(&self, run_id: &str) -> Result<Artifacts, ArtifactsError> {
        check_id(run_id, &self.location())?;
        let pointer = self.read_pointer()?;
        let (base, pointer_etag, units) = match pointer {
            Some((id, etag)) => {
                let units = self.version_record(&id)?.units;
                (Some(id), etag, units)
            }
            None => {
                let units = self.legacy_units()?;
                let base = (!units.is_empty()).then(|| LEGACY.to_string());
                (base, None, units)
            }
        };
        let draft = Draft { id: run_id.to_string(), base, pointer_etag, units, written: Vec::new() };
        Ok(self.with_view(View::Draft(Arc::new(Mutex::new(draft)))))
    }

    /// The units of the layout from before versions: stages and sharded models with a manifest
    /// at the top.
    fn legacy_units(&self) -> Result<BTreeMap<String, String>, ArtifactsError> {
        let mut units = BTreeMap::new();
        for key in self.list_objects("")? {
            let Some(unit) = key.strip_suffix(&format!("/{MANIFEST_FILE}")) else { continue };
            let is_stage = Stage::ALL.iter().any(|s| s.as_str() == unit);
            let is_model = unit.starts_with("shards/") && unit.ends_with("/model");
            if is_stage || is_model {
                units.insert(unit.to_string(), LEGACY.to_string());
            }
        }
        Ok(units)
    }

    /// Where a handle writes unit `name` (see `begin`).
    pub(crate) fn write_key(&self, name: &str) -> Result<String, ArtifactsError> {
        let is_part = shards::model_of_part(name).is_some();
        match &self.view {
            View::Draft(draft) => {
                let draft = draft.lock().expect("no panic while a draft is locked");
                Ok(if is_part { draft.unit_key(name) } else { unit_dir(&draft.id, name) })
            }
            View::Pinned(_) | View::Unpinned(_) => {
                let pinned = match &self.view {
                    View::Pinned(p) => p.clone(),
                    _ => Arc::new(self.pin(None)?),
                };
                if is_part || pinned.version.is_none() {
                    Ok(pinned.unit_key(name))
                } else {
                    Err(ArtifactsError::NotWritable { unit: name.to_string(), location: self.location() })
                }
            }
        }
    }

    /// Publishes the draft version: its index first, then the pointer. On S3 the pointer is
    /// replaced only if it is still what the run started from; otherwise nothing is published
    /// and the error says another writer did.
    pub fn publish_version(&self, publication: &Publication) -> Result<VersionRecord, ArtifactsError> {
        let View::Draft(draft) = &self.view else {
            return Err(ArtifactsError::NotWritable { unit: POINTER.into(), location: self.location() });
        };
        let draft = draft.lock().expect("no panic while a draft is locked");
        let record = VersionRecord {
            format: VERSION_FORMAT,
            id: draft.id.clone(),
            published_at: chrono::Utc::now().to_rfc3339(),
            base: draft.base.clone(),
            data: publication.data.clone(),
            data_fingerprint: publication.data_fingerprint.clone(),
            written: draft.written.clone(),
            units: draft.units.clone(),
        };
        let json = serde_json::to_vec_pretty(&record).expect("version records serialize");
        self.write_object(&version_key(&record.id), &json)?;
        let switched = self.switch_pointer(
            &record.id,
            draft.base.as_deref().filter(|b| *b != LEGACY),
            draft.pointer_etag.as_deref(),
        );
        if let Err(e) = switched {
            // Not published: the index must not make it look like a version one can roll back to.
            let _ = self.delete_tree(&version_key(&record.id));
            return Err(e);
        }
        tracing::info!(version = %record.id, written = record.written.len(), carried = record.carried().count(), "version published");
        Ok(record)
    }

    /// Points `CURRENT` at `id`. Locally: a temporary file renamed over it, then the directory
    /// synced (the caller holds the writer lock). On S3: a conditional put, against the etag
    /// read before (`expected` names the version then current, for the message).
    fn switch_pointer(&self, id: &str, expected: Option<&str>, etag: Option<&str>) -> Result<(), ArtifactsError> {
        let bytes = format!("{id}\n").into_bytes();
        match &self.remote {
            Some(r) => {
                if r.bucket.put_if(&r.key(POINTER), bytes, etag)?.is_none() {
                    return Err(ArtifactsError::PointerMoved {
                        location: self.location(),
                        expected: expected.unwrap_or("none").to_string(),
                    });
                }
            }
            None => {
                let path = self.root.join(POINTER);
                write_atomic(&path, &bytes)?;
                File::open(&self.root).and_then(|dir| dir.sync_all()).map_err(|e| ArtifactsError::io(&self.root, e))?;
            }
        }
        Ok(())
    }

    /// Every published version, oldest first.
    pub fn versions(&self) -> Result<Vec<VersionRecord>, ArtifactsError> {
        let mut records = Vec::new();
        for id in self.version_dirs()? {
            let key = version_key(&id);
            let Some(bytes) = self.read_object(&key)? else { continue };
            match serde_json::from_slice::<VersionRecord>(&bytes) {
                Ok(record) if record.id == id => records.push(record),
                _ => tracing::warn!(version = %id, "skipped a version whose index cannot be read"),
            }
        }
        records.sort_by(|a, b| (&a.published_at, &a.id).cmp(&(&b.published_at, &b.id)));
        Ok(records)
    }

    /// The ids of every directory under `versions/`, published or not.
    fn version_dirs(&self) -> Result<BTreeSet<String>, ArtifactsError> {
        if self.remote.is_some() {
            return Ok(self
                .list_objects(VERSIONS_DIR)?
                .iter()
                .filter_map(|key| key.split('/').nth(1).map(str::to_string))
                .collect());
        }
        let dir = self.root.join(VERSIONS_DIR);
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(BTreeSet::new()) };
        Ok(entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with('.'))
            .collect())
    }

    /// Points `CURRENT` back at version `to`, or at the newest version published before the
    /// current one. The version must still have every unit complete. The caller holds the
    /// writer lock.
    pub fn rollback(&self, to: Option<&str>) -> Result<VersionRecord, ArtifactsError> {
        let pointer = self.read_pointer()?;
        let current = pointer.as_ref().map(|(id, _)| id.clone());
        let target = match to {
            Some(id) => self.version_record(id)?,
            None => {
                let versions = self.versions()?;
                let position = versions.iter().position(|v| Some(&v.id) == current.as_ref());
                match position.and_then(|p| p.checked_sub(1)).map(|p| versions[p].clone()) {
                    Some(v) => v,
                    None => {
                        return Err(ArtifactsError::UnknownVersion {
                            version: "before the current one".into(),
                            location: self.location(),
                            known: versions.iter().map(|v| v.id.clone()).collect::<Vec<_>>().join(", "),
                        });
                    }
                }
            }
        };
        let handle = self.version(&target.id)?;
        for unit in target.units.keys() {
            handle.manifest(unit).map_err(|e| ArtifactsError::Pointer {
                location: self.location(),
                reason: format!("version {} cannot be restored: {e}", target.id),
            })?;
        }
        let etag = pointer.as_ref().and_then(|(_, etag)| etag.as_deref());
        self.switch_pointer(&target.id, current.as_deref(), etag)?;
        Ok(target)
    }

    /// Deletes what no kept version needs: the `keep` newest published versions, the current
    /// one and any a reader holds (locally) are kept, with every unit their indexes name. A
    /// version not kept loses its index and the units it wrote that no kept version names;
    /// directories of runs that never published go whole. The caller holds the writer lock.
    /// Returns the ids of the versions dropped.
    pub fn prune(&self, keep: usize) -> Result<Vec<String>, ArtifactsError> {
        let current = self.read_pointer()?.map(|(id, _)| id);
        let versions = self.versions()?;
        let newest: BTreeSet<&str> = versions.iter().rev().take(keep.max(1)).map(|v| v.id.as_str()).collect();
        // Readers' locks are held while we decide and delete, so none can start on a version
        // being deleted (a reader that finds its version gone reads the pointer again).
        let mut leases = Vec::new();
        let mut kept: Vec<&VersionRecord> = Vec::new();
        for v in &versions {
            let keep_it = newest.contains(v.id.as_str()) || current.as_deref() == Some(&v.id);
            if keep_it || !self.take_readers_lock(&v.id, &mut leases) {
                kept.push(v);
            }
        }
        let referenced: BTreeSet<(&str, &str)> =
            kept.iter().flat_map(|v| v.units.iter().map(|(unit, holder)| (holder.as_str(), unit.as_str()))).collect();
        let holders: BTreeSet<&str> = referenced.iter().map(|(h, _)| *h).collect();
        let kept_ids: BTreeSet<&str> = kept.iter().map(|v| v.id.as_str()).collect();
        let mut dropped = Vec::new();
        for id in self.version_dirs()? {
            if kept_ids.contains(id.as_str()) {
                continue;
            }
            let published = versions.iter().find(|v| v.id == id);
            if !holders.contains(id.as_str()) {
                self.delete_tree(&format!("{VERSIONS_DIR}/{id}"))?;
            } else {
                self.delete_tree(&version_key(&id))?;
                for unit in published.map(|v| v.written.as_slice()).unwrap_or_default() {
                    if !referenced.contains(&(id.as_str(), unit.as_str())) {
                        self.delete_tree(&unit_dir(&id, unit))?;
                    }
                }
            }
            if published.is_some() {
                dropped.push(id);
            }
        }
        // The layout from before versions: its stages go once no kept version carries them.
        if current.is_some() && self.take_readers_lock(LEGACY, &mut leases) {
            let stages = Stage::ALL.iter().map(|s| (s.as_str().to_string(), s.as_str().to_string()));
            let models = Stage::SHARDABLE.iter().map(|s| (format!("shards/{}", s.as_str()), shards::model(*s)));
            for (dir, unit) in stages.chain(models) {
                if !referenced.contains(&(LEGACY, unit.as_str())) {
                    self.delete_tree(&dir)?;
                }
            }
        }
        Ok(dropped)
    }

    /// Takes the exclusive lock on version `id`'s readers file (kept in `leases` until the
    /// prune ends); false when a reader holds it.
    fn take_readers_lock(&self, id: &str, leases: &mut Vec<File>) -> bool {
        let path = self.root.join(readers_key(id));
        let Ok(file) = File::options().create(true).truncate(false).write(true).open(&path) else { return true };
        match file.try_lock() {
            Ok(()) => {
                leases.push(file);
                true
            }
            Err(_) => false,
        }
    }

    /// Deletes object `key` or every object under it (and on S3 the mirror's copy too).
    fn delete_tree(&self, key: &str) -> Result<(), ArtifactsError> {
        if let Some(r) = &self.remote {
            // A listing names the objects under a key, never the object at it.
            r.bucket.delete(&r.key(key))?;
            for object in r.bucket.list(&r.key(key))? {
                r.bucket.delete(&object.key)?;
            }
        }
        let path = self.root.join(key);
        let removed = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        match removed {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ArtifactsError::io(path, e)),
        }
    }
}

fn readers_key(id: &str) -> String {
    if id == LEGACY { READERS_FILE.to_string() } else { format!("{VERSIONS_DIR}/{id}/{READERS_FILE}") }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use musicrec_data::store::Bucket;
    use object_store::memory::InMemory;

    use super::*;

    fn commit(artifacts: &Artifacts, stage: &str, run: &str, bytes: &[u8]) {
        let mut out = artifacts.begin(stage, run).unwrap();
        out.write_file("out.bin", bytes).unwrap();
        out.commit("fp".into(), serde_json::json!({}), &serde_json::json!({})).unwrap();
    }

    fn read(artifacts: &Artifacts, stage: &str) -> Vec<u8> {
        artifacts.manifest(stage).unwrap();
        fs::read(artifacts.dir(stage).join("out.bin")).unwrap()
    }

    fn publication() -> Publication {
        Publication { data: "d".into(), data_fingerprint: "f".into() }
    }

    /// A run writing `stages` (each stage's bytes: `<run>:<stage>`) and publishing.
    fn run(store: &Artifacts, id: &str, stages: &[&str]) -> VersionRecord {
        let draft = store.begin_version(id).unwrap();
        for stage in stages {
            commit(&draft, stage, id, format!("{id}:{stage}").as_bytes());
        }
        draft.publish_version(&publication()).unwrap()
    }

    #[test]
    fn a_run_is_read_only_once_published_and_carries_what_it_does_not_rerun() {
        let dir = tempfile::tempdir().unwrap();
        let store = Artifacts::new(dir.path());
        run(&store, "r1", &["preprocess", "als"]);
        let pinned = store.current().unwrap();

        let draft = store.begin_version("r2").unwrap();
        commit(&draft, "als", "r2", b"r2:als");
        assert_eq!(read(&draft, "preprocess"), b"r1:preprocess", "the draft reads what it carries");
        assert_eq!(read(&draft, "als"), b"r2:als");
        assert_eq!(read(&store.current().unwrap(), "als"), b"r1:als", "unpublished: readers see r1");
        let record = draft.publish_version(&publication()).unwrap();
        assert_eq!(record.written, ["als"]);
        assert_eq!(record.carried().collect::<Vec<_>>(), [(&"preprocess".to_string(), &"r1".to_string())]);
        assert_eq!(fs::read_to_string(dir.path().join(POINTER)).unwrap(), "r2\n");

        let now = store.current().unwrap();
        assert_eq!((read(&now, "als"), read(&now, "preprocess")), (b"r2:als".to_vec(), b"r1:preprocess".to_vec()));
        assert_eq!(read(&pinned, "als"), b"r1:als", "a pinned reader keeps its version");
        assert_eq!(now.dir("preprocess"), dir.path().join("versions/r1/preprocess"), "carried, not copied");
        assert!(now.manifest("bpr").is_err());
        assert!(matches!(now.begin("als", "x"), Err(ArtifactsError::NotWritable { .. })));
        assert_eq!(store.versions().unwrap().iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), ["r1", "r2"]);
        let err = store.version("r9").unwrap_err().to_string();
        assert!(err.contains("no version `r9`") && err.contains("r1, r2"), "{err}");
    }

    #[test]
    fn a_pointer_to_no_version_is_named_as_broken() {
        let dir = tempfile::tempdir().unwrap();
        let store = Artifacts::new(dir.path());
        run(&store, "r1", &["preprocess"]);
        fs::write(dir.path().join(POINTER), "gone\n").unwrap();
        let err = store.current().unwrap_err();
        assert!(err.is_user_error());
        let err = err.to_string();
        assert!(err.contains("CURRENT: names a version that is not there") && err.contains("r1"), "{err}");
    }

    #[test]
    fn rollback_points_back_and_checks_the_version_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Artifacts::new(dir.path());
        run(&store, "r1", &["preprocess"]);
        run(&store, "r2", &["preprocess"]);
        assert_eq!(store.rollback(None).unwrap().id, "r1");
        assert_eq!(read(&store.current().unwrap(), "preprocess"), b"r1:preprocess");
        assert_eq!(store.rollback(Some("r2")).unwrap().id, "r2");
        fs::remove_file(dir.path().join("versions/r1/preprocess/out.bin")).unwrap();
        let err = store.rollback(Some("r1")).unwrap_err().to_string();
        assert!(err.contains("cannot be restored") && err.contains("out.bin is missing"), "{err}");
        assert_eq!(store.current().unwrap().version_id().unwrap().as_deref(), Some("r2"));
    }

    #[test]
    fn pruning_keeps_the_newest_the_current_the_held_and_what_they_carry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Artifacts::new(dir.path());
        run(&store, "r1", &["preprocess", "als"]);
        run(&store, "r2", &["als"]);
        let held = store.version("r2").unwrap();
        run(&store, "r3", &["als"]);
        run(&store, "r4", &["als"]);
        // A run that never published (killed) left a directory.
        commit(&store.begin_version("r5").unwrap(), "als", "r5", b"x");

        assert_eq!(store.prune(1).unwrap(), ["r1", "r3"], "r2 is held by a reader");
        let ids: Vec<String> = store.versions().unwrap().into_iter().map(|v| v.id).collect();
        assert_eq!(ids, ["r2", "r4"]);
        let root = dir.path();
        assert!(root.join("versions/r1/preprocess/out.bin").exists(), "carried by r2 and r4");
        assert!(!root.join("versions/r1/als").exists() && !root.join("versions/r1/version.json").exists());
        assert!(!root.join("versions/r3").exists() && !root.join("versions/r5").exists());
        assert_eq!(read(&held, "als"), b"r2:als");
        drop(held);
        assert_eq!(store.prune(1).unwrap(), ["r2"]);
        assert_eq!(read(&store.current().unwrap(), "preprocess"), b"r1:preprocess");
    }

    #[test]
    fn the_layout_from_before_versions_is_read_in_place_and_carried_by_reference() {
        let dir = tempfile::tempdir().unwrap();
        let store = Artifacts::new(dir.path());
        // Today's layout: a handle with no pointer writes and reads the stages at the top.
        {
            let old = Artifacts::new(dir.path());
            commit(&old, "preprocess", "old", b"old:preprocess");
            commit(&old, "als", "old", b"old:als");
            assert_eq!(read(&old, "als"), b"old:als");
        }

        let record = run(&store, "r1", &["als"]);
        assert_eq!(record.base.as_deref(), Some(LEGACY));
        assert_eq!(record.units["preprocess"], LEGACY);
        let now = store.current().unwrap();
        assert_eq!((read(&now, "preprocess"), read(&now, "als")), (b"old:preprocess".to_vec(), b"r1:als".to_vec()));
        assert_eq!(now.dir("preprocess"), dir.path().join("preprocess"));
        store.prune(3).unwrap();
        assert!(!dir.path().join("als").exists(), "no version carries the old als");
        assert!(dir.path().join("preprocess/out.bin").exists());
        run(&store, "r2", &["preprocess"]);
        drop(now);
        store.prune(1).unwrap();
        assert!(!dir.path().join("preprocess").exists(), "nothing carries the old layout any more");
    }

    #[test]
    fn a_part_lives_beside_its_model_in_the_version_that_fitted_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = Artifacts::new(dir.path());
        run(&store, "fit", &["shards/als/model"]);
        let scorer = store.current().unwrap();
        commit(&scorer, "shards/als/part-0000-of-0001", "score", b"part");
        assert!(dir.path().join("versions/fit/shards/als/part-0000-of-0001/out.bin").exists());
        let merge = store.begin_version("merge").unwrap();
        assert_eq!(read(&merge, "shards/als/part-0000-of-0001"), b"part");
    }

    #[test]
    fn on_s3_of_two_writers_from_one_version_only_the_first_publishes() {
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let bucket = Bucket::new("b", Arc::new(InMemory::new()));
        let store = Artifacts::on_bucket(bucket.clone(), "p", dirs.0.path());
        run(&store, "r1", &["preprocess"]);
        let (a, b) = (store.begin_version("a").unwrap(), store.begin_version("b").unwrap());
        commit(&a, "als", "a", b"a");
        commit(&b, "als", "b", b"b");
        a.publish_version(&publication()).unwrap();
        let err = b.publish_version(&publication()).unwrap_err();
        assert!(matches!(err, ArtifactsError::PointerMoved { .. }), "{err}");
        assert_eq!(bucket.get("p/CURRENT").unwrap().unwrap(), b"a\n");
        // Another machine's mirror reads the published version from S3.
        let other = Artifacts::on_bucket(bucket.clone(), "p", dirs.1.path());
        assert_eq!((read(&other, "als"), read(&other, "preprocess")), (b"a".to_vec(), b"r1:preprocess".to_vec()));
        assert_eq!(other.prune(1).unwrap(), ["r1"]);
        assert!(bucket.list("p/versions/b").unwrap().is_empty(), "the loser's objects are pruned");
        assert!(!bucket.list("p/versions/r1/preprocess").unwrap().is_empty(), "carried by a");
    }
}
