//! Offline scoring past one machine: a candidate-model stage fitted once, its users (and, for
//! the similar tracks, its catalogue) scored by N independent processes, the parts merged into
//! the stage's usual outputs.
//!
//! Protocol, in the shared artifact store (local or S3, through `Artifacts`):
//! 1. `--shards N` fits the model and publishes `shards/<stage>/model/` (model.bin; its
//!    manifest records N, the audience and catalogue sizes, the matrices run it was fitted on
//!    and the fit's time, losses and facts). The fit happens here only.
//! 2. `--shard I/N` loads that model and publishes `shards/<stage>/part-000I-of-000N/`:
//!    candidates of users `Shard::range` of the audience, similar tracks of the same share of
//!    the catalogue; its manifest names the model's run id (input `model`) and both ranges.
//! 3. `--merge-shards` checks every part is complete, was scored with the current model and the
//!    same configuration, and covers exactly its range; then it evaluates the whole lists and
//!    publishes the stage as a single process would (manifest last), copying the model.
//!
//! Parts scored with an earlier fit are refused as stale, so lists of two models never mix.

use std::ops::Range;
use std::path::PathBuf;
use std::time::Instant;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use musicrec_artifacts::layout;
use musicrec_artifacts::layout::candidates::{CANDIDATES_FILE, MODEL_FILE, SIMILAR_FILE};
use musicrec_artifacts::{Manifest, Stage, StageWriter};
use musicrec_data::parquet_io::{self, for_each_batch};
use musicrec_models::topk::QUERY_BLOCK;
use musicrec_models::{Recommendations, Recommender};
use serde::{Deserialize, Serialize};

use crate::candidates::{self, FitRecord, ModelJob, Scored};
use crate::error::PipelineError;
use crate::evaluation::Evaluator;
use crate::stage::RunContext;

/// Parts of one stage are numbered with four digits, so their directories sort in order.
const MAX_SHARDS: u32 = 9999;

/// Which step of a candidate-model stage a run performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharding {
    /// Fit, score every user, publish: one process.
    #[default]
    Whole,
    /// Fit once and publish the model for `shards` scoring processes.
    Fit { shards: u32 },
    /// Score one shard with the published model.
    Score(Shard),
    /// Check the parts and publish the stage from them.
    Merge,
}

/// Shard `index` of `count` (numbered from 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

fn bad_flag(flag: &'static str, value: &str, reason: impl Into<String>) -> PipelineError {
    PipelineError::BadFlag { flag, value: value.to_string(), reason: reason.into() }
}

/// A shard count: a whole number in 1..=MAX_SHARDS.
fn parse_count(flag: &'static str, value: &str, text: &str) -> Result<u32, PipelineError> {
    let count: u32 = text
        .trim()
        .parse()
        .map_err(|_| bad_flag(flag, value, format!("the shard count `{text}` is not a whole number")))?;
    if !(1..=MAX_SHARDS).contains(&count) {
        return Err(bad_flag(flag, value, format!("the shard count must be between 1 and {MAX_SHARDS}")));
    }
    Ok(count)
}

impl Shard {
    /// Parses `I/N` as given to `--shard`.
    pub fn parse(value: &str) -> Result<Self, PipelineError> {
        const FLAG: &str = "--shard";
        let (index, count) = value
            .split_once('/')
            .ok_or_else(|| bad_flag(FLAG, value, "expected I/N (shard I of N, from 0), e.g. --shard 0/4"))?;
        let count = parse_count(FLAG, value, count)?;
        let index: u32 = index
            .trim()
            .parse()
            .map_err(|_| bad_flag(FLAG, value, format!("the shard index `{index}` is not a whole number")))?;
        if index >= count {
            return Err(bad_flag(FLAG, value, format!("shards of {count} are numbered 0 to {}", count - 1)));
        }
        Ok(Self { index, count })
    }

