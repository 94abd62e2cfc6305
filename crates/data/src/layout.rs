//! Reading and validating the three input files of the Yandex Music layout (docs/data.md).
//!
//! Any integer width and any date/timestamp unit is accepted. Every violation is an error
//! naming the file, the column and how many rows are bad. Interactions are streamed batch by
//! batch (220M rows at real scale), with problems counted over the whole file before the
//! error is raised, so the count in the message is the real one.

use std::collections::BTreeMap;
use std::fs::File;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::{CastOptions, cast_with_options};
use arrow_schema::{DataType, TimeUnit};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::encoder::IdEncoder;
use crate::error::DataError;
use crate::location::Location;
use crate::schema::*;
use crate::timeline::{self, DateSpread, FarDates};

const BATCH_ROWS: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Date,
    IntegerList,
    Text,
}

impl Kind {
    fn expected(self) -> &'static str {
        match self {
            Kind::Integer => "an integer type",
            Kind::Date => "a date or timestamp type",
            Kind::IntegerList => "a list of integers",
            Kind::Text => "a string type",
        }
    }

    fn accepts(self, dt: &DataType) -> bool {
        match self {
            Kind::Integer => dt.is_integer(),
            Kind::Date => matches!(dt, DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)),
            Kind::IntegerList => match dt {
                DataType::List(f) | DataType::LargeList(f) => f.data_type().is_integer(),
                _ => false,
            },
            Kind::Text => match dt {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
                DataType::Dictionary(_, v) => matches!(**v, DataType::Utf8 | DataType::LargeUtf8),
                _ => false,
            },
        }
    }
}

/// Brings the data set's files to where the readers read them: an S3 data set into its local
/// mirror (each file downloaded unless the mirror already holds that version); a local
/// directory is read in place.
pub fn fetch(dir: &Location) -> Result<(), DataError> {
    for file in DATA_FILES {
        dir.join(file).fetch()?;
    }
    Ok(())
}

/// Opens `dir/file_name`, checks the required columns exist with acceptable types and that
/// the table has rows, and returns a reader over exactly those columns, in the given order.
fn open(
    dir: &Location,
    file_name: &str,
    columns: &[(&str, Kind)],
) -> Result<(String, ParquetRecordBatchReader), DataError> {
    let location = dir.join(file_name);
    if !location.as_path().is_file() {
        return Err(DataError::MissingFile {
            file: location.to_string(),
            expected: format!("a parquet file `{file_name}` in {dir} (see docs/data.md#layout)"),
        });
    }
    open_file(&location, columns)
}

/// Like `open`, for a file the user named directly.
fn open_file(location: &Location, columns: &[(&str, Kind)]) -> Result<(String, ParquetRecordBatchReader), DataError> {
    let name = location.to_string();
    let path = location.as_path();
    if !path.is_file() {
        return Err(DataError::MissingFile { file: name, expected: "a parquet file".into() });
    }
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| DataError::parquet(path, e))?;
    let schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(columns.len());
    for &(column, kind) in columns {
        let Some((index, field)) = schema.column_with_name(column) else {
            let present: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(DataError::MissingColumn { file: name, column: column.into(), present: present.join(", ") });
        };
        if !kind.accepts(field.data_type()) {
            return Err(DataError::WrongType {
                file: name,
                column: column.into(),
                found: field.data_type().to_string(),
                expected: kind.expected().into(),
            });
        }
        roots.push(index);
    }
    if builder.metadata().file_metadata().num_rows() == 0 {
        return Err(DataError::EmptyTable { file: name });
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader =
        builder.with_projection(mask).with_batch_size(BATCH_ROWS).build().map_err(|e| DataError::parquet(path, e))?;
    Ok((name, reader))
}

/// Problems found while reading a file, counted per column over the whole file.
#[derive(Default)]
struct Problems {
    nulls: BTreeMap<usize, usize>,
    bad: BTreeMap<usize, (usize, String)>,
}

impl Problems {
    fn null(&mut self, column: usize, rows: usize) {
        if rows > 0 {
            *self.nulls.entry(column).or_default() += rows;
        }
    }

    fn bad(&mut self, column: usize, rows: usize, problem: impl FnOnce() -> String) {
        if rows > 0 {
            self.bad.entry(column).or_insert_with(|| (0, problem())).0 += rows;
        }
    }

