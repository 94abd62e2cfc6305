//! The candidate-model stages (docs/pipeline.md#candidate-models) share one shape: fit on train, write the top-N
//! candidates of every old user (the target and test window users among them) and the similar
//! tracks where the model has them, evaluate on the target and test windows, save the model.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use arrow_array::{ArrayRef, Float32Array, Int64Array, RecordBatch, UInt32Array};
use musicrec_artifacts::layout::METRICS_FILE;
use musicrec_artifacts::layout::candidates::{CANDIDATES_FILE, MODEL_FILE, SIMILAR_FILE};
use musicrec_artifacts::layout::matrices::ITEM_FEATURE_FILE;
use musicrec_artifacts::{Manifest, Stage, StageWriter};
use musicrec_data::{CsrMatrix, parquet_io};
use musicrec_models::topk::QUERY_BLOCK;
use musicrec_models::{Recommendations, Recommender, SimilarItems, TrainingData};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::PipelineError;
use crate::evaluation::{EvalWindow, Evaluator};
use crate::params::ModelStage;
use crate::progress::{Counted, FitProgress};
use crate::shards::{self, Sharding};
use crate::stage::RunContext;

/// Similar tracks kept per track: the online part of the service's blend (docs/service.md#blending).
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
    ks: &[usize],
) -> Result<serde_json::Value, PipelineError> {
    // One conversion for both windows: the lists can hold millions of users.
    let lists =
        musicrec_eval::Recommendations::new(recs.queries().to_vec(), recs.offsets().to_vec(), recs.items().to_vec())?;
    Ok(json!({
        "target": evaluator.evaluate(&lists, EvalWindow::Target, ks)?.to_json(),
        "test": evaluator.evaluate(&lists, EvalWindow::Test, ks)?.to_json(),
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

/// Runs one candidate-model stage for model `M` with `params`; `section` is the model's
/// configuration section, recorded in the manifest. The fit computes the training loss per
/// iteration when `params.report_loss` is on; it is logged and listed in the manifest's summary
/// (`loss_per_iteration`). With `ctx.sharding` set, it runs the asked step of sharded scoring
/// instead (see `shards`).
pub fn run_model_stage<M: Recommender>(
    ctx: &RunContext,
    stage: Stage,
    params: &ModelStage<M::Params>,
    section: serde_json::Value,
) -> Result<Manifest, PipelineError> {
    let job = ModelJob::<M> { ctx, stage, params, section };
    match ctx.sharding {
        Sharding::Whole => run_whole(&job),
        Sharding::Fit { shards } => shards::fit(&job, shards),
        Sharding::Score(shard) => shards::score(&job, shard),
        Sharding::Merge => shards::merge(&job),
    }
}

/// One candidate-model stage as asked: what every step of it (whole or sharded) shares.
pub(crate) struct ModelJob<'a, M: Recommender> {
    pub ctx: &'a RunContext,
    pub stage: Stage,
    pub params: &'a ModelStage<M::Params>,
    pub section: serde_json::Value,
}

impl<M: Recommender> ModelJob<'_, M> {
    /// The configuration the stage used and its fingerprint: the same for the whole stage and
    /// every step of a sharded one, which is how the steps prove they agree.
    pub fn recorded_config(&self) -> (String, serde_json::Value) {
        let config = &self.ctx.config;
        let params = self.ctx.params(json!({"k": config.evaluation.k, "seed": config.seed, M::NAME: self.section}));
        (musicrec_config::fingerprint_of(&params), params)
    }

    /// The users the stage recommends to, as evaluation indices `0..n`.
    pub fn audience_size(&self, evaluator: &Evaluator) -> usize {
        match self.params.audience {
            Audience::OldUsers => evaluator.user_item.rows,
            Audience::AllUsers => evaluator.user_ids().len(),
        }
    }

    /// Fits the model on the train matrix (and the item features for content models), logging
    /// the time and losses.
    pub fn fit(&self, evaluator: &Evaluator) -> Result<(M, FitRecord), PipelineError> {
        // Only content models read the item × feature matrix.
        let item_features = if M::USES_ITEM_FEATURES {
            Some(CsrMatrix::load(&self.ctx.artifacts.dir(Stage::Matrices).join(ITEM_FEATURE_FILE))?)
        } else {
            None
        };
        let started = Instant::now();
        let data = TrainingData { user_items: &evaluator.user_item, item_features: item_features.as_ref() };
        let with_loss = self.params.report_loss;
        let mut losses = Vec::new();
        let mut progress = FitProgress::new(M::NAME);
        let model = M::fit_observed(&self.params.model, data, with_loss, &mut |step| {
            progress.step(step);
            losses.extend(step.loss);
        })?;
        drop(progress);
        let losses = with_loss.then_some(losses);
        let fit_seconds = started.elapsed().as_secs_f64();
        tracing::info!(model = M::NAME, seconds = format!("{fit_seconds:.2}"), "fitted");
        if let Some(losses) = &losses {
            tracing::info!(model = M::NAME, loss_per_iteration = ?losses, "training loss");
        }
        let facts = model.summary().into_iter().map(|(fact, value)| (fact.to_string(), json!(value))).collect();
        Ok((model, FitRecord { fit_seconds, loss_per_iteration: losses, model: facts }))
    }
}

/// Queries per call while progress is shown: at most `PROGRESS_UPDATES` calls, each of at
/// least `MIN_QUERIES_PER_CALL` queries so that a call's setup (the candidate vectors are
/// copied once per call) stays a negligible share, and a multiple of `QUERY_BLOCK` so that
/// every query is scored exactly as one call would.
fn queries_per_call(queries: usize) -> usize {
    const PROGRESS_UPDATES: usize = 20;
    const MIN_QUERIES_PER_CALL: usize = 16_384;
    queries.div_ceil(PROGRESS_UPDATES).max(MIN_QUERIES_PER_CALL).next_multiple_of(QUERY_BLOCK)
}

/// Runs `score` on `queries` in calls of `queries_per_call`, counting them in `progress`.
fn watched<E>(
    queries: &[u32],
    progress: &Counted,
    mut score: impl FnMut(&[u32]) -> Result<Recommendations, E>,
) -> Result<Recommendations, E> {
    let mut out = Recommendations::new();
    let mut done = 0;
    for chunk in queries.chunks(queries_per_call(queries.len())) {
        out.append(&score(chunk)?);
        done += chunk.len();
        progress.set(done);
    }
    Ok(out)
}

/// `model.recommend` with the users scored shown as they go.
pub(crate) fn recommend_watched<M: Recommender>(
    model: &M,
    users: &[u32],
    user_items: &CsrMatrix,
    n: usize,
) -> Result<Recommendations, PipelineError> {
    let progress = Counted::new(M::NAME, "users scored", users.len());
    Ok(watched(users, &progress, |chunk| model.recommend(chunk, user_items, n))?)
}

/// The similar tracks of `items`, shown as they go.
pub(crate) fn similar_watched(model: &'static str, similar: &dyn SimilarItems, items: &[u32]) -> Recommendations {
    let progress = Counted::new(model, "similar tracks", items.len());
    let Ok(lists) =
        watched(items, &progress, |chunk| Ok::<_, Infallible>(similar.similar_items(chunk, SIMILAR_PER_TRACK)));
    lists
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

/// The lists of a model stage: candidates of every audience user, similar tracks of every
/// catalogue track (none for models without them).
pub(crate) struct Scored {
    pub candidates: Recommendations,
    pub similar: Recommendations,
    /// Seconds spent recommending (summed over the shards of a sharded run).
    pub recommend_seconds: f64,
    /// Seconds spent on similar tracks, when the model has them and they were computed apart
    /// (a shard times its candidates and similar tracks together).
    pub similar_seconds: Option<f64>,
}

fn run_whole<M: Recommender>(job: &ModelJob<'_, M>) -> Result<Manifest, PipelineError> {
    let ctx = job.ctx;
    let mut out = ctx.artifacts.begin(job.stage, &ctx.run_id)?;
    let evaluator = Evaluator::load(&ctx.artifacts, job.stage.as_str())?;
    ctx.record_inputs(job.stage, &mut out)?;
    let (model, fitted) = job.fit(&evaluator)?;

    let started = Instant::now();
    let users: Vec<u32> = (0..job.audience_size(&evaluator) as u32).collect();
    let candidates = recommend_watched(&model, &users, &evaluator.user_item, job.params.n_candidates)?;
    let recommend_seconds = started.elapsed().as_secs_f64();
    tracing::info!(model = M::NAME, users = users.len(), seconds = format!("{recommend_seconds:.2}"), "recommended");
    let (similar, similar_seconds) = match model.similar() {
        Some(similar) => {
            let started = Instant::now();
            let items: Vec<u32> = (0..evaluator.user_item.cols as u32).collect();
            (similar_watched(M::NAME, similar, &items), Some(started.elapsed().as_secs_f64()))
        }
        None => (Recommendations::new(), None),
    };
    let scored = Scored { candidates, similar, recommend_seconds, similar_seconds };
    let write_model = |out: &mut StageWriter| {
        let bytes = model.save(&out.path(MODEL_FILE))?;
        out.add_file(MODEL_FILE, bytes);
        Ok(())
    };
    publish(job, &evaluator, out, &scored, &fitted, write_model, None)
}

/// Evaluates the lists and publishes the stage: candidates, similar tracks, the model (written
/// by `write_model`), metrics, and the manifest last. `shards`, for a merged run, goes into
/// the summary as is.
pub(crate) fn publish<M: Recommender>(
    job: &ModelJob<'_, M>,
    evaluator: &Evaluator,
    mut out: StageWriter,
    scored: &Scored,
    fitted: &FitRecord,
    write_model: impl FnOnce(&mut StageWriter) -> Result<(), PipelineError>,
    shards: Option<serde_json::Value>,
) -> Result<Manifest, PipelineError> {
    let Scored { candidates: recs, similar, recommend_seconds, similar_seconds } = scored;
    let started = Instant::now();
    let metrics = evaluate_windows(evaluator, recs, &job.ctx.config.evaluation.k)?;
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
    let (fingerprint, params) = job.recorded_config();
    Ok(out.commit(fingerprint, params, &summary)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_splits_queries_in_few_whole_query_blocks_and_keeps_their_lists() {
        for n in [0, 1, 63, 16_384, 16_385, 400_000, 1_370_000] {
            let per = queries_per_call(n);
            assert!(per.is_multiple_of(QUERY_BLOCK) && per >= 16_384, "{n}: {per}");
            assert!(n.div_ceil(per) <= 20, "{n}: {per}");
        }
        let queries: Vec<u32> = (0..40_000).collect();
        let lists = |chunk: &[u32]| {
            let mut recs = Recommendations::new();
            for &q in chunk {
                recs.push(q, &[q + 1, q + 2], &[1.0, 0.5]);
            }
            Ok::<_, Infallible>(recs)
        };
        let mut calls = 0;
        let progress = Counted::new("test", "users scored", queries.len());
        let Ok(watched_lists) = watched(&queries, &progress, |chunk| {
            calls += 1;
            lists(chunk)
        });
        let Ok(whole) = lists(&queries);
        assert_eq!((calls, watched_lists), (3, whole));
    }
}
