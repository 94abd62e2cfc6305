//! The local event log: JSON lines in segment files of one directory.
//!
//! One writer thread owns the open segment. Requests hand it their event and wait; it takes
//! every event waiting at that moment, writes them with one `write`, syncs once (when `fsync`
//! is on) and answers them all: a group commit, so concurrent posts share the cost of a sync.
//!
//! A segment is only ever appended to by the writer that created it (`create_new`): a
//! restarted service, or a writer whose write failed, starts a new segment. So a crash can
//! tear only the last line of a segment, and a line counts only once its `\n` is on disk:
//! the reader skips a torn tail with a warning and never reads a partial line as an event.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use musicrec_config::EventLogConfig;
use tokio::sync::{mpsc, oneshot};

use super::{LoggedEvent, NotLogged};
use crate::error::ServiceError;

/// Segment files end with this; other files in the directory are not the log's.
pub const SEGMENT_SUFFIX: &str = ".jsonl";

/// Events waiting for the writer; a full queue makes posts wait (back-pressure on a slow disk).
const QUEUE: usize = 65_536;

/// Most events written (and synced) together.
const MAX_GROUP: usize = 4096;

struct Pending {
    event: LoggedEvent,
    done: oneshot::Sender<Result<(), NotLogged>>,
}

pub struct LocalLog {
    queue: mpsc::Sender<Pending>,
}

impl LocalLog {
    /// Creates the directory if needed and the first segment (so that a directory that cannot
    /// be written stops the service at start, not at the first event), and starts the writer.
    pub fn open(config: &EventLogConfig) -> Result<Self, ServiceError> {
        let dir = PathBuf::from(config.dir.as_deref().unwrap_or_default());
        let bad = |reason: String| ServiceError::EventLog {
            what: format!("service.event_log.dir `{}`", dir.display()),
            reason,
        };
        std::fs::create_dir_all(&dir).map_err(|e| bad(e.to_string()))?;
        let mut segments = Segments {
            dir: dir.clone(),
            fsync: config.fsync,
            rotate_bytes: config.rotate_bytes,
            rotate_after: Duration::from_secs(config.rotate_seconds),
            current: None,
        };
        segments.current = Some(segments.create().map_err(bad)?);
        let (queue, pending) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("event-log".into())
            .spawn(move || write_loop(pending, segments))
            .map_err(|e| bad(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { queue })
    }

    pub async fn append(&self, event: LoggedEvent) -> Result<(), NotLogged> {
        let (done, written) = oneshot::channel();
        let stopped = || NotLogged("the event log's writer has stopped".into());
        self.queue.send(Pending { event, done }).await.map_err(|_| stopped())?;
        written.await.map_err(|_| stopped())?
    }
}

fn write_loop(mut pending: mpsc::Receiver<Pending>, mut segments: Segments) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut lines = Vec::new();
    while let Some(first) = pending.blocking_recv() {
        group.push(first);
        while group.len() < MAX_GROUP
            && let Ok(next) = pending.try_recv()
        {
            group.push(next);
        }
        lines.clear();
        for p in &group {
            serde_json::to_writer(&mut lines, &p.event).expect("events serialize");
            lines.push(b'\n');
        }
        let outcome = segments.write(&lines).map_err(NotLogged);
        if let Err(e) = &outcome {
            tracing::error!(error = e.0, events = group.len(), "the event log failed; events refused");
        }
        for p in group.drain(..) {
            let _ = p.done.send(outcome.clone());
        }
    }
}

struct Open {
    file: File,
    path: PathBuf,
    bytes: u64,
    opened: Instant,
}

struct Segments {
    dir: PathBuf,
    fsync: bool,
    rotate_bytes: u64,
    rotate_after: Duration,
    current: Option<Open>,
}

impl Segments {
    fn write(&mut self, lines: &[u8]) -> Result<(), String> {
        if self
            .current
            .as_ref()
            .is_some_and(|o| o.bytes >= self.rotate_bytes || o.opened.elapsed() >= self.rotate_after)
        {
            self.close();
        }
        if self.current.is_none() {
            self.current = Some(self.create()?);
        }
        let open = self.current.as_mut().expect("a segment is open");
        let written = open.file.write_all(lines).and_then(|()| if self.fsync { open.file.sync_data() } else { Ok(()) });
        match written {
            Ok(()) => {
                open.bytes += lines.len() as u64;
                Ok(())
            }
            Err(e) => {
                let what = format!("writing {}: {e}", open.path.display());
                // Part of the group may be in the file: nothing is appended after it, so it
                // stays a torn tail that readers skip.
                self.current = None;
                Err(what)
            }
        }
    }

    fn close(&mut self) {
        if let Some(open) = self.current.take()
            && let Err(e) = open.file.sync_all()
        {
            tracing::warn!(segment = %open.path.display(), error = %e, "syncing a closed event log segment failed");
        }
    }

    /// A new segment, named by its creation time so that names sort in time order.
    fn create(&self) -> Result<Open, String> {
        static SEQUENCE: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "events-{:013}-{}-{:06}{SEGMENT_SUFFIX}",
            super::now_ms(),
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        let path = self.dir.join(name);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        if self.fsync {
            // The new name must survive a power loss too, or the events in it would vanish.
            File::open(&self.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("syncing {}: {e}", self.dir.display()))?;
        }
        Ok(Open { file, path, bytes: 0, opened: Instant::now() })
    }
}

