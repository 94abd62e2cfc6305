//! The offline pipeline: each stage reads the artifacts of earlier stages and publishes its
//! own atomically with a manifest (see `musicrec_artifacts`). `run_stages` executes any subset in
//! order; `embedded_data` provides the default synthetic data set.

pub mod candidates;
pub mod eda;
pub mod error;
pub mod evaluation;
pub mod events;
pub mod features;
mod markdown;
pub mod matrices;
pub mod params;
pub mod preprocess;
pub mod progress;
pub mod ranking;
pub mod report;
pub mod scorecard;
pub mod shards;
pub mod stage;
pub mod tracking;

use std::path::Path;

pub use error::PipelineError;
pub use params::StageParams;
pub use shards::{Shard, Sharding};
pub use stage::{RunContext, require, run_stages};

use musicrec_data::Location;
use musicrec_synth::{GENERATOR_VERSION, GenerateOptions, Scale};

/// The embedded default data set: generated once into `artifacts/data/<scale>-seed<seed>` and
/// reused while its generator manifest (written last) says it is complete and was made by this
/// generator version with this scale and seed.
pub fn embedded_data(artifacts: &Path, scale: Scale, seed: u64) -> Result<Location, PipelineError> {
    let dir = artifacts.join("data").join(format!("{}-seed{seed}", scale.as_str()));
    let cached = musicrec_synth::read_manifest(&dir)
        .ok()
        .flatten()
        .is_some_and(|m| m.generator_version == GENERATOR_VERSION && m.scale == scale && m.seed == seed);
    if cached {
        tracing::info!(dir = %dir.display(), "using the cached embedded data set");
    } else {
        tracing::info!(dir = %dir.display(), scale = scale.as_str(), seed, "generating the embedded data set");
        musicrec_synth::generate(&GenerateOptions { scale, seed }, &dir)?;
    }
    Ok(Location::local(dir))
}
