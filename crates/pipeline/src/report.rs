//! Stage `report`: every model and the ranker side by side on the test window (all docs/metrics.md
//! metrics), candidate recall, feature importances, the time and peak memory of every stage and
//! where the service's inputs are, as `report.md`, `metrics.json` and PNG plots.
//!
//! It reads whatever the artifacts hold: a model or stage that was not run (or whose outputs
//! are incomplete) is a "not run" row with the reason, not an error.

use std::fmt::Write as _;

use musicrec_artifacts::layout::METRICS_FILE;
use musicrec_artifacts::layout::candidates::{CANDIDATES_FILE, MODEL_FILE, SIMILAR_FILE};
use musicrec_artifacts::layout::ranking::{FEATURE_IMPORTANCES_FILE, RECOMMENDATIONS_FILE};
use musicrec_artifacts::layout::report::loss_plot;
use musicrec_artifacts::layout::report::{
    FEATURE_IMPORTANCES_PLOT, METRICS_PLOT, NDCG_DISTRIBUTION_PLOT, NDCG_PLOT, PER_USER_FILE, REPORT_FILE,
    STAGE_MEMORY_PLOT, STAGE_SECONDS_PLOT,
};
use musicrec_artifacts::{Artifacts, Manifest, Stage, StageWriter, stale_inputs};
use musicrec_data::parquet_io;
use musicrec_plot::{Line, LineChart, Scale as PlotScale};
use musicrec_tracking::record::LOSS_HISTORY_KEY;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::PipelineError;
use crate::evaluation::{EvalWindow, PerEvalWindow};
use crate::ranking::{FeatureImportance, RankingSummary};
use crate::scorecard::{self, Scorecard};
use crate::stage::{RunContext, require};
use crate::tracking::data_fingerprint;

const RANKING: &str = Stage::Ranking.as_str();
/// The columns of the target-window table (each `name@k` in the stages' metrics.json).
pub const METRICS: [&str; 7] = ["precision", "recall", "ndcg", "map", "mrr", "hit_rate", "coverage_user"];
/// The headline columns `musicrec run` prints.
const HEADLINE: [&str; 4] = ["precision", "recall", "ndcg", "coverage_user"];
const TOP_FEATURES: usize = 25;

/// `report/metrics.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReportMetrics {
    pub run_id: String,
    pub k: usize,
    /// Every candidate model, then the ranker; not-run ones have `status` "not run".
    pub models: Vec<ModelRow>,
    /// Share of a window's positives (old users) that any base model proposed, from the ranker.
    pub candidate_recall: Option<PerEvalWindow<f64>>,
    pub feature_importances: Option<Vec<FeatureImportance>>,
    pub stages: Vec<StageRow>,
    /// Sum of the stage durations listed.
    pub total_seconds: f64,
    pub service_inputs: Vec<ServiceInput>,
    /// Outputs built on other runs' outputs than the ones now in the artifacts (see
    /// `musicrec_artifacts::lineage`), one sentence each naming both stages and runs.
    #[serde(default)]
    pub mixed_runs: Vec<String>,
    /// The training loss per iteration of the models whose stage recorded it.
    #[serde(default)]
    pub loss_curves: Vec<LossCurve>,
    /// The test-window judgement of the system and every model under one convention, with
    /// intervals, comparisons, segments and examples; absent when no stage published lists.
    #[serde(default)]
    pub scorecard: Option<Scorecard>,
}

/// A model's training loss, one value per iteration (ALS sweep, BPR epoch).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LossCurve {
    pub model: String,
    pub run_id: String,
    pub loss: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelRow {
    pub model: String,
    pub ranker: bool,
    pub status: String,
    pub run_id: Option<String>,
    pub target: Option<serde_json::Value>,
    pub test: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageRow {
    pub stage: String,
    pub status: String,
    pub run_id: Option<String>,
    pub duration_s: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
}

/// A file the service loads, or why it is not there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServiceInput {
    pub what: String,
    pub status: String,
    pub files: Vec<String>,
}

