//! Any CSV or parquet file of events, given which columns hold the user, the item and the
//! time, with an optional item table (`name`, `artist`, `album`, `genres` columns) for the
//! catalogue. Integer ids are kept; text ids get stable ids (`ids`).

use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit as ArrowUnit};
use musicrec_data::schema::EntityType;

use crate::error::ImportError;
use crate::ids::StableIds;
use crate::table::{Kind, ParquetTable, strings};
use crate::text::{CSV, Delimited};
use crate::time::{TimeUnit, day_of_ticks};
use crate::writer::LayoutWriter;

#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMap {
    pub user: String,
    pub item: String,
    pub time: String,
    /// How a numeric or text time is written; date and timestamp columns carry their own.
    pub unit: TimeUnit,
    /// The item table: the item column and any of `name`, `artist`, `album`, `genres`
    /// (`|`-separated).
    pub items: Option<PathBuf>,
}

/// The catalogue columns an item table may have.
pub const ITEM_COLUMNS: [&str; 4] = ["name", "artist", "album", "genres"];

fn is_parquet(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Ids of one kind: integers as written, text through stable ids.
struct Keys(StableIds);

impl Keys {
    fn id(&mut self, text: &str) -> Result<i64, ImportError> {
        match text.parse::<i64>() {
            Ok(id) => Ok(id),
            Err(_) => self.0.id(&[text]),
        }
    }
}

pub fn import(source: &Path, map: &ColumnMap, out: &mut LayoutWriter) -> Result<u64, ImportError> {
    if !source.is_file() {
        return Err(ImportError::Layout {
            source_dir: source.display().to_string(),
            format: "csv",
            expected: "a CSV file or a .parquet file of events".into(),
            found: if source.is_dir() { "a directory".into() } else { "nothing".into() },
        });
    }
    let (mut users, mut items) = (Keys(StableIds::new("user")), Keys(StableIds::new("track")));
    let rows = if is_parquet(source) {
        parquet_events(source, map, &mut users, &mut items, out)?
    } else {
        csv_events(source, map, &mut users, &mut items, out)?
    };
    if let Some(table) = &map.items {
        item_table(table, &map.item, &mut items, out)?;
    }
    Ok(rows)
}

fn csv_events(
    path: &Path,
    map: &ColumnMap,
    users: &mut Keys,
    items: &mut Keys,
    out: &mut LayoutWriter,
) -> Result<u64, ImportError> {
    let mut file = Delimited::open(path, CSV)?;
    let (u, i, t) = (file.column(&map.user)?, file.column(&map.item)?, file.column(&map.time)?);
    let need = u.max(i).max(t) + 1;
    let mut rows = 0;
    while let Some(record) = file.next()? {
        rows += 1;
        record.expect_fields(need, "as many as the header")?;
        let (user, item, time) = (record.text(u), record.text(i), record.text(t));
        for (column, value) in [(&map.user, &user), (&map.item, &item)] {
            if value.is_empty() {
                return Err(record.bad(column, "", "an id (the field is empty)"));
            }
        }
        let day = map.unit.day_of_text(&time).ok_or_else(|| record.bad(&map.time, &time, map.unit.expected()))?;
        out.event(users.id(&user)?, items.id(&item)?, day)?;
    }
    Ok(rows)
}

fn parquet_events(
    path: &Path,
    map: &ColumnMap,
    users: &mut Keys,
    items: &mut Keys,
    out: &mut LayoutWriter,
) -> Result<u64, ImportError> {
    let mut table =
        ParquetTable::open(path, &[(&map.user, Kind::Key), (&map.item, Kind::Key), (&map.time, Kind::Time)])?;
    let mut rows = 0;
    while let Some((arrays, first)) = table.next_batch()? {
        rows += arrays[0].len() as u64;
        for (c, what) in ["user ids", "item ids", "times"].into_iter().enumerate() {
            table.no_nulls(&arrays[c], c, first, what)?;
        }
        let user_ids = key_ids(&table, &arrays[0], 0, first, users)?;
        let item_ids = key_ids(&table, &arrays[1], 1, first, items)?;
        let days = time_days(&table, &arrays[2], first, map.unit)?;
        for r in 0..user_ids.len() {
            out.event(user_ids[r], item_ids[r], days[r])?;
        }
    }
    Ok(rows)
}

fn key_ids(
    table: &ParquetTable,
    array: &ArrayRef,
    c: usize,
    first: u64,
    keys: &mut Keys,
) -> Result<Vec<i64>, ImportError> {
    if array.data_type().is_integer() {
        return table.i64s(array, c, first);
    }
    let text = strings(array);
    (0..text.len()).map(|r| keys.id(text.value(r))).collect()
}

fn time_days(table: &ParquetTable, array: &ArrayRef, first: u64, unit: TimeUnit) -> Result<Vec<i32>, ImportError> {
    let per_day = match array.data_type() {
        DataType::Date32 => return Ok(array.as_primitive::<arrow_array::types::Date32Type>().values().to_vec()),
        DataType::Date64 => Some(86_400_000),
        DataType::Timestamp(ArrowUnit::Second, _) => Some(86_400),
        DataType::Timestamp(ArrowUnit::Millisecond, _) => Some(86_400_000),
        DataType::Timestamp(ArrowUnit::Microsecond, _) => Some(86_400_000_000),
        DataType::Timestamp(ArrowUnit::Nanosecond, _) => Some(86_400_000_000_000),
        dt if dt.is_integer() => Some(unit.per_day().ok_or_else(|| {
            table.bad_row(2, first, format!("an integer time needs --time-unit s, ms or us, not {}", unit_name(unit)))
        })?),
        _ => None,
    };
    let bad =
        |r: usize, value: String| table.bad_row(2, first + r as u64, format!("`{value}` is not {}", unit.expected()));
    match per_day {
        Some(per_day) => {
            let ticks = match array.data_type() {
                dt if dt.is_integer() => table.i64s(array, 2, first)?,
                _ => {
                    let cast = arrow_cast::cast(array, &DataType::Int64).expect("dates and timestamps cast to int64");
                    cast.as_primitive::<arrow_array::types::Int64Type>().values().to_vec()
                }
            };
            ticks
                .iter()
                .enumerate()
                .map(|(r, &t)| day_of_ticks(t, per_day).ok_or_else(|| bad(r, t.to_string())))
                .collect()
        }
        None => {
            let text = strings(array);
            (0..text.len())
                .map(|r| unit.day_of_text(text.value(r)).ok_or_else(|| bad(r, text.value(r).to_string())))
                .collect()
        }
    }
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Date => "date",
        TimeUnit::Rfc3339 => "rfc3339",
        _ => "a number",
    }
}

