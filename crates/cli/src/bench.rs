//! `musicrec bench models`: our candidate models and the Python reference
//! (`../shared/bench/peer_pipeline.py`: implicit, scikit-learn) on the same data, split,
//! parameters and thread count, in one run; prints time ratios and test-window quality side
//! by side. Ratios measured in one run are what we report: the machines are shared and noisy.
//!
//! ALS, BPR and top items are timed by their fit; Item2Item, whose work is mostly the
//! nearest-neighbour search, by fit + recommend (SPEC's bar). The reference's recommend time
//! covers the test window's users; the stage recommends for every old user, so the bench times
//! our saved model again on the test window's old users, the same work.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use musicrec_artifacts::layout::candidates::MODEL_FILE;
use musicrec_artifacts::layout::preprocess::Window;
use musicrec_config::{Config, ConfigError};
use musicrec_data::Location;
use musicrec_data::parquet_io::read_i64_column;
use musicrec_models::{Item2Item, Recommender};
use musicrec_pipeline::evaluation::Evaluator;
use musicrec_pipeline::{Artifacts, Manifest, RunContext, Stage, require};
use serde_json::{Value, json};

/// Item filter of ALS/BPR and the candidates per user, as the reference's README runs it.
const MIN_USERS_PER_ITEM: usize = 5;
const CANDIDATES: usize = 50;

#[derive(clap::Args)]
pub struct BenchModels {
    /// Data directory in the Yandex Music layout (e.g. from `musicrec generate`).
    #[arg(long)]
    data: String,
    /// Threads for both sides.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Latent factors of ALS and BPR on both sides.
    #[arg(long, default_value_t = 64)]
    factors: usize,
    /// Models to compare, comma-separated: als, bpr, item2item, top_items, ranking (the ranker
    /// also runs features and every model it merges; the reference's `ranker` is compared with
    /// it).
    #[arg(long, default_value = "als,bpr,item2item,top_items,ranking")]
    models: String,
    /// Item2Item neighbours on both sides. The reference searches this many nearest tracks and
    /// drops the played ones; ours keeps at most this many nearest unplayed tracks, so the
    /// lists agree wherever the reference's search held enough unplayed tracks. Its default.
    #[arg(long, default_value_t = 1000)]
    i2i_neighbors: usize,
    /// Python of the reference's virtual environment (see ../shared/bench/README.md).
    #[arg(long, default_value = "~/.cache/peer-venv/bin/python")]
    python: String,
    /// The reference pipeline script.
    #[arg(long, default_value = "../shared/bench/peer_pipeline.py")]
    peer_script: PathBuf,
    /// Where our artifacts, the reference's `peer.json` and `bench.json` go.
    #[arg(long, default_value = "bench-artifacts")]
    artifacts: PathBuf,
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// One model's comparison: our numbers, the reference's, and their ratios.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub model: String,
    /// What the times cover: "fit", or "fit+recommend" (Item2Item).
    pub timed: &'static str,
    pub ours_s: f64,
    pub peer_s: f64,
    pub ours_ndcg: f64,
    pub peer_ndcg: f64,
    /// Our top-N for every old user (the reference only scores window users).
    pub ours_users_per_s: f64,
}

impl Row {
    pub fn time_ratio(&self) -> f64 {
        self.ours_s / self.peer_s
    }

    /// Our NDCG relative to the reference's, e.g. -0.01 = 1% lower.
    pub fn ndcg_relative(&self) -> f64 {
        self.ours_ndcg / self.peer_ndcg - 1.0
    }
}

/// The reference's name for one of our stages, and the summary key of our training time.
fn peer_name(stage: &str) -> (&str, &'static str) {
    match stage {
        "ranking" => ("ranker", "train_seconds"),
        other => (other, "fit_seconds"),
    }
}