const OK: &str = "ok";

fn not_run(reason: &str) -> String {
    format!("not run ({reason})")
}

/// Every stage the report looks at, in pipeline order.
fn stage_names() -> Vec<&'static str> {
    Stage::ALL.iter().filter(|&&s| s != Stage::Report).map(|s| s.as_str()).collect()
}

fn model_names() -> Vec<&'static str> {
    Stage::ALL.iter().filter(|s| s.is_model()).map(|s| s.as_str()).collect()
}

/// A JSON output a manifest lists, parsed.
fn read_listed<T: serde::de::DeserializeOwned>(
    artifacts: &Artifacts,
    stage: &str,
    manifest: &Manifest,
    file: &str,
) -> Result<Option<T>, PipelineError> {
    if !manifest.outputs.iter().any(|o| o.file == file) {
        return Ok(None);
    }
    let path = artifacts.dir(stage).join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| musicrec_data::DataError::io(&path, e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| PipelineError::Artifact { path: path.display().to_string(), reason: format!("not valid: {e}") })
}

/// What `report` reports in its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportSummary {
    /// The models with metrics in the report.
    pub models: Vec<String>,
    /// The models without: not run, or their outputs incomplete.
    pub not_run: Vec<String>,
    pub plots: usize,
    /// Outputs built on other runs' outputs than the ones present (see `ReportMetrics::mixed_runs`).
    pub mixed_runs: usize,
    /// Seconds to read every list and build the system's, and to evaluate, bootstrap and
    /// compare them (docs/perf/evaluation.md).
    pub read_lists_seconds: f64,
    pub evaluate_seconds: f64,
}

