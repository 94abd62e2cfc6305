//! Data faults: the hand-made data set with one thing wrong, run through `preprocess`. A
//! refused set gets exit 2, a message naming the file, the column and how many rows are bad,
//! and nothing written but the failed stage's run record (which holds the same error); a
//! suspicious but usable one runs with a warning.

use std::path::Path;

use arrow_array::builder::{Int64Builder, ListBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{
    ArrayRef, Date32Array, Date64Array, Int16Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, UInt64Array,
};
use musicrec_data::parquet_io::read_batches;

use super::{Expect, all_behaved, judge, passes, refused};
use crate::common::*;

const DAY_MS: i64 = 86_400_000;
/// 2022-01-01, in days since 1970-01-01.
const DAY_2022: i64 = 18_993;

/// A fault: a change to the data directory, returning extra arguments for `musicrec run`.
struct Case {
    name: &'static str,
    fault: fn(&Path) -> Vec<String>,
    env: &'static [(&'static str, &'static str)],
    expect: Expect,
}

const fn case(name: &'static str, fault: fn(&Path) -> Vec<String>, expect: Expect) -> Case {
    Case { name, fault, env: &[], expect }
}

fn none() -> Vec<String> {
    Vec::new()
}

/// Rewrites column `name` of `file` (one batch) with `with`, given the old column.
fn replace_column(file: &Path, name: &str, with: impl Fn(&ArrayRef) -> ArrayRef) {
    let batches = read_batches(file).unwrap();
    let batch = &batches[0];
    let columns: Vec<(String, ArrayRef)> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| (f.name().clone(), if f.name() == name { with(c) } else { c.clone() }))
        .collect();
    write_parquet(file, columns.iter().map(|(n, c)| (n.as_str(), c.clone())).collect());
}

/// The interactions' `started_at` replaced by `dates` of the fixture's epoch days.
fn dates(data: &Path, dates: impl Fn(Vec<i64>) -> ArrayRef) {
    replace_column(&data.join("interactions.parquet"), "started_at", |old| {
        let ms = old.as_primitive::<TimestampMillisecondType>().values();
        dates(ms.iter().map(|t| t.div_euclid(DAY_MS)).collect())
    });
}

/// The fixture's days as date32, the first replaced by `first`.
fn date32_first(first: i32) -> impl Fn(Vec<i64>) -> ArrayRef {
    move |days| {
        arr(Date32Array::from_iter_values(days.iter().enumerate().map(|(i, &d)| if i == 0 { first } else { d as i32 })))
    }
}

/// The fixture's days as date64 (ms), the first replaced by `first`.
fn date64_first(first: i64) -> impl Fn(Vec<i64>) -> ArrayRef {
    move |days| {
        arr(Date64Array::from_iter_values(
            days.iter().enumerate().map(|(i, &d)| if i == 0 { first } else { d * DAY_MS }),
        ))
    }
}

fn interactions(data: &Path, columns: Vec<(&str, ArrayRef)>) {
    write_parquet(&data.join("interactions.parquet"), columns);
}

fn empty_lists(rows: usize) -> ArrayRef {
    let mut b = ListBuilder::new(Int64Builder::new());
    for _ in 0..rows {
        b.append(true);
    }
    arr(b.finish())
}

fn catalog_names(data: &Path, ids: Vec<i64>, types: Vec<&str>, names: Vec<&str>) {
    write_parquet(
        &data.join("catalog_names.parquet"),
        vec![
            ("id", arr(Int64Array::from(ids))),
            ("type", arr(StringArray::from(types))),
            ("name", arr(StringArray::from(names))),
        ],
    );
}

/// Interactions of an extra events directory beside the data, with date32 `days`; the flag.
fn extra_events(data: &Path, days: Vec<i32>) -> Vec<String> {
    let dir = data.parent().unwrap().join("extra");
    std::fs::create_dir_all(&dir).unwrap();
    let n = days.len();
    write_parquet(
        &dir.join("interactions.parquet"),
        vec![
            ("user_id", arr(Int64Array::from(vec![1; n]))),
            ("track_id", arr(Int64Array::from(vec![10; n]))),
            ("track_seq", arr(Int32Array::from_iter_values(10..10 + n as i32))),
            ("started_at", arr(Date32Array::from(days))),
        ],
    );
    vec!["--extra-events".into(), dir.to_str().unwrap().into()]
}