    /// The indices `0..n` this shard scores: a contiguous range, so the parts concatenated in
    /// shard order are the single run's lists in its order (a query's scores do not depend on
    /// the queries scored with it, so they are bit-identical too), in whole blocks of the
    /// scorer's `QUERY_BLOCK`, so no shard scores a part-filled block but its last. Scoring cost
    /// per user does not depend on its index (every user is scored against the whole
    /// catalogue), so equal ranges are balanced ranges.
    pub fn range(self, n: usize) -> Range<usize> {
        let blocks = n.div_ceil(QUERY_BLOCK);
        let block_of = |shard: u32| blocks * shard as usize / self.count as usize;
        (block_of(self.index) * QUERY_BLOCK).min(n)..(block_of(self.index + 1) * QUERY_BLOCK).min(n)
    }

    /// The artifact-store name of this shard's part of `stage`.
    pub fn unit_name(self, stage: Stage) -> String {
        layout::shards::part(stage, self.index, self.count)
    }
}

impl Sharding {
    /// The step asked for by `--shards N`, `--shard I/N` or `--merge-shards` (at most one).
    pub fn from_flags(shards: Option<&str>, shard: Option<&str>, merge: bool) -> Result<Self, PipelineError> {
        match (shards, shard, merge) {
            (None, None, false) => Ok(Self::Whole),
            (Some(count), None, false) => Ok(Self::Fit { shards: parse_count("--shards", count, count)? }),
            (None, Some(shard), false) => Ok(Self::Score(Shard::parse(shard)?)),
            (None, None, true) => Ok(Self::Merge),
            _ => {
                let given = [shards.map(|n| format!("--shards {n}")), shard.map(|s| format!("--shard {s}"))]
                    .into_iter()
                    .flatten()
                    .chain(merge.then(|| "--merge-shards".to_string()))
                    .collect::<Vec<_>>()
                    .join(" ");
                Err(PipelineError::BadFlag {
                    flag: "--shards, --shard, --merge-shards",
                    value: format!("(given: {given})"),
                    reason: "give one of them: fit with --shards N, then score with --shard I/N, then --merge-shards"
                        .into(),
                })
            }
        }
    }

    fn flag(self) -> Option<String> {
        match self {
            Self::Whole => None,
            Self::Fit { shards } => Some(format!("--shards {shards}")),
            Self::Score(shard) => Some(format!("--shard {shard}")),
            Self::Merge => Some("--merge-shards".into()),
        }
    }

    /// Refuses a sharded step for stages that do not score users with a fitted model.
    pub fn check_stages(self, stages: &[Stage]) -> Result<(), PipelineError> {
        let Some(flag) = self.flag() else { return Ok(()) };
        match stages.iter().find(|s| !Stage::SHARDABLE.contains(s)) {
            Some(stage) => Err(PipelineError::BadFlag {
                flag: "--stages",
                value: stage.as_str().to_string(),
                reason: format!(
                    "{flag} applies to the candidate-model stages only ({}); run `{}` without it",
                    Stage::SHARDABLE.map(Stage::as_str).join(", "),
                    stage.as_str()
                ),
            }),
            None => Ok(()),
        }
    }
}

/// What the fitted-model unit's manifest summary records.
#[derive(Debug, Serialize, Deserialize)]
struct Plan {
    shards: u32,
    users: usize,
    items: usize,
    fit: FitRecord,
}

/// What a part's manifest summary records.
#[derive(Debug, Serialize, Deserialize)]
struct PartRecord {
    shard: u32,
    shards: u32,
    users: Range<usize>,
    items: Range<usize>,
    candidate_pairs: usize,
    similar_pairs: usize,
    recommend_seconds: f64,
    similar_seconds: f64,
}

fn problem(stage: Stage, problem: impl Into<String>) -> PipelineError {
    PipelineError::Shards { stage: stage.as_str(), problem: problem.into() }
}

/// A part and the merged stage read the upstream outputs the model was fitted on.
fn inherit_inputs(out: &mut StageWriter, stage: Stage, fitted: &Manifest) {
    for upstream in stage.inputs() {
        out.add_input(upstream.as_str(), fitted.inputs.get(upstream.as_str()).cloned().unwrap_or_default());
    }
}