/// Every stage's manifest the report looks at, or why it cannot be read.
struct Manifests(Vec<(&'static str, Result<Manifest, String>)>);

impl Manifests {
    fn read(artifacts: &Artifacts) -> Self {
        Self(stage_names().into_iter().map(|name| (name, artifacts.manifest(name).map_err(|e| e.reason()))).collect())
    }

    fn of(&self, name: &str) -> &Result<Manifest, String> {
        self.0.iter().find(|m| m.0 == name).map(|m| &m.1).expect("listed stage")
    }

    /// The stages with complete outputs.
    fn present(&self) -> impl Iterator<Item = (Stage, &Manifest)> {
        self.0.iter().filter_map(|(name, m)| Some((Stage::parse(name).ok()?, m.as_ref().ok()?)))
    }
}

/// Sentences naming every output the report's numbers depend on (`Stage::all_inputs`) that
/// was built on another run's outputs than the ones now there: its numbers would not describe
/// one system.
fn mixed_runs(manifests: &Manifests) -> Vec<String> {
    let feeding = Stage::Report.all_inputs();
    let present =
        manifests.present().filter(|(stage, _)| feeding.contains(stage)).map(|(stage, m)| (stage, m.clone())).collect();
    stale_inputs(&present).iter().map(ToString::to_string).collect()
}

/// The losses the model stages recorded (`loss_per_iteration` in their summary, present when
/// their `report_loss` was on).
fn loss_curves(manifests: &Manifests) -> Vec<LossCurve> {
    manifests
        .present()
        .filter(|(stage, _)| stage.is_model())
        .filter_map(|(stage, m)| {
            let values = m.summary.get(LOSS_HISTORY_KEY)?.as_array()?;
            let loss: Vec<f64> = values.iter().filter_map(serde_json::Value::as_f64).collect();
            (!loss.is_empty()).then(|| LossCurve { model: stage.as_str().to_string(), run_id: m.run_id.clone(), loss })
        })
        .collect()
}

/// Gathers the report's content from the artifacts.
pub fn collect(artifacts: &Artifacts, run_id: &str, k: usize) -> Result<ReportMetrics, PipelineError> {
    let manifests = Manifests::read(artifacts);
    let models = model_rows(artifacts, &manifests)?;
    if models.iter().all(|m| m.status != OK) {
        return Err(PipelineError::NothingToReport { dir: artifacts.location(), expected: model_names().join(", ") });
    }
    let stages = stage_rows(&manifests);
    Ok(ReportMetrics {
        run_id: run_id.to_string(),
        k,
        models,
        candidate_recall: candidate_recall(&manifests),
        feature_importances: feature_importances(artifacts, &manifests)?,
        total_seconds: stages.iter().filter_map(|s| s.duration_s).sum(),
        stages,
        service_inputs: service_inputs(artifacts, &manifests),
        mixed_runs: mixed_runs(&manifests),
        loss_curves: loss_curves(&manifests),
        scorecard: None,
    })
}

/// A row per model with its metrics on both windows, or why there are none.
fn model_rows(artifacts: &Artifacts, manifests: &Manifests) -> Result<Vec<ModelRow>, PipelineError> {
    let mut models = Vec::new();
    for name in model_names() {
        let row = match manifests.of(name) {
            Err(reason) => ModelRow {
                model: name.to_string(),
                ranker: name == RANKING,
                status: not_run(reason),
                run_id: None,
                target: None,
                test: None,
            },
            Ok(manifest) => {
                let metrics: Option<PerEvalWindow<serde_json::Value>> =
                    read_listed(artifacts, name, manifest, METRICS_FILE)?;
                ModelRow {
                    model: name.to_string(),
                    ranker: name == RANKING,
                    status: if metrics.is_some() {
                        OK.into()
                    } else {
                        not_run(&format!("no {METRICS_FILE} in its outputs"))
                    },
                    run_id: Some(manifest.run_id.clone()),
                    target: metrics.as_ref().map(|m| m.target.clone()),
                    test: metrics.map(|m| m.test),
                }
            }
        };
        models.push(row);
    }
    Ok(models)
}

/// The candidate recall the ranking stage measured, if it ran and its summary reads.
fn candidate_recall(manifests: &Manifests) -> Option<PerEvalWindow<f64>> {
    let manifest = manifests.of(RANKING).as_ref().ok()?;
    match serde_json::from_value::<RankingSummary>(manifest.summary.clone()) {
        Ok(summary) => Some(summary.candidate_recall),
        Err(e) => {
            tracing::warn!(error = %e, "the ranking manifest's summary is not in the current shape; candidate recall left out");
            None
        }
    }
}

/// The ranker's feature importances, most important first.
fn feature_importances(
    artifacts: &Artifacts,
    manifests: &Manifests,
) -> Result<Option<Vec<FeatureImportance>>, PipelineError> {
    let Ok(manifest) = manifests.of(RANKING) else { return Ok(None) };
    let mut importances: Option<Vec<FeatureImportance>> =
        read_listed(artifacts, RANKING, manifest, FEATURE_IMPORTANCES_FILE)?;
    if let Some(list) = importances.as_mut() {
        list.sort_by(|a, b| b.importance.total_cmp(&a.importance));
    }
    Ok(importances)
}

fn stage_rows(manifests: &Manifests) -> Vec<StageRow> {
    manifests
        .0
        .iter()
        .map(|(name, m)| match m {
            Ok(m) => StageRow {
                stage: name.to_string(),
                status: OK.into(),
                run_id: Some(m.run_id.clone()),
                duration_s: Some(m.duration_s),
                peak_rss_bytes: m.peak_rss_bytes,
            },
            Err(reason) => StageRow {
                stage: name.to_string(),
                status: not_run(reason),
                run_id: None,
                duration_s: None,
                peak_rss_bytes: None,
            },
        })
        .collect()
}

/// The files the service would load from these artifacts.
fn service_inputs(artifacts: &Artifacts, manifests: &Manifests) -> Vec<ServiceInput> {
    let listed = |stage: &str, file: &str| match manifests.of(stage) {
        Ok(m) if m.outputs.iter().any(|o| o.file == file) => Some(artifacts.location_of(stage, file)),
        _ => None,
    };
    let input = |what: &str, files: Vec<String>, missing: String| ServiceInput {
        what: what.to_string(),
        status: if files.is_empty() { not_run(&missing) } else { OK.into() },
        files,
    };
    let similar: Vec<String> = model_names().iter().filter_map(|m| listed(m, SIMILAR_FILE)).collect();
    let top = Stage::TopItems.as_str();
    vec![
        input(
            "offline recommendations (old users)",
            listed(RANKING, RECOMMENDATIONS_FILE).into_iter().collect(),
            format!("stage {RANKING}"),
        ),
        input("similar tracks", similar, format!("no model wrote {SIMILAR_FILE}")),
        input(
            "popular tracks",
            [MODEL_FILE, CANDIDATES_FILE].iter().filter_map(|f| listed(top, f)).collect(),
            format!("stage {top}"),
        ),
    ]
}

impl ModelRow {
    fn label(&self) -> String {
        if self.ranker { format!("{} (ranker)", self.model) } else { self.model.clone() }
    }

    /// `metric@k` on a window, if the model reported it.
    pub fn value(&self, window: EvalWindow, metric: &str, k: usize) -> Option<f64> {
        let metrics = match window {
            EvalWindow::Target => &self.target,
            EvalWindow::Test => &self.test,
        };
        metrics.as_ref()?.get(format!("{metric}@{k}"))?.as_f64()
    }
}

/// A markdown table of `metrics` on `window`: one row per model, "not run" rows say why.
fn metrics_table(report: &ReportMetrics, window: EvalWindow, metrics: &[&str]) -> String {
    let k = report.k;
    let mut md = String::from("| model |");
    for m in metrics {
        let _ = write!(md, " {m}@{k} |");
    }
    md.push_str("\n|---|");
    md.push_str(&"---:|".repeat(metrics.len()));
    md.push('\n');
    for row in &report.models {
        let _ = write!(md, "| {} |", row.label());
        if row.status == OK {
            for m in metrics {
                let _ = write!(md, " {} |", row.value(window, m, k).map_or("-".into(), |v| format!("{v:.4}")));
            }
        } else {
            let _ = write!(md, " {} |", row.status);
            md.push_str(&" |".repeat(metrics.len() - 1));
        }
        md.push('\n');
    }
    md
}

fn mb(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| format!("{:.0}", b as f64 / (1u64 << 20) as f64))
}

fn markdown(report: &ReportMetrics, plots: &[(&str, &str)]) -> String {
    let mut md = String::from("# Evaluation report\n\n");
    let _ = writeln!(
        md,
        "Run `{}`. The test window is the honest one: the ranker learns from the target window.\n",
        report.run_id
    );
    md.push_str(&mixed_runs_block(report));
    match &report.scorecard {
        Some(card) => {
            md.push_str(&scorecard::headline_section(card));
            md.push_str(&scorecard::claims_section(card));
            md.push_str(&scorecard::all_metrics_section(card));
            md.push_str(&scorecard::segments_section(card));
            md.push_str(&scorecard::examples_section(card));
        }
        None => md.push_str("No stage published recommendation lists: nothing judged on the test window.\n"),
    }
    let _ = writeln!(
        md,
        "\n## Target window\n\nAs each stage judged itself (K = {}), under the same convention:\n",
        report.k
    );
    md.push_str(&metrics_table(report, EvalWindow::Target, &METRICS));
    md.push_str("\n## Candidate recall\n\n");
    match &report.candidate_recall {
        Some(recall) => {
            md.push_str(
                "Share of a window's (user, track) positives, over old users, that any base model proposed:\n\n",
            );
            md.push_str("| window | candidate recall |\n|---|---:|\n");
            for w in EvalWindow::ALL {
                let _ = writeln!(md, "| {} | {:.4} |", w.window().as_str(), recall[w]);
            }
        }
        None => md.push_str("Not available: the ranking stage was not run or did not report it.\n"),
    }
    md.push_str("\n## Feature importances\n\n");
    match &report.feature_importances {
        Some(list) => {
            md.push_str("| feature | importance |\n|---|---:|\n");
            for f in list.iter().take(TOP_FEATURES) {
                let _ = writeln!(md, "| {} | {:.4} |", f.feature, f.importance);
            }
        }
        None => md.push_str("Not available: the ranking stage was not run.\n"),
    }
    md.push_str("\n## Stages\n\n| stage | run id | seconds | peak MB |\n|---|---|---:|---:|\n");
    for s in &report.stages {
        match s.duration_s {
            Some(d) => {
                let _ = writeln!(
                    md,
                    "| {} | {} | {d:.2} | {} |",
                    s.stage,
                    s.run_id.as_deref().unwrap_or("-"),
                    mb(s.peak_rss_bytes)
                );
            }
            None => {
                let _ = writeln!(md, "| {} | {} | | |", s.stage, s.status);
            }
        }
    }
    let _ = writeln!(md, "| total | | {:.2} | |", report.total_seconds);
    let slowest =
        report.stages.iter().filter_map(|s| Some((s.stage.as_str(), s.duration_s?))).max_by(|a, b| a.1.total_cmp(&b.1));
    if let Some((stage, seconds)) = slowest.filter(|_| report.total_seconds > 0.0) {
        let _ = writeln!(md, "\nSlowest stage: {stage}, {:.0}% of the total.", 100.0 * seconds / report.total_seconds);
    }
    md.push_str("\n## Service inputs\n\n");
    for input in &report.service_inputs {
        if input.status == OK {
            let _ = writeln!(
                md,
                "- {}: {}",
                input.what,
                input.files.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
            );
        } else {
            let _ = writeln!(md, "- {}: {}", input.what, input.status);
        }
    }
    md.push('\n');
    md.push_str(&loss_section(report));
    for (file, caption) in plots {
        let _ = writeln!(md, "## {caption}\n\n![{caption}]({file})\n");
    }
    md
}

/// A warning block when the outputs come from runs that do not belong together; empty when
/// they do.
fn mixed_runs_block(report: &ReportMetrics) -> String {
    if report.mixed_runs.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "> **Warning: these outputs come from different pipeline runs.** Rows below may describe \
         models that the ranker or the evaluation did not see:\n>\n",
    );
    for line in &report.mixed_runs {
        let _ = writeln!(md, "> - {line}");
    }
    md.push('\n');
    md
}