    /// The first problem in column order as an error, if there was any.
    fn into_result(self, file: &str, columns: &[(&str, Kind)], what: &[&'static str]) -> Result<(), DataError> {
        if let Some((&c, &rows)) = self.nulls.iter().next() {
            return Err(DataError::Nulls { file: file.into(), column: columns[c].0.into(), rows, what: what[c] });
        }
        if let Some((c, (rows, problem))) = self.bad.into_iter().next() {
            return Err(DataError::BadValues { file: file.into(), column: columns[c].0.into(), rows, problem });
        }
        Ok(())
    }
}

fn decoded(file: &str, batch: Result<RecordBatch, arrow_schema::ArrowError>) -> Result<RecordBatch, DataError> {
    batch.map_err(|e| DataError::Undecodable { file: file.into(), reason: e.to_string() })
}

/// Integer column as i64; `None` when it holds values that do not fit.
fn to_i64(array: &ArrayRef) -> Option<ArrayRef> {
    cast_with_options(array, &DataType::Int64, &CastOptions { safe: false, ..Default::default() }).ok()
}

/// Date or timestamp column as days since 1970-01-01 (UTC), flooring times of day, and how
/// many values fall outside the years 1..=9999 ([`timeline::FIRST_DAY`]..=[`timeline::LAST_DAY`]),
/// with the first of them as written. Those values read as day 0: the scan reports them as an
/// error and keeps no row.
fn to_days(array: &ArrayRef) -> (Vec<i32>, usize, Option<i64>) {
    let per_day: i64 = match array.data_type() {
        DataType::Date32 => 1,
        DataType::Date64 => 86_400_000,
        DataType::Timestamp(TimeUnit::Second, _) => 86_400,
        DataType::Timestamp(TimeUnit::Millisecond, _) => 86_400_000,
        DataType::Timestamp(TimeUnit::Microsecond, _) => 86_400_000_000,
        DataType::Timestamp(TimeUnit::Nanosecond, _) => 86_400_000_000_000,
        other => unreachable!("type {other} was rejected when the file was opened"),
    };
    let (mut outside, mut example) = (0, None);
    let mut day = |value: i64| match i32::try_from(value.div_euclid(per_day)) {
        Ok(day) if (timeline::FIRST_DAY..=timeline::LAST_DAY).contains(&day) => day,
        _ => {
            outside += 1;
            example.get_or_insert(value);
            0
        }
    };
    let days = match array.data_type() {
        DataType::Date32 => {
            array.as_primitive::<arrow_array::types::Date32Type>().values().iter().map(|&v| day(i64::from(v))).collect()
        }
        _ => {
            let data = array.to_data();
            let values: &[i64] = data.buffers()[0].typed_data::<i64>();
            values[data.offset()..data.offset() + data.len()].iter().map(|&v| day(v)).collect()
        }
    };
    (days, outside, example)
}

/// Ids of catalogue entities attached to each track, as offsets into one value array.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IdLists {
    pub offsets: Vec<usize>,
    pub values: Vec<i64>,
}

impl IdLists {
    pub fn get(&self, row: usize) -> &[i64] {
        &self.values[self.offsets[row]..self.offsets[row + 1]]
    }

    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn permuted(&self, order: &[usize]) -> Self {
        let mut out =
            IdLists { offsets: Vec::with_capacity(order.len() + 1), values: Vec::with_capacity(self.values.len()) };
        out.offsets.push(0);
        for &row in order {
            out.values.extend_from_slice(self.get(row));
            out.offsets.push(out.values.len());
        }
        out
    }
}

/// The track catalogue, sorted by track id: a track's dense index is its position.
#[derive(Debug, Clone)]
pub struct Tracks {
    pub encoder: IdEncoder,
    pub albums: IdLists,
    pub artists: IdLists,
    pub genres: IdLists,
}

impl Tracks {
    pub fn len(&self) -> usize {
        self.encoder.len()
    }

    pub fn is_empty(&self) -> bool {
        self.encoder.is_empty()
    }
}

const TRACK_COLUMNS: [(&str, Kind); 4] =
    [(TRACK_ID, Kind::Integer), (ALBUMS, Kind::IntegerList), (ARTISTS, Kind::IntegerList), (GENRES, Kind::IntegerList)];

