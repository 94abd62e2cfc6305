//! `musicrec bench models`: our candidate models and ranker beside the Python reference
//! (`bench/reference/`: implicit, scikit-learn, CatBoost) on the same data, split, parameters
//! and thread count, in one run; prints time ratios and test-window quality side by side.
//! Ratios measured in one run are what we report: the machines are shared and noisy.
//!
//! Both sides recommend to every old user. ALS, BPR, top items and the ranker are timed by
//! their fit; Item2Item, whose work is mostly the nearest-neighbour search, by fit + recommend.
//!
//! The reference is found from the current directory (`bench/reference/pipeline.py`, i.e. run
//! from the clone's root) and its venv where `bench/reference/setup.sh` makes it: an installed
//! binary's own location says nothing about where the clone is, and a path compiled in would
//! break as soon as the clone moves. `--reference` and `--python` point elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use musicrec_artifacts::{Artifacts, Manifest, Stage};
use musicrec_config::{Config, ConfigError};
use musicrec_data::Location;
use musicrec_pipeline::RunContext;
use serde_json::{Value, json};

/// The reference pipeline, relative to the clone's root.
const REFERENCE_SCRIPT: &str = "bench/reference/pipeline.py";
/// Overrides where setup.sh makes the reference's venv (default `~/.cache/musicrec/reference-venv`).
const VENV_VARIABLE: &str = "MUSICREC_REFERENCE_VENV";
const DEFAULT_VENV: &str = ".cache/musicrec/reference-venv";
/// Config sections the reference reads; each key is handed over as `--set section.key=value`.
const SHARED_CONFIG: [&str; 10] =
    ["threads", "seed", "evaluation", "preprocess", "features", "als", "bpr", "item2item", "top_items", "ranking"];

#[derive(clap::Args)]
pub struct BenchModels {
    /// Data directory in the Yandex Music layout (e.g. from `musicrec generate`).
    #[arg(long)]
    data: String,
    /// Threads for both sides.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Latent factors of ALS and BPR on both sides [default: the configuration's `als.factors`
    /// and `bpr.factors`, 200 each unless `--config` says otherwise].
    #[arg(long)]
    factors: Option<usize>,
    /// Models to compare, comma-separated: als, bpr, item2item, top_items, ranking (the ranker
    /// also runs features and every model it merges, on both sides).
    #[arg(long, default_value = "als,bpr,item2item,top_items,ranking")]
    models: String,
    /// Item2Item neighbours on both sides. The reference searches this many nearest tracks and
    /// drops the played ones; ours keeps at most this many nearest unplayed tracks, so the
    /// lists agree wherever the reference's search held enough unplayed tracks. The original
    /// system's value.
    #[arg(long, default_value_t = 1000)]
    i2i_neighbors: usize,
    /// Python of the reference's venv [default: the one bench/reference/setup.sh makes,
    /// $MUSICREC_REFERENCE_VENV/bin/python or ~/.cache/musicrec/reference-venv/bin/python].
    #[arg(long)]
    python: Option<PathBuf>,
    /// The reference pipeline script (relative paths from the current directory).
    #[arg(long, default_value = REFERENCE_SCRIPT)]
    reference: PathBuf,
    /// Where our artifacts, the reference's `reference.json` and `bench.json` go.
    #[arg(long, default_value = "bench-artifacts")]
    artifacts: PathBuf,
}

/// One model's comparison: our numbers, the reference's, and their ratios.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub model: String,
    /// What the times cover: "fit", or "fit+recommend" (Item2Item).
    pub timed: &'static str,
    pub ours_s: f64,
    pub reference_s: f64,
    pub ours_ndcg: f64,
    pub reference_ndcg: f64,
    /// Old users our model recommends to per second.
    pub ours_users_per_s: f64,
}

impl Row {
    pub fn time_ratio(&self) -> f64 {
        self.ours_s / self.reference_s
    }

    /// Our NDCG relative to the reference's, e.g. -0.01 = 1% lower.
    pub fn ndcg_relative(&self) -> f64 {
        self.ours_ndcg / self.reference_ndcg - 1.0
    }
}