/// Seconds our saved Item2Item model takes to recommend `n` tracks to each old user of the
/// test window: the users the reference's `item2item_recommend_test` serves.
fn item2item_test_recommend_seconds(artifacts: &Artifacts, n: usize) -> anyhow::Result<f64> {
    let evaluator = Evaluator::load(artifacts, "bench")?;
    let test = artifacts.dir(Stage::Preprocess).join(Window::Test.file());
    let mut users: Vec<u32> =
        read_i64_column(&test, "user_id")?.into_iter().filter_map(|id| evaluator.encoders.users.encode(id)).collect();
    users.sort_unstable();
    users.dedup();
    require(artifacts, Stage::Item2Item, "bench")?;
    let model = Item2Item::load(&artifacts.dir(Stage::Item2Item).join(MODEL_FILE))?;
    let started = Instant::now();
    model.recommend(&users, &evaluator.user_item, n)?;
    Ok(started.elapsed().as_secs_f64())
}

/// Pairs our stage manifests with the reference's results (`peer.json`). `i2i_test_recommend_s`
/// is our Item2Item recommend time for the test window's old users, when Item2Item ran.
pub fn compare(
    ours: &[Manifest],
    peer: &Value,
    k: usize,
    i2i_test_recommend_s: Option<f64>,
) -> anyhow::Result<Vec<Row>> {
    let ndcg = format!("ndcg@{k}");
    let peer_ndcg = format!("NDCG@{k}");
    ours.iter()
        .map(|m| {
            let summary = &m.summary;
            let (peer_model, fit_key) = peer_name(&m.stage);
            let number = |v: &Value, what: &str| v.as_f64().with_context(|| format!("{what} missing"));
            let ours_fit = number(&summary[fit_key], "our fit time")?;
            let peer_fit = number(&peer["timings_s"][format!("{peer_model}_fit")], "the reference's fit time")?;
            let (timed, ours_s, peer_s) = if m.stage == Stage::Item2Item.as_str() {
                let ours_recommend =
                    i2i_test_recommend_s.context("our Item2Item test-window recommend time missing")?;
                let peer_recommend = number(
                    &peer["timings_s"][format!("{}_recommend_test", m.stage)],
                    "the reference's recommend time",
                )?;
                ("fit+recommend", ours_fit + ours_recommend, peer_fit + peer_recommend)
            } else {
                ("fit", ours_fit, peer_fit)
            };
            Ok(Row {
                model: m.stage.clone(),
                timed,
                ours_s,
                peer_s,
                ours_ndcg: number(&summary["metrics"]["test"][&ndcg], "our test NDCG")?,
                peer_ndcg: number(
                    &peer["metrics"][format!("test/{peer_model}")][&peer_ndcg],
                    "the reference's test NDCG",
                )?,
                ours_users_per_s: number(&summary["users_per_second"], "our users_per_second")?,
            })
        })
        .collect()
}