pub fn read_tracks(dir: &Location) -> Result<Tracks, DataError> {
    let (file, reader) = open(dir, TRACKS_FILE, &TRACK_COLUMNS)?;
    let mut problems = Problems::default();
    let mut ids = Vec::new();
    let mut lists: [IdLists; 3] = Default::default();
    for list in &mut lists {
        list.offsets.push(0);
    }
    for batch in reader {
        let batch = decoded(&file, batch)?;
        let id = batch.column(0);
        problems.null(0, id.null_count());
        match to_i64(id) {
            Some(a) => ids.extend(a.as_primitive::<Int64Type>().iter().map(|v| v.unwrap_or(i64::MIN))),
            None => problems.bad(0, batch.num_rows(), || "do not fit in a 64-bit signed integer".into()),
        }
        for (c, list) in lists.iter_mut().enumerate() {
            append_lists(batch.column(c + 1), c + 1, list, &mut problems);
        }
    }
    problems.into_result(&file, &TRACK_COLUMNS, &["track ids", "album ids", "artist ids", "genre ids"])?;
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_unstable_by_key(|&i| ids[i]);
    let sorted: Vec<i64> = order.iter().map(|&i| ids[i]).collect();
    let duplicates = sorted.windows(2).filter(|w| w[0] == w[1]).count();
    if duplicates > 0 {
        let example = sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0]).unwrap_or_default();
        return Err(DataError::BadValues {
            file,
            column: TRACK_ID.into(),
            rows: duplicates,
            problem: format!("repeat a track id already listed (e.g. {example}); each track must appear once"),
        });
    }
    let [albums, artists, genres] = lists;
    Ok(Tracks {
        encoder: IdEncoder::from_sorted_unique(sorted),
        albums: albums.permuted(&order),
        artists: artists.permuted(&order),
        genres: genres.permuted(&order),
    })
}

/// Appends one list column; a null list reads as empty, a null element is a null id.
fn append_lists(array: &ArrayRef, column: usize, out: &mut IdLists, problems: &mut Problems) {
    let (offsets, values): (Vec<usize>, ArrayRef) = match array.data_type() {
        DataType::List(_) => {
            let l = array.as_list::<i32>();
            (l.value_offsets().iter().map(|&o| o as usize).collect(), l.values().clone())
        }
        _ => {
            let l = array.as_list::<i64>();
            (l.value_offsets().iter().map(|&o| o as usize).collect(), l.values().clone())
        }
    };
    let Some(values) = to_i64(&values) else {
        problems.bad(column, array.len(), || "hold ids that do not fit in a 64-bit signed integer".into());
        return;
    };
    let values = values.as_primitive::<Int64Type>();
    let mut null_elements = 0;
    for row in 0..array.len() {
        if array.is_valid(row) {
            for i in offsets[row]..offsets[row + 1] {
                if values.is_valid(i) {
                    out.values.push(values.value(i));
                } else {
                    null_elements += 1;
                }
            }
        }
        out.offsets.push(out.values.len());
    }
    problems.null(column, null_elements);
}

/// One row per named catalogue entity.
#[derive(Debug, Clone, Default)]
pub struct CatalogNames {
    pub id: Vec<i64>,
    pub kind: Vec<EntityType>,
    pub name: Vec<String>,
    /// How many names were longer than [`MAX_NAME_CHARS`] and cut.
    pub truncated: usize,
}

const NAME_COLUMNS: [(&str, Kind); 3] = [(ID, Kind::Integer), (TYPE, Kind::Text), (NAME, Kind::Text)];

