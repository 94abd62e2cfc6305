//! Helpers shared by the CLI integration tests: run the real binary, write parquet fixtures.

#![allow(dead_code)] // each test file uses a different subset

pub mod fixture;
pub mod mlflow;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use parquet::arrow::ArrowWriter;

/// Starts the command `start(step)` builds at `steps` evenly spaced moments of a run lasting
/// `full`, SIGKILLs it there and calls `after_kill(step)` once it is gone. Returns how many
/// runs were still going when killed.
pub fn kill_at_spaced_moments(
    steps: u32,
    full: std::time::Duration,
    mut start: impl FnMut(u32) -> Command,
    mut after_kill: impl FnMut(u32),
) -> usize {
    let mut kills = 0;
    for step in 0..steps {
        let mut child = start(step).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(full * step / steps);
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        after_kill(step);
    }
    kills
}

pub fn musicrec(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_musicrec"));
    // Runs go to a tracking server only in the tests that set one.
    cmd.args(args).env("RUST_LOG", "warn").env_remove("MLFLOW_TRACKING_URI");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the musicrec binary runs")
}

/// `musicrec run` on `data` into `art`, all stages or the listed ones.
pub fn run_pipeline(data: &Path, art: &Path, stages: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut args = vec!["run", "--data", data.to_str().unwrap(), "--artifacts", art.to_str().unwrap()];
    if let Some(stages) = stages {
        args.extend(["--stages", stages]);
    }
    musicrec(&args, env)
}

/// `musicrec generate --scale tiny` into `out`; panics if it fails.
pub fn generate_tiny(out: &Path, seed: u64) {
    let result =
        musicrec(&["generate", "--scale", "tiny", "--seed", &seed.to_string(), "--out", out.to_str().unwrap()], &[]);
    assert!(result.status.success(), "{}", stderr(&result));
}

/// `musicrec evaluate` of `recs` on `window` of the run in `art`, with `k` if given.
pub fn evaluate(recs: &Path, window: &str, art: &Path, k: Option<&str>) -> Output {
    let mut args =
        vec!["evaluate", "--recs", recs.to_str().unwrap(), "--window", window, "--artifacts", art.to_str().unwrap()];
    if let Some(k) = k {
        args.extend(["--k", k]);
    }
    musicrec(&args, &[])
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

pub fn arr<A: arrow_array::Array + 'static>(a: A) -> ArrayRef {
    Arc::new(a)
}

/// Every file under `dir`, recursively (empty when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
