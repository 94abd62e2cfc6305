//! Bringing outside listening data into our layout (docs/data.md#import): MovieLens, Last.fm
//! 1K, Yambda, or any CSV or parquet file of events. Every importer streams its source into a
//! [`LayoutWriter`], which writes the three files of our layout (with the source's names in
//! `catalog_names.parquet`), a configuration with the split the data's time line suggests, and
//! `import.json` last; a failed import leaves nothing behind.

mod error;
mod generic;
mod ids;
mod lastfm;
mod movielens;
mod table;
mod text;
mod time;
mod writer;
mod yambda;

use std::path::Path;

pub use error::ImportError;
pub use generic::{ColumnMap, ITEM_COLUMNS};
pub use ids::stable_id;
pub use lastfm::LOG_FILE as LASTFM_LOG_FILE;
pub use time::TimeUnit;
pub use writer::{IMPORT_MANIFEST, ImportSummary, SUGGESTED_CONFIG, SuggestedSplit};
pub use yambda::{YambdaEvents, YambdaOptions};

use writer::LayoutWriter;

/// A source format with its options.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A rating at or above `min_rating` is a listen.
    MovieLens {
        min_rating: f64,
    },
    LastFm1k,
    Yambda(YambdaOptions),
    Csv(ColumnMap),
}

impl Source {
    pub fn format(&self) -> &'static str {
        match self {
            Self::MovieLens { .. } => "movielens",
            Self::LastFm1k => "lastfm-1k",
            Self::Yambda(_) => "yambda",
            Self::Csv(_) => "csv",
        }
    }
}

/// Imports `source` (a file or directory) into the directory `out`, replacing a data set
/// there; on error nothing in `out` has changed.
pub fn import(source: &Source, from: &Path, out: &Path) -> Result<ImportSummary, ImportError> {
    if !from.exists() {
        return Err(ImportError::Layout {
            source_dir: from.display().to_string(),
            format: source.format(),
            expected: "an existing file or directory".into(),
            found: "nothing".into(),
        });
    }
    let mut writer = LayoutWriter::create(out)?;
    let rows = match source {
        Source::MovieLens { min_rating } => movielens::import(from, *min_rating, &mut writer)?,
        Source::LastFm1k => lastfm::import(from, &mut writer)?,
        Source::Yambda(opts) => yambda::import(from, opts, &mut writer)?,
        Source::Csv(map) => generic::import(from, map, &mut writer)?,
    };
    let hint = match source {
        Source::MovieLens { min_rating } => {
            format!("{rows} rating(s) read, none at or above --min-rating {min_rating}")
        }
        Source::Yambda(opts) => {
            format!("{rows} event(s) read, no listen at or above --min-played-ratio {}", opts.min_played_ratio)
        }
        _ => format!("{rows} row(s) read"),
    };
    writer.finish(source.format(), from, rows, || hint)
}

/// The files one layout of a format consists of.
pub(crate) struct Layout {
    pub name: &'static str,
    pub files: &'static [&'static str],
}

/// Which of `layouts` the directory `source` holds (the first complete one), or an error
/// listing what each layout expects and what the directory holds.
pub(crate) fn detect(source: &Path, format: &'static str, layouts: &[Layout]) -> Result<usize, ImportError> {
    if let Some(i) = layouts.iter().position(|l| l.files.iter().all(|f| source.join(f).is_file())) {
        return Ok(i);
    }
    let expected =
        layouts.iter().map(|l| format!("{} ({})", l.files.join(", "), l.name)).collect::<Vec<_>>().join(" or ");
    let mut found: Vec<String> = std::fs::read_dir(source)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    found.sort();
    found.truncate(20);
    Err(ImportError::Layout {
        source_dir: source.display().to_string(),
        format,
        expected,
        found: if found.is_empty() { "no files".into() } else { found.join(", ") },
    })
}
