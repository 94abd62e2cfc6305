//! Stage `ranking` (docs/pipeline.md#ranking): the second stage of the recommender.
//!
//! The candidates of every candidate model (`Stage::CANDIDATE_MODELS`) and the first
//! `ranking.popular_candidates` of each user's popular tracks are merged per old user (a source
//! that did not propose a pair leaves its features missing). Pairs are labelled with the target
//! window; users with a listened candidate keep all their positives and a seeded sample of
//! negatives; a gradient-boosted ranker learns from them. The models were fitted on train
//! only, so every old user's candidates are the same for both windows: the ranker then scores
//! all of them, its top `ranking.top_n` per user are the offline recommendations, and the test
//! window judges them honestly (the target window trained the ranker, so its metrics flatter).

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int32Type, Int64Type, UInt32Type, UInt64Type};
use arrow_schema::DataType;
use indicatif::ProgressBar;
use musicrec_artifacts::layout::METRICS_FILE;
use musicrec_artifacts::layout::candidates::{CANDIDATES_FILE, MODEL_FILE};
use musicrec_artifacts::layout::features::{ITEM_FEATURES_FILE, USER_FEATURES_FILE};
use musicrec_artifacts::layout::matrices::{FEATURES_FILE, ITEM_FEATURE_FILE};
use musicrec_artifacts::layout::preprocess::Window;
use musicrec_artifacts::layout::ranking::{FEATURE_IMPORTANCES_FILE, RANKER_FILE, RECOMMENDATIONS_FILE};
use musicrec_artifacts::{Manifest, Stage, StageWriter};
use musicrec_data::parquet_io::{self, for_each_batch, read_batches};
use musicrec_data::{CsrMatrix, DataError, IdEncoder};
use musicrec_models::{Als, Recommendations, Recommender};
use musicrec_ranking::features::recent_items;
use musicrec_ranking::{
    CandidateSet, EntityColumns, FeatureBuilder, FeatureInputs, FeatureMatrix, ItemEmbedding, ItemGroups, Ranker,
    RankerParams, SourceCandidates,
};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::candidates::{evaluate_windows, ranked_table};
use crate::error::PipelineError;
use crate::evaluation::{EvalWindow, Evaluator, PerEvalWindow};
use crate::events::read_encoded;
use crate::matrices::FEATURE_KINDS;
use crate::progress;
use crate::stage::RunContext;

/// Candidate pairs scored per batch: small enough that a batch's features stay in cache while
/// every tree walks them.
const PREDICT_BATCH_PAIRS: usize = 4096;

fn artifact_error(path: &Path, reason: impl Into<String>) -> PipelineError {
    PipelineError::Artifact { path: path.display().to_string(), reason: reason.into() }
}

/// A candidate model's old-user candidates with rank <= `max_rank`, in dense indices.
fn read_candidates(
    path: &Path,
    name: &str,
    evaluator: &Evaluator,
    max_rank: u32,
) -> Result<SourceCandidates, PipelineError> {
    let mut src = SourceCandidates { name: name.to_string(), ..Default::default() };
    let mut unknown_tracks = 0usize;
    for_each_batch(path, &["user_id", "track_id", "score", "rank"], |batch| {
        let users = batch.column(0).as_primitive::<Int64Type>().values();
        let tracks = batch.column(1).as_primitive::<Int64Type>().values();
        let scores = batch.column(2).as_primitive::<Float32Type>().values();
        let ranks = batch.column(3).as_primitive::<UInt32Type>().values();
        for i in 0..batch.num_rows() {
            // New users (popularity serves them) are not the ranker's: it ranks old users.
            let Some(user) = evaluator.encoders.users.encode(users[i]) else { continue };
            if ranks[i] > max_rank {
                continue;
            }
            let Some(item) = evaluator.encoders.items.encode(tracks[i]) else {
                unknown_tracks += 1;
                continue;
            };
            src.users.push(user);
            src.items.push(item);
            src.scores.push(scores[i]);
            src.ranks.push(ranks[i]);
        }
        Ok(())
    })?;
    if unknown_tracks > 0 {
        return Err(artifact_error(path, format!("{unknown_tracks} candidates name tracks outside the catalogue")));
    }
    if !src.is_grouped_by_user() {
        return Err(artifact_error(path, format!("candidates are not grouped by user in matrix order; rerun {name}")));
    }
    Ok(src)
}

