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
use musicrec_artifacts::{Manifest, Stage};
use musicrec_data::parquet_io::{self, for_each_batch, read_batches};
use musicrec_data::{CsrMatrix, DataError, IdEncoder};
use musicrec_models::{Als, Recommendations, Recommender};
use musicrec_ranking::features::recent_items;
use musicrec_ranking::{
    CandidateSet, EntityColumns, FeatureBuilder, FeatureInputs, FeatureMatrix, ItemEmbedding, ItemGroups, Ranker,
    RankerParams, SourceCandidates,
};
use rayon::prelude::*;
use serde_json::json;

use crate::candidates::{evaluate_windows, ranked_table};
use crate::error::PipelineError;
use crate::evaluation::{EvalWindow, Evaluator};
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

/// Number of a window's (old user, track) pairs: the denominator of candidate recall.
fn relevant_pairs(evaluator: &Evaluator, window: EvalWindow, n_old: usize) -> usize {
    let relevance = evaluator.relevance(window);
    (0..n_old as u32).map(|u| relevance.relevant(u).len()).sum()
}

/// The old users `0..n_old` in consecutive ranges of `per_chunk`.
fn user_chunks(n_old: usize, per_chunk: usize) -> Vec<Range<u32>> {
    (0..n_old).step_by(per_chunk).map(|start| start as u32..start.saturating_add(per_chunk).min(n_old) as u32).collect()
}