pub fn read_catalog_names(dir: &Location) -> Result<CatalogNames, DataError> {
    let (file, reader) = open(dir, CATALOG_NAMES_FILE, &NAME_COLUMNS)?;
    let mut problems = Problems::default();
    let mut out = CatalogNames::default();
    let mut bad_type_example = None;
    let mut long = LongNames::default();
    for batch in reader {
        let batch = decoded(&file, batch)?;
        let (id, kind, name) = (batch.column(0), batch.column(1), batch.column(2));
        problems.null(0, id.null_count());
        problems.null(1, kind.null_count());
        problems.null(2, name.null_count());
        let Some(id) = to_i64(id) else {
            problems.bad(0, batch.num_rows(), || "do not fit in a 64-bit signed integer".into());
            continue;
        };
        let kind =
            cast_with_options(kind, &DataType::Utf8, &CastOptions::default()).expect("string types cast to utf8");
        let name =
            cast_with_options(name, &DataType::Utf8, &CastOptions::default()).expect("string types cast to utf8");
        let (id, kind, name) = (id.as_primitive::<Int64Type>(), kind.as_string::<i32>(), name.as_string::<i32>());
        let mut bad_types = 0;
        for row in 0..batch.num_rows() {
            if kind.is_null(row) {
                continue;
            }
            match EntityType::parse(kind.value(row)) {
                Some(k) => {
                    out.id.push(id.value(row));
                    out.kind.push(k);
                    out.name.push(bounded_name(name.value(row), &mut long));
                }
                None => {
                    bad_types += 1;
                    bad_type_example.get_or_insert_with(|| kind.value(row).to_string());
                }
            }
        }
        problems.bad(1, bad_types, || {
            let example = bad_type_example.as_deref().unwrap_or_default();
            format!("have a type outside album, artist, genre, track (e.g. {example:?})")
        });
    }
    problems.into_result(&file, &NAME_COLUMNS, &["ids", "types", "names"])?;
    if long.rows > 0 {
        tracing::warn!(
            "{file}: column `{NAME}`: {} name(s) longer than {MAX_NAME_CHARS} characters (the longest {}) \
             were cut to {MAX_NAME_CHARS}; names are only shown, so the run goes on",
            long.rows,
            long.longest
        );
    }
    out.truncated = long.rows;
    Ok(out)
}

/// The longest catalogue name kept, in characters. Names are only shown (reports, the API), and
/// a real title is far shorter; a longer one is a broken row (a description or a blob in the
/// name column), which would otherwise cost every output that shows it its size.
pub const MAX_NAME_CHARS: usize = 1000;

/// Names cut to `MAX_NAME_CHARS`: how many, and the longest one's length in characters.
#[derive(Default)]
struct LongNames {
    rows: usize,
    longest: usize,
}

/// `name`, cut to `MAX_NAME_CHARS` characters (with an ellipsis) when longer.
fn bounded_name(name: &str, long: &mut LongNames) -> String {
    // A name of at most MAX_NAME_CHARS bytes has at most as many characters: no count needed.
    if name.len() <= MAX_NAME_CHARS {
        return name.to_string();
    }
    match name.char_indices().nth(MAX_NAME_CHARS) {
        None => name.to_string(),
        Some((cut, _)) => {
            long.rows += 1;
            long.longest = long.longest.max(MAX_NAME_CHARS + name[cut..].chars().count());
            format!("{}…", &name[..cut])
        }
    }
}

/// A batch of valid interactions, tracks already encoded against the catalogue.
#[derive(Debug, Clone, Default)]
pub struct InteractionRows {
    pub user_id: Vec<i64>,
    pub track: Vec<u32>,
    pub track_seq: Vec<i32>,
    pub day: Vec<i32>,
}

impl InteractionRows {
    pub fn len(&self) -> usize {
        self.user_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.user_id.is_empty()
    }
}

/// What a full pass over interactions found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub rows_read: u64,
    pub rows_kept: u64,
    pub unknown_track_rows: u64,
    pub unknown_track_ids: u64,
    pub unknown_track_examples: Vec<i64>,
    /// Events dated far from the bulk of the file's dates, kept but worth a warning.
    pub far_dates: Option<FarDates>,
}

const INTERACTION_COLUMNS: [(&str, Kind); 4] =
    [(USER_ID, Kind::Integer), (TRACK_ID, Kind::Integer), (TRACK_SEQ, Kind::Integer), (STARTED_AT, Kind::Date)];

