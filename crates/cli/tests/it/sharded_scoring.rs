//! Sharded scoring on generated `tiny` data: the model fitted once (`--shards N`), N scoring
//! processes running at once against one artifacts directory (`--shard I/N`), the merge
//! (`--merge-shards`) publishing exactly what a single process publishes, and refusing
//! missing, stale or damaged parts.

use std::path::Path;
use std::process::{Output, Stdio};

use musicrec_data::parquet_io::read_batches;

use crate::common::*;

/// Small models, one thread: BPR's parallel SGD is deterministic only on one thread, and the
/// comparison needs the fit of the sharded run to be the single run's.
const ENV: [(&str, &str); 8] = [
    ("MUSICREC__THREADS", "1"),
    ("MUSICREC__ALS__FACTORS", "16"),
    ("MUSICREC__ALS__ITERATIONS", "4"),
    ("MUSICREC__BPR__FACTORS", "16"),
    ("MUSICREC__BPR__ITERATIONS", "10"),
    ("MUSICREC__ITEM2ITEM__N_COMPONENTS", "16"),
    ("MUSICREC__ITEM2ITEM__MIN_USERS_PER_ITEM", "3"),
    ("MUSICREC__RANKING__NEGATIVES_PER_USER", "5"),
];

/// `musicrec run --stages <stages>` with `extra` flags on the tiny run.
fn run(tiny: &RunDirs, stages: &str, extra: &[&str]) -> Output {
    let mut args = vec!["--stages", stages];
    args.extend(extra);
    tiny.command(&args, &[]).output().expect("the musicrec binary runs")
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

/// Runs `--shard i/n` for every `i` in `shards` as concurrent processes; all must succeed.
fn score_concurrently(tiny: &RunDirs, stages: &str, shards: &[u32], n: u32) {
    let children: Vec<_> = shards
        .iter()
        .map(|i| {
            let mut cmd = tiny.command(&["--stages", stages, "--shard", &format!("{i}/{n}")], &[]);
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            cmd.spawn().expect("the musicrec binary starts")
        })
        .collect();
    for child in children {
        ok(child.wait_with_output().unwrap());
    }
}

/// A published output: parquet as its rows, anything else as bytes.
#[derive(Debug, PartialEq)]
enum Content {
    Rows(Vec<arrow_array::RecordBatch>),
    Bytes(Vec<u8>),
}

/// Everything a stage published, by file.
fn published(art: &Path, stage: &str) -> Vec<(String, Content)> {
    let mut files: Vec<(String, Content)> = manifest(art, stage)["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let file = o["file"].as_str().unwrap().to_string();
            let path = stage_dir(art, stage).join(&file);
            let content = if file.ends_with(".parquet") {
                Content::Rows(read_batches(&path).unwrap())
            } else {
                Content::Bytes(std::fs::read(&path).unwrap())
            };
            (file, content)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

fn summary(art: &Path, stage: &str) -> serde_json::Value {
    manifest(art, stage)["summary"].clone()
}

const MODELS: &str = "als,bpr,item2item,top_items";

#[test]
fn three_concurrent_shards_publish_what_one_process_publishes() {
    let tiny = TinyRun::generated(11).stages("preprocess,matrices").config(&ENV).build();
    let art = &tiny.art;
    ok(run(&tiny, MODELS, &[]));
    let models: Vec<&str> = MODELS.split(',').collect();
    let whole: Vec<_> = models.iter().map(|m| published(art, m)).collect();
    let whole_summaries: Vec<_> = models.iter().map(|m| summary(art, m)).collect();

    ok(run(&tiny, MODELS, &["--shards", "3"]));
    score_concurrently(&tiny, MODELS, &[0, 1, 2], 3);
    ok(run(&tiny, MODELS, &["--merge-shards"]));

    for (i, model) in models.iter().enumerate() {
        let sharded = published(art, model);
        let files: Vec<&str> = sharded.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(files, whole[i].iter().map(|f| f.0.as_str()).collect::<Vec<_>>(), "{model}: the same files");
        for (a, b) in sharded.iter().zip(&whole[i]) {
            assert!(a == b, "{model}: {} differs between the sharded and the single-process run", a.0);
        }
        let rows = |c: &Content| match c {
            Content::Rows(batches) => batches.iter().map(|b| b.num_rows()).sum(),
            Content::Bytes(_) => 0,
        };
        assert!(sharded.iter().any(|f| f.0 == "candidates.parquet" && rows(&f.1) > 0), "{model}: has candidates");
        let summary = summary(art, model);
        for key in ["candidate_pairs", "similar_pairs", "users_with_candidates", "metrics", "model"] {
            assert_eq!(summary[key], whole_summaries[i][key], "{model}: summary {key}");
        }
        assert_eq!(summary["shards"]["count"], 3, "{model}: {summary}");
        let parts = summary["shards"]["parts"].as_array().unwrap();
        let users: Vec<_> = parts.iter().map(|p| p["users"].clone()).collect();
        assert_eq!(users[0]["start"], 0, "{model}: {users:?}");
        assert!(users.windows(2).all(|w| w[0]["end"] == w[1]["start"]), "{model}: {users:?}");
    }
    // Downstream cannot tell: the ranker and the report run on the merged stages.
    ok(run(&tiny, "features,ranking,report", &[]));
}

fn refused(out: Output, needles: &[&str]) {
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }
}

#[test]
fn the_merge_refuses_missing_stale_and_damaged_parts() {
    let tiny = TinyRun::generated(12).stages("preprocess,matrices").config(&ENV).build();
    let art = &tiny.art;

    refused(run(&tiny, "als", &["--shard", "0/2"]), &["--shard 0/2 needs the model fitted by", "--shards N"]);
    ok(run(&tiny, "als", &["--shards", "2"]));
    refused(run(&tiny, "als", &["--shard", "0/3"]), &["fitted for 2 shards", "--shard I/2"]);
    score_concurrently(&tiny, "als", &[0], 2);
    refused(
        run(&tiny, "als", &["--merge-shards"]),
        &["cannot merge: 1 of 2 parts", "shards/als/part-0001-of-0002: missing", "--shard 1/2"],
    );
    assert!(!stage_dir(art, "als").join("manifest.json").exists(), "a refused merge publishes nothing");

    // Lists of two models never mix: a new fit is a new version, and the parts scored with
    // the earlier model stay beside it, in that version's directory, where this merge does not
    // look.
    score_concurrently(&tiny, "als", &[1], 2);
    ok(run(&tiny, "als", &["--shards", "2"]));
    score_concurrently(&tiny, "als", &[0], 2);
    refused(run(&tiny, "als", &["--merge-shards"]), &["1 of 2 parts", "part-0001-of-0002: missing"]);
    assert!(!stage_dir(art, "als").join("manifest.json").exists());

    // Another configuration is refused when scoring, not found out at the merge.
    let out = run_pipeline(&tiny.data, art, Some("als"), &[]);
    assert!(out.status.success(), "a whole run is independent of the shards: {}", stderr(&out));
    let other_config = [("MUSICREC__ALS__N_CANDIDATES", "7")];
    let out = tiny.command(&["--stages", "als", "--shard", "1/2"], &other_config).output().unwrap();
    refused(out, &["configuration differs from the one the model", "was fitted with"]);

    // A damaged part (its file no longer the size its manifest records) is not merged.
    score_concurrently(&tiny, "als", &[1], 2);
    let part = stage_dir(art, "shards/als/part-0001-of-0002").join("candidates.parquet");
    let bytes = std::fs::read(&part).unwrap();
    std::fs::write(&part, &bytes[..bytes.len() / 2]).unwrap();
    refused(run(&tiny, "als", &["--merge-shards"]), &["part-0001-of-0002: missing or incomplete", "bytes"]);
    std::fs::write(&part, &bytes).unwrap();
    ok(run(&tiny, "als", &["--merge-shards"]));
    assert_eq!(summary(art, "als")["shards"]["count"], 2);
    assert!(files_under(&art.join(".staging")).is_empty(), "no staging left behind");
}

#[test]
fn bad_shard_flags_are_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let art = tmp.path().join("artifacts");
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--artifacts", art.to_str().unwrap()];
        all.extend(args);
        musicrec(&all, &[])
    };
    refused(run(&["--stages", "als", "--shard", "3/2"]), &["--shard 3/2: shards of 2 are numbered 0 to 1"]);
    refused(run(&["--stages", "als", "--shard", "0/0"]), &["--shard 0/0: the shard count must be between 1"]);
    refused(run(&["--stages", "als", "--shard", "a/b"]), &["--shard a/b: the shard count `b` is not a whole number"]);
    refused(run(&["--stages", "als", "--shards", "x"]), &["--shards x: the shard count `x` is not a whole number"]);
    refused(
        run(&["--stages", "preprocess,als", "--shard", "0/2"]),
        &[
            "--stages preprocess: --shard 0/2 applies to the candidate-model stages only (als, bpr, item2item, top_items)",
        ],
    );
    refused(run(&["--stages", "ranking", "--merge-shards"]), &["--stages ranking: --merge-shards applies"]);
    refused(
        run(&["--stages", "als", "--shards", "2", "--shard", "0/2"]),
        &["(given: --shards 2 --shard 0/2): give one of them"],
    );
    assert!(files_under(&art).is_empty(), "nothing may be written");
}
