//! The `preprocess` stage on Apache Spark (engines/spark/preprocess.py) with a local cluster of
//! two executors gives the Rust stage's outputs row for row, a manifest the pipeline accepts,
//! and the same matrices downstream. Needs Java 17+ and scripts/spark.sh's venv (created on
//! first use, ~40 s), hence ignored in the quick suite and run by .ci/run.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use arrow_cast::display::{ArrayFormatter, FormatOptions};
use musicrec_data::parquet_io::read_batches;

use crate::common::*;

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The Spark job on `data` into `art`, on the Spark `master` given.
fn spark_submit(master: &str, data: &Path, art: &Path) -> Output {
    Command::new(format!("{REPO}/scripts/spark.sh"))
        .args(["submit", "--master", master, "--conf", "spark.ui.enabled=false"])
        .arg(format!("{REPO}/engines/spark/preprocess.py"))
        .args(["--data", data.to_str().unwrap(), "--artifacts", art.to_str().unwrap()])
        .output()
        .expect("scripts/spark.sh runs")
}

/// Runs the Spark job on `data` into `art` on a local cluster of two one-core executors.
fn spark_preprocess(data: &Path, art: &Path) {
    let out = spark_submit("local-cluster[2,1,1024]", data, art);
    assert!(out.status.success(), "the Spark job failed:\n{}", stderr(&out));
    assert!(stdout(&out).contains("(2 executors)"), "two executors took part: {}", stdout(&out));
}

/// A table's column types and its rows as text, sorted (the engines may order events differently).
fn table(path: &Path) -> (Vec<String>, Vec<String>) {
    let batches = read_batches(path).unwrap();
    let schema = batches[0].schema();
    let types = schema.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect();
    let mut rows = Vec::new();
    for batch in &batches {
        let options = FormatOptions::default();
        let formatters: Vec<ArrayFormatter<'_>> =
            batch.columns().iter().map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap()).collect();
        rows.extend(
            (0..batch.num_rows())
                .map(|r| formatters.iter().map(|f| f.value(r).to_string()).collect::<Vec<_>>().join(",")),
        );
    }
    rows.sort();
    (types, rows)
}

/// The Rust stages on `tiny` (in its artifacts directory), then Spark's preprocess beside them.
fn compare(tiny: &RunDirs) {
    let (data, rust, spark) = (&tiny.data, &tiny.art, tiny.scratch("spark"));
    tiny.succeed(Some("preprocess,matrices"), &[]);
    spark_preprocess(data, &spark);

    let (r, s) = (manifest(rust, "preprocess"), manifest(&spark, "preprocess"));
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
        let path = |art: &Path| stage_dir(art, "preprocess").join(file);
        assert_eq!(table(&path(&spark)), table(&path(rust)), "{file}: column types and rows");
    }
    for (key, value) in r["summary"].as_object().unwrap() {
        assert_eq!(&s["summary"][key], value, "summary {key}");
    }
    assert_eq!(s["params"]["preprocess"], r["params"]["preprocess"]);

    // The pipeline continues from Spark's outputs as from its own.
    let out = run_pipeline(data, &spark, Some("matrices"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for file in ["user_item.csr", "item_feature.csr", "users.parquet", "items.parquet", "features.parquet"] {
        let read = |art: &Path| std::fs::read(stage_dir(art, "matrices").join(file)).unwrap();
        assert!(read(&spark) == read(rust), "matrices/{file} differs");
    }
    assert!(files_under(&spark.join(".staging")).is_empty(), "no staging left behind");
}

#[test]
#[ignore = "needs Java 17+ and scripts/spark.sh's venv (run by .ci/run)"]
fn spark_preprocess_on_two_executors_equals_the_rust_stage() {
    // Generated data, and the hand-made set: an unknown track, new users, millisecond
    // timestamps with times of day, narrow and unsigned integer types.
    compare(&TinyRun::generated(5).prepare());
    compare(&TinyRun::hand_made().prepare());
}

#[test]
#[ignore = "needs Java 17+ and scripts/spark.sh's venv (run by .ci/run)"]
fn spark_preprocess_refuses_bad_input_naming_it_and_publishes_nothing() {
    use arrow_array::{Date32Array, Int32Array, Int64Array};
    let hand = TinyRun::hand_made().prepare();
    let (data, art) = (&hand.data, &hand.art);
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
    let out = spark_submit("local[2]", data, art);
    // spark-submit passes the Python driver's stderr on through its stdout.
    let err = stdout(&out) + &stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("interactions.parquet: column `user_id`: 2 rows are null"), "{err}");
    assert!(!stage_dir(art, "preprocess").join("manifest.json").exists(), "nothing published");
}