/// Step 1: fit once and publish the model for `shards` scoring processes.
pub(crate) fn fit<M: Recommender>(job: &ModelJob<'_, M>, shards: u32) -> Result<Manifest, PipelineError> {
    let ctx = job.ctx;
    let mut out = ctx.artifacts.begin(layout::shards::model(job.stage), &ctx.run_id)?;
    let evaluator = Evaluator::load(&ctx.artifacts, job.stage.as_str())?;
    ctx.record_inputs(job.stage, &mut out)?;
    let (model, fit) = job.fit(&evaluator)?;
    let bytes = model.save(&out.path(MODEL_FILE))?;
    out.add_file(MODEL_FILE, bytes);
    let plan = Plan { shards, users: job.audience_size(&evaluator), items: evaluator.user_item.cols, fit };
    let (fingerprint, params) = job.recorded_config();
    Ok(out.commit(fingerprint, params, &plan)?)
}

/// The published model of a sharded run, checked against this process's configuration and
/// the current matrices.
struct Published {
    manifest: Manifest,
    plan: Plan,
    evaluator: Evaluator,
}

fn load_fitted<M: Recommender>(job: &ModelJob<'_, M>, step: &str) -> Result<Published, PipelineError> {
    let (ctx, stage) = (job.ctx, job.stage);
    let name = layout::shards::model(stage);
    let dir = ctx.artifacts.dir(&name);
    let manifest = ctx.artifacts.manifest(&name).map_err(|e| {
        problem(
            stage,
            format!(
                "{step} needs the model fitted by `--stages {stage} --shards N` in {} ({}); run that first",
                dir.display(),
                e.reason(),
                stage = stage.as_str()
            ),
        )
    })?;
    let plan: Plan = serde_json::from_value(manifest.summary.clone()).map_err(|e| PipelineError::Artifact {
        path: dir.display().to_string(),
        reason: format!("the fitted model's manifest summary is not a shard plan: {e}"),
    })?;
    let (fingerprint, _) = job.recorded_config();
    if manifest.config_fingerprint != fingerprint {
        return Err(problem(
            stage,
            format!(
                "the configuration differs from the one the model in {} was fitted with (fingerprint {} vs {fingerprint}); \
                 every step of a sharded run needs the same configuration",
                dir.display(),
                manifest.config_fingerprint
            ),
        ));
    }
    let matrices = ctx.upstream(stage, Stage::Matrices)?;
    let fitted_on = manifest.inputs.get("matrices").map(String::as_str).unwrap_or("?");
    if matrices.run_id != fitted_on {
        return Err(problem(
            stage,
            format!(
                "the matrices were rebuilt (run {}) after the model in {} was fitted on run {fitted_on}; fit again with --shards",
                matrices.run_id,
                dir.display()
            ),
        ));
    }
    let evaluator = Evaluator::load(&ctx.artifacts, stage.as_str())?;
    let (users, items) = (job.audience_size(&evaluator), evaluator.user_item.cols);
    if (users, items) != (plan.users, plan.items) {
        return Err(problem(
            stage,
            format!(
                "the model in {} was fitted for {} users × {} tracks, the artifacts now hold {users} × {items}; fit again",
                dir.display(),
                plan.users,
                plan.items
            ),
        ));
    }
    Ok(Published { manifest, plan, evaluator })
}

fn index_range(range: &Range<usize>) -> Vec<u32> {
    (range.start as u32..range.end as u32).collect()
}

