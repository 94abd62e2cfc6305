//! Command-line faults: bad flags, unusable paths, and artifact sets that are missing, partial,
//! damaged or from another run, under every command that reads them. Bad input is exit 2
//! with the flag, file or stage named; nothing is written where the command was pointed.

use std::path::Path;

use arrow_array::{Int64Array, UInt32Array};

use super::{Case, after, case, in_copy, passes, refused, run_cases, with_env};
use crate::common::*;

const SERVE_COPY: &[&str] = &["serve", "--artifacts", "{copy}", "--addr", "127.0.0.1:0"];

/// Flips a byte in the middle of `file` under the copied set: same size, so the manifest
/// still lists it as written.
fn flip_middle(dir: &Path, file: &str) {
    let path = in_copy(dir, file);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
}

/// Replaces `file` of the copied set with bytes of the same length that are not parquet.
fn same_size_garbage(dir: &Path, file: &str) {
    let path = in_copy(dir, file);
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    std::fs::write(&path, vec![b'x'; len]).unwrap();
}

/// A recommendations file, for `evaluate --recs`: (user, track, rank) rows.
fn recs(path: &Path, rows: &[(i64, i64, u32)]) {
    write_parquet(
        path,
        vec![
            ("user_id", arr(Int64Array::from_iter_values(rows.iter().map(|r| r.0)))),
            ("track_id", arr(Int64Array::from_iter_values(rows.iter().map(|r| r.1)))),
            ("rank", arr(UInt32Array::from_iter_values(rows.iter().map(|r| r.2)))),
        ],
    );
}

