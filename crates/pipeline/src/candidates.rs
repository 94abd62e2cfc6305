//! The candidate-model stages (SPEC §2.5) share one shape: fit on train, write the top-N
//! candidates of every old user (the target and test window users among them) and the similar
//! tracks where the model has them, evaluate on the target and test windows, save the model.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch, UInt32Array};
use musicrec_data::{CsrMatrix, parquet_io};
use musicrec_models::{Als, Bpr, ModelError, Recommendations, Recommender, TrainingData};
use serde_json::json;

use crate::artifacts::Manifest;
use crate::error::PipelineError;
use crate::evaluation::{EvalWindow, Evaluator};
use crate::matrices::ITEM_FEATURE_FILE;
use crate::stage::{RunContext, Stage};

pub const CANDIDATES_FILE: &str = "candidates.parquet";
pub const SIMILAR_FILE: &str = "similar.parquet";
pub const MODEL_FILE: &str = "model.bin";
pub const METRICS_FILE: &str = "metrics.json";
/// Similar tracks kept per track: the online model of the service (SPEC §2.5).
pub const SIMILAR_PER_TRACK: usize = 10;

/// Ranked lists as a parquet table: `query_name`, `item_name` (external ids), score, rank
/// (1 = best).
pub(crate) fn ranked_table(
    recs: &Recommendations,
    query_ids: &[i64],
    item_ids: &[i64],
    query_name: &str,
    item_name: &str,
) -> RecordBatch {
    let mut queries = Vec::with_capacity(recs.pairs());
    let mut ranks = Vec::with_capacity(recs.pairs());
    for q in 0..recs.len() {
        let (query, items, _) = recs.get(q);
        queries.extend(std::iter::repeat_n(query_ids[query as usize], items.len()));
        ranks.extend(1..=items.len() as u32);
    }
    RecordBatch::try_from_iter([
        (query_name, Arc::new(Int64Array::from(queries)) as ArrayRef),
        (
            item_name,
            Arc::new(Int64Array::from_iter_values(recs.items().iter().map(|&i| item_ids[i as usize]))) as ArrayRef,
        ),
        ("score", Arc::new(Float32Array::from(recs.scores().to_vec())) as ArrayRef),
        ("rank", Arc::new(UInt32Array::from(ranks)) as ArrayRef),
    ])
    .expect("equal lengths")
}

/// Metrics of model recommendations (evaluation user indices) on both windows, in the
/// `{"target": {...}, "test": {...}}` shape of `metrics.json`.
pub fn evaluate_windows(
    evaluator: &Evaluator,
    recs: &Recommendations,
    k: usize,
) -> Result<serde_json::Value, PipelineError> {
    // One conversion for both windows: the lists can hold millions of users.
    let lists =
        musicrec_eval::Recommendations::new(recs.queries().to_vec(), recs.offsets().to_vec(), recs.items().to_vec())?;
    Ok(json!({
        "target": evaluator.evaluate(&lists, EvalWindow::Target, k)?.to_json(),
        "test": evaluator.evaluate(&lists, EvalWindow::Test, k)?.to_json(),
    }))
}

/// Who a model writes candidates for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Users with train history: the only ones a collaborative model can score.
    OldUsers,
    /// Old users and the new users of the target and test windows (popularity serves anyone).
    AllUsers,
}