/// The numeric columns of a features-stage table as f64 (null = NaN), rows checked to be in
/// the encoder's order.
fn read_entity_columns(path: &Path, id_column: &str, encoder: &IdEncoder) -> Result<EntityColumns, PipelineError> {
    let batches = read_batches(path)?;
    let Some(first) = batches.first() else { return Ok(EntityColumns::default()) };
    let schema = first.schema();
    let mut out = EntityColumns::default();
    let mut ids = Vec::with_capacity(encoder.len());
    for (c, field) in schema.fields().iter().enumerate() {
        let mut values = Vec::with_capacity(encoder.len());
        for batch in &batches {
            let col = batch.column(c);
            if field.name() == id_column {
                ids.extend_from_slice(col.as_primitive::<Int64Type>().values());
                continue;
            }
            let nullable = |i: usize, v: f64| if col.is_null(i) { f64::NAN } else { v };
            match field.data_type() {
                DataType::UInt32 => values.extend(
                    col.as_primitive::<UInt32Type>().values().iter().enumerate().map(|(i, &v)| nullable(i, v.into())),
                ),
                DataType::UInt64 => values.extend(
                    col.as_primitive::<UInt64Type>().values().iter().enumerate().map(|(i, &v)| nullable(i, v as f64)),
                ),
                DataType::Int32 => values.extend(
                    col.as_primitive::<Int32Type>().values().iter().enumerate().map(|(i, &v)| nullable(i, v.into())),
                ),
                DataType::Int64 => values.extend(
                    col.as_primitive::<Int64Type>().values().iter().enumerate().map(|(i, &v)| nullable(i, v as f64)),
                ),
                DataType::Float32 => values.extend(
                    col.as_primitive::<Float32Type>().values().iter().enumerate().map(|(i, &v)| nullable(i, v.into())),
                ),
                DataType::Float64 => values.extend(
                    col.as_primitive::<Float64Type>().values().iter().enumerate().map(|(i, &v)| nullable(i, v)),
                ),
                other => {
                    return Err(artifact_error(
                        path,
                        format!("column {} has type {other}, not a number", field.name()),
                    ));
                }
            }
        }
        if field.name() != id_column {
            out.names.push(field.name().clone());
            out.columns.push(values);
        }
    }
    if ids != encoder.ids() {
        return Err(artifact_error(path, "rows are not in the order of the matrices stage's encoder; rerun features"));
    }
    Ok(out)
}

/// Which group (album, artist, genre) each column of the item × feature matrix is in.
fn feature_groups(path: &Path) -> Result<Vec<usize>, PipelineError> {
    let mut groups = Vec::new();
    for_each_batch(path, &["type"], |batch| {
        for kind in batch.column(0).as_string::<i32>().iter() {
            let kind = kind.unwrap_or_default();
            let group = FEATURE_KINDS.iter().position(|k| k.as_str() == kind);
            groups.push(group.ok_or_else(|| DataError::corrupt(path, format!("unknown feature type `{kind}`")))?);
        }
        Ok(())
    })?;
    Ok(groups)
}

/// What `ranking` reports in its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankingSummary {
    /// Share of a window's (old user, track) positives that any candidate source proposed.
    pub candidate_recall: PerEvalWindow<f64>,
    pub train_seconds: f64,
    pub predict_seconds: f64,
    pub users_per_second: f64,
    pub sources: Vec<String>,
    pub candidate_pairs: usize,
    pub candidate_users: usize,
    pub user_chunks: usize,
    pub training_rows: usize,
    pub training_positives: usize,
    pub training_users: usize,
    pub features: Vec<String>,
    pub users_with_recommendations: usize,
    /// Share of the test window's old users who got recommendations.
    pub test_old_users_coverage: f64,
    /// The recommendations judged on both windows, as in `metrics.json`.
    pub metrics: serde_json::Value,
}

/// A row of `feature_importances.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureImportance {
    pub feature: String,
    pub importance: f64,
}