/// What reading a log found besides its events.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadReport {
    pub segments: usize,
    /// Segments whose last line was torn (no `\n`: cut by a crash), skipped.
    pub torn: Vec<String>,
}

/// Every event of the segments in `dir`, oldest segment first, each segment in write order.
/// A torn last line is skipped with a warning; any other line that is not an event is an
/// error naming the segment and the line (the log is damaged, and guessing would misread it).
pub fn read_dir(dir: &Path) -> Result<(Vec<LoggedEvent>, ReadReport), ServiceError> {
    let bad = |reason: String| ServiceError::EventLog { what: format!("event log {}", dir.display()), reason };
    let entries = std::fs::read_dir(dir).map_err(|e| bad(e.to_string()))?;
    let mut names = Vec::new();
    for entry in entries {
        let name = entry.map_err(|e| bad(e.to_string()))?.file_name().to_string_lossy().into_owned();
        if name.starts_with("events-") && name.ends_with(SEGMENT_SUFFIX) {
            names.push(name);
        }
    }
    names.sort();
    let mut events = Vec::new();
    let mut report = ReadReport { segments: names.len(), torn: Vec::new() };
    for name in names {
        let path = dir.join(&name);
        let bytes = std::fs::read(&path).map_err(|e| bad(format!("{name}: {e}")))?;
        if read_segment(&bytes, &mut events).map_err(|e| bad(format!("{name}: {e}")))? {
            tracing::warn!(segment = %path.display(), "skipped a torn last line (the writer stopped mid-write)");
            report.torn.push(name);
        }
    }
    Ok((events, report))
}

/// Appends the segment's events to `events`; true when its last line was torn.
fn read_segment(bytes: &[u8], events: &mut Vec<LoggedEvent>) -> Result<bool, String> {
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let event = serde_json::from_slice(line).map_err(|e| format!("line {}: not an event ({e})", i + 1))?;
        events.push(event);
    }
    Ok(complete < bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, rotate_bytes: u64) -> EventLogConfig {
        EventLogConfig {
            store: musicrec_config::EventLogStore::Local,
            dir: Some(dir.display().to_string()),
            fsync: true,
            rotate_bytes,
            rotate_seconds: 3600,
            redis_stream: "unused".into(),
        }
    }

    fn event(n: i64) -> LoggedEvent {
        LoggedEvent { at_ms: 1_700_000_000_000 + n, user_id: n % 3, track_id: 100 + n }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_acknowledged_event_is_read_back_across_rotated_segments() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(LocalLog::open(&config(dir.path(), 4096)).unwrap());
        // Concurrent posts in waves: the writer may take a whole wave as one group, and a
        // segment rotates only between groups, so one wave of all 500 could fill one segment.
        // Ten waves of about 2.5 KB each (51-byte lines) fill at least four segments.
        for wave in 0..10 {
            let mut posts = tokio::task::JoinSet::new();
            for n in wave * 50..(wave + 1) * 50 {
                let log = log.clone();
                posts.spawn(async move { log.append(event(n)).await });
            }
            while let Some(done) = posts.join_next().await {
                done.unwrap().unwrap();
            }
        }
        let (mut events, report) = read_dir(dir.path()).unwrap();
        assert!(report.segments >= 3, "4 KiB segments rotate: {report:?}");
        assert!(report.torn.is_empty());
        events.sort_by_key(|e| e.at_ms);
        assert_eq!(events, (0..500).map(event).collect::<Vec<_>>());
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_damaged_one_is_refused() {
        let line = |n| format!("{}\n", serde_json::to_string(&event(n)).unwrap());
        let whole = format!("{}{}", line(1), line(2));
        for cut in 1..line(3).len() - 1 {
            // Every prefix of a line without its newline, even one that parses as JSON.
            let torn = format!("{whole}{}", &line(3)[..cut]);
            let mut events = Vec::new();
            assert!(read_segment(torn.as_bytes(), &mut events).unwrap(), "cut at {cut}");
            assert_eq!(events, [event(1), event(2)], "cut at {cut}");
        }
        let mut events = Vec::new();
        assert!(!read_segment(whole.as_bytes(), &mut events).unwrap());
        assert!(!read_segment(b"", &mut events).unwrap());
        let zeros = format!("{}\0\0\0\0", line(1));
        assert!(read_segment(zeros.as_bytes(), &mut Vec::new()).unwrap(), "a zero-filled tail is torn");
        let damaged = format!("{}{{\"at_ms\":1,\"user_id\":2}}\n{}", line(1), line(2));
        assert_eq!(read_segment(damaged.as_bytes(), &mut Vec::new()).unwrap_err().split(':').next(), Some("line 2"));
    }

    #[test]
    fn a_restarted_writer_never_appends_to_a_torn_segment() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let first = LocalLog::open(&config(dir.path(), 1 << 20)).unwrap();
        runtime.block_on(first.append(event(1))).unwrap();
        let (_, report) = read_dir(dir.path()).unwrap();
        assert_eq!(report.segments, 1);
        // A crash mid-write: a partial line at the end of the segment.
        let segment = std::fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
        OpenOptions::new().append(true).open(&segment).unwrap().write_all(b"{\"at_ms\":17").unwrap();
        let second = LocalLog::open(&config(dir.path(), 1 << 20)).unwrap();
        runtime.block_on(second.append(event(2))).unwrap();
        let (events, report) = read_dir(dir.path()).unwrap();
        assert_eq!((events, report.segments, report.torn.len()), (vec![event(1), event(2)], 2, 1));
    }
}