pub fn run(ctx: &RunContext, params: &RankerParams) -> Result<Manifest, PipelineError> {
    let stage = Stage::Ranking;
    let cfg = &ctx.config.ranking;
    let evaluator = Evaluator::load(&ctx.artifacts, stage.as_str())?;
    let mut out = ctx.artifacts.begin(stage, &ctx.run_id)?;
    for upstream in [Stage::Matrices, Stage::Features, Stage::TopItems, Stage::Als] {
        out.add_input(upstream.as_str(), ctx.upstream(stage, upstream)?.run_id);
    }
    let n_old = evaluator.user_item.rows;

    let mut sources = Vec::new();
    for model in Stage::CANDIDATE_MODELS {
        out.add_input(model.as_str(), ctx.upstream(stage, model)?.run_id);
        let path = ctx.artifacts.dir(model).join(CANDIDATES_FILE);
        sources.push(read_candidates(&path, model.as_str(), &evaluator, u32::MAX)?);
    }
    if cfg.popular_candidates > 0 {
        let path = ctx.artifacts.dir(Stage::TopItems).join(CANDIDATES_FILE);
        let max_rank = u32::try_from(cfg.popular_candidates).unwrap_or(u32::MAX);
        sources.push(read_candidates(&path, Stage::TopItems.as_str(), &evaluator, max_rank)?);
    }
    let encoders = &evaluator.encoders;
    let features_dir = ctx.artifacts.dir(Stage::Features);
    let users = read_entity_columns(&features_dir.join(USER_FEATURES_FILE), "user_id", &encoders.users)?;
    let items = read_entity_columns(&features_dir.join(ITEM_FEATURES_FILE), "track_id", &encoders.items)?;
    let matrices_dir = ctx.artifacts.dir(Stage::Matrices);
    let item_features = CsrMatrix::load(&matrices_dir.join(ITEM_FEATURE_FILE))?;
    let group_of_column = feature_groups(&matrices_dir.join(FEATURES_FILE))?;
    if group_of_column.len() != item_features.cols {
        return Err(artifact_error(&matrices_dir.join(FEATURES_FILE), "does not describe every item-feature column"));
    }
    let train_file = ctx.artifacts.dir(Stage::Preprocess).join(Window::Train.file());
    let (train, _) = read_encoded(&train_file, &encoders.users, &encoders.items)?;
    let recent = recent_items(n_old, &train.user, &train.item, &train.day, cfg.recent_tracks);
    drop(train);
    let als = Als::load(&ctx.artifacts.dir(Stage::Als).join(MODEL_FILE))?;
    let embedding = ItemEmbedding::from_factors(als.factors());
    drop(als);
    let source_names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    let builder = FeatureBuilder::new(
        &source_names,
        FeatureInputs {
            users: &users,
            items: &items,
            history: &evaluator.user_item,
            groups: ItemGroups {
                names: FEATURE_KINDS.iter().map(|k| k.as_str().to_string()).collect(),
                matrix: &item_features,
                group_of_column,
            },
            recent: &recent,
            embedding: &embedding,
        },
    );

    // Users a chunk at a time, twice (training rows, then scoring): memory holds the sources'
    // lists and one chunk's merged pairs and features, never all pairs at once (at the real
    // data's size, 1.3M users × ~160 pairs). Users are independent in every step, so the
    // result does not depend on the chunk size.
    let chunks = user_chunks(n_old, cfg.users_per_chunk);
    let merge_chunk = |users: &Range<u32>| {
        CandidateSet::merge(&sources.iter().map(|s| s.users_in(users.clone())).collect::<Vec<_>>())
    };
    let target = evaluator.relevance(EvalWindow::Target);
    let test = evaluator.relevance(EvalWindow::Test);
    let (mut pairs, mut candidate_users, mut found) = (0, 0, [0usize; 2]);
    let (mut train_parts, mut train_labels, mut train_users) = (Vec::new(), Vec::new(), 0);
    for users in &chunks {
        let set = merge_chunk(users);
        pairs += set.len();
        candidate_users += set.users().len();
        let labels = set.labels(|u| target.relevant(u));
        found[0] += labels.iter().filter(|&&l| l).count();
        found[1] += set.labels(|u| test.relevant(u)).iter().filter(|&&l| l).count();
        let rows = set.sample(&labels, cfg.negatives_per_user, ctx.config.seed);
        train_labels.extend(rows.iter().map(|&p| labels[p]));
        train_users += rows.iter().map(|&p| set.group_of(p)).collect::<std::collections::BTreeSet<_>>().len();
        train_parts.push(builder.build(&set, &rows));
    }
    // Both in `EvalWindow::ALL`'s order.
    let recall = std::array::from_fn::<f64, 2, _>(|w| {
        found[w] as f64 / relevant_pairs(&evaluator, EvalWindow::ALL[w], n_old).max(1) as f64
    });
    tracing::info!(
        pairs,
        users = candidate_users,
        chunks = chunks.len(),
        target_recall = recall[0],
        test_recall = recall[1],
        "candidates merged"
    );
    let train_features = FeatureMatrix::concat(builder.names().to_vec(), &train_parts);
    drop(train_parts);
    let started = Instant::now();
    let ranker = Ranker::fit(params, &train_features, &train_labels)?;
    let train_s = started.elapsed().as_secs_f64();
    tracing::info!(rows = train_labels.len(), users = train_users, seconds = format!("{train_s:.2}"), "ranker trained");
    drop(train_features);

    let started = Instant::now();
    let bar = progress::bar(pairs as u64, "rank pairs");
    let (mut recs, mut thread_seconds) = (Recommendations::new(), [0.0; 2]);
    for users in &chunks {
        let set = merge_chunk(users);
        let scores = predict_all(&set, &builder, &ranker, &bar, &mut thread_seconds)?;
        recs.append(&musicrec_ranking::top_n(&set, &scores, &evaluator.user_item, cfg.top_n));
    }
    bar.finish_and_clear();
    let predict_s = started.elapsed().as_secs_f64();
    // Summed over the pool's threads: the split between building features and walking trees.
    tracing::info!(
        pairs,
        feature_thread_seconds = format!("{:.2}", thread_seconds[0]),
        tree_thread_seconds = format!("{:.2}", thread_seconds[1]),
        "candidates scored"
    );
    let metrics = evaluate_windows(&evaluator, &recs, ctx.config.k)?;
    let old_test_users = (0..n_old as u32).filter(|&u| !test.relevant(u).is_empty()).count();
    let served_old_test_users =
        recs.iter().filter(|(u, items, _)| !items.is_empty() && !test.relevant(*u).is_empty()).count();

    let table = ranked_table(&recs, &evaluator.user_ids(), encoders.items.ids(), "user_id", "track_id");
    out.add_parquet(parquet_io::write_batch(out.path(RECOMMENDATIONS_FILE), &table)?);
    out.write_file(METRICS_FILE, &serde_json::to_vec_pretty(&metrics).expect("metrics serialize"))?;
    let importances: Vec<_> =
        ranker.importances().into_iter().map(|(f, x)| json!({"feature": f, "importance": x})).collect();
    out.write_file(FEATURE_IMPORTANCES_FILE, &serde_json::to_vec_pretty(&importances).expect("importances serialize"))?;
    let bytes = ranker.save(&out.path(RANKER_FILE))?;
    out.add_file(RANKER_FILE, bytes);

    let summary = json!({
        "candidate_recall": {"target": recall[0], "test": recall[1]},
        "train_seconds": train_s,
        "predict_seconds": predict_s,
        "users_per_second": candidate_users as f64 / predict_s.max(1e-9),
        "sources": source_names,
        "candidate_pairs": pairs,
        "candidate_users": candidate_users,
        "user_chunks": chunks.len(),
        "training_rows": train_labels.len(),
        "training_positives": train_labels.iter().filter(|&&l| l).count(),
        "training_users": train_users,
        "features": ranker.features(),
        "users_with_recommendations": recs.iter().filter(|(_, items, _)| !items.is_empty()).count(),
        "test_old_users_coverage": served_old_test_users as f64 / old_test_users.max(1) as f64,
        "metrics": metrics,
    });
    let params_json = ctx.params(json!({"k": ctx.config.k, "seed": ctx.config.seed, "ranking": cfg}));
    Ok(out.commit(musicrec_config::fingerprint_of(&params_json), params_json, summary)?)
}

/// Scores every candidate pair of `set`, batches of whole users in parallel; adds the thread
/// seconds spent building features and walking trees to `thread_seconds`.
fn predict_all(
    set: &CandidateSet,
    builder: &FeatureBuilder<'_>,
    ranker: &Ranker,
    bar: &ProgressBar,
    thread_seconds: &mut [f64; 2],
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
        thread_seconds[0] += features_s;
        thread_seconds[1] += trees_s;
    }
    Ok(scored.into_iter().flat_map(|s| s.0).collect())
}