/// The training loss of each model that recorded it: a plot and the first and last values.
fn loss_section(report: &ReportMetrics) -> String {
    if report.loss_curves.is_empty() {
        return String::new();
    }
    let mut md =
        String::from("## Training loss\n\n| model | run id | iterations | first | last |\n|---|---|---:|---:|---:|\n");
    for c in &report.loss_curves {
        let (first, last) = (c.loss[0], c.loss[c.loss.len() - 1]);
        let _ = writeln!(md, "| {} | {} | {} | {first:.6} | {last:.6} |", c.model, c.run_id, c.loss.len());
    }
    md.push('\n');
    for c in &report.loss_curves {
        let _ = writeln!(md, "![{} training loss]({})\n", c.model, loss_plot(&c.model));
    }
    md
}

/// One chart per model: the losses of different models are on different scales.
fn plot_losses(out: &mut StageWriter, report: &ReportMetrics) -> Result<(), PipelineError> {
    for c in &report.loss_curves {
        let line = Line {
            name: c.model.clone(),
            points: c.loss.iter().enumerate().map(|(i, &v)| ((i + 1) as f64, v)).collect(),
        };
        let title = format!("{} training loss", c.model);
        let png = musicrec_plot::lines(&LineChart {
            title: &title,
            x_label: "iteration",
            y_label: "loss",
            x_scale: PlotScale::Linear,
            y_scale: PlotScale::Linear,
            lines: &[line],
            markers: &[],
            x_format: None,
        })?;
        out.write_file(&loss_plot(&c.model), &png)?;
    }
    Ok(())
}