/// What is timed for one model: the label, our summary keys and the reference's steps, summed.
fn timed_steps(model: &str) -> (&'static str, Vec<&'static str>, Vec<String>) {
    match model {
        "item2item" => (
            "fit+recommend",
            vec!["fit_seconds", "recommend_seconds"],
            vec!["item2item_fit".into(), "item2item_recommend".into()],
        ),
        "ranking" => ("fit", vec!["train_seconds"], vec!["ranking_fit".into()]),
        other => ("fit", vec!["fit_seconds"], vec![format!("{other}_fit")]),
    }
}

/// Pairs our stage manifests with the reference's results (its JSON output).
pub fn compare(ours: &[Manifest], reference: &Value, k: usize) -> anyhow::Result<Vec<Row>> {
    let ndcg = format!("ndcg@{k}");
    let number = |v: &Value, what: &str| v.as_f64().with_context(|| format!("{what} missing"));
    ours.iter()
        .map(|m| {
            let (timed, our_keys, reference_steps) = timed_steps(&m.stage);
            let ours_s = our_keys
                .iter()
                .map(|key| number(&m.summary[key], &format!("our {key}")))
                .sum::<anyhow::Result<f64>>()?;
            let reference_s = reference_steps
                .iter()
                .map(|step| number(&reference["timings_s"][step], &format!("the reference's {step} time")))
                .sum::<anyhow::Result<f64>>()?;
            Ok(Row {
                model: m.stage.clone(),
                timed,
                ours_s,
                reference_s,
                ours_ndcg: number(&m.summary["metrics"]["test"][&ndcg], "our test NDCG")?,
                reference_ndcg: number(&reference["metrics"][&m.stage]["test"][&ndcg], "the reference's test NDCG")?,
                ours_users_per_s: number(&m.summary["users_per_second"], "our users_per_second")?,
            })
        })
        .collect()
}

/// The resolved inputs of one bench run.
struct Bench {
    config: Config,
    models: Vec<Stage>,
    data: Location,
    python: PathBuf,
    reference: PathBuf,
    artifacts: PathBuf,
}

pub fn run(args: BenchModels, config_file: Option<&Path>) -> anyhow::Result<()> {
    let bench = prepare(args, config_file)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(bench.config.threads)
        .build_global()
        .context("starting worker threads")?;
    let ours = run_ours(&bench)?;
    let reference = run_reference(&bench)?;
    let rows = compare(&ours, &reference, bench.config.evaluation.headline_k)?;
    print_rows(&rows);
    write_report(&bench, &rows)
}

/// The config both sides run with, the models, and the reference's script and Python, all
/// checked before any work starts.
fn prepare(args: BenchModels, config_file: Option<&Path>) -> anyhow::Result<Bench> {
    let mut config = Config::load(config_file)?;
    config.threads = args.threads;
    if let Some(factors) = args.factors {
        config.als.factors = factors;
        config.bpr.factors = factors;
    }
    config.item2item.n_neighbors = args.i2i_neighbors;
    config.check()?;
    musicrec_pipeline::StageParams::from_config(&config)?;
    let models = Stage::parse_list(&args.models)?;
    let compared =
        |s: &Stage| matches!(s, Stage::Als | Stage::Bpr | Stage::Item2Item | Stage::TopItems | Stage::Ranking);
    if let Some(stage) = models.iter().find(|s| !compared(s)) {
        return Err(invalid(
            "--models",
            format!(
                "`{}` is not a candidate model or ranker the bench compares (als, bpr, item2item, top_items, ranking)",
                stage.as_str()
            ),
        ));
    }
    let data = Location::parse(&args.data)?;
    let python = match args.python {
        Some(python) => python,
        None => default_python()?,
    };
    if !python.is_file() {
        return Err(invalid(
            "--python",
            format!(
                "{} not found; create the reference's venv with bench/reference/setup.sh from the clone's root \
                 (a venv and a pip install of bench/reference/requirements.txt), or pass --python",
                python.display()
            ),
        ));
    }
    if !args.reference.is_file() {
        return Err(invalid(
            "--reference",
            format!(
                "{} not found; run from the root of the musicrec clone or pass --reference PATH/TO/{REFERENCE_SCRIPT}",
                args.reference.display()
            ),
        ));
    }
    Ok(Bench { config, models, data, python, reference: args.reference, artifacts: args.artifacts })
}

fn invalid(flag: &str, reason: String) -> anyhow::Error {
    ConfigError::Invalid { key: flag.into(), reason }.into()
}