const CASES: &[Case] = &[
    // Files and columns.
    case(
        "missing tracks.parquet",
        |d| {
            std::fs::remove_file(d.join("tracks.parquet")).unwrap();
            none()
        },
        refused(&["tracks.parquet", "file not found"]),
    ),
    case(
        "interactions.parquet is a directory",
        |d| {
            std::fs::remove_file(d.join("interactions.parquet")).unwrap();
            std::fs::create_dir(d.join("interactions.parquet")).unwrap();
            none()
        },
        refused(&["interactions.parquet", "file not found"]),
    ),
    case(
        "interactions.parquet is not parquet",
        |d| {
            std::fs::write(d.join("interactions.parquet"), b"user_id,track_id\n1,10\n").unwrap();
            none()
        },
        refused(&["interactions.parquet", "parquet"]),
    ),
    case(
        "catalog_names.parquet cut in half",
        |d| {
            let file = d.join("catalog_names.parquet");
            let bytes = std::fs::read(&file).unwrap();
            std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
            none()
        },
        refused(&["catalog_names.parquet"]),
    ),
    case(
        "missing column started_at",
        |d| {
            interactions(
                d,
                vec![
                    ("user_id", arr(Int32Array::from(vec![1]))),
                    ("track_id", arr(Int32Array::from(vec![10]))),
                    ("track_seq", arr(Int16Array::from(vec![1]))),
                ],
            );
            none()
        },
        refused(&["interactions.parquet", "missing column `started_at`", "user_id, track_id, track_seq"]),
    ),
    case(
        "missing column genres",
        |d| {
            write_parquet(
                &d.join("tracks.parquet"),
                vec![
                    ("track_id", arr(Int64Array::from(vec![10]))),
                    ("albums", empty_lists(1)),
                    ("artists", empty_lists(1)),
                ],
            );
            none()
        },
        refused(&["tracks.parquet", "missing column `genres`"]),
    ),
    case(
        "user_id of strings",
        |d| {
            interactions(
                d,
                vec![
                    ("user_id", arr(StringArray::from(vec!["u1"]))),
                    ("track_id", arr(Int32Array::from(vec![10]))),
                    ("track_seq", arr(Int16Array::from(vec![1]))),
                    ("started_at", arr(Date32Array::from(vec![19000]))),
                ],
            );
            none()
        },
        refused(&["interactions.parquet", "column `user_id`", "expected an integer type"]),
    ),
    case(
        "started_at of strings",
        |d| {
            replace_column(&d.join("interactions.parquet"), "started_at", |c| {
                arr(StringArray::from_iter_values((0..c.len()).map(|_| "2022-12-01")))
            });
            none()
        },
        refused(&["interactions.parquet", "column `started_at`", "expected a date or timestamp type"]),
    ),
    case(
        "name of integers",
        |d| {
            write_parquet(
                &d.join("catalog_names.parquet"),
                vec![
                    ("id", arr(Int64Array::from(vec![1]))),
                    ("type", arr(StringArray::from(vec!["album"]))),
                    ("name", arr(Int64Array::from(vec![5]))),
                ],
            );
            none()
        },
        refused(&["catalog_names.parquet", "column `name`", "expected a string type"]),
    ),
    case(
        "empty catalog_names",
        |d| {
            catalog_names(d, vec![], vec![], vec![]);
            none()
        },
        refused(&["catalog_names.parquet", "empty"]),
    ),
    case(
        "empty interactions",
        |d| {
            interactions(
                d,
                vec![
                    ("user_id", arr(Int64Array::from(Vec::<i64>::new()))),
                    ("track_id", arr(Int64Array::from(Vec::<i64>::new()))),
                    ("track_seq", arr(Int64Array::from(Vec::<i64>::new()))),
                    ("started_at", arr(Date32Array::from(Vec::<i32>::new()))),
                ],
            );
            none()
        },
        refused(&["interactions.parquet", "empty"]),
    ),
    // Values.
    case(
        "null user ids, counted",
        |d| {
            interactions(
                d,
                vec![
                    ("user_id", arr(Int32Array::from(vec![Some(1), None, Some(2), None, None]))),
                    ("track_id", arr(Int32Array::from(vec![10, 10, 20, 20, 30]))),
                    ("track_seq", arr(Int16Array::from(vec![1, 2, 1, 2, 3]))),
                    ("started_at", arr(Date32Array::from(vec![19000; 5]))),
                ],
            );
            none()
        },
        refused(&["interactions.parquet", "column `user_id`", "3 null value(s)"]),
    ),
    case(
        "null started_at",
        |d| {
            replace_column(&d.join("interactions.parquet"), "started_at", |c| {
                arr(Date32Array::from_iter((0..c.len()).map(|i| (i != 3).then_some(19300))))
            });
            none()
        },
        refused(&["interactions.parquet", "column `started_at`", "1 null value(s)"]),
    ),
    case(
        "null element in a track's albums",
        |d| {
            let mut albums = ListBuilder::new(Int64Builder::new());
            albums.values().append_value(3);
            albums.values().append_null();
            albums.append(true);
            write_parquet(
                &d.join("tracks.parquet"),
                vec![
                    ("track_id", arr(Int64Array::from(vec![10]))),
                    ("albums", arr(albums.finish())),
                    ("artists", empty_lists(1)),
                    ("genres", empty_lists(1)),
                ],
            );
            none()
        },
        refused(&["tracks.parquet", "column `albums`", "1 null value(s)"]),
    ),
    case(
        "null track id in tracks",
        |d| {
            write_parquet(
                &d.join("tracks.parquet"),
                vec![
                    ("track_id", arr(Int64Array::from(vec![Some(10), None]))),
                    ("albums", empty_lists(2)),
                    ("artists", empty_lists(2)),
                    ("genres", empty_lists(2)),
                ],
            );
            none()
        },
        refused(&["tracks.parquet", "column `track_id`", "1 null value(s)"]),
    ),
    case(
        "null names",
        |d| {
            write_parquet(
                &d.join("catalog_names.parquet"),
                vec![
                    ("id", arr(Int64Array::from(vec![1, 2]))),
                    ("type", arr(StringArray::from(vec!["album", "album"]))),
                    ("name", arr(StringArray::from(vec![None, Some("b")]))),
                ],
            );
            none()
        },
        refused(&["catalog_names.parquet", "column `name`", "1 null value(s)"]),
    ),
    case(
        "a type outside the four",
        |d| {
            catalog_names(d, vec![1, 2, 3], vec!["album", "playlist", "podcast"], vec!["a", "b", "c"]);
            none()
        },
        refused(&["catalog_names.parquet", "column `type`", "2 row(s)", "\"playlist\""]),
    ),
    case(
        "a track listed twice",
        |d| {
            write_parquet(
                &d.join("tracks.parquet"),
                vec![
                    ("track_id", arr(Int64Array::from(vec![10, 10]))),
                    ("albums", empty_lists(2)),
                    ("artists", empty_lists(2)),
                    ("genres", empty_lists(2)),
                ],
            );
            none()
        },
        refused(&["tracks.parquet", "column `track_id`", "1 row(s)", "e.g. 10"]),
    ),
    case(
        "user ids over the 64-bit signed range",
        |d| {
            replace_column(&d.join("interactions.parquet"), "user_id", |c| {
                arr(UInt64Array::from_iter_values((0..c.len() as u64).map(|i| if i == 0 { u64::MAX } else { i + 1 })))
            });
            none()
        },
        refused(&["interactions.parquet", "column `user_id`", "do not fit in a 64-bit signed integer"]),
    ),
    case(
        "positions over the 32-bit range",
        |d| {
            replace_column(&d.join("interactions.parquet"), "track_seq", |c| {
                arr(Int64Array::from_iter_values((0..c.len() as i64).map(|i| if i < 2 { 1 << 40 } else { i })))
            });
            none()
        },
        refused(&["interactions.parquet", "column `track_seq`", "2 row(s)", "32-bit range"]),
    ),
    Case {
        name: "unknown tracks with data.unknown_tracks: fail",
        fault: |_| none(),
        env: &[("MUSICREC__DATA__UNKNOWN_TRACKS", "fail")],
        expect: refused(&["interactions.parquet", "1 event(s) of 1 track id(s)", "e.g. 99"]),
    },
    case(
        "every event of an unknown track",
        |d| {
            replace_column(&d.join("interactions.parquet"), "track_id", |c| {
                arr(Int64Array::from_iter_values((0..c.len() as i64).map(|i| 1000 + i)))
            });
            none()
        },
        refused(&["interactions.parquet", "column `track_id`", "12 row(s)", "no events are left"]),
    ),
    Case {
        name: "split dates that leave the target window empty",
        fault: |_| none(),
        env: &[("MUSICREC__PREPROCESS__TRAIN_END", "2023-02-01"), ("MUSICREC__PREPROCESS__TARGET_END", "2023-03-01")],
        expect: refused(&["the target window has no events", "2022-06-01..2022-12-24", "preprocess.train_end"]),
    },
    // Dates out of the calendar: a clear error, never a panic or a wrap-around.
    case(
        "date32 2147483647",
        |d| {
            dates(d, date32_first(i32::MAX));
            none()
        },
        refused(&[
            "interactions.parquet",
            "column `started_at`",
            "1 row(s)",
            "outside the years 1..=9999",
            "2147483647",
        ]),
    ),
    case(
        "date32 -2147483648",
        |d| {
            dates(d, date32_first(i32::MIN));
            none()
        },
        refused(&["interactions.parquet", "column `started_at`", "1 row(s)", "outside the years 1..=9999"]),
    ),
    case(
        "date32 the day before year 1",
        |d| {
            dates(d, date32_first(-719_163));
            none()
        },
        refused(&["interactions.parquet", "column `started_at`", "1 row(s)", "outside the years 1..=9999"]),
    ),
    case(
        "date32 the day after year 9999",
        |d| {
            dates(d, date32_first(2_932_897));
            none()
        },
        refused(&["interactions.parquet", "column `started_at`", "1 row(s)", "outside the years 1..=9999"]),
    ),
    case(
        "date64 i64::MAX",
        |d| {
            dates(d, date64_first(i64::MAX));
            none()
        },
        refused(&["interactions.parquet", "column `started_at`", "1 row(s)", "outside the years 1..=9999", "Date64"]),
    ),
    case(
        "date64 i64::MIN",
        |d| {
            dates(d, date64_first(i64::MIN));
            none()
        },
        refused(&["interactions.parquet", "column `started_at`", "1 row(s)", "outside the years 1..=9999"]),
    ),
    case(
        "timestamp ms of a 2022 day + 2^32 days (wrapped by `as i32` before)",
        |d| {
            dates(d, |days| {
                arr(TimestampMillisecondArray::from_iter_values(
                    days.iter().enumerate().map(|(i, &d)| (d + if i < 3 { 1 << 32 } else { 0 }) * DAY_MS),
                ))
            });
            none()
        },
        refused(&["interactions.parquet", "column `started_at`", "3 row(s)", "outside the years 1..=9999"]),
    ),
    case(
        "timestamp s i64::MAX",
        |d| {
            dates(d, |days| {
                arr(TimestampSecondArray::from_iter_values(
                    days.iter().enumerate().map(|(i, &d)| if i == 0 { i64::MAX } else { d * 86_400 }),
                ))
            });
            none()
        },
        refused(&["interactions.parquet", "column `started_at`", "1 row(s)", "outside the years 1..=9999"]),
    ),
    case(
        "timestamp us i64::MIN",
        |d| {
            dates(d, |days| {
                arr(TimestampMicrosecondArray::from_iter_values(
                    days.iter().enumerate().map(|(i, &d)| if i == 0 { i64::MIN } else { d * 86_400_000_000 }),
                ))
            });
            none()
        },
        refused(&["interactions.parquet", "column `started_at`", "1 row(s)", "outside the years 1..=9999"]),
    ),
    case(
        "timestamp ns, every value representable: accepted",
        |d| {
            dates(d, |days| {
                arr(TimestampNanosecondArray::from_iter_values(days.iter().map(|&d| d * 86_400_000_000_000)))
            });
            none()
        },
        passes(&["results:"]),
    ),
    case(
        "extra events with a date out of the calendar: the extra file named",
        |d| extra_events(d, vec![19300, i32::MAX]),
        refused(&["extra/interactions.parquet", "column `started_at`", "1 row(s)", "outside the years 1..=9999"]),
    ),
    case(
        "extra events directory without interactions.parquet",
        |d| {
            let dir = d.parent().unwrap().join("nothing");
            std::fs::create_dir_all(&dir).unwrap();
            vec!["--extra-events".into(), dir.to_str().unwrap().into()]
        },
        refused(&["nothing/interactions.parquet", "file not found"]),
    ),
    // Dates in the calendar but far from the rest: kept, with a warning naming them.
    case(
        "year 1 among 2022 dates: a warning",
        |d| {
            dates(d, date32_first(-719_162));
            none()
        },
        passes(&[
            "interactions.parquet",
            "column `started_at`",
            "1 event(s) dated 0001-01-01..0001-01-01",
            "2022-06-01..2022-12-24",
        ]),
    ),
    case(
        "year 9999 among 2022 dates: a warning",
        |d| {
            dates(d, |days| {
                let n = days.len();
                arr(Date32Array::from_iter_values(
                    days.iter().enumerate().map(|(i, &d)| if i + 2 >= n { 2_932_896 } else { d as i32 }),
                ))
            });
            none()
        },
        passes(&["interactions.parquet", "2 event(s) dated 9999-12-31..9999-12-31", "more than 10 years away"]),
    ),
    case(
        "timestamp 0 (1970-01-01) among 2022 dates: a warning",
        |d| {
            dates(d, date32_first(0));
            none()
        },
        passes(&["1 event(s) dated 1970-01-01..1970-01-01"]),
    ),
    case(
        "extra events a century early: a warning naming the extra file",
        |d| extra_events(d, vec![19_300, 19_301, (DAY_2022 - 36_500) as i32]),
        passes(&["extra/interactions.parquet", "1 event(s) dated 1922-"]),
    ),
    // Names: bounded, and shown as text wherever they are written (see eda_report_escapes_names).
    case(
        "a name of 100,000 characters: cut with a warning",
        |d| {
            let long = "x".repeat(100_000);
            catalog_names(d, vec![1, 10], vec!["album", "track"], vec!["First", &long]);
            none()
        },
        passes(&["catalog_names.parquet", "column `name`", "1 name(s) longer than 1000 characters", "100000"]),
    ),
];

