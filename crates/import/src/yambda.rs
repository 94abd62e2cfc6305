//! Yambda (Yandex's public music data set), flat layout: `listens.parquet` (`uid`, `item_id`,
//! `timestamp` in seconds from the data set's start, `is_organic`, `played_ratio_pct`,
//! `track_length_seconds`) and `likes.parquet` (`uid`, `item_id`, `timestamp`, `is_organic`),
//! with `album_item_mapping.parquet` and `artist_item_mapping.parquet` (`item_id` and
//! `album_id` / `artist_id`) beside them or, as the data set ships, two levels up.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use musicrec_data::schema::EntityType;

use crate::error::ImportError;
use crate::table::{Kind, ParquetTable};
use crate::time::epoch_day;
use crate::writer::LayoutWriter;
use crate::{Layout, detect};

/// Which events count as listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YambdaEvents {
    Listens,
    Likes,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct YambdaOptions {
    pub events: YambdaEvents,
    /// A listen counts when `played_ratio_pct` is at least this (the data set's own
    /// "listened" is over 50 %).
    pub min_played_ratio: f64,
    /// The date of timestamp 0: the data set's timestamps count seconds from an undisclosed start.
    pub start_date: NaiveDate,
}

const LISTENS: &str = "listens.parquet";
const LIKES: &str = "likes.parquet";
const ALBUMS: &str = "album_item_mapping.parquet";
const ARTISTS: &str = "artist_item_mapping.parquet";

pub fn import(source: &Path, opts: &YambdaOptions, out: &mut LayoutWriter) -> Result<u64, ImportError> {
    let needed: &'static [&'static str] = match opts.events {
        YambdaEvents::Listens => &[LISTENS],
        YambdaEvents::Likes => &[LIKES],
        YambdaEvents::Both => &[LISTENS, LIKES],
    };
    detect(source, "Yambda", &[Layout { name: "Yambda flat", files: needed }])?;
    let start = epoch_day(opts.start_date);
    let mut rows = 0;
    for &file in needed {
        let listens = file == LISTENS;
        rows += events(&source.join(file), listens, opts.min_played_ratio, start, out)?;
    }
    for (file, kind, column) in [(ALBUMS, EntityType::Album, "album_id"), (ARTISTS, EntityType::Artist, "artist_id")] {
        match find_mapping(source, file) {
            Some(path) => mapping(&path, kind, column, out)?,
            None => tracing::warn!(
                file,
                source = %source.display(),
                "no {file} beside the events or two levels up: tracks get no {}s",
                kind.as_str()
            ),
        }
    }
    Ok(rows)
}

/// The mapping file in `source` or up to two levels above it (`flat/50m/` → the data set's root).
fn find_mapping(source: &Path, file: &str) -> Option<PathBuf> {
    source.ancestors().take(3).map(|dir| dir.join(file)).find(|p| p.is_file())
}

fn events(path: &Path, listens: bool, min_ratio: f64, start: i32, out: &mut LayoutWriter) -> Result<u64, ImportError> {
    let mut columns = vec![("uid", Kind::Integer), ("item_id", Kind::Integer), ("timestamp", Kind::Integer)];
    if listens {
        columns.push(("played_ratio_pct", Kind::Number));
    }
    let mut table = ParquetTable::open(path, &columns)?;
    let mut rows = 0;
    while let Some((arrays, first)) = table.next_batch()? {
        rows += arrays[0].len() as u64;
        for (c, what) in
            ["user ids", "item ids", "timestamps", "played ratios"].into_iter().enumerate().take(arrays.len())
        {
            table.no_nulls(&arrays[c], c, first, what)?;
        }
        let (users, items, seconds) =
            (table.i64s(&arrays[0], 0, first)?, table.i64s(&arrays[1], 1, first)?, table.i64s(&arrays[2], 2, first)?);
        let ratios = listens.then(|| table.f64s(&arrays[3]));
        for i in 0..users.len() {
            if ratios.as_ref().is_some_and(|r| r[i] < min_ratio) {
                continue;
            }
            if seconds[i] < 0 {
                return Err(table.bad_row(
                    2,
                    first + i as u64,
                    format!("{} is negative; timestamps count seconds from the data set's start", seconds[i]),
                ));
            }
            let day = i64::from(start) + seconds[i] / 86_400;
            let day = i32::try_from(day).map_err(|_| {
                table.bad_row(2, first + i as u64, format!("{} seconds is too far from --start-date", seconds[i]))
            })?;
            out.event(users[i], items[i], day)?;
        }
    }
    Ok(rows)
}

/// Memberships of the tracks that have events (the mappings cover the whole 9.4M-track
/// catalogue; keeping the listened part bounds memory by the data, not the catalogue).
fn mapping(path: &Path, kind: EntityType, column: &str, out: &mut LayoutWriter) -> Result<(), ImportError> {
    let mut table = ParquetTable::open(path, &[("item_id", Kind::Integer), (column, Kind::Integer)])?;
    while let Some((arrays, first)) = table.next_batch()? {
        table.no_nulls(&arrays[0], 0, first, "item ids")?;
        table.no_nulls(&arrays[1], 1, first, "entity ids")?;
        let (items, entities) = (table.i64s(&arrays[0], 0, first)?, table.i64s(&arrays[1], 1, first)?);
        for (&item, &entity) in items.iter().zip(&entities) {
            if out.has_events_of(item) {
                out.link(item, kind, entity);
            }
        }
    }
    Ok(())
}