/// Step 2: score one shard's users and tracks with the published model.
pub(crate) fn score<M: Recommender>(job: &ModelJob<'_, M>, shard: Shard) -> Result<Manifest, PipelineError> {
    let (ctx, stage) = (job.ctx, job.stage);
    let mut out = ctx.artifacts.begin(shard.unit_name(stage), &ctx.run_id)?;
    let Published { manifest: fitted, plan, evaluator } = load_fitted(job, &format!("--shard {shard}"))?;
    if plan.shards != shard.count {
        return Err(problem(
            stage,
            format!(
                "--shard {shard}: the model in {} was fitted for {} shards; use --shard I/{} or fit again with --shards {}",
                ctx.artifacts.dir(layout::shards::model(stage)).display(),
                plan.shards,
                plan.shards,
                shard.count
            ),
        ));
    }
    let model = M::load(&ctx.artifacts.dir(layout::shards::model(stage)).join(MODEL_FILE))?;
    let (users, items) = (shard.range(plan.users), shard.range(plan.items));

    let started = Instant::now();
    let candidates =
        candidates::recommend_watched(&model, &index_range(&users), &evaluator.user_item, job.params.n_candidates)?;
    let recommend_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let similar = match model.similar() {
        Some(similar) => candidates::similar_watched(M::NAME, similar, &index_range(&items)),
        None => Recommendations::new(),
    };
    let similar_seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        model = M::NAME,
        %shard,
        users = ?users,
        seconds = format!("{recommend_seconds:.2}"),
        similar_seconds = format!("{similar_seconds:.2}"),
        "shard scored"
    );

    out.add_input("model", fitted.run_id.clone());
    inherit_inputs(&mut out, stage, &fitted);
    let item_ids = evaluator.encoders.items.ids();
    let table = candidates::ranked_table(&candidates, &evaluator.user_ids(), item_ids, "user_id", "track_id");
    out.add_parquet(parquet_io::write_batch(out.path(CANDIDATES_FILE), &table)?);
    if similar.pairs() > 0 {
        let table = candidates::ranked_table(&similar, item_ids, item_ids, "track_id", "similar_track_id");
        out.add_parquet(parquet_io::write_batch(out.path(SIMILAR_FILE), &table)?);
    }
    let record = PartRecord {
        shard: shard.index,
        shards: shard.count,
        users,
        items,
        candidate_pairs: candidates.pairs(),
        similar_pairs: similar.pairs(),
        recommend_seconds,
        similar_seconds,
    };
    let (fingerprint, params) = job.recorded_config();
    Ok(out.commit(fingerprint, params, &record)?)
}

/// Step 3: check every part, then publish the stage from them.
pub(crate) fn merge<M: Recommender>(job: &ModelJob<'_, M>) -> Result<Manifest, PipelineError> {
    let (ctx, stage) = (job.ctx, job.stage);
    let mut out = ctx.artifacts.begin(stage, &ctx.run_id)?;
    let Published { manifest: fitted, plan, evaluator } = load_fitted(job, "--merge-shards")?;
    let (fingerprint, _) = job.recorded_config();
    let mut problems = Vec::new();
    let mut parts = Vec::with_capacity(plan.shards as usize);
    for index in 0..plan.shards {
        let shard = Shard { index, count: plan.shards };
        let name = shard.unit_name(stage);
        match check_part(ctx, stage, shard, &plan, &fitted, &fingerprint) {
            Ok(part) => parts.push((shard, part)),
            Err(reason) => problems.push(format!("{name}: {reason}")),
        }
    }
    if !problems.is_empty() {
        return Err(problem(
            stage,
            format!(
                "cannot merge: {} of {} parts are not ready in {}: {}",
                problems.len(),
                plan.shards,
                ctx.artifacts.root().display(),
                problems.join("; ")
            ),
        ));
    }

    inherit_inputs(&mut out, stage, &fitted);
    out.add_input("model", fitted.run_id.clone());
    let mut scored = Scored {
        candidates: Recommendations::new(),
        similar: Recommendations::new(),
        recommend_seconds: 0.0,
        similar_seconds: None,
    };
    for (shard, (manifest, record)) in &parts {
        let dir = ctx.artifacts.dir(shard.unit_name(stage));
        out.add_input(shard.unit_name(stage), manifest.run_id.clone());
        let user_index = |id: i64| evaluator.user_index(id);
        let item_index = |id: i64| evaluator.encoders.items.encode(id);
        let candidates = (dir.join(CANDIDATES_FILE), "user_id", "track_id");
        append_lists(&mut scored.candidates, Some(candidates), &record.users, user_index, item_index)?;
        let similar = (dir.join(SIMILAR_FILE), "track_id", "similar_track_id");
        let similar = (record.similar_pairs > 0).then_some(similar);
        append_lists(&mut scored.similar, similar, &record.items, item_index, item_index)?;
        scored.recommend_seconds += record.recommend_seconds;
    }
    tracing::info!(model = M::NAME, parts = parts.len(), pairs = scored.candidates.pairs(), "shards merged");
    let model_file = ctx.artifacts.dir(layout::shards::model(stage)).join(MODEL_FILE);
    let write_model = |out: &mut StageWriter| {
        let to = out.path(MODEL_FILE);
        let bytes = std::fs::copy(&model_file, &to).map_err(|e| musicrec_data::DataError::io(&to, e))?;
        out.add_file(MODEL_FILE, bytes);
        Ok(())
    };
    let shards = serde_json::json!({
        "count": plan.shards,
        "model_run_id": fitted.run_id,
        "parts": parts.iter().map(|(shard, (manifest, record))| serde_json::json!({
            "shard": shard.index,
            "run_id": manifest.run_id,
            "users": record.users,
            "recommend_seconds": record.recommend_seconds,
            "similar_seconds": record.similar_seconds,
        })).collect::<Vec<_>>(),
    });
    candidates::publish(job, &evaluator, out, &scored, &plan.fit, write_model, Some(shards))
}

