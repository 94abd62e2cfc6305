//! `musicrec import FORMAT SOURCE --out DIR|s3://...`: outside listening data into our layout
//! (docs/data.md#import). The flags are checked against the format before any work.

use std::path::PathBuf;

use anyhow::Context;
use musicrec_data::Location;
use musicrec_data::store::Bucket;
use musicrec_import::{ColumnMap, ImportError, Source, TimeUnit, YambdaEvents, YambdaOptions};

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// MovieLens: u.data, u.item, u.genre (100K) or ratings.csv, movies.csv.
    Movielens,
    /// Last.fm 1K: userid-timestamp-artid-artname-traid-traname.tsv.
    #[value(name = "lastfm-1k")]
    LastFm1k,
    /// Yambda flat: listens.parquet / likes.parquet, album_item_mapping.parquet,
    /// artist_item_mapping.parquet.
    Yambda,
    /// Any CSV or parquet file of events, with --user, --item and --time.
    Csv,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventsArg {
    Listens,
    Likes,
    Both,
}

#[derive(clap::Args)]
pub struct ImportArgs {
    #[arg(value_enum)]
    format: Format,
    /// The source: a directory (movielens, yambda, lastfm-1k) or a file (csv, lastfm-1k).
    source: PathBuf,
    /// Output directory (created if missing) or s3://bucket/prefix (written into the prefix's
    /// local mirror, then uploaded; import.json last).
    #[arg(long)]
    out: String,
    /// movielens: a rating at or above this is a listen (default: every rating).
    #[arg(long)]
    min_rating: Option<f64>,
    /// yambda: a listen counts when played_ratio_pct is at least this (default 50).
    #[arg(long)]
    min_played_ratio: Option<f64>,
    /// yambda: which events are listens (default listens).
    #[arg(long, value_enum)]
    events: Option<EventsArg>,
    /// yambda: the date of timestamp 0 (default 2022-01-01); the data set's timestamps count
    /// seconds from an undisclosed start.
    #[arg(long)]
    start_date: Option<String>,
    /// csv: the user column.
    #[arg(long)]
    user: Option<String>,
    /// csv: the item column.
    #[arg(long)]
    item: Option<String>,
    /// csv: the time column.
    #[arg(long)]
    time: Option<String>,
    /// csv: how times are written: s, ms, us (since 1970-01-01), date (YYYY-MM-DD) or
    /// rfc3339 (default s; date and timestamp parquet columns need none).
    #[arg(long)]
    time_unit: Option<String>,
    /// csv: an item table (CSV or parquet) with the item column and any of name, artist,
    /// album, genres (`|`-separated).
    #[arg(long)]
    items: Option<PathBuf>,
}

fn bad(option: &'static str, reason: impl Into<String>) -> ImportError {
    ImportError::BadOption { option, reason: reason.into() }
}

impl ImportArgs {
    /// The source with its options; a flag of another format is an error naming it.
    fn source(&self) -> Result<Source, ImportError> {
        let given: [(&'static str, bool, Format); 10] = [
            ("--min-rating", self.min_rating.is_some(), Format::Movielens),
            ("--min-played-ratio", self.min_played_ratio.is_some(), Format::Yambda),
            ("--events", self.events.is_some(), Format::Yambda),
            ("--start-date", self.start_date.is_some(), Format::Yambda),
            ("--user", self.user.is_some(), Format::Csv),
            ("--item", self.item.is_some(), Format::Csv),
            ("--time", self.time.is_some(), Format::Csv),
            ("--time-unit", self.time_unit.is_some(), Format::Csv),
            ("--items", self.items.is_some(), Format::Csv),
            ("--out", false, self.format),
        ];
        for (flag, set, format) in given {
            if set && format != self.format {
                let name =
                    clap::ValueEnum::to_possible_value(&format).map(|v| v.get_name().to_string()).unwrap_or_default();
                return Err(bad(flag, format!("applies to the `{name}` format only")));
            }
        }
        Ok(match self.format {
            Format::Movielens => Source::MovieLens { min_rating: self.min_rating.unwrap_or(f64::NEG_INFINITY) },
            Format::LastFm1k => Source::LastFm1k,
            Format::Yambda => {
                let start_date = match &self.start_date {
                    Some(text) => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
                        .map_err(|e| bad("--start-date", format!("`{text}` is not a date (YYYY-MM-DD): {e}")))?,
                    None => chrono::NaiveDate::from_ymd_opt(2022, 1, 1).expect("valid date"),
                };
                let min_played_ratio = self.min_played_ratio.unwrap_or(50.0);
                if !min_played_ratio.is_finite() {
                    return Err(bad("--min-played-ratio", "must be a number"));
                }
                let events = match self.events.unwrap_or(EventsArg::Listens) {
                    EventsArg::Listens => YambdaEvents::Listens,
                    EventsArg::Likes => YambdaEvents::Likes,
                    EventsArg::Both => YambdaEvents::Both,
                };
                Source::Yambda(YambdaOptions { events, min_played_ratio, start_date })
            }
            Format::Csv => {
                let column = |flag: &'static str, value: &Option<String>| {
                    value
                        .clone()
                        .filter(|v| !v.trim().is_empty())
                        .ok_or_else(|| bad(flag, "is required with the csv format"))
                };
                let unit = match &self.time_unit {
                    Some(text) => text.parse::<TimeUnit>().map_err(|e| bad("--time-unit", e))?,
                    None => TimeUnit::Seconds,
                };
                Source::Csv(ColumnMap {
                    user: column("--user", &self.user)?,
                    item: column("--item", &self.item)?,
                    time: column("--time", &self.time)?,
                    unit,
                    items: self.items.clone(),
                })
            }
        })
    }
}

pub fn run(args: ImportArgs) -> anyhow::Result<()> {
    let source = args.source()?;
    let out = Location::parse(&args.out).context("--out")?;
    let bucket = match &out {
        Location::S3(s3) => {
            let bucket = Bucket::from_env(&s3.bucket)?;
            bucket.probe(&s3.key).context("--out")?;
            Some((bucket, s3))
        }
        Location::Local(_) => None,
    };
    let summary = musicrec_import::import(&source, &args.source, out.as_path())?;
    if let Some((bucket, s3)) = bucket {
        crate::upload_data_set(&bucket, s3, &[musicrec_import::SUGGESTED_CONFIG], musicrec_import::IMPORT_MANIFEST)?;
    }
    let split = &summary.suggested_split;
    println!(
        "imported {} events of {} users over {} tracks ({} rows read, {} names) to {out}",
        summary.events, summary.users, summary.tracks, summary.rows_read, summary.names
    );
    println!("the data spans {}..{}", summary.first_day, summary.last_day);
    println!(
        "suggested split: train < {} <= target < {} <= test ({}); written to {}",
        split.train_end,
        split.target_end,
        split.rule,
        out.join(musicrec_import::SUGGESTED_CONFIG)
    );
    Ok(())
}
