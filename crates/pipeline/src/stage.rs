//! How a run executes the stages of the offline pipeline, in order.

use std::time::Instant;

use musicrec_artifacts::{Artifacts, ArtifactsError, Manifest, Stage, StageWriter};
use musicrec_config::Config;
use musicrec_data::Location;
use musicrec_models::{Als, Bpr, Item2Item, TopItems};
use serde::Serialize;

use crate::error::PipelineError;
use crate::params::StageParams;
use crate::shards::Sharding;
use crate::tracking::RunTracking;
use crate::{candidates, eda, features, matrices, preprocess, ranking, report};

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
        require(&self.artifacts, upstream, stage.as_str())
    }

    /// Records in `out`'s manifest the run id of every stage `stage` reads (`Stage::inputs`),
    /// each required to have complete outputs: what `lineage` later checks the set against.
    pub fn record_inputs(&self, stage: Stage, out: &mut StageWriter) -> Result<(), PipelineError> {
        for &upstream in stage.inputs() {
            out.add_input(upstream.as_str(), self.upstream(stage, upstream)?.run_id);
        }
        Ok(())
    }

    /// The config sections a stage used, for its manifest.
    pub fn params<T: Serialize>(&self, sections: T) -> serde_json::Value {
        serde_json::to_value(sections).expect("config sections serialize")
    }
}

/// The manifest of `stage`'s outputs that `needed_by` (a stage or a command) reads, or an error
/// telling the user to run that stage first.
pub fn require(artifacts: &Artifacts, stage: Stage, needed_by: &'static str) -> Result<Manifest, PipelineError> {
    artifacts.manifest(stage).map_err(|e| match e {
        ArtifactsError::Incomplete { location, reason, .. } => {
            PipelineError::MissingUpstream { stage: needed_by, upstream: stage.as_str(), dir: location, reason }
        }
        other => other.into(),
    })
}

/// Runs `stages` in order, every stage's parameters checked first; stops at the first failure,
/// whose stage keeps its previous outputs. Each stage is on record (`runs/`) while it runs and
/// after it ends, failed ones with their error; `ctx.tracking.summary()` then says where the
/// records went.
pub fn run_stages(ctx: &RunContext, stages: &[Stage]) -> Result<Vec<Manifest>, PipelineError> {
    let params = StageParams::from_config(&ctx.config)?;
    ctx.sharding.check_stages(stages)?;
    let result = run_tracked(ctx, &params, stages);
    ctx.tracking.finish(result.is_ok());
    result
}

fn run_tracked(ctx: &RunContext, params: &StageParams, stages: &[Stage]) -> Result<Vec<Manifest>, PipelineError> {
    let mut manifests = Vec::with_capacity(stages.len());
    for &stage in stages {
        let started = Instant::now();
        tracing::info!(stage = stage.as_str(), run_id = %ctx.run_id, "stage started");
        let tracked = ctx.tracking.stage_started(stage)?;
        let result = run_stage(ctx, params, stage);
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

fn run_stage(ctx: &RunContext, params: &StageParams, stage: Stage) -> Result<Manifest, PipelineError> {
    let config = &ctx.config;
    Ok(match stage {
        Stage::Preprocess => preprocess::run(ctx)?,
        Stage::Eda => eda::run(ctx)?,
        Stage::Matrices => matrices::run(ctx)?,
        Stage::Features => features::run(ctx)?,
        Stage::Als => candidates::run_model_stage::<Als>(ctx, stage, &params.als, ctx.params(&config.als))?,
        Stage::Bpr => candidates::run_model_stage::<Bpr>(ctx, stage, &params.bpr, ctx.params(&config.bpr))?,
        Stage::Item2Item => {
            candidates::run_model_stage::<Item2Item>(ctx, stage, &params.item2item, ctx.params(&config.item2item))?
        }
        Stage::TopItems => {
            candidates::run_model_stage::<TopItems>(ctx, stage, &params.top_items, ctx.params(&config.top_items))?
        }
        Stage::Ranking => ranking::run(ctx, &params.ranker)?,
        Stage::Report => report::run(ctx)?,
    })
}