/// Metrics in the test-window chart.
const PLOTTED: [&str; 5] = ["precision", "recall", "ndcg", "coverage_user", "coverage_item"];

/// Draws the plots; returns (file, caption) of each.
fn plot(out: &mut StageWriter, report: &ReportMetrics) -> Result<Vec<(&'static str, &'static str)>, PipelineError> {
    let k = report.k;
    let mut plots = Vec::new();
    let mut add = |out: &mut StageWriter, file: &'static str, caption: &'static str, png: Vec<u8>| {
        plots.push((file, caption));
        out.write_file(file, &png)
    };
    let ran: Vec<&ModelRow> = report.models.iter().filter(|m| m.status == OK).collect();
    let categories: Vec<String> = PLOTTED.iter().map(|m| format!("{m}@{k}")).collect();
    let series: Vec<(String, Vec<f64>)> = ran
        .iter()
        .map(|m| {
            (m.label(), PLOTTED.iter().map(|metric| m.value(EvalWindow::Test, metric, k).unwrap_or(0.0)).collect())
        })
        .collect();
    let chart = musicrec_plot::grouped_bars("Test window", "value", &categories, &series)?;
    add(out, METRICS_PLOT, "Models on the test window", chart)?;
    let ndcg: Vec<(String, f64)> =
        ran.iter().map(|m| (m.label(), m.value(EvalWindow::Test, "ndcg", k).unwrap_or(0.0))).collect();
    let chart = musicrec_plot::bars(&format!("NDCG@{k} on the test window"), "NDCG", &ndcg)?;
    add(out, NDCG_PLOT, "NDCG on the test window", chart)?;
    if let Some(list) = &report.feature_importances {
        let bars: Vec<(String, f64)> =
            list.iter().take(TOP_FEATURES).map(|f| (f.feature.clone(), f.importance)).collect();
        let chart = musicrec_plot::bars("Ranker feature importances", "importance", &bars)?;
        add(out, FEATURE_IMPORTANCES_PLOT, "Feature importances", chart)?;
    }
    let ran_stages: Vec<&StageRow> = report.stages.iter().filter(|s| s.duration_s.is_some()).collect();
    let seconds: Vec<(String, f64)> =
        ran_stages.iter().map(|s| (s.stage.clone(), s.duration_s.unwrap_or(0.0))).collect();
    add(out, STAGE_SECONDS_PLOT, "Time per stage", musicrec_plot::bars("Time per stage", "seconds", &seconds)?)?;
    let memory: Vec<(String, f64)> = ran_stages
        .iter()
        .map(|s| (s.stage.clone(), s.peak_rss_bytes.unwrap_or(0) as f64 / (1u64 << 20) as f64))
        .collect();
    let chart = musicrec_plot::bars("Peak memory per stage", "MB", &memory)?;
    add(out, STAGE_MEMORY_PLOT, "Peak memory per stage", chart)?;
    Ok(plots)
}

