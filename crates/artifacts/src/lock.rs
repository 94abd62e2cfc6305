//! One writer at a time: a run (and a rollback) holds the writer lock of the artifacts while it
//! writes a version; a second writer refuses at once, naming the holder, or waits.
//!
//! Locally the lock is an `flock` on `<artifacts>/.writer.lock`, which the kernel releases when
//! the process ends however it ends, so a killed run never leaves a stale lock. The file holds
//! the holder's pid, host, run id and start, for the refusal message. Sharded scorers of one
//! run take the same lock shared: they may run together, never beside a writer.
//!
//! On S3 there is no process to die with: the lock is a lease object, `<prefix>/LOCK`, holding
//! the same facts and an expiry. It is taken with a conditional put (create when absent, or
//! replace an expired one naming its etag), so of two takers one wins; a thread renews it while
//! the run lives, and a killed run's lease expires after `LEASE_SECONDS`. Scorers on S3 take no
//! lease (they run on other machines); `CURRENT`'s conditional write still keeps two writers
//! from both publishing.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::artifacts::{Artifacts, Remote};
use crate::error::ArtifactsError;

const LOCK_FILE: &str = ".writer.lock";
const LEASE_KEY: &str = "LOCK";
/// A lease not renewed for this long is free: a killed writer blocks others this long at most.
const LEASE_SECONDS: i64 = 30;
/// How often a live writer renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How often a waiting writer asks for an S3 lease again.
const POLL_EVERY: Duration = Duration::from_secs(2);

/// Who holds the lock.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    pub run_id: String,
    pub started_at: String,
    /// On S3: when the lease ends unless renewed (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl Holder {
    fn me(run_id: &str) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
        Self {
            pid: std::process::id(),
            host: if host.is_empty() { "unknown host".into() } else { host },
            run_id: run_id.to_string(),
            started_at: chrono::Utc::now().to_rfc3339(),
            expires_at: None,
        }
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "run {} of pid {} on {}, since {}", self.run_id, self.pid, self.host, self.started_at)
    }
}

/// How a process uses the artifacts while it holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// A run or a rollback: alone.
    Writer,
    /// A sharded scorer: beside other scorers, never beside a writer.
    Scorer,
}

/// The held lock; released when dropped (or when the process dies).
pub struct WriterLock {
    held: Held,
}

enum Held {
    Local {
        _file: File,
    },
    Lease {
        stop: Arc<AtomicBool>,
        renewer: Option<JoinHandle<()>>,
    },
    /// A scorer on S3 holds nothing.
    Nothing,
}

impl Drop for WriterLock {
    fn drop(&mut self) {
        if let Held::Lease { stop, renewer } = &mut self.held {
            stop.store(true, Ordering::SeqCst);
            if let Some(renewer) = renewer.take() {
                let _ = renewer.join();
            }
        }
    }
}

impl Artifacts {
    /// Takes the lock for run `run_id`, or fails at once with `ArtifactsError::Busy` naming the
    /// holder; with `wait`, waits for the holder to finish (saying once whom it waits for).
    pub fn lock(&self, run_id: &str, mode: LockMode, wait: bool) -> Result<WriterLock, ArtifactsError> {
        let mut said = false;
        loop {
            match self.try_lock(run_id, mode)? {
                Ok(lock) => return Ok(lock),
                Err(holder) if !wait => {
                    return Err(ArtifactsError::Busy { location: self.location(), holder: holder.to_string() });
                }
                Err(holder) => {
                    if !said {
                        tracing::warn!(%holder, "the artifacts are being written; waiting for the writer to finish");
                        said = true;
                    }
                    if self.remote.is_none() {
                        return self.lock_local(run_id, mode, true).map(|got| got.expect("a blocking lock is taken"));
                    }
                    std::thread::sleep(POLL_EVERY);
                }
            }
        }
    }

