//! Where run records (and the stage outputs uploaded to MLflow) are read and written: the
//! artifact store, through a trait so tests can keep records in memory.

use musicrec_artifacts::Artifacts;
use musicrec_artifacts::layout::RUNS_PREFIX;

use crate::error::TrackingError;
use crate::record::{RunRecord, Status, record_key};

pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// Whole objects under one root, addressed by `/`-separated keys (`runs/<id>.json`).
pub trait RecordStore: Send + Sync {
    /// Writes `bytes` at `key` atomically: a reader sees the old object or the new one.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// The object at `key`, or `None` when there is none.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Keys (relative to the root) of the objects whose key starts with `prefix`.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
    /// Where `key` is, for messages (a path or URL).
    fn describe(&self, key: &str) -> String;
}

impl RecordStore for Artifacts {
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
        Ok(self.write_object(key, bytes)?)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.read_object(key)?)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.list_objects(prefix)?)
    }

    fn describe(&self, key: &str) -> String {
        self.root().join(key).display().to_string()
    }
}

pub fn save(store: &dyn RecordStore, record: &RunRecord) -> Result<(), TrackingError> {
    let key = record.key();
    store.put(&key, &record.to_json()).map_err(|source| TrackingError::Store { key: store.describe(&key), source })
}

/// The record with this id, or an error that says how to find ids.
pub fn load(store: &dyn RecordStore, id: &str) -> Result<RunRecord, TrackingError> {
    let key = record_key(id);
    match store.get(&key).map_err(|source| TrackingError::Store { key: store.describe(&key), source })? {
        Some(bytes) => RunRecord::from_json(&store.describe(&key), &bytes),
        None => Err(TrackingError::UnknownRun { id: id.to_string(), dir: store.describe(RUNS_PREFIX) }),
    }
}

/// The records of a store, and the ones that could not be read.
#[derive(Debug)]
pub struct Listing {
    /// Oldest first.
    pub records: Vec<RunRecord>,
    /// Each names its file: one damaged record must not hide every other run, nor vanish
    /// silently.
    pub unreadable: Vec<TrackingError>,
}

/// Every record, oldest first, and the records that do not parse.
pub fn list(store: &dyn RecordStore) -> Result<Listing, TrackingError> {
    let keys =
        store.list(RUNS_PREFIX).map_err(|source| TrackingError::Store { key: store.describe(RUNS_PREFIX), source })?;
    let (mut records, mut unreadable) = (Vec::new(), Vec::new());
    for key in keys.iter().filter(|k| k.ends_with(".json")) {
        let bytes = store.get(key).map_err(|source| TrackingError::Store { key: store.describe(key), source })?;
        // A record listed but gone by now was replaced mid-listing; skip it.
        if let Some(bytes) = bytes {
            match RunRecord::from_json(&store.describe(key), &bytes) {
                Ok(record) => records.push(record),
                Err(error) => unreadable.push(error),
            }
        }
    }
    records.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    Ok(Listing { records, unreadable })
}

/// Marks `abandoned` every record still `running` but of run `except` (the caller's own): the
/// caller holds the writer lock or found it free, so no run that writes them is alive. (A
/// sharded scorer on S3 runs without that lock; if one is marked, its own end record replaces
/// the mark.) Returns the records marked.
pub fn mark_abandoned(store: &dyn RecordStore, except: &str) -> Result<Vec<RunRecord>, TrackingError> {
    let mut marked = Vec::new();
    for mut record in list(store)?.records {
        if record.status == Status::Running && record.pipeline_run_id != except {
            record.abandon();
            save(store, &record)?;
            marked.push(record);
        }
    }
    Ok(marked)
}

#[cfg(test)]
pub(crate) mod memory {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    /// An in-memory store for tests.
    #[derive(Default)]
    pub struct MemoryStore(pub Mutex<BTreeMap<String, Vec<u8>>>);

    impl RecordStore for MemoryStore {
        fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StoreError> {
            self.0.lock().unwrap().insert(key.to_string(), bytes.to_vec());
            Ok(())
        }
        fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(self.0.lock().unwrap().get(key).cloned())
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
            Ok(self.0.lock().unwrap().keys().filter(|k| k.starts_with(prefix)).cloned().collect())
        }
        fn describe(&self, key: &str) -> String {
            format!("mem:{key}")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::memory::MemoryStore;
    use super::*;

    #[test]
    fn running_records_of_other_runs_are_marked_abandoned() {
        let store = MemoryStore::default();
        let killed = RunRecord::started("20260101T000000Z-1", "als", BTreeMap::new());
        let mut done = RunRecord::started("20260101T000000Z-1", "preprocess", BTreeMap::new());
        done.end(Err("boom".into()));
        let mine = RunRecord::started("20260102T000000Z-2", "als", BTreeMap::new());
        for r in [&killed, &done, &mine] {
            save(&store, r).unwrap();
        }
        let marked = mark_abandoned(&store, "20260102T000000Z-2").unwrap();
        assert_eq!(marked.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), [killed.id.as_str()]);
        let statuses: Vec<Status> = list(&store).unwrap().records.iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Status::Abandoned, Status::Failed, Status::Running]);
        assert!(mark_abandoned(&store, "20260102T000000Z-2").unwrap().is_empty(), "once");
    }

    #[test]
    fn records_are_saved_listed_and_loaded() {
        let store = MemoryStore::default();
        let first = RunRecord::started("20260101T000000Z-1", "preprocess", BTreeMap::new());
        let second = RunRecord::started("20260101T000000Z-1", "eda", BTreeMap::new());
        save(&store, &second).unwrap();
        save(&store, &first).unwrap();
        store.put("runs/.x.json.1-0.tmp", b"partial").unwrap();
        let listed = list(&store).unwrap();
        assert_eq!(listed.records, vec![first.clone(), second], "oldest first; temporary files ignored");
        assert!(listed.unreadable.is_empty());
        assert_eq!(load(&store, &first.id).unwrap(), first);
    }

    #[test]
    fn unknown_ids_say_how_to_find_ids() {
        let err = load(&MemoryStore::default(), "nope").unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("musicrec runs list") && err.contains("mem:runs/"), "{err}");
    }

    #[test]
    fn a_corrupt_record_is_named_and_the_others_still_listed() {
        let store = MemoryStore::default();
        let good = RunRecord::started("20260101T000000Z-1", "preprocess", BTreeMap::new());
        save(&store, &good).unwrap();
        store.put("runs/bad.json", b"{}").unwrap();
        let listed = list(&store).unwrap();
        assert_eq!(listed.records, vec![good]);
        assert_eq!(listed.unreadable.len(), 1);
        let err = listed.unreadable[0].to_string();
        assert!(err.contains("mem:runs/bad.json"), "{err}");
    }
}
