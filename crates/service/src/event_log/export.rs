//! `musicrec events export`: a log's events in the interactions layout (docs/data.md#layout),
//! so that `musicrec run --extra-events` trains on them beside a data set.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use musicrec_data::parquet_io::write_batch;
use musicrec_data::schema::{INTERACTIONS_FILE, STARTED_AT, TRACK_ID, TRACK_SEQ, USER_ID};

use super::LoggedEvent;
use crate::error::ServiceError;

/// Where a log is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Local(PathBuf),
    Redis { url: String, key: String },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Local(dir) => write!(f, "{}", dir.display()),
            Source::Redis { url, key } => write!(f, "Redis stream `{key}` at {url}"),
        }
    }
}

/// The events exported: those that arrived in `[since_ms, until_ms)` (either end open).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

impl Window {
    fn holds(&self, at_ms: i64) -> bool {
        self.since_ms.is_none_or(|s| at_ms >= s) && self.until_ms.is_none_or(|u| at_ms < u)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub file: PathBuf,
    pub events: usize,
    pub users: usize,
    /// The first and the last event's arrival, milliseconds since the Unix epoch.
    pub first_ms: i64,
    pub last_ms: i64,
    /// Local segments whose torn last line was skipped.
    pub torn_segments: Vec<String>,
}

/// Writes the events of `source` within `window` to `out/interactions.parquet` (atomically):
/// `user_id` and `track_id` int64, `track_seq` the event's position among the user's exported
/// events (from 0, in arrival order), `started_at` its arrival as a UTC millisecond timestamp.
/// No event in the window is an error, and nothing is written.
pub fn export(source: &Source, window: Window, out: &Path) -> Result<ExportSummary, ServiceError> {
    let (mut events, torn_segments) = match source {
        Source::Local(dir) => {
            let (events, report) = super::read_dir(dir)?;
            (events, report.torn)
        }
        Source::Redis { url, key } => (super::read_stream(url, key)?, Vec::new()),
    };
    events.retain(|e| window.holds(e.at_ms));
    if events.is_empty() {
        return Err(ServiceError::EventLog {
            what: source.to_string(),
            reason: "no events to export (none logged in the requested window)".into(),
        });
    }
    // Stable: a user's events that arrived in the same millisecond keep their log order.
    events.sort_by_key(|e| (e.user_id, e.at_ms));
    let mut seq: Vec<i32> = Vec::with_capacity(events.len());
    let mut users = 0;
    for (i, e) in events.iter().enumerate() {
        if i == 0 || events[i - 1].user_id != e.user_id {
            users += 1;
            seq.push(0);
        } else {
            seq.push(seq[i - 1].saturating_add(1));
        }
    }
    let file = out.join(INTERACTIONS_FILE);
    write_batch(&file, &batch(&events, seq))?;
    Ok(ExportSummary {
        file,
        events: events.len(),
        users,
        first_ms: events.iter().map(|e| e.at_ms).min().expect("not empty"),
        last_ms: events.iter().map(|e| e.at_ms).max().expect("not empty"),
        torn_segments,
    })
}

fn batch(events: &[LoggedEvent], seq: Vec<i32>) -> RecordBatch {
    let utc_ms = DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()));
    let schema = Schema::new(vec![
        Field::new(USER_ID, DataType::Int64, false),
        Field::new(TRACK_ID, DataType::Int64, false),
        Field::new(TRACK_SEQ, DataType::Int32, false),
        Field::new(STARTED_AT, utc_ms, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.user_id))),
        Arc::new(Int64Array::from_iter_values(events.iter().map(|e| e.track_id))),
        Arc::new(Int32Array::from(seq)),
        Arc::new(TimestampMillisecondArray::from_iter_values(events.iter().map(|e| e.at_ms)).with_timezone("UTC")),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).expect("columns match the schema")
}