/// A part that is complete, scored with the current model and configuration, and covers
/// exactly its ranges; otherwise why not.
fn check_part(
    ctx: &RunContext,
    stage: Stage,
    shard: Shard,
    plan: &Plan,
    fitted: &Manifest,
    fingerprint: &str,
) -> Result<(Manifest, PartRecord), String> {
    let manifest = ctx
        .artifacts
        .manifest(shard.unit_name(stage))
        .map_err(|e| format!("missing or incomplete ({}); score it with --shard {shard}", e.reason()))?;
    let scored_with = manifest.inputs.get("model").map(String::as_str).unwrap_or("none");
    if scored_with != fitted.run_id {
        return Err(format!(
            "stale: scored with model run {scored_with}, the fitted model is run {}; score it again with --shard {shard}",
            fitted.run_id
        ));
    }
    if manifest.config_fingerprint != fingerprint {
        return Err(format!("scored with another configuration (fingerprint {})", manifest.config_fingerprint));
    }
    let record: PartRecord = serde_json::from_value(manifest.summary.clone())
        .map_err(|e| format!("its manifest summary is not a part record: {e}"))?;
    let (users, items) = (shard.range(plan.users), shard.range(plan.items));
    if (record.shard, record.shards, &record.users, &record.items) != (shard.index, shard.count, &users, &items) {
        return Err(format!(
            "covers shard {}/{} users {:?} tracks {:?}, expected shard {shard} users {users:?} tracks {items:?}",
            record.shard, record.shards, record.users, record.items
        ));
    }
    let rows = |file: &str| manifest.outputs.iter().find(|o| o.file == file).and_then(|o| o.rows).unwrap_or(0);
    if rows(CANDIDATES_FILE) != record.candidate_pairs as u64 || rows(SIMILAR_FILE) != record.similar_pairs as u64 {
        return Err(format!(
            "its files hold {} candidate and {} similar rows, its record says {} and {}",
            rows(CANDIDATES_FILE),
            rows(SIMILAR_FILE),
            record.candidate_pairs,
            record.similar_pairs
        ));
    }
    Ok((manifest, record))
}