pub fn run(ctx: &RunContext, params: &RankerParams) -> Result<Manifest, PipelineError> {
    let stage = Stage::Ranking;
    let cfg = &ctx.config.ranking;
    let mut out = ctx.artifacts.begin(stage, &ctx.run_id)?;
    let evaluator = Evaluator::load(&ctx.artifacts, stage.as_str())?;
    ctx.record_inputs(stage, &mut out)?;

    let sources = read_sources(ctx, &evaluator)?;
    let source_names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    let tables = FeatureTables::load(ctx, &evaluator)?;
    let builder = tables.builder(&source_names, &evaluator.user_item);
    let candidates = ChunkedCandidates::new(&sources, evaluator.user_item.rows, cfg.users_per_chunk);
    let (training, merged) =
        sample_training_set(&candidates, &builder, &evaluator, cfg.negatives_per_user, ctx.config.seed);
    let (ranker, train_seconds) = train_ranker(params, &training)?;
    let (training_rows, training_positives, training_users) =
        (training.labels.len(), training.labels.iter().filter(|&&l| l).count(), training.users);
    // Scoring builds its own features chunk by chunk: the training rows' can go first.
    drop(training);
    let (recs, predict_seconds) =
        recommend(&candidates, &builder, &ranker, &evaluator.user_item, cfg.top_n, merged.pairs)?;
    let metrics = evaluate_windows(&evaluator, &recs, &ctx.config.evaluation.k)?;
    write_outputs(&mut out, &evaluator, &recs, &metrics, &ranker)?;

    let summary = RankingSummary {
        candidate_recall: merged.recall,
        train_seconds,
        predict_seconds,
        users_per_second: merged.users as f64 / predict_seconds.max(1e-9),
        sources: source_names,
        candidate_pairs: merged.pairs,
        candidate_users: merged.users,
        user_chunks: candidates.chunks.len(),
        training_rows,
        training_positives,
        training_users,
        features: ranker.features().to_vec(),
        users_with_recommendations: recs.iter().filter(|(_, items, _)| !items.is_empty()).count(),
        test_old_users_coverage: test_old_users_coverage(&evaluator, &recs),
        metrics,
    };
    let params_json = ctx.params(json!({"k": ctx.config.evaluation.k, "seed": ctx.config.seed, "ranking": cfg}));
    Ok(out.commit(musicrec_config::fingerprint_of(&params_json), params_json, &summary)?)
}

/// The candidate sources in feature order: every candidate model, then (if configured) the
/// first `ranking.popular_candidates` popular tracks of each user.
fn read_sources(ctx: &RunContext, evaluator: &Evaluator) -> Result<Vec<SourceCandidates>, PipelineError> {
    let mut sources = Vec::new();
    for model in Stage::CANDIDATE_MODELS {
        let path = ctx.artifacts.dir(model).join(CANDIDATES_FILE);
        sources.push(read_candidates(&path, model.as_str(), evaluator, u32::MAX)?);
    }
    let popular = ctx.config.ranking.popular_candidates;
    if popular > 0 {
        let path = ctx.artifacts.dir(Stage::TopItems).join(CANDIDATES_FILE);
        let max_rank = u32::try_from(popular).unwrap_or(u32::MAX);
        sources.push(read_candidates(&path, Stage::TopItems.as_str(), evaluator, max_rank)?);
    }
    Ok(sources)
}

/// What the ranker's features are computed from, besides the candidates themselves.
struct FeatureTables {
    users: EntityColumns,
    items: EntityColumns,
    item_features: CsrMatrix,
    /// Group (album, artist, genre) of each column of `item_features`.
    group_of_column: Vec<usize>,
    /// Each old user's latest train tracks.
    recent: Vec<Vec<u32>>,
    embedding: ItemEmbedding,
}

impl FeatureTables {
    fn load(ctx: &RunContext, evaluator: &Evaluator) -> Result<Self, PipelineError> {
        let encoders = &evaluator.encoders;
        let features_dir = ctx.artifacts.dir(Stage::Features);
        let users = read_entity_columns(&features_dir.join(USER_FEATURES_FILE), "user_id", &encoders.users)?;
        let items = read_entity_columns(&features_dir.join(ITEM_FEATURES_FILE), "track_id", &encoders.items)?;
        let matrices_dir = ctx.artifacts.dir(Stage::Matrices);
        let item_features = CsrMatrix::load(&matrices_dir.join(ITEM_FEATURE_FILE))?;
        let group_of_column = feature_groups(&matrices_dir.join(FEATURES_FILE))?;
        if group_of_column.len() != item_features.cols {
            return Err(artifact_error(
                &matrices_dir.join(FEATURES_FILE),
                "does not describe every item-feature column",
            ));
        }
        let train_file = ctx.artifacts.dir(Stage::Preprocess).join(Window::Train.file());
        let (train, _) = read_encoded(&train_file, &encoders.users, &encoders.items)?;
        let n_old = evaluator.user_item.rows;
        let recent = recent_items(n_old, &train.user, &train.item, &train.day, ctx.config.ranking.recent_tracks);
        drop(train);
        let als = Als::load(&ctx.artifacts.dir(Stage::Als).join(MODEL_FILE))?;
        let embedding = ItemEmbedding::from_factors(als.factors());
        Ok(Self { users, items, item_features, group_of_column, recent, embedding })
    }