/// The copied set's offline lists replaced, manifest and all, by one of users the run's
/// encoders do not know: another run's file, sizes matching its own manifest.
fn foreign_recommendations(dir: &Path) {
    let ranking = stage_dir(&dir.join("artifacts"), "ranking");
    let file = ranking.join("recommendations.parquet");
    let batches = musicrec_data::parquet_io::read_batches(&file).unwrap();
    let batch = &batches[0];
    let schema = batch.schema();
    let mut columns = batch.columns().to_vec();
    let users = schema.index_of("user_id").unwrap();
    columns[users] = arr(Int64Array::from_iter_values((0..batch.num_rows() as i64).map(|i| 900_000_000 + i)));
    let foreign = arrow_array::RecordBatch::try_new(schema, columns).unwrap();
    let written = musicrec_data::parquet_io::write_batch(&file, &foreign).unwrap();
    let manifest_path = ranking.join("manifest.json");
    let mut manifest = json_file(&manifest_path);
    for output in manifest["outputs"].as_array_mut().unwrap() {
        if output["file"] == "recommendations.parquet" {
            output["bytes"] = written.bytes.into();
            output["rows"] = written.rows.into();
        }
    }
    std::fs::write(manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
}

fn cases() -> Vec<Case> {
    vec![
        // Flags.
        case(
            "an unknown stage",
            &["run", "--data", "{data}", "--artifacts", "{art}", "--stages", "preprocess,bogus"],
            refused(&["unknown stage `bogus`"]),
        ),
        case(
            "--data s3:// without a bucket",
            &["run", "--data", "s3:///x", "--artifacts", "{art}"],
            refused(&["--data", "s3:///x", "no bucket name"]),
        ),
        case(
            "--artifacts on gs://",
            &["run", "--data", "{data}", "--artifacts", "gs://bucket/x"],
            refused(&["--artifacts", "gs://bucket/x", "`gs://` is not supported"]),
        ),
        case(
            "--artifacts on a bad bucket name",
            &["run", "--data", "{data}", "--artifacts", "s3://Bucket_Name/x"],
            refused(&["--artifacts", "s3://Bucket_Name/x", "not a bucket name"]),
        ),
        case("an unknown scale", &["generate", "--scale", "huge", "--out", "{art}"], refused(&["huge"])),
        case(
            "--shard without --shards",
            &["run", "--data", "{data}", "--artifacts", "{art}", "--stages", "als", "--shard", "5/2"],
            refused(&["--shard"]),
        ),
        case(
            "serve --addr without a port",
            &["serve", "--artifacts", "{art}", "--addr", "localhost"],
            refused(&["--addr", "localhost"]),
        ),
        with_env(
            "serve with max_k 0",
            &["serve", "--artifacts", "{art}"],
            &[("MUSICREC__SERVICE__MAX_K", "0")],
            refused(&["service.max_k"]),
        ),
        case(
            "evaluate --k 0",
            &[
                "evaluate",
                "--recs",
                "{shared}/ranking/recommendations.parquet",
                "--window",
                "test",
                "--artifacts",
                "{shared}",
                "--k",
                "0",
            ],
            refused(&["--k"]),
        ),
        case(
            "recommend --k 0",
            &["recommend", "--artifacts", "{shared}", "--user", "1", "--k", "0"],
            refused(&["--k", "1..=1000"]),
        ),
        case(
            "similar --k 5000",
            &["similar", "--artifacts", "{shared}", "--track", "1", "--k", "5000"],
            refused(&["--k", "1..=1000"]),
        ),
        case(
            "loadtest --url with a path",
            &["loadtest", "--url", "http://host:1/x", "--artifacts", "{shared}"],
            refused(&["--url"]),
        ),
        case(
            "loadtest --rps 0",
            &["loadtest", "--url", "http://127.0.0.1:1", "--rps", "0", "--artifacts", "{shared}"],
            refused(&["must all be positive"]),
        ),
        case(
            "events export --until before --since",
            &[
                "events",
                "export",
                "--out",
                "{art}",
                "--from",
                "{tmp}",
                "--since",
                "2026-02-01",
                "--until",
                "2026-01-01",
            ],
            refused(&["--until", "after --since"]),
        ),
        case(
            "events export --since not a time",
            &["events", "export", "--out", "{art}", "--from", "{tmp}", "--since", "yesterday"],
            refused(&["--since", "yesterday"]),
        ),
        case(
            "bench without the Python reference",
            &["bench", "models", "--data", "{data}", "--artifacts", "{art}", "--python", "/nonexistent/python"],
            refused(&["/nonexistent/python not found", "pip install"]),
        ),
        case(
            "bench a stage that is no model",
            &["bench", "models", "--data", "{data}", "--models", "als,features"],
            refused(&["`features` is not a candidate model"]),
        ),
        // Unusable paths (exit 1 before: an I/O error read as the machine's).
        case(
            "serve --artifacts is a file",
            &["serve", "--artifacts", "{file}", "--addr", "127.0.0.1:0"],
            refused(&["--artifacts", "is a file, not a directory"]),
        ),
        case(
            "run --artifacts under a file",
            &["run", "--data", "{data}", "--artifacts", "{file}/sub"],
            refused(&["--artifacts", "is a file, not a directory"]),
        ),
        case(
            "evaluate --artifacts is a file",
            &[
                "evaluate",
                "--recs",
                "{shared}/ranking/recommendations.parquet",
                "--window",
                "test",
                "--artifacts",
                "{file}",
            ],
            refused(&["--artifacts", "is a file"]),
        ),
        case(
            "runs list --artifacts is a file",
            &["runs", "list", "--artifacts", "{file}"],
            refused(&["--artifacts", "is a file"]),
        ),
        case(
            "--data is a file",
            &["run", "--data", "{file}", "--artifacts", "{art}", "--stages", "preprocess"],
            refused(&["file not found"]),
        ),
        // Missing and partial artifact sets.
        case(
            "serve an empty directory",
            &["serve", "--artifacts", "{art}", "--addr", "127.0.0.1:0"],
            refused(&["cannot be served", "matrices"]),
        ),
        case(
            "evaluate on a set without preprocess",
            &[
                "evaluate",
                "--recs",
                "{shared}/ranking/recommendations.parquet",
                "--window",
                "test",
                "--artifacts",
                "{art}",
            ],
            refused(&["preprocess"]),
        ),
        case(
            "recommend from an empty directory",
            &["recommend", "--artifacts", "{art}", "--user", "1"],
            refused(&["matrices"]),
        ),
        case(
            "loadtest on a set without matrices",
            &["loadtest", "--url", "http://127.0.0.1:1", "--artifacts", "{art}"],
            refused(&["matrices"]),
        ),
        case(
            "run ranking without its inputs",
            &["run", "--data", "{data}", "--artifacts", "{art}", "--stages", "ranking"],
            refused(&["ranking"]),
        ),
        after(
            "serve without the matrices manifest",
            |d| std::fs::remove_file(in_copy(d, "matrices/manifest.json")).unwrap(),
            SERVE_COPY,
            refused(&["matrices", "no manifest.json"]),
        ),
        after(
            "serve with a manifest that is not JSON",
            |d| std::fs::write(in_copy(d, "als/manifest.json"), b"{\"stage\": ").unwrap(),
            SERVE_COPY,
            refused(&["als", "not a valid manifest"]),
        ),
        after(
            "serve with an output missing",
            |d| std::fs::remove_file(in_copy(d, "ranking/recommendations.parquet")).unwrap(),
            SERVE_COPY,
            refused(&["ranking", "recommendations.parquet is missing"]),
        ),
        after(
            "serve with an output of another size",
            |d| std::fs::write(in_copy(d, "top_items/model.bin"), b"short").unwrap(),
            SERVE_COPY,
            refused(&["top_items", "model.bin has 5 bytes"]),
        ),
        // Damaged and foreign artifacts (exit 1 before for the data files).
        after(
            "serve with a damaged model.bin",
            |d| flip_middle(d, "als/model.bin"),
            SERVE_COPY,
            refused(&["model.bin"]),
        ),
        after(
            "serve with a damaged similar.parquet",
            |d| same_size_garbage(d, "bpr/similar.parquet"),
            SERVE_COPY,
            refused(&["bpr/similar.parquet"]),
        ),
        after(
            "serve with a damaged user_item.csr",
            |d| flip_middle(d, "matrices/user_item.csr"),
            SERVE_COPY,
            refused(&["user_item.csr"]),
        ),
        after(
            "serve another run's offline lists",
            foreign_recommendations,
            SERVE_COPY,
            refused(&["recommendations.parquet", "rows whose `user_id` is not in the run's encoders"]),
        ),
        after(
            "recommend with a damaged encoder file",
            |d| same_size_garbage(d, "matrices/users.parquet"),
            &["recommend", "--artifacts", "{copy}", "--user", "1"],
            refused(&["users.parquet"]),
        ),
        after(
            "evaluate with damaged windows",
            |d| same_size_garbage(d, "preprocess/test.parquet"),
            &[
                "evaluate",
                "--recs",
                "{shared}/ranking/recommendations.parquet",
                "--window",
                "test",
                "--artifacts",
                "{copy}",
            ],
            refused(&["test.parquet"]),
        ),
        // Recommendation files given to evaluate.
        case(
            "evaluate --recs that does not exist",
            &["evaluate", "--recs", "{tmp}/none.parquet", "--window", "test", "--artifacts", "{shared}"],
            refused(&["none.parquet", "file not found"]),
        ),
        case(
            "evaluate --recs that is not parquet",
            &["evaluate", "--recs", "{file}", "--window", "test", "--artifacts", "{shared}"],
            refused(&["file"]),
        ),
        case(
            "evaluate --recs without a rank",
            &[
                "evaluate",
                "--recs",
                "{shared}/ranking/../matrices/users.parquet",
                "--window",
                "test",
                "--artifacts",
                "{shared}",
            ],
            refused(&["missing column"]),
        ),
        after(
            "evaluate --recs with a pair listed twice",
            |d| recs(&d.join("recs.parquet"), &[(1, 10, 1), (1, 10, 2)]),
            &["evaluate", "--recs", "{tmp}/recs.parquet", "--window", "test", "--artifacts", "{shared}"],
            refused(&["recs.parquet", "column `track_id`", "1 row(s)", "repeat a track"]),
        ),
        // Look-ups.
        case(
            "similar to a track not in the catalogue",
            &["similar", "--artifacts", "{shared}", "--track", "999999999"],
            refused(&["--track", "999999999", "not in the catalogue"]),
        ),
        case(
            "recommend to a user the run never saw: popular",
            &["recommend", "--artifacts", "{shared}", "--user", "999999999"],
            passes(&["popular"]),
        ),
        // Run records.
        case(
            "runs list --stage of no stage",
            &["runs", "list", "--artifacts", "{shared}", "--stage", "bogus"],
            refused(&["unknown stage `bogus`"]),
        ),
        case(
            "runs show of no run",
            &["runs", "show", "no-such-run", "--artifacts", "{shared}"],
            refused(&["no-such-run"]),
        ),
        case(
            "runs compare with a run missing",
            &["runs", "compare", "no-such-run", "other-run", "--artifacts", "{shared}"],
            refused(&["no-such-run"]),
        ),
        after(
            "runs list with an unreadable record: skipped with a warning",
            |d| {
                std::fs::create_dir_all(d.join("art/runs")).unwrap();
                std::fs::write(d.join("art/runs/broken-als.json"), b"{\"id\": ").unwrap();
            },
            &["runs", "list", "--artifacts", "{art}"],
            passes(&["warning", "broken-als.json"]),
        ),
        after(
            "runs show of an unreadable record",
            |d| {
                std::fs::create_dir_all(d.join("art/runs")).unwrap();
                std::fs::write(d.join("art/runs/broken-als.json"), b"{\"id\": ").unwrap();
            },
            &["runs", "show", "broken-als", "--artifacts", "{art}"],
            refused(&["broken-als.json"]),
        ),
        // Versions (docs/pipeline.md#versions).
        case(
            "evaluate --version that is not kept",
            &[
                "evaluate",
                "--recs",
                "{shared}/ranking/recommendations.parquet",
                "--window",
                "test",
                "--artifacts",
                "{shared}",
                "--version",
                "nope",
            ],
            refused(&["--version", "no version `nope`", "musicrec runs versions"]),
        ),
        case(
            "runs rollback to a version that is not kept",
            &["runs", "rollback", "nope", "--artifacts", "{copy}"],
            refused(&["no version `nope`"]),
        ),
        after(
            "serve a CURRENT that names no version",
            |d| std::fs::write(d.join("artifacts/CURRENT"), b"gone\n").unwrap(),
            SERVE_COPY,
            refused(&["CURRENT: names a version that is not there", "no version `gone`"]),
        ),
        after(
            "evaluate a CURRENT that is no version id",
            |d| std::fs::write(d.join("artifacts/CURRENT"), b"../x\n").unwrap(),
            &[
                "evaluate",
                "--recs",
                "{shared}/ranking/recommendations.parquet",
                "--window",
                "test",
                "--artifacts",
                "{copy}",
            ],
            refused(&["CURRENT", "`../x` is not a version id"]),
        ),
    ]
}

#[test]
fn command_line_faults() {
    run_cases("command-line", &cases());
}