/// The Python of the venv bench/reference/setup.sh makes.
fn default_python() -> anyhow::Result<PathBuf> {
    let venv = match (std::env::var_os(VENV_VARIABLE), std::env::var_os("HOME")) {
        (Some(venv), _) => PathBuf::from(venv),
        (None, Some(home)) => Path::new(&home).join(DEFAULT_VENV),
        (None, None) => {
            return Err(invalid("--python", format!("neither {VENV_VARIABLE} nor HOME is set; pass --python")));
        }
    };
    Ok(venv.join("bin").join("python"))
}

/// Runs our stages (the ranker's upstream stages too) and returns the compared models' manifests.
fn run_ours(bench: &Bench) -> anyhow::Result<Vec<Manifest>> {
    let ctx =
        RunContext::new(bench.config.clone(), bench.data.clone(), Artifacts::new(&bench.artifacts), crate::GIT_COMMIT);
    let manifests = musicrec_pipeline::run_stages(&ctx, &stages_to_run(&bench.models))?;
    Ok(manifests.into_iter().filter(|m| bench.models.iter().any(|s| s.as_str() == m.stage)).collect())
}

fn stages_to_run(models: &[Stage]) -> Vec<Stage> {
    let mut stages = vec![Stage::Preprocess, Stage::Matrices];
    if models.contains(&Stage::Ranking) {
        stages.push(Stage::Features);
        stages.extend(Stage::CANDIDATE_MODELS);
        stages.push(Stage::TopItems);
    }
    stages.extend(models);
    stages.sort();
    stages.dedup();
    stages
}

/// Every key of the config sections the reference reads, as `--set section.key=value`.
fn config_overrides(config: &Config) -> anyhow::Result<Vec<String>> {
    let all = serde_json::to_value(config)?;
    let mut overrides = Vec::new();
    for section in SHARED_CONFIG {
        match &all[section] {
            Value::Object(keys) => overrides.extend(keys.iter().map(|(key, value)| format!("{section}.{key}={value}"))),
            value => overrides.push(format!("{section}={value}")),
        }
    }
    Ok(overrides)
}

/// Runs the reference on the same data and config; returns its results.
fn run_reference(bench: &Bench) -> anyhow::Result<Value> {
    let out = bench.artifacts.join("reference.json");
    let models: Vec<&str> = bench.models.iter().map(|s| s.as_str()).collect();
    let mut command = Command::new(&bench.python);
    command.arg(&bench.reference).arg("--data").arg(bench.data.as_path()).arg("--models").arg(models.join(","));
    for set in config_overrides(&bench.config)? {
        command.arg("--set").arg(set);
    }
    let status =
        command.arg("--out").arg(&out).status().with_context(|| format!("starting {}", bench.python.display()))?;
    if !status.success() {
        bail!("the reference pipeline failed ({status}); its output is above");
    }
    let text = std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", out.display()))
}

fn print_rows(rows: &[Row]) {
    println!(
        "{:<10} {:<14} {:>10} {:>10} {:>8} {:>12} {:>12} {:>9} {:>14}",
        "model", "timed", "ours", "ref", "ratio", "ours NDCG", "ref NDCG", "NDCG rel", "ours users/s"
    );
    for r in rows {
        println!(
            "{:<10} {:<14} {:>9.2}s {:>9.2}s {:>8.3} {:>12.4} {:>12.4} {:>+8.1}% {:>14.0}",
            r.model,
            r.timed,
            r.ours_s,
            r.reference_s,
            r.time_ratio(),
            r.ours_ndcg,
            r.reference_ndcg,
            100.0 * r.ndcg_relative(),
            r.ours_users_per_s
        );
    }
}