/// One item table row: the item's text id and its catalogue fields (empty when absent).
fn item_row(
    key: &str,
    fields: [&str; 4],
    items: &mut Keys,
    ids: &mut [StableIds; 3],
    out: &mut LayoutWriter,
) -> Result<(), ImportError> {
    let track = items.id(key)?;
    let [name, artist, album, genres] = fields;
    if !name.is_empty() {
        out.name(EntityType::Track, track, name);
    }
    let [artist_ids, album_ids, genre_ids] = ids;
    if !artist.is_empty() {
        let id = artist_ids.id(&[artist])?;
        out.link(track, EntityType::Artist, id);
        out.name(EntityType::Artist, id, artist);
    }
    if !album.is_empty() {
        let id = album_ids.id(&[artist, album])?;
        out.link(track, EntityType::Album, id);
        out.name(EntityType::Album, id, album);
    }
    for genre in genres.split('|').map(str::trim).filter(|g| !g.is_empty()) {
        let id = genre_ids.id(&[genre])?;
        out.link(track, EntityType::Genre, id);
        out.name(EntityType::Genre, id, genre);
    }
    Ok(())
}

fn item_table(path: &Path, item: &str, items: &mut Keys, out: &mut LayoutWriter) -> Result<(), ImportError> {
    let mut ids = [StableIds::new("artist"), StableIds::new("album"), StableIds::new("genre")];
    if is_parquet(path) {
        let schema_columns = parquet_columns(path)?;
        let wanted: Vec<(&str, Kind)> = std::iter::once((item, Kind::Key))
            .chain(ITEM_COLUMNS.iter().filter(|c| schema_columns.iter().any(|s| s == *c)).map(|&c| (c, Kind::Text)))
            .collect();
        let names: Vec<&str> = wanted.iter().map(|w| w.0).collect();
        let mut table = ParquetTable::open(path, &wanted)?;
        while let Some((arrays, first)) = table.next_batch()? {
            table.no_nulls(&arrays[0], 0, first, "item ids")?;
            let keys = strings(&arrays[0]);
            let texts: Vec<arrow_array::StringArray> = arrays[1..].iter().map(strings).collect();
            for r in 0..keys.len() {
                let field = |c: &str| {
                    names[1..]
                        .iter()
                        .position(|n| *n == c)
                        .map(|i| if texts[i].is_null(r) { "" } else { texts[i].value(r) })
                        .unwrap_or("")
                };
                item_row(keys.value(r), ITEM_COLUMNS.map(field), items, &mut ids, out)?;
            }
        }
    } else {
        let mut file = Delimited::open(path, CSV)?;
        let key = file.column(item)?;
        let columns = ITEM_COLUMNS.map(|c| file.column(c).ok());
        while let Some(record) = file.next()? {
            let id = record.text(key);
            if id.is_empty() {
                return Err(record.bad(item, "", "an item id (the field is empty)"));
            }
            let texts = columns.map(|c| c.map(|c| record.text(c).into_owned()).unwrap_or_default());
            item_row(&id, [&texts[0], &texts[1], &texts[2], &texts[3]], items, &mut ids, out)?;
        }
    }
    Ok(())
}

fn parquet_columns(path: &Path) -> Result<Vec<String>, ImportError> {
    let file = std::fs::File::open(path).map_err(|e| ImportError::io(path, e))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| musicrec_data::DataError::parquet(path, e))?;
    Ok(builder.schema().fields().iter().map(|f| f.name().clone()).collect())
}
