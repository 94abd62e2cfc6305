//! The stages of the offline pipeline, their order and how a run executes them.

use std::time::Instant;

use musicrec_config::{Config, Distance};
use musicrec_data::Location;
use musicrec_models::{Als, AlsParams, Bpr, BprParams, Item2Item, Item2ItemParams, Metric, TopItems, TopItemsParams};
use serde::Serialize;

use crate::artifacts::{Artifacts, Manifest};
use crate::candidates::Audience;
use crate::error::PipelineError;
use crate::shards::Sharding;
use crate::tracking::RunTracking;
use crate::{candidates, eda, features, matrices, preprocess, ranking, report};

/// A stage of the offline pipeline, in execution order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Preprocess,
    Eda,
    Matrices,
    Features,
    Als,
    Bpr,
    Item2Item,
    TopItems,
    Ranking,
    Report,
}

impl Stage {
    pub const ALL: [Stage; 10] = [
        Stage::Preprocess,
        Stage::Eda,
        Stage::Matrices,
        Stage::Features,
        Stage::Als,
        Stage::Bpr,
        Stage::Item2Item,
        Stage::TopItems,
        Stage::Ranking,
        Stage::Report,
    ];

    /// The candidate models whose candidates the ranker merges (popularity, `TopItems`, joins
    /// them separately: it proposes the same tracks to everyone).
    pub const CANDIDATE_MODELS: [Stage; 3] = [Stage::Als, Stage::Bpr, Stage::Item2Item];

    /// The stages that fit a model and score every user with it, so their scoring can be
    /// split over processes (`shards`).
    pub const SHARDABLE: [Stage; 4] = [Stage::Als, Stage::Bpr, Stage::Item2Item, Stage::TopItems];

    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Preprocess => "preprocess",
            Stage::Eda => "eda",
            Stage::Matrices => "matrices",
            Stage::Features => "features",
            Stage::Als => "als",
            Stage::Bpr => "bpr",
            Stage::Item2Item => "item2item",
            Stage::TopItems => "top_items",
            Stage::Ranking => "ranking",
            Stage::Report => "report",
        }
    }

    /// Whether the stage recommends and judges itself in `metrics.json`: a row of the report.
    pub fn is_model(self) -> bool {
        match self {
            Stage::Als | Stage::Bpr | Stage::Item2Item | Stage::TopItems | Stage::Ranking => true,
            Stage::Preprocess | Stage::Eda | Stage::Matrices | Stage::Features | Stage::Report => false,
        }
    }

    pub fn parse(name: &str) -> Result<Self, PipelineError> {
        Self::ALL.into_iter().find(|s| s.as_str() == name.trim()).ok_or_else(|| PipelineError::UnknownStage {
            name: name.trim().to_string(),
            valid: Self::ALL.map(Stage::as_str).join(", "),
        })
    }

    /// Parses a comma-separated list into stages in execution order, without repeats.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, PipelineError> {
        let mut stages =
            list.split(',').filter(|s| !s.trim().is_empty()).map(Self::parse).collect::<Result<Vec<_>, _>>()?;
        if stages.is_empty() {
            return Err(PipelineError::UnknownStage {
                name: list.to_string(),
                valid: Self::ALL.map(Stage::as_str).join(", "),
            });
        }
        stages.sort();
        stages.dedup();
        Ok(stages)
    }
}

/// Everything a stage needs: the checked configuration, where the data and artifacts are.
pub struct RunContext {
    pub config: Config,
    pub data: Location,
    pub artifacts: Artifacts,
    /// Identifies one pipeline run; every stage's manifest carries it.
    pub run_id: String,
    /// Which step of a sharded run the model stages perform (`Whole`: all of it).
    pub sharding: Sharding,
    /// The run record of every stage (see `tracking`).
    pub tracking: RunTracking,
}

impl RunContext {
    /// `git_commit` names the code that runs (the binary's build captures it), for the run
    /// records' tags.
    pub fn new(config: Config, data: Location, artifacts: Artifacts, git_commit: &str) -> Self {
        let run_id = format!("{}-{}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"), std::process::id());
        let tracking = RunTracking::new(&config, &data, &artifacts, &run_id, git_commit);
        Self { config, data, artifacts, run_id, sharding: Sharding::Whole, tracking }
    }

    /// The manifest of an upstream stage's outputs, or an error telling the user to run it.
    pub fn upstream(&self, stage: Stage, upstream: Stage) -> Result<Manifest, PipelineError> {
        self.artifacts.require(upstream, stage.as_str())
    }

    /// The config sections a stage used, for its manifest.
    pub fn params<T: Serialize>(&self, sections: T) -> serde_json::Value {
        serde_json::to_value(sections).expect("config sections serialize")
    }
}

