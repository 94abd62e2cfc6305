//! `musicrec import`: each format's fixture imported and read by `preprocess` with the
//! automatic split, and the bar of issue 15: a MovieLens-layout data set imported and run
//! through the whole pipeline with `auto`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int32Type, Int64Type};
use musicrec_data::parquet_io::read_batches;

use crate::common::*;

#[path = "../../../import/tests/it/yambda_fixture.rs"]
mod yambda_fixture;

const AUTO: [(&str, &str); 2] =
    [("MUSICREC__PREPROCESS__TRAIN_END", "auto"), ("MUSICREC__PREPROCESS__TARGET_END", "auto")];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../import/tests/fixtures").join(name)
}

/// `musicrec import FORMAT SOURCE --out DIR ARGS`, which must succeed; returns stdout.
fn import(format: &str, source: &Path, out: &Path, args: &[&str]) -> String {
    let mut all = vec!["import", format, source.to_str().unwrap(), "--out", out.to_str().unwrap()];
    all.extend(args);
    let output = musicrec(&all, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    stdout(&output)
}

/// Imports, then runs preprocess with `auto` on the result; returns the preprocess manifest.
fn import_then_preprocess(format: &str, source: &Path, args: &[&str]) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let (data, art) = (tmp.path().join("data"), tmp.path().join("art"));
    let printed = import(format, source, &data, args);
    assert!(printed.contains("suggested split: train < "), "{printed}");
    let out = run_pipeline(&data, &art, Some("preprocess"), &AUTO);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("split: train < "), "{}", stdout(&out));
    let m = manifest(&art, "preprocess");
    let split = &m["summary"]["split"];
    // The suggestion written beside the data is the split preprocess chose.
    let config = std::fs::read_to_string(data.join("config.yaml")).unwrap();
    let expected = format!(
        "train_end: {}\n  target_end: {}\n",
        split["train_end"].as_str().unwrap(),
        split["target_end"].as_str().unwrap()
    );
    assert!(config.contains(&expected), "{config} vs {split}");
    m
}

#[test]
fn import_movielens_100k() {
    let m = import_then_preprocess("movielens", &fixture("movielens-100k"), &["--min-rating", "3"]);
    assert_eq!(m["summary"]["events_kept"], 6);
    assert_eq!(m["summary"]["split"]["chosen_by"], "event_quantiles");
}

#[test]
fn import_movielens_csv() {
    let m = import_then_preprocess("movielens", &fixture("movielens-csv"), &[]);
    assert_eq!(m["summary"]["events_kept"], 4);
}

#[test]
fn import_lastfm_1k() {
    let m = import_then_preprocess("lastfm-1k", &fixture("lastfm-1k"), &[]);
    assert_eq!(m["summary"]["events_kept"], 5);
}

#[test]
fn import_yambda() {
    let root = tempfile::tempdir().unwrap();
    let events = yambda_fixture::write_yambda(root.path());
    let m = import_then_preprocess(
        "yambda",
        &events,
        &["--events", "both", "--min-played-ratio", "50", "--start-date", "2023-03-01"],
    );
    assert_eq!(m["summary"]["events_kept"], 5);
    assert_eq!(m["summary"]["first_day"], "2023-03-01");
}

#[test]
fn import_csv() {
    let args = ["--user", "listener", "--item", "song", "--time", "played_at", "--time-unit", "rfc3339"];
    let items = fixture("csv/items.csv");
    let mut all = args.to_vec();
    all.extend(["--items", items.to_str().unwrap()]);
    let m = import_then_preprocess("csv", &fixture("csv/events.csv"), &all);
    assert_eq!(m["summary"]["events_kept"], 4);
}

#[test]
fn import_refuses_bad_flags_and_sources_with_exit_2_writing_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let ml = fixture("movielens-100k");
    let nothing = tmp.path().join("nothing");
    let cases: [(Vec<&str>, &str); 5] = [
        (
            vec!["import", "lastfm-1k", ml.to_str().unwrap(), "--min-rating", "3"],
            "--min-rating: applies to the `movielens` format only",
        ),
        (vec!["import", "csv", ml.to_str().unwrap(), "--user", "u"], "--item: is required with the csv format"),
        (
            vec![
                "import",
                "csv",
                ml.to_str().unwrap(),
                "--user",
                "u",
                "--item",
                "i",
                "--time",
                "t",
                "--time-unit",
                "hours",
            ],
            "`hours` is not a time unit",
        ),
        (vec!["import", "yambda", ml.to_str().unwrap()], "not a Yambda data set"),
        (vec!["import", "movielens", nothing.to_str().unwrap()], "an existing file or directory"),
    ];
    for (mut args, needle) in cases {
        args.extend(["--out", out.to_str().unwrap()]);
        let output = musicrec(&args, &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        assert!(stderr(&output).contains(needle), "{needle}: {}", stderr(&output));
        assert!(!out.exists(), "{args:?} wrote {:?}", files_under(&out));
    }
}

