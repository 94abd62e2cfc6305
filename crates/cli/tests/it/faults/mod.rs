//! The fault catalogue (docs/faults.md): bad data, bad configuration, bad command lines and
//! damaged artifact sets, and hostile HTTP clients, each a row of a table run against the real
//! binary. A row is the fault, the exit code (or HTTP status) it must get and fragments the
//! message must hold: what is wrong and where. A table runs every row before it fails, and
//! its failure names every row that misbehaved.
//!
//! Killed and concurrent runs are not here: they are publication's tests (`publish`).

mod cli;
mod config;
mod data;
mod http;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use crate::common::*;

/// What a command must end with: its exit code and fragments of what it prints (standard
/// error and output together).
#[derive(Clone, Copy)]
pub struct Expect {
    pub code: i32,
    pub says: &'static [&'static str],
}

/// Exit 2, bad input, with a message holding `says`.
pub const fn refused(says: &'static [&'static str]) -> Expect {
    Expect { code: 2, says }
}

/// Exit 0, printing `says` (a warning, a value).
pub const fn passes(says: &'static [&'static str]) -> Expect {
    Expect { code: 0, says }
}

/// Whether `out` is what `expect` asks; what differs otherwise. No case may panic.
pub fn judge(case: &str, out: &Output, expect: Expect) -> Result<(), String> {
    let text = format!("{}{}", stderr(out), stdout(out));
    let problem = if out.status.code() != Some(expect.code) {
        Some(format!("exit code {:?}, expected {}", out.status.code(), expect.code))
    } else if text.contains("panicked") {
        Some("panicked".to_string())
    } else {
        expect.says.iter().find(|s| !text.contains(**s)).map(|s| format!("{s:?} missing"))
    };
    problem.map_or(Ok(()), |p| Err(format!("{case}: {p}\n{}", indent(&text))))
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

/// Fails naming every case whose result is an error, after all ran; `cases` is the count run.
pub fn all_behaved(group: &str, results: Vec<Result<(), String>>) {
    let failed: Vec<String> = results.iter().filter_map(|r| r.as_ref().err().cloned()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} {group} cases misbehaved:\n{}",
        failed.len(),
        results.len(),
        failed.join("\n")
    );
}

/// Small models: the shared run is quick in a debug build.
const SMALL_MODELS: [(&str, &str); 5] = [
    ("MUSICREC__ALS__FACTORS", "8"),
    ("MUSICREC__ALS__ITERATIONS", "3"),
    ("MUSICREC__BPR__FACTORS", "8"),
    ("MUSICREC__BPR__ITERATIONS", "3"),
    ("MUSICREC__RANKING__ITERATIONS", "20"),
];

/// A finished run of every stage on generated tiny data, built once per test binary and
/// shared by the cases that read one (serve, evaluate, recommend, runs); a case that damages
/// a set damages its own copy ([`copy_of_shared`]). It lives in cargo's scratch directory for
/// tests, not a temporary one, since statics are never dropped; each test binary run rebuilds it.
pub fn shared() -> &'static SharedRun {
    static RUN: OnceLock<SharedRun> = OnceLock::new();
    RUN.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("faults-shared-run");
        let _ = std::fs::remove_dir_all(&root);
        let run = SharedRun { data: root.join("data"), art: root.join("artifacts") };
        let out = musicrec(&["generate", "--scale", "tiny", "--seed", "3", "--out", run.data.to_str().unwrap()], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = run_pipeline(&run.data, &run.art, None, &SMALL_MODELS);
        assert!(out.status.success(), "{}", stderr(&out));
        run
    })
}

pub struct SharedRun {
    pub data: PathBuf,
    pub art: PathBuf,
}

impl SharedRun {
    /// The artifacts path as a flag value.
    pub fn art(&self) -> &str {
        self.art.to_str().unwrap()
    }

    /// One old user of the run (the first of its offline lists).
    pub fn old_user(&self) -> i64 {
        let recs = stage_dir(&self.art, "ranking").join("recommendations.parquet");
        musicrec_data::parquet_io::read_i64_column(&recs, "user_id").unwrap()[0]
    }
}

/// A copy of the shared run's artifacts under `dir`, to damage.
pub fn copy_of_shared(dir: &Path) -> PathBuf {
    let to = dir.join("artifacts");
    copy_dir(&shared().art, &to);
    to
}

/// File `file` (`<stage>/<name>`) of the copy of the shared run under `dir`, in the version it
/// serves.
pub fn in_copy(dir: &Path, file: &str) -> PathBuf {
    in_version(&dir.join("artifacts"), file)
}