    /// The lock, or who holds it.
    pub fn try_lock(&self, run_id: &str, mode: LockMode) -> Result<Result<WriterLock, Holder>, ArtifactsError> {
        match &self.remote {
            None => Ok(self.lock_local(run_id, mode, false)?.ok_or_else(|| self.local_holder())),
            Some(_) if mode == LockMode::Scorer => Ok(Ok(WriterLock { held: Held::Nothing })),
            Some(remote) => take_lease(remote, run_id),
        }
    }

    /// Whether a writer holds the lock now (scorers do not count).
    pub fn writer_active(&self) -> Result<bool, ArtifactsError> {
        match &self.remote {
            None if !self.root.is_dir() => Ok(false),
            None => Ok(self.lock_local("check", LockMode::Scorer, false)?.is_none()),
            Some(remote) => {
                let Some(lease) = remote.bucket.get_tagged(&remote.key(LEASE_KEY))? else { return Ok(false) };
                Ok(serde_json::from_slice::<Holder>(&lease.bytes)
                    .is_ok_and(|h| h.expires_at.is_some_and(|e| e > chrono::Utc::now().timestamp())))
            }
        }
    }

    fn lock_local(&self, run_id: &str, mode: LockMode, block: bool) -> Result<Option<WriterLock>, ArtifactsError> {
        std::fs::create_dir_all(&self.root).map_err(|e| ArtifactsError::io(&self.root, e))?;
        let path = self.root.join(LOCK_FILE);
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| ArtifactsError::io(&path, e))?;
        let taken = match (mode, block) {
            (LockMode::Writer, true) => file.lock().map(|()| true),
            (LockMode::Scorer, true) => file.lock_shared().map(|()| true),
            (LockMode::Writer, false) => try_taken(file.try_lock()),
            (LockMode::Scorer, false) => try_taken(file.try_lock_shared()),
        }
        .map_err(|e| ArtifactsError::io(&path, e))?;
        if !taken {
            return Ok(None);
        }
        if mode == LockMode::Writer {
            let holder = serde_json::to_vec(&Holder::me(run_id)).expect("holders serialize");
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| file.write_all(&holder))
                .map_err(|e| ArtifactsError::io(&path, e))?;
        }
        Ok(Some(WriterLock { held: Held::Local { _file: file } }))
    }

    fn local_holder(&self) -> Holder {
        let mut text = String::new();
        let _ = File::open(self.root.join(LOCK_FILE)).and_then(|mut f| f.read_to_string(&mut text));
        serde_json::from_str(&text).unwrap_or_else(|_| Holder {
            pid: 0,
            host: "this host".into(),
            run_id: "a sharded scorer or a writer just starting".into(),
            started_at: "unknown".into(),
            expires_at: None,
        })
    }
}