/// A stage's summary for its manifest. The manifest holds JSON so that any stage's summary can
/// be read without knowing its type (run records, `runs` listings).
pub fn summary_value<T: Serialize>(summary: &T) -> serde_json::Value {
    serde_json::to_value(summary).expect("stage summaries serialize")
}

/// Runs `stages` in order; stops at the first failure, whose stage keeps its previous outputs.
/// Each stage is on record (`runs/`) while it runs and after it ends, failed ones with their
/// error; `ctx.tracking.summary()` then says where the records went.
pub fn run_stages(ctx: &RunContext, stages: &[Stage]) -> Result<Vec<Manifest>, PipelineError> {
    ctx.sharding.check_stages(stages)?;
    let result = run_tracked(ctx, stages);
    ctx.tracking.finish(result.is_ok());
    result
}

fn run_tracked(ctx: &RunContext, stages: &[Stage]) -> Result<Vec<Manifest>, PipelineError> {
    let mut manifests = Vec::with_capacity(stages.len());
    for &stage in stages {
        let started = Instant::now();
        tracing::info!(stage = stage.as_str(), run_id = %ctx.run_id, "stage started");
        let tracked = ctx.tracking.stage_started(stage)?;
        let result = run_stage(ctx, stage);
        ctx.tracking.stage_ended(&ctx.artifacts, stage, tracked, &result)?;
        let manifest = result?;
        tracing::info!(
            stage = stage.as_str(),
            seconds = format!("{:.2}", started.elapsed().as_secs_f64()),
            peak_rss_mb = manifest.peak_rss_bytes.map(|b| b / (1 << 20)),
            "stage finished"
        );
        manifests.push(manifest);
    }
    Ok(manifests)
}

fn run_stage(ctx: &RunContext, stage: Stage) -> Result<Manifest, PipelineError> {
    Ok(match stage {
        Stage::Preprocess => preprocess::run(ctx)?,
        Stage::Eda => eda::run(ctx)?,
        Stage::Matrices => matrices::run(ctx)?,
        Stage::Features => features::run(ctx)?,
        Stage::Als => {
            let c = &ctx.config.als;
            let params = AlsParams {
                factors: c.factors,
                iterations: c.iterations,
                regularization: c.regularization,
                alpha: c.alpha,
                min_users_per_item: c.min_users_per_item,
                seed: ctx.config.seed,
                ..AlsParams::default()
            };
            candidates::run_model_stage_with(
                ctx,
                stage,
                candidates::fit_reporting_loss::<Als>(params, c.report_loss),
                c.n_candidates,
                Audience::OldUsers,
                ctx.params(c),
            )?
        }
        Stage::Bpr => {
            let c = &ctx.config.bpr;
            let params = BprParams {
                factors: c.factors,
                iterations: c.iterations,
                learning_rate: c.learning_rate,
                regularization: c.regularization,
                min_users_per_item: c.min_users_per_item,
                seed: ctx.config.seed,
                ..BprParams::default()
            };
            candidates::run_model_stage_with(
                ctx,
                stage,
                candidates::fit_reporting_loss::<Bpr>(params, c.report_loss),
                c.n_candidates,
                Audience::OldUsers,
                ctx.params(c),
            )?
        }
        Stage::Item2Item => {
            let c = &ctx.config.item2item;
            let params = Item2ItemParams {
                n_components: c.n_components,
                n_neighbors: c.n_neighbors,
                metric: match c.metric {
                    Distance::Manhattan => Metric::Manhattan,
                    Distance::Euclidean => Metric::Euclidean,
                    Distance::Cosine => Metric::Cosine,
                },
                min_users_per_item: c.min_users_per_item,
                seed: ctx.config.seed,
            };
            candidates::run_model_stage::<Item2Item>(
                ctx,
                stage,
                params,
                c.n_candidates,
                Audience::OldUsers,
                ctx.params(c),
            )?
        }
        Stage::TopItems => {
            let c = &ctx.config.top_items;
            let params = TopItemsParams { top_n: c.top_n };
            // Every popular track the user has not heard is a candidate.
            candidates::run_model_stage::<TopItems>(ctx, stage, params, c.top_n, Audience::AllUsers, ctx.params(c))?
        }
        Stage::Ranking => ranking::run(ctx)?,
        Stage::Report => report::run(ctx)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_lists_parse_in_execution_order() {
        assert_eq!(
            Stage::parse_list("features, preprocess,features").unwrap(),
            vec![Stage::Preprocess, Stage::Features]
        );
        let err = Stage::parse_list("preprocess,als2").unwrap_err().to_string();
        assert!(
            err.contains("als2")
                && err.contains("preprocess, eda, matrices, features, als, bpr, item2item, top_items, ranking, report"),
            "{err}"
        );
        assert!(Stage::parse_list(" , ").is_err());
    }
}