/// `<stage>/<rest>` resolved in the current version of the artifacts at `art`.
fn in_version(art: &Path, file: &str) -> PathBuf {
    let (stage, rest) = file.split_once('/').expect("a file is named `<stage>/<name>`");
    stage_dir(art, stage).join(rest)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Files under `art` but run records (a stage that refuses its input is on record as failed)
/// and the lock files of the writer and of a version's readers, which hold no output.
fn written_under(art: &Path) -> Vec<PathBuf> {
    let lock = |f: &Path| f.file_name().is_some_and(|n| n == ".writer.lock" || n == ".readers");
    files_under(art).into_iter().filter(|f| !f.starts_with(art.join("runs")) && !lock(f)).collect()
}

/// A command-line case: `args` with placeholders, run in a scratch directory that `setup`
/// prepared. Placeholders: `{data}` the hand-made data set, `{art}` an artifacts directory
/// that does not exist yet (a refused command must leave it as the set-up left it, but for
/// the failed stage's run record), `{copy}` a copy of the
/// shared run to damage (made when named), `{shared}` the shared run itself (read only),
/// `{file}` a regular file, `{tmp}` the scratch directory, `{user}` an old user of the shared
/// run.
pub struct Case {
    pub name: &'static str,
    pub setup: fn(&Path),
    pub args: &'static [&'static str],
    pub env: &'static [(&'static str, &'static str)],
    /// One variable whose value is not UTF-8.
    pub bytes_env: Option<(&'static str, &'static [u8])>,
    pub expect: Expect,
}

/// `evaluate` of the shared run's final list on its test window: a command that must work.
pub const EVALUATE_SHARED: &[&str] =
    &["evaluate", "--recs", "{shared}/ranking/recommendations.parquet", "--window", "test", "--artifacts", "{shared}"];

/// A case without set-up or environment.
pub const fn case(name: &'static str, args: &'static [&'static str], expect: Expect) -> Case {
    Case { name, setup: |_| {}, args, env: &[], bytes_env: None, expect }
}

/// A case with environment variables.
pub const fn with_env(
    name: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    expect: Expect,
) -> Case {
    Case { name, setup: |_| {}, args, env, bytes_env: None, expect }
}

/// A case whose scratch directory `setup` prepares (e.g. damages `{copy}`).
pub const fn after(name: &'static str, setup: fn(&Path), args: &'static [&'static str], expect: Expect) -> Case {
    Case { name, setup, args, env: &[], bytes_env: None, expect }
}

/// Runs every case of a table against the binary and fails naming every one that misbehaved.
pub fn run_cases(group: &str, cases: &[Case]) {
    let results = cases.iter().map(run_case).collect();
    all_behaved(group, results);
}

fn run_case(case: &Case) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fixture::write_fixture(&dir.join("data"));
    std::fs::write(dir.join("file"), b"not a directory").unwrap();
    if case.args.iter().any(|a| a.contains("{copy}")) {
        copy_of_shared(dir);
    }
    (case.setup)(dir);
    let before = written_under(&dir.join("art"));
    let fill = |arg: &str| {
        let mut arg = arg
            .replace("{data}", dir.join("data").to_str().unwrap())
            .replace("{art}", dir.join("art").to_str().unwrap())
            .replace("{copy}", dir.join("artifacts").to_str().unwrap())
            .replace("{file}", dir.join("file").to_str().unwrap())
            .replace("{tmp}", dir.to_str().unwrap());
        if let Some(file) = arg.strip_prefix("{shared}/") {
            arg = in_version(&shared().art, file).to_str().unwrap().to_string();
        } else if arg.contains("{shared}") {
            arg = arg.replace("{shared}", shared().art());
        }
        if arg.contains("{user}") {
            arg = arg.replace("{user}", &shared().old_user().to_string());
        }
        arg
    };
    let args: Vec<String> = case.args.iter().map(|a| fill(a)).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = command(&args, case.env);
    if let Some((name, value)) = case.bytes_env {
        use std::os::unix::ffi::OsStrExt;
        cmd.env(name, std::ffi::OsStr::from_bytes(value));
    }
    let out = cmd.output().unwrap();
    judge(case.name, &out, case.expect)?;
    let after = written_under(&dir.join("art"));
    if case.expect.code != 0 && after != before {
        return Err(format!("{}: refused, yet wrote under {{art}}: {after:?}", case.name));
    }
    Ok(())
}
