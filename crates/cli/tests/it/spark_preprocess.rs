//! The `preprocess` stage on Apache Spark (engines/spark/preprocess.py) with a local cluster of
//! two executors gives the Rust stage's outputs row for row, a manifest the pipeline accepts,
//! and the same matrices downstream. Needs Java 17+ and scripts/spark.sh's venv (created on
//! first use, ~40 s), hence ignored in the quick suite and run by .ci/run.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use arrow_cast::display::{ArrayFormatter, FormatOptions};
use common::*;
use musicrec_data::parquet_io::read_batches;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Runs the Spark job on `data` into `art` on a local cluster of two one-core executors.
fn spark_preprocess(data: &Path, art: &Path) {
    let out = Command::new(format!("{REPO}/scripts/spark.sh"))
        .args(["submit", "--master", "local-cluster[2,1,1024]", "--conf", "spark.ui.enabled=false"])
        .arg(format!("{REPO}/engines/spark/preprocess.py"))
        .args(["--data", data.to_str().unwrap(), "--artifacts", art.to_str().unwrap()])
        .output()
        .expect("scripts/spark.sh runs");
    assert!(out.status.success(), "the Spark job failed:\n{}", stderr(&out));
    assert!(stdout(&out).contains("(2 executors)"), "two executors took part: {}", stdout(&out));
}

fn manifest(art: &Path, stage: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(art.join(stage).join("manifest.json")).unwrap()).unwrap()
}

/// A table's column types and its rows as text, sorted (the engines may order events differently).
fn table(path: &Path) -> (Vec<String>, Vec<String>) {
    let batches = read_batches(path).unwrap();
    let schema = batches[0].schema();
    let types = schema.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect();
    let mut rows = Vec::new();
    for batch in &batches {
        let options = FormatOptions::default();
        let formatters: Vec<ArrayFormatter> =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap()).collect();
        rows.extend(
            (0..batch.num_rows())
                .map(|r| formatters.iter().map(|f| f.value(r).to_string()).collect::<Vec<_>>().join(",")),
        );
    }
    rows.sort();
    (types, rows)
}

fn compare(data: &Path, root: &Path) {
    let (rust, spark) = (root.join("rust"), root.join("spark"));
    let out = run_pipeline(data, &rust, Some("preprocess,matrices"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    spark_preprocess(data, &spark);

    let (r, s) = (manifest(&rust, "preprocess"), manifest(&spark, "preprocess"));
    let files = |m: &serde_json::Value| -> BTreeMap<String, u64> {
        m["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["file"].as_str().unwrap().into(), o["rows"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(files(&s), files(&r), "the same files with the same row counts");
    for file in files(&r).keys() {
        let path = |art: &Path| art.join("preprocess").join(file);
        assert_eq!(table(&path(&spark)), table(&path(&rust)), "{file}: column types and rows");
    }
    for (key, value) in r["summary"].as_object().unwrap() {
        assert_eq!(&s["summary"][key], value, "summary {key}");
    }
    assert_eq!(s["params"]["preprocess"], r["params"]["preprocess"]);

    // The pipeline continues from Spark's outputs as from its own.
    let out = run_pipeline(data, &spark, Some("matrices"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for file in ["user_item.csr", "item_feature.csr", "users.parquet", "items.parquet", "features.parquet"] {
        let read = |art: &Path| std::fs::read(art.join("matrices").join(file)).unwrap();
        assert!(read(&spark) == read(&rust), "matrices/{file} differs");
    }
    assert!(files_under(&spark.join(".staging")).is_empty(), "no staging left behind");
}

#[test]
#[ignore = "needs Java 17+ and scripts/spark.sh's venv (run by .ci/run)"]
fn spark_preprocess_on_two_executors_equals_the_rust_stage() {
    let tmp = tempfile::tempdir().unwrap();
    // Generated data, and the hand-made set: an unknown track, new users, millisecond
    // timestamps with times of day, narrow and unsigned integer types.
    let tiny = tmp.path().join("tiny");
    generate_tiny(&tiny, 5);
    compare(&tiny, &tmp.path().join("tiny-out"));
    let hand = tmp.path().join("hand");
    common::fixture::write_fixture(&hand);
    compare(&hand, &tmp.path().join("hand-out"));
}

#[test]
#[ignore = "needs Java 17+ and scripts/spark.sh's venv (run by .ci/run)"]
fn spark_preprocess_refuses_bad_input_naming_it_and_publishes_nothing() {
    use arrow_array::{Date32Array, Int32Array, Int64Array};
    let tmp = tempfile::tempdir().unwrap();
    let (data, art) = (tmp.path().join("hand"), tmp.path().join("artifacts"));
    common::fixture::write_fixture(&data);
    write_parquet(
        &data.join("interactions.parquet"),
        vec![
            ("user_id", arr(Int64Array::from(vec![Some(1), None, None]))),
            ("track_id", arr(Int32Array::from(vec![10, 20, 30]))),
            ("track_seq", arr(Int32Array::from(vec![1, 2, 3]))),
            ("started_at", arr(Date32Array::from(vec![19327, 19342, 19350]))),
        ],
    );
    // One local JVM is enough to see the refusal.
    let out = Command::new(format!("{REPO}/scripts/spark.sh"))
        .args(["submit", "--master", "local[2]", "--conf", "spark.ui.enabled=false"])
        .arg(format!("{REPO}/engines/spark/preprocess.py"))
        .args(["--data", data.to_str().unwrap(), "--artifacts", art.to_str().unwrap()])
        .output()
        .expect("scripts/spark.sh runs");
    // spark-submit passes the Python driver's stderr on through its stdout.
    let err = stdout(&out) + &stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("interactions.parquet: column `user_id`: 2 rows are null"), "{err}");
    assert!(!art.join("preprocess/manifest.json").exists(), "nothing published");
}