pub fn run(ctx: &RunContext) -> Result<Manifest, PipelineError> {
    let mut out = ctx.artifacts.begin(Stage::Report, &ctx.run_id)?;
    let settings = &ctx.config.evaluation;
    let k = settings.headline_k;
    let mut report = collect(&ctx.artifacts, &ctx.run_id, k)?;
    // The report published before this one, read before this one replaces it.
    let previous = load(&ctx.artifacts).ok();
    let judged = scorecard::build(
        &ctx.artifacts,
        settings,
        ctx.config.seed,
        &data_fingerprint(&ctx.data),
        previous.as_ref().and_then(|p| p.scorecard.as_ref()),
        previous.as_ref().map(|p| p.run_id.as_str()),
    )?;
    for m in report.models.iter().filter(|m| m.status == OK) {
        out.add_input(m.model.clone(), m.run_id.clone().unwrap_or_default());
    }
    for line in &report.mixed_runs {
        tracing::warn!("{line}");
    }
    let mut plots = Vec::new();
    if let Some((card, table)) = judged {
        out.add_parquet(parquet_io::write_batch(out.path(PER_USER_FILE), table.batch())?);
        let lines = scorecard::ndcg_distribution(&table, &card.rows, k);
        let chart = musicrec_plot::lines(&LineChart {
            title: &format!("Per-user NDCG@{k} on the test window"),
            x_label: &format!("NDCG@{k}"),
            y_label: "share of users with at most this NDCG",
            x_scale: PlotScale::Linear,
            y_scale: PlotScale::Linear,
            lines: &lines,
            markers: &[],
            x_format: None,
        })?;
        out.write_file(NDCG_DISTRIBUTION_PLOT, &chart)?;
        plots.push((NDCG_DISTRIBUTION_PLOT, "Per-user NDCG distribution"));
        report.scorecard = Some(card);
    }
    plots.extend(plot(&mut out, &report)?);
    plot_losses(&mut out, &report)?;
    out.write_file(METRICS_FILE, &serde_json::to_vec_pretty(&report).expect("report serializes"))?;
    out.write_file(REPORT_FILE, markdown(&report, &plots).as_bytes())?;
    let (ran, not_run): (Vec<&ModelRow>, Vec<&ModelRow>) = report.models.iter().partition(|m| m.status == OK);
    let summary = ReportSummary {
        models: ran.iter().map(|m| m.model.clone()).collect(),
        not_run: not_run.iter().map(|m| m.model.clone()).collect(),
        plots: plots.len() + report.loss_curves.len(),
        mixed_runs: report.mixed_runs.len(),
        read_lists_seconds: report.scorecard.as_ref().map_or(0.0, |c| c.read_seconds),
        evaluate_seconds: report.scorecard.as_ref().map_or(0.0, |c| c.evaluate_seconds),
    };
    let params = ctx.params(json!({"evaluation": settings}));
    Ok(out.commit(musicrec_config::fingerprint_of(&params), params, &summary)?)
}

