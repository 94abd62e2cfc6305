//! A hand-made data set (6 tracks, 5 users, events around the split dates) run through
//! preprocess, matrices and features; every output checked against hand-computed values.

use std::path::Path;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt32Type};
use musicrec_data::CsrMatrix;
use musicrec_data::parquet_io::read_batches;

use crate::common::*;

/// The single batch of a small output file.
fn one(path: &Path) -> RecordBatch {
    let mut batches = read_batches(path).unwrap();
    assert_eq!(batches.len(), 1, "fixture outputs fit one batch");
    batches.remove(0)
}

fn i64s(batch: &RecordBatch, column: &str) -> Vec<i64> {
    batch.column_by_name(column).unwrap().as_primitive::<Int64Type>().values().to_vec()
}

fn u32s(batch: &RecordBatch, column: &str) -> Vec<u32> {
    batch.column_by_name(column).unwrap().as_primitive::<UInt32Type>().values().to_vec()
}

fn opt_i32s(batch: &RecordBatch, column: &str) -> Vec<Option<i32>> {
    batch.column_by_name(column).unwrap().as_primitive::<Int32Type>().iter().collect()
}

#[test]
fn stages_match_hand_computed_values() {
    let tiny = TinyRun::hand_made().stages("preprocess,matrices,features").build();
    let art = &tiny.art;
    assert!(stdout(tiny.output()).contains("results:"), "{}", stdout(tiny.output()));

    // preprocess: the split, old/new users, the dropped unknown-track event.
    let pre = stage_dir(art, "preprocess");
    let train = one(&pre.join("train.parquet"));
    assert_eq!(i64s(&train, "user_id"), vec![1, 1, 1, 2, 2, 5]);
    assert_eq!(i64s(&train, "track_id"), vec![10, 20, 10, 20, 20, 10]);
    let target = one(&pre.join("target.parquet"));
    assert_eq!(i64s(&target, "user_id"), vec![1, 2, 3]);
    assert_eq!(i64s(&target, "track_id"), vec![30, 50, 60]);
    let test = one(&pre.join("test.parquet"));
    assert_eq!(i64s(&test, "user_id"), vec![1, 4]);
    assert_eq!(
        test.column_by_name("started_at").unwrap().as_primitive::<arrow_array::types::Date32Type>().values().to_vec(),
        vec![19350, 19349]
    );
    let users = one(&pre.join("users.parquet"));
    assert_eq!(i64s(&users, "user_id"), vec![1, 2, 3, 4, 5]);
    let old: Vec<bool> = users.column_by_name("old").unwrap().as_boolean().iter().map(Option::unwrap).collect();
    assert_eq!(old, vec![true, true, false, false, true]);
    let preprocess = manifest(art, "preprocess");
    assert_eq!(preprocess["summary"]["unknown_track_events_dropped"], 1);
    assert_eq!(preprocess["summary"]["unknown_track_examples"][0], 99);
    assert_eq!(preprocess["summary"]["windows"]["target"]["new_users"], 1);
    assert_eq!(preprocess["summary"]["windows"]["test"]["old_users"], 1);
    let genres = one(&pre.join("track_genres.parquet"));
    assert_eq!(i64s(&genres, "track_id"), vec![10, 20, 20, 30, 40, 50]);
    assert_eq!(i64s(&genres, "genre_id"), vec![3, 3, 4, 4, 4, 5]);
    let genre_names = one(&pre.join("names_genre.parquet"));
    assert_eq!(i64s(&genre_names, "id"), vec![3, 4, 5]);

    // matrices: encoders in id order, listen counts, one-hot features.
    let mat = stage_dir(art, "matrices");
    assert_eq!(i64s(&one(&mat.join("users.parquet")), "user_id"), vec![1, 2, 5]);
    assert_eq!(i64s(&one(&mat.join("items.parquet")), "track_id"), vec![10, 20, 30, 40, 50, 60]);
    let ui = CsrMatrix::load(&mat.join("user_item.csr")).unwrap();
    assert_eq!((ui.rows, ui.cols), (3, 6));
    assert_eq!(ui.row(0), (&[0u32, 1][..], &[2.0f32, 1.0][..]));
    assert_eq!(ui.row(1), (&[1u32][..], &[2.0f32][..]));
    assert_eq!(ui.row(2), (&[0u32][..], &[1.0f32][..]));
    let features = one(&mat.join("features.parquet"));
    assert_eq!(i64s(&features, "id"), vec![1, 2, 3, 7, 8, 9, 3, 4, 5]);
    let fm = CsrMatrix::load(&mat.join("item_feature.csr")).unwrap();
    let expected: [&[u32]; 6] = [&[0, 3, 6], &[0, 3, 6, 7], &[1, 4, 7], &[1, 3, 4, 7], &[2, 5, 8], &[5]];
    for (item, cols) in expected.iter().enumerate() {
        assert_eq!(fm.row(item).0, *cols, "item {item}");
        assert!(fm.row(item).1.iter().all(|&v| v == 1.0));
    }

    // features as of 2022-12-16, windows 7 and 30 days.
    let feat = stage_dir(art, "features");
    let uf = one(&feat.join("user_features.parquet"));
    assert_eq!(i64s(&uf, "user_id"), vec![1, 2, 5]);
    assert_eq!(u32s(&uf, "listens"), vec![3, 2, 1]);
    assert_eq!(u32s(&uf, "listens_last_7d"), vec![2, 1, 0]);
    assert_eq!(u32s(&uf, "listens_last_30d"), vec![3, 1, 0]);
    assert_eq!(u32s(&uf, "distinct_tracks"), vec![2, 1, 1]);
    assert_eq!(opt_i32s(&uf, "days_since_first"), vec![Some(15), Some(45), Some(198)]);
    assert_eq!(opt_i32s(&uf, "days_since_last"), vec![Some(1), Some(4), Some(198)]);
    let itf = one(&feat.join("item_features.parquet"));
    assert_eq!(i64s(&itf, "track_id"), vec![10, 20, 30, 40, 50, 60]);
    assert_eq!(u32s(&itf, "listens"), vec![3, 3, 0, 0, 0, 0]);
    assert_eq!(u32s(&itf, "listens_last_7d"), vec![1, 2, 0, 0, 0, 0]);
    assert_eq!(u32s(&itf, "listens_last_30d"), vec![2, 2, 0, 0, 0, 0]);
    assert_eq!(u32s(&itf, "distinct_users"), vec![2, 2, 0, 0, 0, 0]);
    assert_eq!(opt_i32s(&itf, "days_since_first"), vec![Some(198), Some(45), None, None, None, None]);
    assert_eq!(opt_i32s(&itf, "days_since_last"), vec![Some(1), Some(4), None, None, None, None]);

    // Every stage's manifest lists its outputs and the run id; no staging left behind.
    for stage in ["preprocess", "matrices", "features"] {
        let m = manifest(art, stage);
        assert_eq!(m["stage"], stage);
        assert_eq!(m["run_id"], preprocess["run_id"]);
        assert!(!m["outputs"].as_array().unwrap().is_empty());
    }
    assert!(!art.join(".staging").exists());
}

#[test]
fn stages_can_be_rerun_alone_and_need_their_upstream() {
    let tiny = TinyRun::hand_made().prepare();
    let art = &tiny.art;
    let run = |stages: &str| tiny.pipeline(Some(stages), &[]);

    let out = run("matrices");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("needs the outputs of stage `preprocess`"), "{}", stderr(&out));

    assert!(run("preprocess").status.success());
    assert!(!stage_dir(art, "matrices").exists());
    let out = run("features");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("`matrices`"), "{}", stderr(&out));
    let out = run("matrices,features");
    assert!(out.status.success(), "{}", stderr(&out));

    // A damaged upstream output makes its manifest untrustworthy.
    std::fs::write(stage_dir(art, "matrices").join("items.parquet"), b"truncated").unwrap();
    let out = run("features");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("items.parquet has 9 bytes"), "{}", stderr(&out));
}
