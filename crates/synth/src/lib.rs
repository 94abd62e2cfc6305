//! Deterministic synthetic listening data in the Yandex Music layout (docs/data.md#synthetic-data).
//!
//! `generate` writes `interactions.parquet`, `tracks.parquet` and `catalog_names.parquet`,
//! then, last, `generator.json`: a directory is a complete data set exactly when that manifest
//! exists. The same scale and seed give byte-identical files on any number of threads.
//!
//! The data has the structure a recommender should find in real logs: a genre → artist →
//! album → track catalogue with power-law popularity and releases through the year; listeners
//! with a few genres, a spot on a style axis and favourite artists that come and go, who
//! replay favourites, play albums through and grow more active towards the end of the year.

mod calendar;
mod catalog;
mod catalog_files;
mod listeners;
mod names;
mod random;
mod scale;
mod stats;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow_schema::ArrowError;
use indicatif::{ProgressBar, ProgressStyle};
use musicrec_data::DataError;
use musicrec_data::atomic::write_atomic;
use musicrec_data::parquet_io::ParquetSink;
use musicrec_data::schema::{CATALOG_NAMES_FILE, INTERACTIONS_FILE, TRACKS_FILE, interactions_schema};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tracing::info;

pub use scale::Scale;
pub use stats::DataStats;

use catalog::Catalog;
use listeners::{Chunk, ListeningModel, TrackCounters};
use scale::ScaleParams;
use stats::StatsAccumulator;

/// The manifest written last into a generated data directory.
pub const GENERATOR_MANIFEST: &str = "generator.json";

/// Bumped whenever the same scale and seed would produce different data, so caches of
/// generated data sets (keyed on the manifest) are rebuilt.
pub const GENERATOR_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenerateOptions {
    pub scale: Scale,
    pub seed: u64,
}

/// What was generated; also the content of `generator.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateSummary {
    pub generator_version: u32,
    pub scale: Scale,
    pub seed: u64,
    pub users: u64,
    pub tracks: u64,
    /// Including compilations.
    pub albums: u64,
    pub artists: u64,
    pub genres: u64,
    pub events: u64,
    pub stats: DataStats,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Data(#[from] DataError),

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },

    #[error("{path}: invalid generator manifest: {source}")]
    Manifest { path: PathBuf, source: serde_json::Error },

    #[error("building a record batch: {0}")]
    Arrow(#[from] ArrowError),

    #[error("unknown scale `{given}` (valid: tiny, small, medium, yandex)")]
    UnknownScale { given: String },
}

impl SynthError {
    fn io(path: &Path, source: io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}

/// Generates a data set into `out_dir` (created if missing), replacing any data set there.
///
/// A stale manifest is removed before anything is overwritten, so an interrupted run leaves a
/// directory that is recognisably incomplete.
pub fn generate(opts: &GenerateOptions, out_dir: &Path) -> Result<GenerateSummary, SynthError> {
    generate_with(opts.scale.params(), opts, out_dir)
}

fn generate_with(params: ScaleParams, opts: &GenerateOptions, out_dir: &Path) -> Result<GenerateSummary, SynthError> {
    let started = Instant::now();
    info!(
        scale = %opts.scale,
        seed = opts.seed,
        users = params.users,
        tracks = params.tracks,
        out = %out_dir.display(),
        "generating synthetic data"
    );
    std::fs::create_dir_all(out_dir).map_err(|e| SynthError::io(out_dir, e))?;
    let manifest_path = out_dir.join(GENERATOR_MANIFEST);
    match std::fs::remove_file(&manifest_path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(SynthError::io(&manifest_path, e)),
        _ => {}
    }

    let catalog = Catalog::build(&params, opts.seed);
    catalog_files::write_tracks(&catalog, &out_dir.join(TRACKS_FILE))?;
    catalog_files::write_catalog_names(&catalog, opts.seed, &out_dir.join(CATALOG_NAMES_FILE))?;

    let counters = TrackCounters::new(catalog.track_count());
    let model = ListeningModel::new(&catalog, params, opts.seed, &counters);
    let accumulator = write_interactions(&model, u64::from(params.users), &out_dir.join(INTERACTIONS_FILE))?;

    let summary = GenerateSummary {
        generator_version: GENERATOR_VERSION,
        scale: opts.scale,
        seed: opts.seed,
        users: u64::from(params.users),
        tracks: catalog.track_count() as u64,
        albums: catalog.albums.len() as u64,
        artists: catalog.artists.len() as u64,
        genres: u64::from(catalog.genre_count),
        events: accumulator.events(),
        stats: accumulator.finish(&counters),
    };
    let json = serde_json::to_vec_pretty(&summary)
        .map_err(|source| SynthError::Manifest { path: manifest_path.clone(), source })?;
    write_atomic(&manifest_path, &json)?;
    info!(
        users = summary.users,
        tracks = summary.tracks,
        events = summary.events,
        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
        "generated synthetic data"
    );
    Ok(summary)
}

/// The manifest of a complete generated data set in `dir`, or `None` when there is none
/// (never generated, or generation did not finish).
pub fn read_manifest(dir: &Path) -> Result<Option<GenerateSummary>, SynthError> {
    let path = dir.join(GENERATOR_MANIFEST);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SynthError::io(&path, e)),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|source| SynthError::Manifest { path, source })
}

/// Streams the users' listening out chunk by chunk: a window of chunks is generated in
/// parallel while the previous window is written, in chunk order, so memory stays bounded by
/// two windows whatever the data size.
fn write_interactions(model: &ListeningModel<'_>, users: u64, path: &Path) -> Result<StatsAccumulator, SynthError> {
    let mut sink = ParquetSink::create(path, interactions_schema())?;
    let mut accumulator = StatsAccumulator::default();
    let progress = ProgressBar::new(users);
    if let Ok(style) = ProgressStyle::with_template("generating listeners {bar:40} {pos}/{len} users ({eta} left)") {
        progress.set_style(style);
    }
    // Several chunks per thread, so that a thread given a few heavy listeners does not leave
    // the others idle at the end of the window.
    let window = 4 * rayon::current_num_threads() as u32;
    let chunks = model.chunk_count();

    let mut write = |chunks: Vec<Chunk>| -> Result<(), SynthError> {
        for chunk in chunks {
            sink.write(&chunk.interactions)?;
            accumulator.add(&chunk.tally);
            progress.inc(chunk.tally.events_per_user.len() as u64);
        }
        Ok(())
    };
    let generate_window = |start: u32| -> Result<Vec<Chunk>, ArrowError> {
        (start..(start + window).min(chunks)).into_par_iter().map(|chunk| model.generate_chunk(chunk)).collect()
    };

    let mut pending = Vec::new();
    for start in (0..chunks).step_by(window as usize) {
        let (written, generated) = rayon::join(|| write(std::mem::take(&mut pending)), || generate_window(start));
        written?;
        pending = generated?;
    }
    write(pending)?;
    progress.finish_and_clear();
    sink.finish()?;
    Ok(accumulator)
}
