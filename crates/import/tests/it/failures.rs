//! Bad sources: an error naming the file, the line or row and the column, and nothing
//! written (a previous import in the output directory stays whole).

use std::path::Path;

use musicrec_import::{ColumnMap, ImportError, Source, TimeUnit, YambdaEvents, YambdaOptions, import};

use crate::common::*;

/// Imports into `out`, which must fail with every needle in the message and leave `out` as it
/// was.
fn refused(source: &Source, from: &Path, out: &Path, needles: &[&str]) -> ImportError {
    let before: Vec<_> = files_under(out).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    let err = import(source, from, out).unwrap_err();
    let text = err.to_string();
    for needle in needles {
        assert!(text.contains(needle), "expected {needle:?} in: {text}");
    }
    assert!(err.is_user_error(), "{text}");
    let after: Vec<_> = files_under(out).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    assert_eq!(before, after, "the output directory is unchanged");
    err
}

fn copy_fixture(name: &str, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

const ML: Source = Source::MovieLens { min_rating: f64::NEG_INFINITY };

#[test]
fn a_directory_of_another_layout_lists_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("ml");
    std::fs::create_dir(&source).unwrap();
    std::fs::write(source.join("u.data"), "1\t1\t5\t874965758\n").unwrap();
    refused(
        &ML,
        &source,
        &dir.path().join("out"),
        &[
            "not a MovieLens data set",
            "u.data, u.item, u.genre (MovieLens 100K)",
            "ratings.csv, movies.csv",
            "found: u.data",
        ],
    );
    assert!(!dir.path().join("out").exists(), "an output directory it created is removed");
}

#[test]
fn a_bad_value_names_file_line_and_column_and_keeps_the_previous_import() {
    let dir = tempfile::tempdir().unwrap();
    let (source, out) = (dir.path().join("ml"), dir.path().join("out"));
    copy_fixture("movielens-100k", &source);
    import(&ML, &source, &out).unwrap();
    let mut data = std::fs::read_to_string(source.join("u.data")).unwrap();
    data.push_str("4\t2\t5\tyesterday\n");
    std::fs::write(source.join("u.data"), data).unwrap();
    refused(
        &ML,
        &source,
        &out,
        &["u.data: line 8, column `timestamp`: `yesterday` is not an integer number of seconds"],
    );
    std::fs::write(source.join("u.data"), "1\t1\t5\n").unwrap();
    refused(&ML, &source, &out, &["u.data: line 1: 3 field(s), expected 4"]);
    std::fs::write(source.join("u.data"), "1\t1\t5\t874965758000\n").unwrap();
    refused(&ML, &source, &out, &["column `timestamp`", "between the years 1900 and 2999"]);
}

#[test]
fn no_listens_and_too_short_a_time_line_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    refused(
        &Source::MovieLens { min_rating: 6.0 },
        &fixture("movielens-100k"),
        &out,
        &["no events to import", "7 rating(s) read, none at or above --min-rating 6"],
    );
    let events = dir.path().join("two-days.csv");
    std::fs::write(&events, "u,i,t\n1,1,2024-01-01\n2,1,2024-01-02\n").unwrap();
    let map = ColumnMap { user: "u".into(), item: "i".into(), time: "t".into(), unit: TimeUnit::Date, items: None };
    refused(&Source::Csv(map), &events, &out, &["only 2 distinct day(s) (2024-01-01..2024-01-02)"]);
}

#[test]
fn csv_columns_and_times_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let map = |time: &str, unit| ColumnMap {
        user: "listener".into(),
        item: "song".into(),
        time: time.into(),
        unit,
        items: None,
    };
    refused(
        &Source::Csv(map("when", TimeUnit::Rfc3339)),
        &fixture("csv/events.csv"),
        &out,
        &["events.csv: missing column `when` (columns present: listener, song, played_at, extra)"],
    );
    refused(
        &Source::Csv(map("played_at", TimeUnit::Date)),
        &fixture("csv/events.csv"),
        &out,
        &["line 2, column `played_at`: `2024-03-01T08:00:00Z` is not a date (YYYY-MM-DD)"],
    );
    refused(
        &Source::Csv(map("played_at", TimeUnit::Date)),
        &fixture("csv"),
        &out,
        &["expected a CSV file or a .parquet file", "found: a directory"],
    );
}

#[test]
fn yambda_types_and_nulls_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let source = Source::Yambda(YambdaOptions {
        events: YambdaEvents::Listens,
        min_played_ratio: 50.0,
        start_date: chrono::NaiveDate::from_ymd_opt(2022, 1, 1).unwrap(),
    });
    let events = dir.path().join("flat");
    std::fs::create_dir_all(&events).unwrap();
    let listens = events.join("listens.parquet");
    write_parquet(
        &listens,
        vec![
            ("uid", arr(arrow_array::StringArray::from(vec!["a"]))),
            ("item_id", arr(arrow_array::UInt32Array::from(vec![1]))),
            ("timestamp", arr(arrow_array::UInt32Array::from(vec![1]))),
            ("played_ratio_pct", arr(arrow_array::UInt16Array::from(vec![100]))),
        ],
    );
    refused(&source, &events, &out, &["listens.parquet: column `uid` has type Utf8, expected an integer type"]);
    write_parquet(
        &listens,
        vec![
            ("uid", arr(arrow_array::UInt32Array::from(vec![1, 1, 2]))),
            ("item_id", arr(arrow_array::UInt32Array::from(vec![Some(1), Some(2), None]))),
            ("timestamp", arr(arrow_array::UInt32Array::from(vec![1, 2, 3]))),
            ("played_ratio_pct", arr(arrow_array::UInt16Array::from(vec![100, 100, 100]))),
        ],
    );
    refused(&source, &events, &out, &["listens.parquet: column `item_id` has 1 null value(s) (the first at row 2)"]);
    std::fs::remove_file(&listens).unwrap();
    refused(&source, &events, &out, &["not a Yambda data set", "listens.parquet (Yambda flat)"]);
}