    /// The features of pairs merged from `sources` (named in merge order).
    fn builder<'a>(&'a self, sources: &[String], history: &'a CsrMatrix) -> FeatureBuilder<'a> {
        FeatureBuilder::new(
            sources,
            FeatureInputs {
                users: &self.users,
                items: &self.items,
                history,
                groups: ItemGroups {
                    names: FEATURE_KINDS.iter().map(|k| k.as_str().to_string()).collect(),
                    matrix: &self.item_features,
                    group_of_column: self.group_of_column.clone(),
                },
                recent: &self.recent,
                embedding: &self.embedding,
            },
        )
    }
}

/// The sources' candidates merged a chunk of users at a time, once for training and once for
/// scoring: memory holds the sources' lists and one chunk's merged pairs and features, never
/// all pairs at once (at the real data's size, 1.3M users × ~160 pairs). Users are
/// independent in every step, so the result does not depend on the chunk size.
struct ChunkedCandidates<'a> {
    sources: &'a [SourceCandidates],
    chunks: Vec<Range<u32>>,
}

impl<'a> ChunkedCandidates<'a> {
    /// Over the old users `0..n_old`, `per_chunk` consecutive users at a time.
    fn new(sources: &'a [SourceCandidates], n_old: usize, per_chunk: usize) -> Self {
        let chunks = (0..n_old)
            .step_by(per_chunk)
            .map(|start| start as u32..start.saturating_add(per_chunk).min(n_old) as u32)
            .collect();
        Self { sources, chunks }
    }

    fn merged(&self) -> impl Iterator<Item = CandidateSet> + '_ {
        self.chunks.iter().map(|users| {
            CandidateSet::merge(&self.sources.iter().map(|s| s.users_in(users.clone())).collect::<Vec<_>>())
        })
    }
}

/// The ranker's training rows: labelled with the target window, every positive and a seeded
/// sample of negatives of each user with a positive.
struct TrainingSet {
    features: FeatureMatrix,
    labels: Vec<bool>,
    users: usize,
}

/// What merging the sources gave, over every old user.
struct MergedCandidates {
    pairs: usize,
    users: usize,
    recall: PerEvalWindow<f64>,
}

fn sample_training_set(
    candidates: &ChunkedCandidates<'_>,
    builder: &FeatureBuilder<'_>,
    evaluator: &Evaluator,
    negatives_per_user: usize,
    seed: u64,
) -> (TrainingSet, MergedCandidates) {
    let target = evaluator.relevance(EvalWindow::Target);
    let test = evaluator.relevance(EvalWindow::Test);
    let positives = |labels: &[bool]| labels.iter().filter(|&&l| l).count();
    let (mut pairs, mut candidate_users, mut found) = (0, 0, PerEvalWindow::<usize>::default());
    let (mut parts, mut labels_kept, mut users_kept) = (Vec::new(), Vec::new(), 0);
    for set in candidates.merged() {
        pairs += set.len();
        candidate_users += set.users().len();
        let labels = set.labels(|u| target.relevant(u));
        found[EvalWindow::Target] += positives(&labels);
        found[EvalWindow::Test] += positives(&set.labels(|u| test.relevant(u)));
        let rows = set.sample(&labels, negatives_per_user, seed);
        labels_kept.extend(rows.iter().map(|&p| labels[p]));
        users_kept += rows.iter().map(|&p| set.group_of(p)).collect::<BTreeSet<_>>().len();
        parts.push(builder.build(&set, &rows));
    }
    let n_old = evaluator.user_item.rows;
    let recall = PerEvalWindow::from_fn(|w| found[w] as f64 / relevant_pairs(evaluator, w, n_old).max(1) as f64);
    tracing::info!(
        pairs,
        users = candidate_users,
        chunks = candidates.chunks.len(),
        target_recall = recall.target,
        test_recall = recall.test,
        "candidates merged"
    );
    let features = FeatureMatrix::concat(builder.names().to_vec(), &parts);
    let training = TrainingSet { features, labels: labels_kept, users: users_kept };
    (training, MergedCandidates { pairs, users: candidate_users, recall })
}

/// Number of a window's (old user, track) pairs: the denominator of candidate recall.
fn relevant_pairs(evaluator: &Evaluator, window: EvalWindow, n_old: usize) -> usize {
    let relevance = evaluator.relevance(window);
    (0..n_old as u32).map(|u| relevance.relevant(u).len()).sum()
}