#[test]
fn data_faults() {
    let results = CASES
        .iter()
        .map(|case| {
            let tiny = TinyRun::hand_made().prepare();
            let mut args = vec!["--stages".to_string(), "preprocess".to_string()];
            args.extend((case.fault)(&tiny.data));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = tiny.command(&args, case.env).output().unwrap();
            judge(case.name, &out, case.expect)?;
            if case.expect.code != 0 {
                only_the_failed_record(&tiny.art, &stderr(&out)).map_err(|e| format!("{}: {e}", case.name))?;
            }
            Ok(())
        })
        .collect();
    all_behaved("data", results);
}

/// A refused data set leaves nothing under the artifacts but the failed stage's run record,
/// which holds the error the user saw (and the writer lock's file, which holds no output).
fn only_the_failed_record(art: &Path, err: &str) -> Result<(), String> {
    let files: Vec<_> = files_under(art).into_iter().filter(|f| *f != art.join(".writer.lock")).collect();
    let [record] = files.as_slice() else { return Err(format!("more than the run record written: {files:?}")) };
    let record = json_file(record);
    let error = record["error"].as_str().unwrap_or_default();
    if record["status"] != "failed" || error.is_empty() || !err.contains(error) {
        return Err(format!("the record does not hold the failure the user saw: {record}"));
    }
    Ok(())
}

