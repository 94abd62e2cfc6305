//! Helpers shared by the CLI integration tests: run the real binary, build a finished tiny run,
//! write and read parquet and JSON.

pub mod fixture;
pub mod mlflow;
mod service_process;
mod tiny_run;
pub mod webdriver;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, RecordBatch};
use musicrec_data::parquet_io::read_batches;
use parquet::arrow::ArrowWriter;
pub use service_process::ServiceProcess;
pub use tiny_run::{RunDirs, TinyRun};

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

/// The musicrec binary with `args` and `env`, quiet but for warnings.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_musicrec"));
    // Runs go to a tracking server only in the tests that set one.
    cmd.args(args).env("RUST_LOG", "warn").env_remove("MLFLOW_TRACKING_URI");
    cmd.envs(env.iter().copied());
    cmd
}

pub fn musicrec(args: &[&str], env: &[(&str, &str)]) -> Output {
    command(args, env).output().expect("the musicrec binary runs")
}

/// `musicrec run` on `data` into `art`, all stages or the listed ones.
pub fn run_pipeline(data: &Path, art: &Path, stages: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut args = vec!["run", "--data", data.to_str().unwrap(), "--artifacts", art.to_str().unwrap()];
    if let Some(stages) = stages {
        args.extend(["--stages", stages]);
    }
    musicrec(&args, env)
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

pub fn column_i64(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    batches.iter().flat_map(|b| b.column_by_name(name).unwrap().as_primitive::<Int64Type>().values().to_vec()).collect()
}

/// Every (user, track) the train window of the run in `art` holds.
pub fn train_history(art: &Path) -> HashMap<i64, HashSet<i64>> {
    let train = read_batches(&stage_dir(art, "preprocess").join("train.parquet")).unwrap();
    let mut heard: HashMap<i64, HashSet<i64>> = HashMap::new();
    for (u, t) in column_i64(&train, "user_id").into_iter().zip(column_i64(&train, "track_id")) {
        heard.entry(u).or_default().insert(t);
    }
    heard
}

pub fn json_file(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The directory of `stage` (or a nested unit: `shards/als/model`) in the version of `art` that
/// `CURRENT` names, as every reader resolves it (the top-level layout from before versions
/// when nothing was published): the one way the tests find a stage's files.
pub fn stage_dir(art: &Path, stage: impl AsRef<str>) -> PathBuf {
    let current = musicrec_artifacts::Artifacts::new(art).current().expect("the artifacts' pointer reads");
    current.dir(stage.as_ref())
}

/// The manifest a stage of the run in `art` published.
pub fn manifest(art: &Path, stage: &str) -> serde_json::Value {
    json_file(&stage_dir(art, stage).join("manifest.json"))
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