/// A model that can report its training loss after every iteration.
pub trait LossReporting: Recommender {
    /// Fits like `Recommender::fit`; also returns the loss of each iteration, in order.
    fn fit_with_losses(params: &Self::Params, data: TrainingData<'_>) -> Result<(Self, Vec<f64>), ModelError>;
}

impl LossReporting for Als {
    fn fit_with_losses(params: &Self::Params, data: TrainingData<'_>) -> Result<(Self, Vec<f64>), ModelError> {
        let mut losses = Vec::with_capacity(params.iterations);
        let model = Als::fit_reporting(params, data.user_items, &mut |r| losses.push(r.loss))?;
        Ok((model, losses))
    }
}

impl LossReporting for Bpr {
    fn fit_with_losses(params: &Self::Params, data: TrainingData<'_>) -> Result<(Self, Vec<f64>), ModelError> {
        let mut losses = Vec::with_capacity(params.iterations);
        let model = Bpr::fit_reporting(params, data.user_items, &mut |r| losses.push(r.loss))?;
        Ok((model, losses))
    }
}

/// A fitted model and, when it was asked for, its training loss per iteration.
pub type Fitted<M> = (M, Option<Vec<f64>>);

/// The fit of a stage whose config has a `report_loss` switch: with the losses when it is on,
/// a plain `fit` (no loss computed) when it is off.
pub fn fit_reporting_loss<M: LossReporting>(
    params: M::Params,
    report_loss: bool,
) -> impl FnOnce(TrainingData<'_>) -> Result<Fitted<M>, ModelError> {
    move |data| {
        if report_loss {
            let (model, losses) = M::fit_with_losses(&params, data)?;
            Ok((model, Some(losses)))
        } else {
            Ok((M::fit(&params, data)?, None))
        }
    }
}

/// Runs one candidate-model stage for model `M`.
pub fn run_model_stage<M: Recommender>(
    ctx: &RunContext,
    stage: Stage,
    params: M::Params,
    n_candidates: usize,
    audience: Audience,
    section: serde_json::Value,
) -> Result<Manifest, PipelineError> {
    let fit = |data: TrainingData<'_>| Ok((M::fit(&params, data)?, None));
    run_model_stage_with(ctx, stage, fit, n_candidates, audience, section)
}

/// Runs one candidate-model stage for model `M`, fitted on the train matrix by `fit`; a loss
/// per iteration it returns is logged and listed in the manifest's summary
/// (`loss_per_iteration`).
pub fn run_model_stage_with<M: Recommender>(
    ctx: &RunContext,
    stage: Stage,
    fit: impl FnOnce(TrainingData<'_>) -> Result<Fitted<M>, ModelError>,
    n_candidates: usize,
    audience: Audience,
    section: serde_json::Value,
) -> Result<Manifest, PipelineError> {
    let evaluator = Evaluator::load(&ctx.artifacts, stage.as_str())?;
    let matrices = ctx.upstream(stage, Stage::Matrices)?;
    let mut out = ctx.artifacts.begin(stage, &ctx.run_id)?;
    out.add_input("matrices", matrices.run_id);

    // Only content models read the item × feature matrix.
    let item_features = if M::USES_ITEM_FEATURES {
        Some(CsrMatrix::load(&ctx.artifacts.stage_dir(Stage::Matrices).join(ITEM_FEATURE_FILE))?)
    } else {
        None
    };
    let started = Instant::now();
    let data = TrainingData { user_items: &evaluator.user_item, item_features: item_features.as_ref() };
    let (model, losses) = fit(data)?;
    let fit_s = started.elapsed().as_secs_f64();
    tracing::info!(model = M::NAME, seconds = format!("{fit_s:.2}"), "fitted");
    if let Some(losses) = &losses {
        tracing::info!(model = M::NAME, loss_per_iteration = ?losses, "training loss");
    }

    let started = Instant::now();
    let user_ids = evaluator.user_ids();
    let users: Vec<u32> = match audience {
        Audience::OldUsers => (0..evaluator.user_item.rows as u32).collect(),
        Audience::AllUsers => (0..user_ids.len() as u32).collect(),
    };
    let recs = model.recommend(&users, &evaluator.user_item, n_candidates)?;
    let recommend_s = started.elapsed().as_secs_f64();
    tracing::info!(model = M::NAME, users = users.len(), seconds = format!("{recommend_s:.2}"), "recommended");

    let encoders = &evaluator.encoders;
    let k = ctx.config.k;
    let metrics = evaluate_windows(&evaluator, &recs, k)?;
    let candidates = ranked_table(&recs, &user_ids, encoders.items.ids(), "user_id", "track_id");
    out.add_parquet(parquet_io::write_batch(out.path(CANDIDATES_FILE), &candidates)?);
    drop(candidates);

    let items: Vec<u32> = (0..evaluator.user_item.cols as u32).collect();
    let similar = model.similar_items(&items, SIMILAR_PER_TRACK);
    if similar.pairs() > 0 {
        let table = ranked_table(&similar, encoders.items.ids(), encoders.items.ids(), "track_id", "similar_track_id");
        out.add_parquet(parquet_io::write_batch(out.path(SIMILAR_FILE), &table)?);
    }
    let bytes = model.save(&out.path(MODEL_FILE))?;
    out.add_file(MODEL_FILE, bytes);
    out.write_file(METRICS_FILE, &serde_json::to_vec_pretty(&metrics).expect("metrics serialize"))?;

    let mut summary = json!({
        "fit_seconds": fit_s,
        "recommend_seconds": recommend_s,
        "users_per_second": users.len() as f64 / recommend_s.max(1e-9),
        "users_with_candidates": (0..recs.len()).filter(|&q| !recs.get(q).1.is_empty()).count(),
        "candidate_pairs": recs.pairs(),
        "similar_pairs": similar.pairs(),
        "model": model.summary().into_iter().map(|(fact, value)| (fact.to_string(), json!(value))).collect::<serde_json::Map<_, _>>(),
        "metrics": metrics,
    });
    if let Some(losses) = losses {
        summary["loss_per_iteration"] = json!(losses);
    }
    let params_json = ctx.params(json!({"k": k, "seed": ctx.config.seed, M::NAME: section}));
    out.commit(musicrec_config::fingerprint_of(&params_json), params_json, summary)
}