/// The fitted ranker and the seconds fitting took.
fn train_ranker(params: &RankerParams, training: &TrainingSet) -> Result<(Ranker, f64), PipelineError> {
    let started = Instant::now();
    let ranker = Ranker::fit(params, &training.features, &training.labels)?;
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        rows = training.labels.len(),
        users = training.users,
        seconds = format!("{seconds:.2}"),
        "ranker trained"
    );
    Ok((ranker, seconds))
}

/// The ranker's top `top_n` unheard candidates of every old user, and the seconds scoring took.
fn recommend(
    candidates: &ChunkedCandidates<'_>,
    builder: &FeatureBuilder<'_>,
    ranker: &Ranker,
    history: &CsrMatrix,
    top_n: usize,
    pairs: usize,
) -> Result<(Recommendations, f64), PipelineError> {
    let started = Instant::now();
    let bar = progress::bar(pairs as u64, "rank pairs");
    let (mut recs, mut thread_seconds) = (Recommendations::new(), ThreadSeconds::default());
    for set in candidates.merged() {
        let scores = predict_all(&set, builder, ranker, &bar, &mut thread_seconds)?;
        recs.append(&musicrec_ranking::top_n(&set, &scores, history, top_n));
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        pairs,
        feature_thread_seconds = format!("{:.2}", thread_seconds.features),
        tree_thread_seconds = format!("{:.2}", thread_seconds.trees),
        "candidates scored"
    );
    Ok((recs, seconds))
}

/// Share of the old users with test events who got recommendations.
fn test_old_users_coverage(evaluator: &Evaluator, recs: &Recommendations) -> f64 {
    let test = evaluator.relevance(EvalWindow::Test);
    let old_test_users = (0..evaluator.user_item.rows as u32).filter(|&u| !test.relevant(u).is_empty()).count();
    let served = recs.iter().filter(|(u, items, _)| !items.is_empty() && !test.relevant(*u).is_empty()).count();
    served as f64 / old_test_users.max(1) as f64
}

/// The recommendations, their metrics, the feature importances and the ranker itself.
fn write_outputs(
    out: &mut StageWriter,
    evaluator: &Evaluator,
    recs: &Recommendations,
    metrics: &serde_json::Value,
    ranker: &Ranker,
) -> Result<(), PipelineError> {
    let table = ranked_table(recs, &evaluator.user_ids(), evaluator.encoders.items.ids(), "user_id", "track_id");
    out.add_parquet(parquet_io::write_batch(out.path(RECOMMENDATIONS_FILE), &table)?);
    out.write_file(METRICS_FILE, &serde_json::to_vec_pretty(metrics).expect("metrics serialize"))?;
    let importances: Vec<FeatureImportance> = ranker
        .importances()
        .into_iter()
        .map(|(feature, importance)| FeatureImportance { feature, importance })
        .collect();
    out.write_file(FEATURE_IMPORTANCES_FILE, &serde_json::to_vec_pretty(&importances).expect("importances serialize"))?;
    let bytes = ranker.save(&out.path(RANKER_FILE))?;
    out.add_file(RANKER_FILE, bytes);
    Ok(())
}

/// Scoring time summed over the pool's threads: the split between building features and walking
/// trees.
#[derive(Default)]
struct ThreadSeconds {
    features: f64,
    trees: f64,
}

/// Scores every candidate pair of `set`, batches of whole users in parallel; adds the thread
/// seconds spent building features and walking trees to `thread_seconds`.
fn predict_all(
    set: &CandidateSet,
    builder: &FeatureBuilder<'_>,
    ranker: &Ranker,
    bar: &ProgressBar,
    thread_seconds: &mut ThreadSeconds,
) -> Result<Vec<f64>, PipelineError> {
    let mut batches = Vec::new();
    let groups = set.users().len();
    let mut g = 0;
    while g < groups {
        let start = set.group(g).start;
        let mut end = set.group(g).end;
        g += 1;
        while g < groups && end - start < PREDICT_BATCH_PAIRS {
            end = set.group(g).end;
            g += 1;
        }
        batches.push(start..end);
    }
    let scored = batches
        .into_par_iter()
        .map(|range| {
            let rows: Vec<usize> = range.collect();
            let started = Instant::now();
            let features = builder.build(set, &rows);
            let built = started.elapsed().as_secs_f64();
            let scores = ranker.predict(&features)?;
            bar.inc(rows.len() as u64);
            Ok((scores, built, started.elapsed().as_secs_f64() - built))
        })
        .collect::<Result<Vec<_>, PipelineError>>()?;
    for (_, features_s, trees_s) in &scored {
        thread_seconds.features += features_s;
        thread_seconds.trees += trees_s;
    }
    Ok(scored.into_iter().flat_map(|s| s.0).collect())
}