fn write_report(bench: &Bench, rows: &[Row]) -> anyhow::Result<()> {
    let config = &bench.config;
    let report = json!({
        "data": bench.data.to_string(),
        "threads": config.threads,
        "factors": {"als": config.als.factors, "bpr": config.bpr.factors},
        "k": config.evaluation.headline_k,
        "item2item": {"components": config.item2item.n_components, "neighbors": config.item2item.n_neighbors,
                      "metric": config.item2item.metric, "min_users_per_item": config.item2item.min_users_per_item},
        "models": rows.iter().map(|r| json!({
            "model": r.model, "timed": r.timed, "ours_s": r.ours_s, "reference_s": r.reference_s,
            "time_ratio": r.time_ratio(), "ours_test_ndcg": r.ours_ndcg, "reference_test_ndcg": r.reference_ndcg,
            "ndcg_relative": r.ndcg_relative(), "ours_recommend_users_per_s": r.ours_users_per_s,
        })).collect::<Vec<_>>(),
    });
    let path = bench.artifacts.join("bench.json");
    musicrec_data::atomic::write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    println!("bench: {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(stage: &str, summary: Value) -> Manifest {
        serde_json::from_value(json!({
            "format": 1, "stage": stage, "run_id": "r", "started_at": "", "finished_at": "", "duration_s": 1.0,
            "peak_rss_bytes": null, "config_fingerprint": "", "params": {}, "inputs": {}, "outputs": [],
            "summary": summary,
        }))
        .unwrap()
    }

    fn model(stage: &str, fit: f64, ndcg: f64) -> Manifest {
        manifest(
            stage,
            json!({"fit_seconds": fit, "recommend_seconds": 3.0, "users_per_second": 1000.0,
                   "metrics": {"test": {"ndcg@10": ndcg}}}),
        )
    }

    #[test]
    fn pairs_our_manifests_with_the_reference_results() {
        let reference = json!({
            "timings_s": {"als_fit": 8.0, "top_items_fit": 0.5, "item2item_fit": 40.0, "item2item_recommend": 60.0},
            "metrics": {"als": {"test": {"ndcg@10": 0.10}}, "top_items": {"test": {"ndcg@10": 0.04}},
                        "item2item": {"test": {"ndcg@10": 0.02}}},
        });
        let ours = [model("als", 2.0, 0.099), model("top_items", 0.1, 0.04), model("item2item", 2.0, 0.02)];
        let rows = compare(&ours, &reference, 10).unwrap();
        assert_eq!((rows[0].model.as_str(), rows[0].timed), ("als", "fit"));
        assert!((rows[0].time_ratio() - 0.25).abs() < 1e-12);
        assert!((rows[0].ndcg_relative() + 0.01).abs() < 1e-9);
        assert!((rows[1].time_ratio() - 0.2).abs() < 1e-12);
        // Item2Item: (2 s fit + 3 s recommend) against (40 s + 60 s).
        assert_eq!(rows[2].timed, "fit+recommend");
        assert!((rows[2].time_ratio() - 0.05).abs() < 1e-12);

        let ranking = manifest(
            "ranking",
            json!({"train_seconds": 3.0, "users_per_second": 10.0, "metrics": {"test": {"ndcg@10": 0.2}}}),
        );
        let reference = json!({"timings_s": {"ranking_fit": 6.0}, "metrics": {"ranking": {"test": {"ndcg@10": 0.1}}}});
        let rows = compare(&[ranking], &reference, 10).unwrap();
        assert!((rows[0].time_ratio() - 0.5).abs() < 1e-12, "the ranker's train time against CatBoost's fit");
        assert!((rows[0].ndcg_relative() - 1.0).abs() < 1e-9);

        let missing = compare(&[model("als", 2.0, 0.1)], &json!({"timings_s": {}}), 10).unwrap_err();
        assert!(missing.to_string().contains("the reference's als_fit time"), "{missing}");
    }

    #[test]
    fn the_reference_gets_every_key_of_the_shared_sections() {
        let config = Config::load(None).unwrap();
        let overrides = config_overrides(&config).unwrap();
        for expected in [
            "threads=0",
            "evaluation.headline_k=10",
            "preprocess.train_end=\"2022-12-16\"",
            "als.factors=200",
            "item2item.metric=\"manhattan\"",
            "features.recent_days=[7,30]",
            "ranking.depth=4",
        ] {
            assert!(overrides.iter().any(|o| o == expected), "{expected} missing from {overrides:?}");
        }
        assert!(!overrides.iter().any(|o| o.starts_with("service.")), "only the sections the reference reads");
    }

    #[test]
    fn ranking_runs_every_stage_it_merges() {
        let stages = stages_to_run(&[Stage::Ranking]);
        for stage in [Stage::Preprocess, Stage::Matrices, Stage::Features, Stage::Als, Stage::TopItems] {
            assert!(stages.contains(&stage), "{stage:?} missing");
        }
        assert_eq!(stages_to_run(&[Stage::Als]), vec![Stage::Preprocess, Stage::Matrices, Stage::Als]);
    }
}