pub fn run(args: BenchModels, config_file: Option<&Path>) -> anyhow::Result<()> {
    let mut config = Config::load(config_file)?;
    config.threads = args.threads;
    config.als.factors = args.factors;
    config.bpr.factors = args.factors;
    config.als.min_users_per_item = MIN_USERS_PER_ITEM;
    config.bpr.min_users_per_item = MIN_USERS_PER_ITEM;
    config.als.n_candidates = CANDIDATES;
    config.bpr.n_candidates = CANDIDATES;
    config.item2item.n_candidates = CANDIDATES;
    config.item2item.n_neighbors = args.i2i_neighbors;
    config.check()?;
    let models = Stage::parse_list(&args.models)?;
    let compared =
        |s: &Stage| matches!(s, Stage::Als | Stage::Bpr | Stage::Item2Item | Stage::TopItems | Stage::Ranking);
    if let Some(stage) = models.iter().find(|s| !compared(s)) {
        return Err(ConfigError::Invalid {
            key: "--models".into(),
            reason: format!(
                "`{}` is not a candidate model or ranker the bench compares (als, bpr, item2item, top_items, ranking)",
                stage.as_str()
            ),
        }
        .into());
    }
    let data = Location::parse(&args.data)?;
    let python = expand_home(&args.python);
    if !python.is_file() {
        return Err(ConfigError::Invalid {
            key: "--python".into(),
            reason: format!(
                "{} not found; set up the reference once with: python3 -m venv ~/.cache/peer-venv && \
                 ~/.cache/peer-venv/bin/pip install numpy pandas pyarrow scipy scikit-learn implicit catboost threadpoolctl",
                python.display()
            ),
        }
        .into());
    }
    if !args.peer_script.is_file() {
        return Err(ConfigError::Invalid {
            key: "--peer-script".into(),
            reason: format!("{} not found", args.peer_script.display()),
        }
        .into());
    }
    rayon::ThreadPoolBuilder::new().num_threads(args.threads).build_global().context("starting worker threads")?;

    let mut stages = vec![Stage::Preprocess, Stage::Matrices];
    if models.contains(&Stage::Ranking) {
        stages.push(Stage::Features);
        stages.extend(Stage::CANDIDATE_MODELS);
        stages.push(Stage::TopItems);
    }
    stages.extend(&models);
    stages.sort();
    stages.dedup();
    let k = config.k;
    let (train_end, target_end) = (config.preprocess.train_end, config.preprocess.target_end);
    let i2i = config.item2item.clone();
    let i2i_metric = serde_json::to_value(i2i.metric)?.as_str().expect("metrics serialize as names").to_string();
    let ctx = RunContext::new(config, data.clone(), Artifacts::new(&args.artifacts), crate::GIT_COMMIT);
    let manifests = musicrec_pipeline::run_stages(&ctx, &stages)?;
    let ours: Vec<Manifest> = manifests.into_iter().filter(|m| models.iter().any(|s| s.as_str() == m.stage)).collect();
    let i2i_test_recommend_s = if models.contains(&Stage::Item2Item) {
        Some(item2item_test_recommend_seconds(&ctx.artifacts, CANDIDATES)?)
    } else {
        None
    };

    let peer_out = args.artifacts.join("peer.json");
    // The reference runs every model the ranker merges, as we do.
    let only: Vec<&str> = stages
        .iter()
        .filter(|s| !matches!(s, Stage::Preprocess | Stage::Matrices | Stage::Features))
        .map(|s| peer_name(s.as_str()).0)
        .collect();
    let status = Command::new(&python)
        .arg(&args.peer_script)
        .args(["--data", &data.as_path().display().to_string(), "--threads", &args.threads.to_string()])
        .args(["--train-end", &train_end.to_string(), "--target-end", &target_end.to_string(), "--k", &k.to_string()])
        .args(["--als-factors", &args.factors.to_string(), "--bpr-factors", &args.factors.to_string()])
        .args(["--min-users-per-item", &MIN_USERS_PER_ITEM.to_string(), "--candidates", &CANDIDATES.to_string()])
        .args(["--i2i-components", &i2i.n_components.to_string(), "--i2i-neighbors", &i2i.n_neighbors.to_string()])
        .args(["--i2i-metric", &i2i_metric, "--i2i-min-users-per-item", &i2i.min_users_per_item.to_string()])
        .args(["--only", &only.join(","), "--out"])
        .arg(&peer_out)
        .status()
        .with_context(|| format!("starting {}", python.display()))?;
    if !status.success() {
        bail!("the reference pipeline failed ({status}); its output is above");
    }
    let peer: Value = serde_json::from_str(
        &std::fs::read_to_string(&peer_out).with_context(|| format!("reading {}", peer_out.display()))?,
    )
    .with_context(|| format!("parsing {}", peer_out.display()))?;
    let rows = compare(&ours, &peer, k, i2i_test_recommend_s)?;

    println!(
        "{:<10} {:<14} {:>10} {:>10} {:>8} {:>12} {:>12} {:>9} {:>14}",
        "model", "timed", "ours", "ref", "ratio", "ours NDCG", "ref NDCG", "NDCG rel", "ours users/s"
    );
    for r in &rows {
        println!(
            "{:<10} {:<14} {:>9.2}s {:>9.2}s {:>8.3} {:>12.4} {:>12.4} {:>+8.1}% {:>14.0}",
            r.model,
            r.timed,
            r.ours_s,
            r.peer_s,
            r.time_ratio(),
            r.ours_ndcg,
            r.peer_ndcg,
            100.0 * r.ndcg_relative(),
            r.ours_users_per_s
        );
    }
    let report = json!({
        "data": data.to_string(),
        "threads": args.threads,
        "factors": args.factors,
        "k": k,
        "item2item": {"components": i2i.n_components, "neighbors": i2i.n_neighbors, "metric": i2i_metric,
                      "min_users_per_item": i2i.min_users_per_item},
        "models": rows.iter().map(|r| json!({
            "model": r.model, "timed": r.timed, "ours_s": r.ours_s, "peer_s": r.peer_s, "time_ratio": r.time_ratio(),
            "ours_test_ndcg": r.ours_ndcg, "peer_test_ndcg": r.peer_ndcg, "ndcg_relative": r.ndcg_relative(),
            "ours_recommend_users_per_s": r.ours_users_per_s,
        })).collect::<Vec<_>>(),
    });
    let path = args.artifacts.join("bench.json");
    musicrec_data::atomic::write_atomic(&path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    println!("bench: {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(stage: &str, fit: f64, ndcg: f64) -> Manifest {
        serde_json::from_value(json!({
            "format": 1, "stage": stage, "run_id": "r", "started_at": "", "finished_at": "", "duration_s": 1.0,
            "peak_rss_bytes": null, "config_fingerprint": "", "params": {}, "inputs": {}, "outputs": [],
            "summary": {"fit_seconds": fit, "users_per_second": 1000.0, "metrics": {"test": {"ndcg@10": ndcg}}},
        }))
        .unwrap()
    }

    #[test]
    fn pairs_our_manifests_with_the_reference_results() {
        let peer = json!({
            "timings_s": {"als_fit": 8.0, "top_items_fit": 0.5, "item2item_fit": 40.0, "item2item_recommend_test": 60.0},
            "metrics": {"test/als": {"NDCG@10": 0.10}, "test/top_items": {"NDCG@10": 0.04},
                        "test/item2item": {"NDCG@10": 0.02}},
        });
        let ours = [manifest("als", 2.0, 0.099), manifest("top_items", 0.1, 0.04), manifest("item2item", 2.0, 0.02)];
        let rows = compare(&ours, &peer, 10, Some(3.0)).unwrap();
        assert_eq!((rows[0].model.as_str(), rows[0].timed), ("als", "fit"));
        assert!((rows[0].time_ratio() - 0.25).abs() < 1e-12);
        assert!((rows[0].ndcg_relative() + 0.01).abs() < 1e-9);
        assert!((rows[1].time_ratio() - 0.2).abs() < 1e-12);
        // Item2Item: (2 s fit + 3 s recommend) against (40 s + 60 s).
        assert_eq!(rows[2].timed, "fit+recommend");
        assert!((rows[2].time_ratio() - 0.05).abs() < 1e-12);
        let missing = compare(&[manifest("als", 2.0, 0.1)], &json!({"timings_s": {}}), 10, None).unwrap_err();
        let mut ranking = manifest("ranking", 0.0, 0.2);
        ranking.summary["train_seconds"] = json!(3.0);
        let peer = json!({"timings_s": {"ranker_fit": 6.0}, "metrics": {"test/ranker": {"NDCG@10": 0.1}}});
        let rows = compare(&[ranking], &peer, 10, None).unwrap();
        assert!((rows[0].time_ratio() - 0.5).abs() < 1e-12, "the ranker's train time against CatBoost's fit");
        assert!((rows[0].ndcg_relative() - 1.0).abs() < 1e-9);
        assert!(missing.to_string().contains("the reference's fit time"), "{missing}");
    }
}