#[test]
fn a_failed_rerun_keeps_the_previous_outputs() {
    let tiny = TinyRun::hand_made().stages("preprocess").build();
    let art = &tiny.art;
    let before = std::fs::read(stage_dir(art, "preprocess").join("manifest.json")).unwrap();
    let out = tiny.pipeline(Some("preprocess"), &[("MUSICREC__DATA__UNKNOWN_TRACKS", "fail")]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read(stage_dir(art, "preprocess").join("manifest.json")).unwrap(), before);
    assert!(!art.join(".staging").exists());
}

/// Names with Markdown, HTML, a newline and control characters reach the EDA report as text on
/// one table row each.
#[test]
fn eda_report_escapes_names() {
    let tiny = TinyRun::hand_made().prepare();
    let hostile = "Bad|Name <script>x</script>\nnext\u{1b}[31m *b*";
    catalog_names(
        &tiny.data,
        vec![1, 7, 3, 4, 5, 10, 20, 30, 40, 50, 60],
        vec!["album", "artist", "genre", "genre", "genre", "track", "track", "track", "track", "track", "track"],
        vec!["First", "Ann", hostile, hostile, hostile, hostile, hostile, hostile, hostile, hostile, hostile],
    );
    tiny.succeed(Some("preprocess,eda"), &[]);
    let report = std::fs::read_to_string(stage_dir(&tiny.art, "eda").join("report.md")).unwrap();
    let escaped = "Bad\\|Name &lt;script&gt;x&lt;/script&gt; next \\[31m \\*b\\*";
    let rows: Vec<&str> = report.lines().filter(|l| l.contains("Bad")).collect();
    assert!(!rows.is_empty(), "{report}");
    for row in rows {
        assert!(row.starts_with("| ") && row.contains(escaped), "{row}");
    }
    assert!(!report.contains("<script>") && !report.contains('\u{1b}'), "{report}");
}
