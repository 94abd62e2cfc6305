//! `musicrec bench models`: our candidate models and the Python reference
//! (`../shared/bench/peer_pipeline.py`: implicit, scikit-learn) on the same data, split,
//! parameters and thread count, in one run; prints time ratios and test-window quality side
//! by side. Ratios measured in one run are what we report: the machines are shared and noisy.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use musicrec_config::{Config, ConfigError};
use musicrec_data::Location;
use musicrec_pipeline::{Artifacts, Manifest, RunContext, Stage};
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
    /// Models to compare, comma-separated: als, bpr, top_items, ranking (the ranker also runs
    /// features and every model it merges; the reference's `ranker` is compared with it).
    #[arg(long, default_value = "als,bpr,top_items")]
    models: String,
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
    pub ours_fit_s: f64,
    pub peer_fit_s: f64,
    pub ours_ndcg: f64,
    pub peer_ndcg: f64,
    /// Our top-N for every old user (the reference only scores window users).
    pub ours_users_per_s: f64,
}

impl Row {
    pub fn fit_ratio(&self) -> f64 {
        self.ours_fit_s / self.peer_fit_s
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

/// Pairs our stage manifests with the reference's results (`peer.json`).
pub fn compare(ours: &[Manifest], peer: &Value, k: usize) -> anyhow::Result<Vec<Row>> {
    let ndcg = format!("ndcg@{k}");
    let peer_ndcg = format!("NDCG@{k}");
    ours.iter()
        .map(|m| {
            let summary = &m.summary;
            let (peer_model, fit_key) = peer_name(&m.stage);
            let number = |v: &Value, what: &str| v.as_f64().with_context(|| format!("{what} missing"));
            Ok(Row {
                model: m.stage.clone(),
                ours_fit_s: number(&summary[fit_key], "our fit time")?,
                peer_fit_s: number(&peer["timings_s"][format!("{peer_model}_fit")], "the reference's fit time")?,
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
    config.check()?;
    let models = Stage::parse_list(&args.models)?;
    if let Some(stage) =
        models.iter().find(|s| !matches!(s, Stage::Als | Stage::Bpr | Stage::TopItems | Stage::Ranking))
    {
        return Err(ConfigError::Invalid {
            key: "--models".into(),
            reason: format!(
                "`{}` is not a candidate model or ranker the bench compares (als, bpr, top_items, ranking)",
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
    let ctx = RunContext::new(config, data.clone(), Artifacts::new(&args.artifacts));
    let manifests = musicrec_pipeline::run_stages(&ctx, &stages)?;
    let ours: Vec<Manifest> = manifests.into_iter().filter(|m| models.iter().any(|s| s.as_str() == m.stage)).collect();

    let peer_out = args.artifacts.join("peer.json");
    // The reference runs every model the ranker merges, as we do.
    let only: Vec<&str> = stages
        .iter()
        .filter(|s| !matches!(s, Stage::Preprocess | Stage::Matrices | Stage::Features))
        .map(|s| peer_name(s.as_str()).0)
        .collect();
    let status = Command::new(&python)
        .arg(&args.peer_script)
        .args(["--data", &data.to_string(), "--threads", &args.threads.to_string()])
        .args(["--train-end", &train_end.to_string(), "--target-end", &target_end.to_string(), "--k", &k.to_string()])
        .args(["--als-factors", &args.factors.to_string(), "--bpr-factors", &args.factors.to_string()])
        .args(["--min-users-per-item", &MIN_USERS_PER_ITEM.to_string(), "--candidates", &CANDIDATES.to_string()])
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
    let rows = compare(&ours, &peer, k)?;

    println!(
        "{:<10} {:>10} {:>10} {:>8} {:>12} {:>12} {:>9} {:>14}",
        "model", "ours fit", "ref fit", "ratio", "ours NDCG", "ref NDCG", "NDCG rel", "ours users/s"
    );
    for r in &rows {
        println!(
            "{:<10} {:>9.2}s {:>9.2}s {:>8.3} {:>12.4} {:>12.4} {:>+8.1}% {:>14.0}",
            r.model,
            r.ours_fit_s,
            r.peer_fit_s,
            r.fit_ratio(),
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
        "models": rows.iter().map(|r| json!({
            "model": r.model, "ours_fit_s": r.ours_fit_s, "peer_fit_s": r.peer_fit_s, "fit_ratio": r.fit_ratio(),
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
            "timings_s": {"als_fit": 8.0, "top_items_fit": 0.5},
            "metrics": {"test/als": {"NDCG@10": 0.10}, "test/top_items": {"NDCG@10": 0.04}},
        });
        let rows = compare(&[manifest("als", 2.0, 0.099), manifest("top_items", 0.1, 0.04)], &peer, 10).unwrap();
        assert_eq!(rows[0].model, "als");
        assert!((rows[0].fit_ratio() - 0.25).abs() < 1e-12);
        assert!((rows[0].ndcg_relative() + 0.01).abs() < 1e-9);
        assert!((rows[1].fit_ratio() - 0.2).abs() < 1e-12);
        let mut ranking = manifest("ranking", 0.0, 0.2);
        ranking.summary["train_seconds"] = json!(3.0);
        let peer = json!({"timings_s": {"ranker_fit": 6.0}, "metrics": {"test/ranker": {"NDCG@10": 0.1}}});
        let rows = compare(&[ranking], &peer, 10).unwrap();
        assert!((rows[0].fit_ratio() - 0.5).abs() < 1e-12, "the ranker's train time against CatBoost's fit");
        assert!((rows[0].ndcg_relative() - 1.0).abs() < 1e-9);
        let missing = compare(&[manifest("als", 2.0, 0.1)], &json!({"timings_s": {}}), 10).unwrap_err();
        assert!(missing.to_string().contains("the reference's fit time"), "{missing}");
    }
}