/// The report of a finished `report` stage.
pub fn load(artifacts: &Artifacts) -> Result<ReportMetrics, PipelineError> {
    let manifest = require(artifacts, Stage::Report, "the headline")?;
    read_listed(artifacts, Stage::Report.as_str(), &manifest, METRICS_FILE)?.ok_or_else(|| PipelineError::Artifact {
        path: artifacts.dir(Stage::Report).display().to_string(),
        reason: format!("the manifest does not list {METRICS_FILE}"),
    })
}

/// The headline table `musicrec run` prints: the system and every model on the test window with
/// 95% intervals, then the report's claims; without a scorecard, the stages' own test metrics.
pub fn headline(report: &ReportMetrics) -> String {
    if let Some(card) = &report.scorecard {
        let mut text = scorecard::headline_text(card);
        for row in report.models.iter().filter(|m| m.status != OK) {
            let _ = writeln!(text, "{}: {}", row.label(), row.status);
        }
        return text;
    }
    let k = report.k;
    let mut text = format!("{:<20}", "model (test window)");
    for m in HEADLINE {
        let _ = write!(text, " {:>18}", format!("{m}@{k}"));
    }
    text.push('\n');
    for row in &report.models {
        let _ = write!(text, "{:<20}", row.label());
        if row.status == OK {
            for m in HEADLINE {
                let _ = write!(
                    text,
                    " {:>18}",
                    row.value(EvalWindow::Test, m, k).map_or("-".into(), |v| format!("{v:.4}"))
                );
            }
        } else {
            let _ = write!(text, " {}", row.status);
        }
        text.push('\n');
    }
    text
}