/// Streams `interactions.parquet`, handing each batch of valid rows to `each`.
///
/// Events of tracks missing from `tracks` are dropped from the batches and counted; with
/// `fail_on_unknown` their presence is an error. Any other problem (nulls, values out of range)
/// is counted over the whole file and returned as an error at the end: callers must write only
/// to temporary outputs until this returns `Ok`.
pub fn scan_interactions(
    dir: &Location,
    tracks: &Tracks,
    fail_on_unknown: bool,
    mut each: impl FnMut(InteractionRows) -> Result<(), DataError>,
) -> Result<ScanReport, DataError> {
    let (file, reader) = open(dir, INTERACTIONS_FILE, &INTERACTION_COLUMNS)?;
    let mut problems = Problems::default();
    let mut report = ScanReport::default();
    let mut unknown_ids = std::collections::HashSet::new();
    let mut spread = DateSpread::default();
    for batch in reader {
        let batch = decoded(&file, batch)?;
        report.rows_read += batch.num_rows() as u64;
        let nulls: Vec<usize> = batch.columns().iter().map(|c| c.null_count()).collect();
        for (c, &n) in nulls.iter().enumerate() {
            problems.null(c, n);
        }
        let ints: Vec<Option<ArrayRef>> = batch.columns()[..3].iter().map(to_i64).collect();
        for (c, a) in ints.iter().enumerate() {
            if a.is_none() {
                problems.bad(c, batch.num_rows(), || "do not fit in a 64-bit signed integer".into());
            }
        }
        let (Some(users), Some(track_ids), Some(seqs)) = (&ints[0], &ints[1], &ints[2]) else { continue };
        if nulls.iter().any(|&n| n > 0) {
            continue;
        }
        let users = users.as_primitive::<Int64Type>().values();
        let track_ids = track_ids.as_primitive::<Int64Type>().values();
        let seqs = seqs.as_primitive::<Int64Type>().values();
        problems.bad(2, seqs.iter().filter(|&&s| i32::try_from(s).is_err()).count(), || {
            "are outside the 32-bit range allowed for a position in a user's history".into()
        });
        let (days, outside, example) = to_days(batch.column(3));
        problems.bad(3, outside, || {
            let example = example.unwrap_or_default();
            format!(
                "are outside the years 1..=9999 (e.g. {example} as {}); dates must be real calendar days",
                batch.column(3).data_type()
            )
        });
        if outside > 0 {
            continue;
        }
        spread.add_days(&days);
        let mut rows = InteractionRows {
            user_id: Vec::with_capacity(users.len()),
            track: Vec::with_capacity(users.len()),
            track_seq: Vec::with_capacity(users.len()),
            day: Vec::with_capacity(users.len()),
        };
        for i in 0..users.len() {
            match tracks.encoder.encode(track_ids[i]) {
                Some(track) => {
                    rows.user_id.push(users[i]);
                    rows.track.push(track);
                    rows.track_seq.push(seqs[i] as i32);
                    rows.day.push(days[i]);
                }
                None => {
                    report.unknown_track_rows += 1;
                    if unknown_ids.insert(track_ids[i]) && report.unknown_track_examples.len() < 5 {
                        report.unknown_track_examples.push(track_ids[i]);
                    }
                }
            }
        }
        report.rows_kept += rows.len() as u64;
        if problems.nulls.is_empty() && problems.bad.is_empty() && !rows.is_empty() {
            each(rows)?;
        }
    }
    problems.into_result(&file, &INTERACTION_COLUMNS, &["user ids", "track ids", "positions", "dates"])?;
    report.unknown_track_ids = unknown_ids.len() as u64;
    report.far_dates = spread.far_from_bulk(&file);
    if report.unknown_track_rows > 0 && fail_on_unknown {
        return Err(DataError::UnknownTracks {
            file,
            rows: report.unknown_track_rows as usize,
            distinct: unknown_ids.len(),
            examples: report.unknown_track_examples.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(", "),
        });
    }
    if report.rows_kept == 0 {
        return Err(DataError::BadValues {
            file,
            column: TRACK_ID.into(),
            rows: report.rows_read as usize,
            problem: "name tracks missing from tracks.parquet: no events are left".into(),
        });
    }
    Ok(report)
}

/// Ranked recommendation lists read from a user's file, grouped by user, best rank first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RankedLists {
    pub users: Vec<i64>,
    /// `tracks[offsets[i]..offsets[i + 1]]` are the tracks of `users[i]`, by ascending rank.
    pub offsets: Vec<usize>,
    pub tracks: Vec<i64>,
}

const RECOMMENDATION_COLUMNS: [(&str, Kind); 3] =
    [(USER_ID, Kind::Integer), (TRACK_ID, Kind::Integer), ("rank", Kind::Integer)];

