//! A tiny Yambda data set written from literal rows with the real files' column types
//! (`uint32` ids and timestamps, `uint8` flags, `uint16` played ratio), in the data set's own
//! layout: events under `flat/50m/`, item mappings at the root. Shared with the CLI's tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, UInt8Array, UInt16Array, UInt32Array};
use parquet::arrow::ArrowWriter;

fn write(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn u32s(values: &[u32]) -> ArrayRef {
    Arc::new(UInt32Array::from(values.to_vec()))
}

const DAY: u32 = 86_400;

/// Writes the data set under `root`; returns the directory of its events (`flat/50m`).
pub fn write_yambda(root: &Path) -> PathBuf {
    let events = root.join("flat/50m");
    std::fs::create_dir_all(&events).unwrap();
    // uid 100: a full play, a skip (30 %), a half play (50 %, kept) 5 s into day 2; uid 200 two plays.
    write(
        &events.join("listens.parquet"),
        vec![
            ("uid", u32s(&[100, 100, 100, 200, 200])),
            ("timestamp", u32s(&[0, DAY, 2 * DAY + 5, 3 * DAY, 10 * DAY])),
            ("item_id", u32s(&[7, 8, 9, 7, 8])),
            ("is_organic", Arc::new(UInt8Array::from(vec![1, 0, 1, 1, 1]))),
            ("played_ratio_pct", Arc::new(UInt16Array::from(vec![100, 30, 50, 120, 80]))),
            ("track_length_seconds", u32s(&[200, 200, 180, 200, 200])),
        ],
    );
    write(
        &events.join("likes.parquet"),
        vec![
            ("uid", u32s(&[300])),
            ("timestamp", u32s(&[5 * DAY])),
            ("item_id", u32s(&[9])),
            ("is_organic", Arc::new(UInt8Array::from(vec![1]))),
        ],
    );
    // Item 9 is on two albums; item 1000 has no events and stays out of the catalogue.
    write(
        &root.join("album_item_mapping.parquet"),
        vec![("album_id", u32s(&[70, 80, 90, 91, 1])), ("item_id", u32s(&[7, 8, 9, 9, 1000]))],
    );
    write(
        &root.join("artist_item_mapping.parquet"),
        vec![("artist_id", u32s(&[700, 800, 900, 1])), ("item_id", u32s(&[7, 8, 9, 1000]))],
    );
    events
}