/// The tiny generated data set rewritten in the MovieLens 100K layout: tracks are movies,
/// every listen a rating of 5 at 10:00 on its day, genres as flags.
fn movielens_from_generated(data: &Path, ml: &Path) {
    std::fs::create_dir_all(ml).unwrap();
    let names = read_batches(&data.join("catalog_names.parquet")).unwrap();
    let mut genre_names = Vec::new();
    let mut track_names = HashMap::new();
    for b in &names {
        let (id, kind, name) =
            (b.column(0).as_primitive::<Int64Type>(), b.column(1).as_string::<i32>(), b.column(2).as_string::<i32>());
        for r in 0..b.num_rows() {
            match kind.value(r) {
                "genre" => genre_names.push((id.value(r), name.value(r).replace('|', "/"))),
                "track" => drop(track_names.insert(id.value(r), name.value(r).replace('|', "/"))),
                _ => {}
            }
        }
    }
    let mut text = String::new();
    for (i, (_, name)) in genre_names.iter().enumerate() {
        writeln!(text, "{name}|{i}").unwrap();
    }
    std::fs::write(ml.join("u.genre"), &text).unwrap();
    let mut text = String::new();
    for b in read_batches(&data.join("tracks.parquet")).unwrap() {
        let (ids, genres) = (b.column(0).as_primitive::<Int64Type>(), b.column(3).as_list::<i32>());
        for r in 0..b.num_rows() {
            let list = genres.value(r);
            let list = list.as_primitive::<Int64Type>();
            let flags: Vec<&str> =
                genre_names.iter().map(|(g, _)| if list.values().contains(g) { "1" } else { "0" }).collect();
            let id = ids.value(r);
            writeln!(text, "{id}|{}|01-Jan-2022||http://example.org/{id}|{}", track_names[&id], flags.join("|"))
                .unwrap();
        }
    }
    std::fs::write(ml.join("u.item"), &text).unwrap();
    let mut text = String::new();
    for b in read_batches(&data.join("interactions.parquet")).unwrap() {
        let users = b.column(0).as_primitive::<Int32Type>();
        let tracks = b.column(1).as_primitive::<Int32Type>();
        let days = b.column(3).as_primitive::<Date32Type>();
        for r in 0..b.num_rows() {
            let seconds = i64::from(days.value(r)) * 86_400 + 36_000;
            writeln!(text, "{}\t{}\t5\t{seconds}", users.value(r), tracks.value(r)).unwrap();
        }
    }
    std::fs::write(ml.join("u.data"), &text).unwrap();
}

#[test]
fn movielens_import_then_the_whole_pipeline_with_the_automatic_split() {
    let tmp = tempfile::tempdir().unwrap();
    let (generated, ml, data, art) =
        (tmp.path().join("gen"), tmp.path().join("ml-100k"), tmp.path().join("data"), tmp.path().join("art"));
    let out = musicrec(&["generate", "--scale", "tiny", "--seed", "5", "--out", generated.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    movielens_from_generated(&generated, &ml);
    let printed = import("movielens", &ml, &data, &[]);
    assert!(printed.contains("last_two_weeks"), "a year of daily data gets the week rule: {printed}");

    let out = run_pipeline(&data, &art, None, &AUTO);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = stdout(&out);
    assert!(printed.contains("(chosen by: last_two_weeks)") && printed.contains("report:"), "{printed}");
    let pre = manifest(&art, "preprocess");
    let split = &pre["summary"]["split"];
    // The last event day is the test window's last day: test spans 7 days, target the 7 before.
    let last = chrono::NaiveDate::parse_from_str(pre["summary"]["last_day"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    let date = |key: &str| chrono::NaiveDate::parse_from_str(split[key].as_str().unwrap(), "%Y-%m-%d").unwrap();
    assert_eq!((last - date("target_end")).num_days(), 6);
    assert_eq!((date("target_end") - date("train_end")).num_days(), 7);
    // Later stages use the chosen dates, not `auto`.
    assert_eq!(pre["params"]["preprocess"]["train_end"], split["train_end"]);
    assert_eq!(manifest(&art, "features")["summary"]["as_of"], split["train_end"]);
    assert_eq!(manifest(&art, "eda")["params"]["train_end"], split["train_end"]);
    assert!(manifest(&art, "report")["summary"].is_object());
    // Names came through: the catalogue's movie titles are the generated track names.
    let names = read_batches(&stage_dir(&art, "preprocess").join("names_track.parquet")).unwrap();
    assert!(names.iter().map(|b| b.num_rows()).sum::<usize>() > 0);

    // The suggested configuration is a configuration of ours and gives the same split.
    let second = tmp.path().join("art2");
    let config = data.join("config.yaml");
    let out = musicrec(
        &[
            "run",
            "--data",
            data.to_str().unwrap(),
            "--artifacts",
            second.to_str().unwrap(),
            "--stages",
            "preprocess",
            "--config",
            config.to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let again = manifest(&second, "preprocess");
    assert_eq!(again["params"]["preprocess"], pre["params"]["preprocess"]);
    assert_eq!(again["summary"]["split"]["chosen_by"], "configured");
}