/// Reads a recommendations parquet file (`user_id`, `track_id`, `rank`; other columns such as
/// `score` are ignored). Rows may come in any order; each user's list is ordered by rank. A
/// (user, track) pair listed twice is an error: it would count one hit twice.
pub fn read_recommendations(file: &Location) -> Result<RankedLists, DataError> {
    let (name, reader) = open_file(file, &RECOMMENDATION_COLUMNS)?;
    let mut problems = Problems::default();
    let mut rows: Vec<(i64, i64, i64)> = Vec::new();
    for batch in reader {
        let batch = decoded(&name, batch)?;
        let mut columns = Vec::with_capacity(3);
        for c in 0..3 {
            problems.null(c, batch.column(c).null_count());
            match to_i64(batch.column(c)) {
                Some(a) => columns.push(a),
                None => problems.bad(c, batch.num_rows(), || "do not fit in a 64-bit signed integer".into()),
            }
        }
        if columns.len() == 3 {
            let [u, t, r] = [0, 1, 2].map(|c| columns[c].as_primitive::<Int64Type>().values().clone());
            rows.extend(
                (0..batch.num_rows()).filter(|&i| columns.iter().all(|c| c.is_valid(i))).map(|i| (u[i], r[i], t[i])),
            );
        }
    }
    problems.into_result(&name, &RECOMMENDATION_COLUMNS, &["user ids", "track ids", "ranks"])?;
    // The files the pipeline writes are in user and rank order already: a pass, not a sort of
    // tens of millions of rows.
    if !rows.is_sorted() {
        rows.sort_unstable();
    }
    // Repeated pairs are looked for in each user's list alone (tens of tracks), not by sorting
    // every pair of the file.
    let mut tracks = Vec::new();
    let repeated: usize = rows
        .chunk_by(|a, b| a.0 == b.0)
        .map(|list| {
            tracks.clear();
            tracks.extend(list.iter().map(|&(_, _, t)| t));
            tracks.sort_unstable();
            tracks.windows(2).filter(|w| w[0] == w[1]).count()
        })
        .sum();
    if repeated > 0 {
        return Err(DataError::BadValues {
            file: name,
            column: TRACK_ID.into(),
            rows: repeated,
            problem: "repeat a track already recommended to the same user".into(),
        });
    }
    let mut lists = RankedLists { offsets: vec![0], ..Default::default() };
    for (u, _, t) in rows {
        if lists.users.last() != Some(&u) {
            if !lists.users.is_empty() {
                lists.offsets.push(lists.tracks.len());
            }
            lists.users.push(u);
        }
        lists.tracks.push(t);
    }
    if !lists.users.is_empty() {
        lists.offsets.push(lists.tracks.len());
    }
    Ok(lists)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn names_are_cut_at_a_character_boundary_and_counted() {
        let mut long = LongNames::default();
        assert_eq!(bounded_name("Song", &mut long), "Song");
        // Two-byte characters: over the bound in bytes, within it in characters.
        let wide = "é".repeat(MAX_NAME_CHARS);
        assert_eq!(bounded_name(&wide, &mut long), wide);
        assert_eq!(long.rows, 0);
        let cut = bounded_name(&"ж".repeat(MAX_NAME_CHARS + 5), &mut long);
        assert_eq!(cut.chars().count(), MAX_NAME_CHARS + 1);
        assert!(cut.ends_with("ж…"));
        bounded_name(&"x".repeat(3 * MAX_NAME_CHARS), &mut long);
        assert_eq!((long.rows, long.longest), (2, 3 * MAX_NAME_CHARS));
    }

    #[test]
    fn dates_outside_years_1_to_9999_are_counted_not_wrapped() {
        use arrow_array::{Date32Array, Date64Array, TimestampMillisecondArray};
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![19000, i32::MAX, timeline::FIRST_DAY - 1]));
        assert_eq!(to_days(&dates), (vec![19000, 0, 0], 2, Some(i64::from(i32::MAX))));
        let dates: ArrayRef = Arc::new(Date64Array::from(vec![i64::MAX, -86_400_000]));
        assert_eq!(to_days(&dates), (vec![0, -1], 1, Some(i64::MAX)));
        // A 2022 day plus 2^32 days, in milliseconds: `as i32` would wrap it back to 2022.
        let wrapped = (19000 + (1i64 << 32)) * 86_400_000;
        let dates: ArrayRef = Arc::new(TimestampMillisecondArray::from(vec![wrapped, 19000 * 86_400_000 + 5]));
        assert_eq!(to_days(&dates), (vec![0, 19000], 1, Some(wrapped)));
    }
}
