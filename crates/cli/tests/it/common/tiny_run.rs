//! "A finished tiny run": a data set (generated `tiny` or the hand-made one) in a temporary
//! directory, optionally run through the pipeline, and the means to run the binary on it again.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Date32Type;
use arrow_array::{Date32Array, RecordBatch};
use musicrec_data::parquet_io::read_batches;
use parquet::arrow::ArrowWriter;

use super::{command, musicrec, run_pipeline, stderr};

enum DataSet {
    Generated { seed: u64 },
    HandMade,
}

/// Builds a [`RunDirs`]: which data set, which stages, which configuration (as
/// `MUSICREC__...` variables, kept for every later run on the same directories).
pub struct TinyRun {
    data: DataSet,
    /// Days every event is moved by.
    shift_days: i32,
    stages: Option<String>,
    config: Vec<(String, String)>,
}

impl TinyRun {
    /// `musicrec generate --scale tiny --seed <seed>`.
    pub fn generated(seed: u64) -> Self {
        Self { data: DataSet::Generated { seed }, shift_days: 0, stages: None, config: Vec::new() }
    }

    /// The hand-made data set of [`super::fixture`].
    pub fn hand_made() -> Self {
        Self { data: DataSet::HandMade, shift_days: 0, stages: None, config: Vec::new() }
    }

    /// Every event `days` later (the data sets are in 2022): for a split around today.
    pub fn shifted(mut self, days: i32) -> Self {
        self.shift_days = days;
        self
    }

    /// The stages `build` runs (`--stages`); all of them unless set.
    pub fn stages(mut self, stages: &str) -> Self {
        self.stages = Some(stages.to_string());
        self
    }

    /// Environment variables for every run on these directories, after those given before.
    pub fn config(mut self, env: &[(&str, &str)]) -> Self {
        self.config.extend(env.iter().map(|&(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// The data set written, nothing run yet.
    pub fn prepare(self) -> RunDirs {
        let tmp = tempfile::tempdir().unwrap();
        let (data, art) = (tmp.path().join("data"), tmp.path().join("artifacts"));
        match self.data {
            DataSet::Generated { seed } => {
                let out = musicrec(
                    &["generate", "--scale", "tiny", "--seed", &seed.to_string(), "--out", data.to_str().unwrap()],
                    &[],
                );
                assert!(out.status.success(), "{}", stderr(&out));
            }
            DataSet::HandMade => super::fixture::write_fixture(&data),
        }
        if self.shift_days != 0 {
            shift_dates(&data.join("interactions.parquet"), self.shift_days);
        }
        RunDirs { tmp, data, art, config: self.config, output: None }
    }

    /// The data set written and run through the pipeline, which must succeed.
    pub fn build(self) -> RunDirs {
        let stages = self.stages.clone();
        let mut dirs = self.prepare();
        let output = dirs.succeed(stages.as_deref(), &[]);
        dirs.output = Some(output);
        dirs
    }
}

/// A tiny run's data and artifacts directories, removed when dropped.
pub struct RunDirs {
    tmp: tempfile::TempDir,
    pub data: PathBuf,
    pub art: PathBuf,
    config: Vec<(String, String)>,
    output: Option<Output>,
}

impl RunDirs {
    /// `name` in the temporary directory, beside the data and the artifacts.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// What the run of [`TinyRun::build`] printed.
    pub fn output(&self) -> &Output {
        self.output.as_ref().expect("only TinyRun::build runs the pipeline")
    }

    /// The builder's configuration, then `env`: later values of a variable win.
    fn env<'a>(&'a self, env: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        self.config.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(env.iter().copied()).collect()
    }

    /// `musicrec run` on these directories with `args` after them, not started yet.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut all = vec!["run", "--data", self.data.to_str().unwrap(), "--artifacts", self.art.to_str().unwrap()];
        all.extend(args);
        command(&all, &self.env(env))
    }

    /// `musicrec run` of `stages` (all when `None`) on these directories.
    pub fn pipeline(&self, stages: Option<&str>, env: &[(&str, &str)]) -> Output {
        run_pipeline(&self.data, &self.art, stages, &self.env(env))
    }

    /// [`Self::pipeline`], which must succeed.
    pub fn succeed(&self, stages: Option<&str>, env: &[(&str, &str)]) -> Output {
        let out = self.pipeline(stages, env);
        assert!(out.status.success(), "{}", stderr(&out));
        out
    }
}

/// Rewrites an interactions file with every `started_at` (a date32) `days` later.
fn shift_dates(file: &Path, days: i32) {
    let batches = read_batches(file).unwrap();
    let schema = batches[0].schema();
    let column = schema.index_of("started_at").unwrap();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(file).unwrap(), schema.clone(), None).unwrap();
    for batch in batches {
        let mut columns = batch.columns().to_vec();
        let dates = columns[column].as_primitive::<Date32Type>();
        columns[column] = Arc::new(Date32Array::from_iter_values(dates.values().iter().map(|d| d + days)));
        writer.write(&RecordBatch::try_new(schema.clone(), columns).unwrap()).unwrap();
    }
    writer.close().unwrap();
}