/// Appends the lists of the queries of `range`, in order, read from a part's ranked-list file
/// `(path, query column, item column)` (`None`: the part has none, every list is empty).
/// Queries without rows get empty lists, as the model gave them; a row of a query outside the
/// range or out of order, or naming an unknown item, is a damaged part.
fn append_lists(
    recs: &mut Recommendations,
    file: Option<(PathBuf, &str, &str)>,
    range: &Range<usize>,
    query_index: impl Fn(i64) -> Option<u32>,
    item_index: impl Fn(i64) -> Option<u32>,
) -> Result<(), PipelineError> {
    let mut next = range.start as u32;
    let mut current: Option<u32> = None;
    let (mut items, mut scores) = (Vec::new(), Vec::new());
    if let Some((path, query_column, item_column)) = &file {
        let corrupt = |reason: String| musicrec_data::DataError::corrupt(path, reason);
        for_each_batch(path, &[query_column, item_column, "score"], |batch| {
            let column = |i: usize| {
                batch.column(i).as_primitive_opt::<Int64Type>().ok_or_else(|| corrupt("ids are not int64".into()))
            };
            let (queries, ids) = (column(0)?, column(1)?);
            let batch_scores = batch
                .column(2)
                .as_primitive_opt::<Float32Type>()
                .ok_or_else(|| corrupt("scores are not float32".into()))?;
            for row in 0..batch.num_rows() {
                let id = queries.value(row);
                let query = query_index(id)
                    .filter(|&q| range.contains(&(q as usize)) && current.is_none_or(|c| q >= c))
                    .ok_or_else(|| {
                        corrupt(format!("{query_column} {id} is outside the part's range {range:?} or out of order"))
                    })?;
                if current != Some(query) {
                    if let Some(done) = current {
                        recs.push(done, &items, &scores);
                        items.clear();
                        scores.clear();
                        next = done + 1;
                    }
                    (next..query).for_each(|empty| recs.push(empty, &[], &[]));
                    current = Some(query);
                }
                let item = ids.value(row);
                items.push(
                    item_index(item).ok_or_else(|| corrupt(format!("{item_column} {item} is not in the catalogue")))?,
                );
                scores.push(batch_scores.value(row));
            }
            Ok(())
        })?;
    }
    if let Some(done) = current {
        recs.push(done, &items, &scores);
        next = done + 1;
    }
    (next..range.end as u32).for_each(|empty| recs.push(empty, &[], &[]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_index_once_in_order_in_whole_query_blocks() {
        for n in [0, 1, 63, 64, 65, 130, 1000, 9_644] {
            for count in 1..=12 {
                let ranges: Vec<Range<usize>> = (0..count).map(|index| Shard { index, count }.range(n)).collect();
                assert_eq!(ranges[0].start, 0, "n={n} count={count}");
                assert_eq!(ranges.last().unwrap().end, n, "n={n} count={count}");
                assert!(ranges.windows(2).all(|w| w[0].end == w[1].start), "contiguous: {ranges:?}");
                assert!(ranges.iter().all(|r| r.start % QUERY_BLOCK == 0), "block-aligned: {ranges:?}");
                let blocks: Vec<usize> = ranges.iter().map(|r| r.len().div_ceil(QUERY_BLOCK)).collect();
                let (min, max) = (blocks.iter().min().unwrap(), blocks.iter().max().unwrap());
                assert!(max - min <= 1, "balanced to a block: n={n} count={count} {blocks:?}");
            }
        }
    }

    #[test]
    fn shard_flags_parse_or_say_what_is_wrong() {
        assert_eq!(Shard::parse("3/8").unwrap(), Shard { index: 3, count: 8 });
        assert_eq!(Shard::parse("0/1").unwrap(), Shard { index: 0, count: 1 });
        for (value, expected) in [
            ("3/2", "numbered 0 to 1"),
            ("2/2", "numbered 0 to 1"),
            ("0/0", "between 1 and 9999"),
            ("a/b", "`b` is not a whole number"),
            ("a/2", "`a` is not a whole number"),
            ("-1/2", "`-1` is not a whole number"),
            ("3", "expected I/N"),
            ("0/10000", "between 1 and 9999"),
        ] {
            let err = Shard::parse(value).unwrap_err();
            assert!(err.is_user_error());
            let text = err.to_string();
            assert!(text.starts_with(&format!("--shard {value}: ")) && text.contains(expected), "{value}: {text}");
        }
        let err = Sharding::from_flags(Some("0"), None, false).unwrap_err().to_string();
        assert!(err.starts_with("--shards 0: "), "{err}");
        assert_eq!(Sharding::from_flags(Some("4"), None, false).unwrap(), Sharding::Fit { shards: 4 });
        assert_eq!(Sharding::from_flags(None, None, true).unwrap(), Sharding::Merge);
        assert_eq!(Sharding::from_flags(None, None, false).unwrap(), Sharding::Whole);
        assert!(Sharding::from_flags(Some("4"), Some("0/4"), false).is_err());
        assert!(Sharding::from_flags(None, Some("0/4"), true).is_err());
    }

    #[test]
    fn only_model_stages_take_a_sharded_step() {
        let score = Sharding::Score(Shard { index: 1, count: 2 });
        assert!(score.check_stages(&[Stage::Als, Stage::Bpr, Stage::Item2Item, Stage::TopItems]).is_ok());
        let err = score.check_stages(&[Stage::Matrices, Stage::Als]).unwrap_err().to_string();
        assert!(err.contains("--shard 1/2") && err.contains("`matrices`") && err.contains("als, bpr"), "{err}");
        let err = Sharding::Merge.check_stages(&[Stage::Als, Stage::Ranking]).unwrap_err().to_string();
        assert!(err.contains("--merge-shards") && err.contains("`ranking`"), "{err}");
        assert!(Sharding::Whole.check_stages(&Stage::ALL).is_ok());
    }

    #[test]
    fn a_part_is_published_as_its_own_unit_and_a_killed_scorers_staging_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let artifacts = musicrec_artifacts::Artifacts::new(tmp.path());
        let name = Shard { index: 1, count: 2 }.unit_name(Stage::Als);
        assert_eq!(name, "shards/als/part-0001-of-0002");
        // What a scorer killed mid-part leaves (no process has this pid).
        let abandoned = tmp.path().join(".staging").join(format!("{}-{}", name.replace('/', "."), u32::MAX));
        std::fs::create_dir_all(&abandoned).unwrap();
        let mut out = artifacts.begin(&name, "run-1").unwrap();
        assert!(!abandoned.exists(), "abandoned staging of the same unit is removed");
        out.write_file(CANDIDATES_FILE, b"rows").unwrap();
        out.commit("f".into(), serde_json::json!({}), &serde_json::json!({})).unwrap();
        let manifest = artifacts.manifest(&name).unwrap();
        assert_eq!((manifest.stage.as_str(), manifest.outputs.len()), (name.as_str(), 1));
        assert!(!tmp.path().join(".staging").exists(), "staging cleaned up");
        assert!(artifacts.manifest(Stage::Als).is_err(), "a part is not the stage");
    }

    #[test]
    fn a_parts_lists_read_back_with_their_empty_lists() {
        let mut recs = Recommendations::new();
        recs.push(64, &[], &[]);
        recs.push(65, &[3, 1], &[0.5, 0.25]);
        recs.push(66, &[], &[]);
        recs.push(67, &[2], &[0.125]);
        recs.push(68, &[], &[]);
        let ids: Vec<i64> = (0..100).map(|i| 1000 + i).collect();
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("part.parquet");
        parquet_io::write_batch(&path, &candidates::ranked_table(&recs, &ids, &ids, "user_id", "track_id")).unwrap();
        let index = |id: i64| u32::try_from(id - 1000).ok();
        let mut read = Recommendations::new();
        append_lists(&mut read, Some((path.clone(), "user_id", "track_id")), &(64..69), index, index).unwrap();
        assert_eq!(read, recs);

        let mut empty = Recommendations::new();
        append_lists(&mut empty, None, &(0..3), index, index).unwrap();
        assert_eq!((empty.len(), empty.pairs()), (3, 0));

        // A row outside the part's range is a damaged part.
        let err =
            append_lists(&mut Recommendations::new(), Some((path, "user_id", "track_id")), &(0..66), index, index)
                .unwrap_err()
                .to_string();
        assert!(err.contains("user_id 1067 is outside the part's range 0..66"), "{err}");
    }
}
