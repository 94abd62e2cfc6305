//! The hand-made data set: 6 tracks, 5 users, events around the split dates, written with
//! unusual widths and units (uint16 users, int8 positions, millisecond timestamps with times of
//! day, int32 track ids, int16 list elements, large strings) that a reader must accept.

use std::path::Path;

use arrow_array::builder::{Int16Builder, ListBuilder};
use arrow_array::{
    Int8Array, Int32Array, Int64Array, LargeStringArray, TimestampMillisecondArray, UInt16Array, UInt32Array,
};

use super::{arr, write_parquet};

const DAY_MS: i64 = 86_400_000;

fn lists(rows: &[&[i16]]) -> ListBuilder<Int16Builder> {
    let mut b = ListBuilder::new(Int16Builder::new());
    for row in rows {
        for &v in *row {
            b.values().append_value(v);
        }
        b.append(true);
    }
    b
}

/// Events: (user, track, seq, epoch day). Split: train < 19342 (2022-12-16) <= target < 19349.
const EVENTS: [(u16, i64, i8, i64); 12] = [
    (1, 10, 1, 19327), // 2022-12-01
    (1, 20, 2, 19336), // 2022-12-10
    (1, 10, 3, 19341), // 2022-12-15
    (1, 30, 4, 19342), // 2022-12-16: first target day
    (1, 40, 5, 19350), // 2022-12-24: test
    (2, 20, 1, 19297), // 2022-11-01
    (2, 20, 2, 19338), // 2022-12-12
    (2, 50, 3, 19348), // 2022-12-22: last target day
    (3, 60, 1, 19346), // new user, target only
    (4, 30, 1, 19349), // new user, 2022-12-23: first test day
    (5, 10, 1, 19144), // 2022-06-01, train only
    (5, 99, 2, 19145), // unknown track: dropped and counted
];

pub fn write_fixture(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    write_parquet(
        &dir.join("interactions.parquet"),
        vec![
            ("user_id", arr(UInt16Array::from_iter_values(EVENTS.iter().map(|e| e.0)))),
            ("track_id", arr(Int64Array::from_iter_values(EVENTS.iter().map(|e| e.1)))),
            ("track_seq", arr(Int8Array::from_iter_values(EVENTS.iter().map(|e| e.2)))),
            // 13:00 on the day: flooring to the day must not move an event across the split.
            (
                "started_at",
                arr(TimestampMillisecondArray::from_iter_values(EVENTS.iter().map(|e| e.3 * DAY_MS + 13 * 3_600_000))
                    .with_timezone("UTC")),
            ),
        ],
    );
    write_parquet(
        &dir.join("tracks.parquet"),
        vec![
            // Deliberately unsorted.
            ("track_id", arr(Int32Array::from(vec![60, 10, 20, 30, 40, 50]))),
            ("albums", arr(lists(&[&[], &[1], &[1], &[2], &[2], &[3]]).finish())),
            ("artists", arr(lists(&[&[9], &[7], &[7], &[8], &[8, 7], &[9]]).finish())),
            ("genres", arr(lists(&[&[], &[3], &[3, 4], &[4], &[4], &[5]]).finish())),
        ],
    );
    let names: Vec<(u32, &str, &str)> = vec![
        (1, "album", "First"),
        (2, "album", "Second"),
        (3, "album", "Third"),
        (7, "artist", "Ann"),
        (8, "artist", "Bob"),
        (9, "artist", "Cid"),
        (3, "genre", "rock"),
        (4, "genre", "pop"),
        (5, "genre", "jazz"),
        (10, "track", "t10"),
        (20, "track", "t20"),
        (30, "track", "t30"),
        (40, "track", "t40"),
        (50, "track", "t50"),
        (60, "track", "t60"),
    ];
    write_parquet(
        &dir.join("catalog_names.parquet"),
        vec![
            ("id", arr(UInt32Array::from_iter_values(names.iter().map(|n| n.0)))),
            ("type", arr(LargeStringArray::from_iter_values(names.iter().map(|n| n.1)))),
            ("name", arr(LargeStringArray::from_iter_values(names.iter().map(|n| n.2)))),
        ],
    );
}
