use musicrec_artifacts::{ArtifactsError, Untrusted};
use musicrec_config::ConfigError;
use musicrec_data::DataError;
use musicrec_synth::SynthError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Config(#[from] ConfigError),

    #[error(transparent)]
    Data(#[from] DataError),

    #[error(transparent)]
    Artifacts(#[from] ArtifactsError),

    #[error(transparent)]
    Model(#[from] musicrec_models::ModelError),

    #[error(transparent)]
    Ranking(#[from] musicrec_ranking::RankingError),

    #[error("evaluation: {0}")]
    Eval(#[from] musicrec_eval::EvalError),

    #[error("plotting: {0}")]
    Plot(#[from] musicrec_plot::PlotError),

    #[error("generating the embedded data set: {0}")]
    Synth(#[from] SynthError),

    #[error("run records: {0}")]
    Tracking(#[from] musicrec_tracking::TrackingError),

    #[error(
        "stage `{stage}` needs the outputs of stage `{upstream}`, which are missing or incomplete \
         in {dir} ({reason}); run it first, e.g. --stages {upstream},{stage}"
    )]
    MissingUpstream { stage: &'static str, upstream: &'static str, dir: String, reason: Untrusted },

    #[error(
        "the {window} window has no events: the data spans {first_day}..{last_day}, the split is \
         train < {train_end} <= target < {target_end} <= test; check preprocess.train_end and preprocess.target_end"
    )]
    EmptyWindow { window: &'static str, first_day: String, last_day: String, train_end: String, target_end: String },

    #[error(
        "stage `report` found no model outputs in {dir} (looked for {expected}); run a model stage first, \
         e.g. --stages top_items,report"
    )]
    NothingToReport { dir: String, expected: String },

    #[error("{flag} {value}: {reason}")]
    BadFlag { flag: &'static str, value: String, reason: String },

    #[error("stage `{stage}`, sharded: {problem}")]
    Shards { stage: &'static str, problem: String },

    #[error("{path}: {reason}")]
    Artifact { path: String, reason: String },
}

impl PipelineError {
    /// True when the error describes the user's input (data, config, flags, missing earlier
    /// stages) rather than the machine or the program; the CLI exits with code 2 for those.
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Config(_)
            | Self::MissingUpstream { .. }
            | Self::EmptyWindow { .. }
            | Self::NothingToReport { .. }
            | Self::BadFlag { .. }
            | Self::Shards { .. } => true,
            Self::Data(e) => e.is_user_error(),
            Self::Artifacts(e) => e.is_user_error(),
            Self::Model(e) => e.is_user_error(),
            Self::Ranking(e) => e.is_user_error(),
            Self::Tracking(e) => e.is_user_error(),
            Self::Synth(_) | Self::Eval(_) | Self::Plot(_) | Self::Artifact { .. } => false,
        }
    }
}
