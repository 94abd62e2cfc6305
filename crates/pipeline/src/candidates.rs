//! The candidate-model stages (SPEC §2.5) share one shape: fit on train, write the top-N
//! candidates of every old user (the target and test window users among them) and the similar
//! tracks where the model has them, evaluate on the target and test windows, save the model.

use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch, UInt32Array};
use musicrec_artifacts::layout::METRICS_FILE;
use musicrec_artifacts::layout::candidates::{CANDIDATES_FILE, MODEL_FILE, SIMILAR_FILE};
use musicrec_artifacts::layout::matrices::ITEM_FEATURE_FILE;
use musicrec_artifacts::{Manifest, Stage, StageWriter};
use musicrec_data::{CsrMatrix, parquet_io};
use musicrec_models::{Als, Bpr, ModelError, Recommendations, Recommender, TrainingData};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::PipelineError;
use crate::evaluation::{EvalWindow, Evaluator};
use crate::shards::{self, Sharding};
use crate::stage::RunContext;

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
/// (`loss_per_iteration`). With `ctx.sharding` set, it runs the asked step of sharded scoring
/// instead (see `shards`).
pub fn run_model_stage_with<M: Recommender>(
    ctx: &RunContext,
    stage: Stage,
    fit: impl FnOnce(TrainingData<'_>) -> Result<Fitted<M>, ModelError>,
    n_candidates: usize,
    audience: Audience,
    section: serde_json::Value,
) -> Result<Manifest, PipelineError> {
    let job = ModelJob { ctx, stage, n_candidates, audience, section };
    match ctx.sharding {
        Sharding::Whole => run_whole(&job, fit),
        Sharding::Fit { shards } => shards::fit(&job, fit, shards),
        Sharding::Score(shard) => shards::score::<M>(&job, shard),
        Sharding::Merge => shards::merge::<M>(&job),
    }
}

/// One candidate-model stage as asked: what every step of it (whole or sharded) shares.
pub(crate) struct ModelJob<'a> {
    pub ctx: &'a RunContext,
    pub stage: Stage,
    pub n_candidates: usize,
    pub audience: Audience,
    pub section: serde_json::Value,
}

impl ModelJob<'_> {
    /// The configuration the stage used and its fingerprint: the same for the whole stage and
    /// every step of a sharded one, which is how the steps prove they agree.
    pub fn params<M: Recommender>(&self) -> (String, serde_json::Value) {
        let config = &self.ctx.config;
        let params = self.ctx.params(json!({"k": config.k, "seed": config.seed, M::NAME: self.section}));
        (musicrec_config::fingerprint_of(&params), params)
    }

    /// The users the stage recommends to, as evaluation indices `0..n`.
    pub fn audience_size(&self, evaluator: &Evaluator) -> usize {
        match self.audience {
            Audience::OldUsers => evaluator.user_item.rows,
            Audience::AllUsers => evaluator.user_ids().len(),
        }
    }
}

/// How a model was fitted, as the stage's summary lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FitRecord {
    pub fit_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss_per_iteration: Option<Vec<f64>>,
    /// `Recommender::summary`.
    pub model: serde_json::Map<String, serde_json::Value>,
}