fn try_taken(result: Result<(), std::fs::TryLockError>) -> std::io::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Takes the lease when it is absent or expired, then renews it on a thread.
fn take_lease(remote: &Remote, run_id: &str) -> Result<Result<WriterLock, Holder>, ArtifactsError> {
    let key = remote.key(LEASE_KEY);
    let now = chrono::Utc::now().timestamp();
    let replaces = match remote.bucket.get_tagged(&key)? {
        None => None,
        Some(lease) => match serde_json::from_slice::<Holder>(&lease.bytes) {
            Ok(holder) if holder.expires_at.is_some_and(|e| e > now) => return Ok(Err(holder)),
            // Expired, or not a lease at all: taken over, naming the version replaced.
            _ => Some(lease.etag.unwrap_or_default()),
        },
    };
    let mut me = Holder::me(run_id);
    me.expires_at = Some(now + LEASE_SECONDS);
    let bytes = serde_json::to_vec(&me).expect("holders serialize");
    let Some(etag) = remote.bucket.put_if(&key, bytes, replaces.as_deref())? else {
        // Another taker won the race; it is the holder now.
        let holder = remote
            .bucket
            .get(&key)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_else(|| Holder { run_id: "another run".into(), ..me.clone() });
        return Ok(Err(holder));
    };
    let stop = Arc::new(AtomicBool::new(false));
    let renewer = {
        let (stop, bucket) = (stop.clone(), remote.bucket.clone());
        std::thread::Builder::new()
            .name("musicrec-lease".into())
            .spawn(move || {
                let mut etag = etag;
                let mut waited = Duration::ZERO;
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                    waited += Duration::from_millis(100);
                    if waited < RENEW_EVERY {
                        continue;
                    }
                    waited = Duration::ZERO;
                    me.expires_at = Some(chrono::Utc::now().timestamp() + LEASE_SECONDS);
                    let bytes = serde_json::to_vec(&me).expect("holders serialize");
                    match bucket.put_if(&key, bytes, Some(&etag)) {
                        Ok(Some(renewed)) => etag = renewed,
                        Ok(None) => {
                            tracing::error!(lease = %bucket.url(&key), "the writer lease was taken over; this run will not publish");
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "renewing the writer lease failed; trying again"),
                    }
                }
                // Released: deleted only if it is still ours.
                if bucket.get_tagged(&key).ok().flatten().is_some_and(|lease| lease.etag.as_deref() == Some(etag.as_str())) {
                    let _ = bucket.delete(&key);
                }
            })
            .map_err(|e| ArtifactsError::io("the lease renewing thread", e))?
    };
    Ok(Ok(WriterLock { held: Held::Lease { stop, renewer: Some(renewer) } }))
}

#[cfg(test)]
mod tests {
    use musicrec_data::store::Bucket;
    use object_store::memory::InMemory;

    use super::*;

    #[test]
    fn a_second_writer_is_refused_with_the_holder_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = Artifacts::new(dir.path().join("art"));
        let first = store.try_lock("run-1", LockMode::Writer).unwrap().unwrap();
        let holder = store.try_lock("run-2", LockMode::Writer).unwrap().err().unwrap();
        assert_eq!((holder.run_id.as_str(), holder.pid), ("run-1", std::process::id()));
        assert!(store.try_lock("scorer", LockMode::Scorer).unwrap().is_err(), "no scorer beside a writer");
        assert!(store.writer_active().unwrap());
        let err = store.lock("run-2", LockMode::Writer, false).err().unwrap().to_string();
        assert!(err.contains("run run-1 of pid") && err.contains("--wait"), "{err}");
        drop(first);
        assert!(!store.writer_active().unwrap());
        let scorers =
            (store.try_lock("s1", LockMode::Scorer).unwrap(), store.try_lock("s2", LockMode::Scorer).unwrap());
        assert!(scorers.0.is_ok() && scorers.1.is_ok(), "scorers share the lock");
        assert!(store.try_lock("run-3", LockMode::Writer).unwrap().is_err());
    }

    #[test]
    fn an_s3_lease_is_taken_once_and_an_expired_one_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Bucket::new("b", Arc::new(InMemory::new()));
        let store = Artifacts::on_bucket(bucket.clone(), "p", dir.path());
        let first = store.try_lock("run-1", LockMode::Writer).unwrap().unwrap();
        let holder = store.try_lock("run-2", LockMode::Writer).unwrap().err().unwrap();
        assert_eq!(holder.run_id, "run-1");
        assert!(store.writer_active().unwrap());
        drop(first);
        assert!(bucket.get("p/LOCK").unwrap().is_none(), "released");

        // A killed writer's lease, expired.
        let mut dead = Holder::me("dead");
        dead.expires_at = Some(chrono::Utc::now().timestamp() - 1);
        bucket.put("p/LOCK", serde_json::to_vec(&dead).unwrap()).unwrap();
        assert!(!store.writer_active().unwrap());
        let taken = store.try_lock("run-3", LockMode::Writer).unwrap();
        assert!(taken.is_ok(), "an expired lease is taken over");
    }
}
