//! Every bad input gets a clear error naming the file, the column and how many rows are bad,
//! exit code 2, and nothing is written.

use std::path::{Path, PathBuf};

use arrow_array::{Date32Array, Int16Array, Int32Array, Int64Array, StringArray};

use crate::common::*;

/// Runs preprocess on the hand-made data and checks the failure: exit 2, every `needles` in
/// stderr; returns stderr and the files written under the artifacts directory.
fn refused(tiny: &RunDirs, env: &[(&str, &str)], needles: &[&str]) -> (String, Vec<PathBuf>) {
    let out = tiny.pipeline(None, env);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    for needle in needles {
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    (err, files_under(&tiny.art))
}

/// `refused`, by the preprocess stage: nothing written under the artifacts directory but the
/// failed stage's run record, which holds the error.
fn assert_refused(tiny: &RunDirs, env: &[(&str, &str)], needles: &[&str]) {
    let (err, files) = refused(tiny, env, needles);
    let [record] = files.as_slice() else { panic!("nothing but the run record may be written: {files:?}") };
    assert!(record.to_string_lossy().ends_with("-preprocess.json"), "{}", record.display());
    let record: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
    assert_eq!(record["status"], "failed");
    let error = record["error"].as_str().unwrap();
    assert!(err.contains(error), "the record holds the error the user saw: {error}");
}

/// `refused` before any stage starts: nothing written at all.
fn assert_refused_before_work(tiny: &RunDirs, env: &[(&str, &str)], needles: &[&str]) {
    let (_, files) = refused(tiny, env, needles);
    assert_eq!(files, Vec::<PathBuf>::new(), "nothing may be written");
}

fn interactions(data: &Path, columns: Vec<(&str, arrow_array::ArrayRef)>) {
    write_parquet(&data.join("interactions.parquet"), columns);
}

#[test]
fn missing_file() {
    let tiny = TinyRun::hand_made().prepare();
    std::fs::remove_file(tiny.data.join("tracks.parquet")).unwrap();
    assert_refused(&tiny, &[], &["tracks.parquet", "file not found"]);
}

#[test]
fn missing_column() {
    let tiny = TinyRun::hand_made().prepare();
    interactions(
        &tiny.data,
        vec![
            ("user_id", arr(Int32Array::from(vec![1]))),
            ("track_id", arr(Int32Array::from(vec![10]))),
            ("track_seq", arr(Int16Array::from(vec![1]))),
        ],
    );
    assert_refused(
        &tiny,
        &[],
        &["interactions.parquet", "missing column `started_at`", "user_id, track_id, track_seq"],
    );
}

#[test]
fn wrong_type() {
    let tiny = TinyRun::hand_made().prepare();
    interactions(
        &tiny.data,
        vec![
            ("user_id", arr(StringArray::from(vec!["u1"]))),
            ("track_id", arr(Int32Array::from(vec![10]))),
            ("track_seq", arr(Int16Array::from(vec![1]))),
            ("started_at", arr(Date32Array::from(vec![19000]))),
        ],
    );
    assert_refused(&tiny, &[], &["interactions.parquet", "column `user_id`", "expected an integer type"]);
}

#[test]
fn null_ids_are_counted() {
    let tiny = TinyRun::hand_made().prepare();
    interactions(
        &tiny.data,
        vec![
            ("user_id", arr(Int32Array::from(vec![Some(1), None, Some(2), None, None]))),
            ("track_id", arr(Int32Array::from(vec![10, 10, 20, 20, 30]))),
            ("track_seq", arr(Int16Array::from(vec![1, 2, 1, 2, 3]))),
            ("started_at", arr(Date32Array::from(vec![19000; 5]))),
        ],
    );
    assert_refused(&tiny, &[], &["interactions.parquet", "column `user_id`", "3 null value(s)"]);
}

#[test]
fn null_list_element_in_tracks() {
    let tiny = TinyRun::hand_made().prepare();
    let mut genres = arrow_array::builder::ListBuilder::new(arrow_array::builder::Int64Builder::new());
    genres.values().append_value(3);
    genres.values().append_null();
    genres.append(true);
    write_parquet(
        &tiny.data.join("tracks.parquet"),
        vec![
            ("track_id", arr(Int64Array::from(vec![10]))),
            ("albums", arr(genres.finish())),
            (
                "artists",
                arr({
                    let mut b = arrow_array::builder::ListBuilder::new(arrow_array::builder::Int64Builder::new());
                    b.append(true);
                    b.finish()
                }),
            ),
            (
                "genres",
                arr({
                    let mut b = arrow_array::builder::ListBuilder::new(arrow_array::builder::Int64Builder::new());
                    b.append(true);
                    b.finish()
                }),
            ),
        ],
    );
    assert_refused(&tiny, &[], &["tracks.parquet", "column `albums`", "1 null value(s)"]);
}

#[test]
fn empty_table() {
    let tiny = TinyRun::hand_made().prepare();
    write_parquet(
        &tiny.data.join("catalog_names.parquet"),
        vec![
            ("id", arr(Int64Array::from(Vec::<i64>::new()))),
            ("type", arr(StringArray::from(Vec::<&str>::new()))),
            ("name", arr(StringArray::from(Vec::<&str>::new()))),
        ],
    );
    assert_refused(&tiny, &[], &["catalog_names.parquet", "empty"]);
}

#[test]
fn type_outside_the_four_values() {
    let tiny = TinyRun::hand_made().prepare();
    write_parquet(
        &tiny.data.join("catalog_names.parquet"),
        vec![
            ("id", arr(Int64Array::from(vec![1, 2, 3]))),
            ("type", arr(StringArray::from(vec!["album", "playlist", "podcast"]))),
            ("name", arr(StringArray::from(vec!["a", "b", "c"]))),
        ],
    );
    assert_refused(&tiny, &[], &["catalog_names.parquet", "column `type`", "2 row(s)", "\"playlist\""]);
}

#[test]
fn duplicate_track_ids() {
    let tiny = TinyRun::hand_made().prepare();
    let empty = || {
        let mut b = arrow_array::builder::ListBuilder::new(arrow_array::builder::Int64Builder::new());
        b.append(true);
        b.append(true);
        b.finish()
    };
    write_parquet(
        &tiny.data.join("tracks.parquet"),
        vec![
            ("track_id", arr(Int64Array::from(vec![10, 10]))),
            ("albums", arr(empty())),
            ("artists", arr(empty())),
            ("genres", arr(empty())),
        ],
    );
    assert_refused(&tiny, &[], &["tracks.parquet", "column `track_id`", "1 row(s)", "e.g. 10"]);
}

#[test]
fn unknown_tracks_fail_when_configured() {
    let tiny = TinyRun::hand_made().prepare();
    assert_refused(
        &tiny,
        &[("MUSICREC__DATA__UNKNOWN_TRACKS", "fail")],
        &["interactions.parquet", "1 event(s) of 1 track id(s)", "e.g. 99"],
    );
}

#[test]
fn bad_config_and_flags_are_refused_before_work() {
    let tiny = TinyRun::hand_made().prepare();
    assert_refused_before_work(&tiny, &[("MUSICREC__ALS__FACTORS", "-3")], &["als.factors"]);
    assert_refused_before_work(&tiny, &[("MUSICREC__PREPROCESS__TRAIN_END", "2023-01-01")], &["preprocess.target_end"]);
    assert_refused_before_work(
        &tiny,
        &[("MUSICREC__TRACKING__MLFLOW_URI", "file:///mlruns")],
        &["tracking.mlflow_uri"],
    );
    let (data, art) = (&tiny.data, &tiny.art);
    let out = tiny.pipeline(Some("preprocess,bogus"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown stage `bogus`"), "{}", stderr(&out));
    for (flag, bad, reason) in [
        ("--data", "s3:///x", "no bucket name"),
        ("--artifacts", "gs://bucket/x", "`gs://` is not supported"),
        ("--artifacts", "s3://Bucket_Name/x", "not a bucket name"),
    ] {
        let mut args = vec!["run", "--data", data.to_str().unwrap(), "--artifacts", art.to_str().unwrap()];
        args[if flag == "--data" { 2 } else { 4 }] = bad;
        let out = musicrec(&args, &[]);
        assert_eq!(out.status.code(), Some(2));
        let err = stderr(&out);
        assert!(err.contains(flag) && err.contains(bad) && err.contains(reason), "{err}");
    }
    let out = musicrec(&["generate", "--scale", "huge", "--out", art.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("huge"), "{}", stderr(&out));
    assert!(files_under(art).is_empty());
}

#[test]
fn split_dates_that_leave_a_window_empty() {
    let tiny = TinyRun::hand_made().prepare();
    assert_refused(
        &tiny,
        &[("MUSICREC__PREPROCESS__TRAIN_END", "2023-02-01"), ("MUSICREC__PREPROCESS__TARGET_END", "2023-03-01")],
        &["the target window has no events", "2022-06-01..2022-12-24", "preprocess.train_end"],
    );
}

#[test]
fn a_failed_rerun_keeps_the_previous_outputs() {
    let tiny = TinyRun::hand_made().stages("preprocess").build();
    let art = &tiny.art;
    let before = std::fs::read(art.join("preprocess/manifest.json")).unwrap();
    let out = tiny.pipeline(Some("preprocess"), &[("MUSICREC__DATA__UNKNOWN_TRACKS", "fail")]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read(art.join("preprocess/manifest.json")).unwrap(), before);
    assert!(!art.join(".staging").exists());
}

#[test]
fn bench_without_the_reference_says_how_to_set_it_up() {
    let tiny = TinyRun::hand_made().prepare();
    let (data, art) = (&tiny.data, &tiny.art);
    let out = musicrec(
        &[
            "bench",
            "models",
            "--data",
            data.to_str().unwrap(),
            "--artifacts",
            art.to_str().unwrap(),
            "--python",
            "/nonexistent/python",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/python not found") && stderr(&out).contains("pip install"),
        "{}",
        stderr(&out)
    );
    let out = musicrec(&["bench", "models", "--data", data.to_str().unwrap(), "--models", "als,features"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`features` is not a candidate model"), "{}", stderr(&out));
    assert!(files_under(art).is_empty());
}

#[test]
fn config_prints_every_section_documented() {
    let out = musicrec(&["config"], &[]);
    assert!(out.status.success());
    let text = stdout(&out);
    for key in [
        "threads:",
        "seed:",
        "evaluation:",
        "k: [5, 10, 20]",
        "train_end: 2022-12-16",
        "target_end: 2022-12-23",
        "als:",
        "bpr:",
        "item2item:",
        "top_items:",
        "ranking:",
        "negatives_per_user: 5",
    ] {
        assert!(text.contains(key), "missing {key}");
    }
}

/// The environment is the user's: a variable that is not ours may hold any bytes, and one of
/// ours that is not UTF-8 is refused by name (both used to panic, exit 101).
#[test]
fn environment_bytes_that_are_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let tiny = TinyRun::hand_made().prepare();
    let not_utf8 = std::ffi::OsStr::from_bytes(b"\xff");
    let out = tiny.command(&["--stages", "preprocess"], &[]).env("UNRELATED", not_utf8).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = tiny.command(&["--stages", "matrices"], &[]).env("MUSICREC__SEED", not_utf8).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("MUSICREC__SEED") && stderr(&out).contains("UTF-8"), "{}", stderr(&out));
    let recs = tiny.scratch("none.parquet");
    let out = command(
        &["evaluate", "--recs", recs.to_str().unwrap(), "--window", "test", "--artifacts", tiny.art.to_str().unwrap()],
        &[],
    )
    .env("UNRELATED", not_utf8)
    .output()
    .unwrap();
    assert_ne!(out.status.code(), Some(101), "{}", stderr(&out));
}