/// Fits the model on the train matrix (and the item features for content models), logging
/// the time and losses.
pub(crate) fn fit_model<M: Recommender>(
    ctx: &RunContext,
    evaluator: &Evaluator,
    fit: impl FnOnce(TrainingData<'_>) -> Result<Fitted<M>, ModelError>,
) -> Result<(M, FitRecord), PipelineError> {
    // Only content models read the item × feature matrix.
    let item_features = if M::USES_ITEM_FEATURES {
        Some(CsrMatrix::load(&ctx.artifacts.dir(Stage::Matrices).join(ITEM_FEATURE_FILE))?)
    } else {
        None
    };
    let started = Instant::now();
    let data = TrainingData { user_items: &evaluator.user_item, item_features: item_features.as_ref() };
    let (model, losses) = fit(data)?;
    let fit_seconds = started.elapsed().as_secs_f64();
    tracing::info!(model = M::NAME, seconds = format!("{fit_seconds:.2}"), "fitted");
    if let Some(losses) = &losses {
        tracing::info!(model = M::NAME, loss_per_iteration = ?losses, "training loss");
    }
    let facts = model.summary().into_iter().map(|(fact, value)| (fact.to_string(), json!(value))).collect();
    Ok((model, FitRecord { fit_seconds, loss_per_iteration: losses, model: facts }))
}

/// The lists of a model stage: candidates of every audience user, similar tracks of every
/// catalogue track (empty for models without them).
pub(crate) struct Scored {
    pub candidates: Recommendations,
    pub similar: Recommendations,
    /// Seconds spent recommending (summed over the shards of a sharded run).
    pub recommend_seconds: f64,
    /// Seconds spent on similar tracks, when they were computed apart (a shard times its
    /// candidates and similar tracks together).
    pub similar_seconds: Option<f64>,
}

fn run_whole<M: Recommender>(
    job: &ModelJob<'_>,
    fit: impl FnOnce(TrainingData<'_>) -> Result<Fitted<M>, ModelError>,
) -> Result<Manifest, PipelineError> {
    let ctx = job.ctx;
    let evaluator = Evaluator::load(&ctx.artifacts, job.stage.as_str())?;
    let matrices = ctx.upstream(job.stage, Stage::Matrices)?;
    let mut out = ctx.artifacts.begin(job.stage, &ctx.run_id)?;
    out.add_input("matrices", matrices.run_id);
    let (model, fitted) = fit_model(ctx, &evaluator, fit)?;

    let started = Instant::now();
    let users: Vec<u32> = (0..job.audience_size(&evaluator) as u32).collect();
    let candidates = model.recommend(&users, &evaluator.user_item, job.n_candidates)?;
    let recommend_seconds = started.elapsed().as_secs_f64();
    tracing::info!(model = M::NAME, users = users.len(), seconds = format!("{recommend_seconds:.2}"), "recommended");
    let started = Instant::now();
    let items: Vec<u32> = (0..evaluator.user_item.cols as u32).collect();
    let similar = model.similar_items(&items, SIMILAR_PER_TRACK);
    let similar_seconds = Some(started.elapsed().as_secs_f64());
    let scored = Scored { candidates, similar, recommend_seconds, similar_seconds };
    let write_model = |out: &mut StageWriter| {
        let bytes = model.save(&out.path(MODEL_FILE))?;
        out.add_file(MODEL_FILE, bytes);
        Ok(())
    };
    publish::<M>(job, &evaluator, out, &scored, &fitted, write_model, None)
}

/// Evaluates the lists and publishes the stage: candidates, similar tracks, the model (written
/// by `write_model`), metrics, and the manifest last. `shards`, for a merged run, goes into
/// the summary as is.
pub(crate) fn publish<M: Recommender>(
    job: &ModelJob<'_>,
    evaluator: &Evaluator,
    mut out: StageWriter,
    scored: &Scored,
    fitted: &FitRecord,
    write_model: impl FnOnce(&mut StageWriter) -> Result<(), PipelineError>,
    shards: Option<serde_json::Value>,
) -> Result<Manifest, PipelineError> {
    let Scored { candidates: recs, similar, recommend_seconds, similar_seconds } = scored;
    let started = Instant::now();
    let metrics = evaluate_windows(evaluator, recs, job.ctx.config.k)?;
    let evaluate_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let item_ids = evaluator.encoders.items.ids();
    let table = ranked_table(recs, &evaluator.user_ids(), item_ids, "user_id", "track_id");
    out.add_parquet(parquet_io::write_batch(out.path(CANDIDATES_FILE), &table)?);
    drop(table);
    if similar.pairs() > 0 {
        let table = ranked_table(similar, item_ids, item_ids, "track_id", "similar_track_id");
        out.add_parquet(parquet_io::write_batch(out.path(SIMILAR_FILE), &table)?);
    }
    write_model(&mut out)?;
    out.write_file(METRICS_FILE, &serde_json::to_vec_pretty(&metrics).expect("metrics serialize"))?;
    let write_seconds = started.elapsed().as_secs_f64();

    // Where a stage's time goes at scale: fit, recommend, similar tracks, evaluation, writing.
    let mut summary = json!({
        "recommend_seconds": recommend_seconds,
        "similar_seconds": similar_seconds,
        "evaluate_seconds": evaluate_seconds,
        "write_seconds": write_seconds,
        "users_per_second": recs.len() as f64 / recommend_seconds.max(1e-9),
        "users_with_candidates": (0..recs.len()).filter(|&q| !recs.get(q).1.is_empty()).count(),
        "candidate_pairs": recs.pairs(),
        "similar_pairs": similar.pairs(),
        "metrics": metrics,
    });
    let fit = serde_json::to_value(fitted).expect("fit records serialize");
    summary.as_object_mut().expect("an object").extend(fit.as_object().expect("an object").clone());
    if let Some(shards) = shards {
        summary["shards"] = shards;
    }
    let (fingerprint, params) = job.params::<M>();
    Ok(out.commit(fingerprint, params, summary)?)
}
