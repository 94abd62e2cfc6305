//! Stage `preprocess` (docs/pipeline.md#preprocess): validate the input, split events by date into the train,
//! target and test windows, mark users old (seen in train) or new, explode the catalogue into
//! track → album/artist/genre tables and name tables per entity type.

use std::ops::{Index, IndexMut};
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use musicrec_artifacts::layout::preprocess::{TRACKS_FILE, USERS_FILE, Window, names_file, track_entities_file};
use musicrec_artifacts::{Manifest, Stage, StageWriter};
use musicrec_config::{SplitDate, UnknownTracks};
use musicrec_data::layout::{self, CatalogNames, IdLists, InteractionRows, ScanReport, Tracks};
use musicrec_data::parquet_io::{self, ParquetSink};
use musicrec_data::schema::EntityType;
use musicrec_data::timeline::{self, DayCounts};
use musicrec_data::{DataError, Location};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::PipelineError;
use crate::progress;
use crate::stage::RunContext;

/// One value per window, indexed by `Window`; serialized as an object keyed by window name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PerWindow<T> {
    pub train: T,
    pub target: T,
    pub test: T,
}

impl<T> PerWindow<T> {
    pub fn from_fn(mut value: impl FnMut(Window) -> T) -> Self {
        Self { train: value(Window::Train), target: value(Window::Target), test: value(Window::Test) }
    }

    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> PerWindow<U> {
        PerWindow { train: f(self.train), target: f(self.target), test: f(self.test) }
    }

    /// `f` of the three values on the rayon pool, for work per window that is independent.
    pub fn par_map<U: Send>(self, f: impl Fn(T) -> U + Sync) -> PerWindow<U>
    where
        T: Send,
    {
        let (train, (target, test)) = rayon::join(|| f(self.train), || rayon::join(|| f(self.target), || f(self.test)));
        PerWindow { train, target, test }
    }

    /// The windows in time order with their values.
    pub fn iter(&self) -> impl Iterator<Item = (Window, &T)> {
        Window::ALL.into_iter().map(move |w| (w, &self[w]))
    }
}

impl<T, E> PerWindow<Result<T, E>> {
    /// The first error in time order, or every value.
    pub fn transpose(self) -> Result<PerWindow<T>, E> {
        Ok(PerWindow { train: self.train?, target: self.target?, test: self.test? })
    }
}

impl<T> Index<Window> for PerWindow<T> {
    type Output = T;

    fn index(&self, window: Window) -> &T {
        match window {
            Window::Train => &self.train,
            Window::Target => &self.target,
            Window::Test => &self.test,
        }
    }
}

impl<T> IndexMut<Window> for PerWindow<T> {
    fn index_mut(&mut self, window: Window) -> &mut T {
        match window {
            Window::Train => &mut self.train,
            Window::Target => &mut self.target,
            Window::Test => &mut self.test,
        }
    }
}

/// Days since 1970-01-01 of a date, the unit of `started_at` everywhere.
pub fn epoch_day(date: chrono::NaiveDate) -> i32 {
    (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")).num_days() as i32
}

/// The date of a day number (inverse of `epoch_day`).
pub fn epoch_date(day: i32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date") + chrono::TimeDelta::days(day as i64)
}

/// Schema of the window event files: external ids, day granularity.
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Int64, false),
        Field::new("track_id", DataType::Int64, false),
        Field::new("track_seq", DataType::Int32, false),
        Field::new("started_at", DataType::Date32, false),
    ]))
}

/// Distinct user ids of one window, gathered cheaply from sorted-ish streams.
#[derive(Default)]
struct UserSet(Vec<i64>);

impl UserSet {
    fn push(&mut self, user: i64) {
        // Interactions usually come grouped by user: skipping repeats keeps this small.
        if self.0.last() != Some(&user) {
            self.0.push(user);
        }
    }

    fn finish(mut self) -> Vec<i64> {
        self.0.sort_unstable();
        self.0.dedup();
        self.0
    }
}

/// What `preprocess` reports in its manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessSummary {
    pub events_read: u64,
    pub events_kept: u64,
    pub unknown_track_events_dropped: u64,
    pub unknown_track_ids: u64,
    pub unknown_track_examples: Vec<i64>,
    pub first_day: String,
    pub last_day: String,
    pub catalogue_tracks: usize,
    pub split: SplitSummary,
    pub windows: PerWindow<WindowSummary>,
    /// The `data.extra_events` read beside the data set, when given; `events_read` and the
    /// counts above include them.
    #[serde(default)]
    pub extra_events: Option<ExtraEventsSummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtraEventsSummary {
    pub location: String,
    pub events_read: u64,
    pub events_kept: u64,
    pub unknown_track_events_dropped: u64,
}

/// The split dates preprocess used and where they came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    pub train_end: String,
    pub target_end: String,
    /// `configured`, or with `auto` the rule that chose them (`last_two_weeks`,
    /// `event_quantiles`).
    pub chosen_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    pub events: u64,
    pub users: usize,
    /// Users of the window with train events, and without.
    pub old_users: usize,
    pub new_users: usize,
}

/// The interactions as split into the window files.
struct SplitEvents {
    /// Both sources together.
    scan: ScanReport,
    extra: Option<ExtraEventsSummary>,
    events: PerWindow<u64>,
    /// Distinct users of each window, sorted.
    users: PerWindow<Vec<i64>>,
    /// The first and the last event day over all windows.
    days: (i32, i32),
}

pub fn run(ctx: &RunContext) -> Result<Manifest, PipelineError> {
    let mut out = ctx.artifacts.begin(Stage::Preprocess, &ctx.run_id)?;
    let config = &ctx.config;
    let (tracks, names) = read_catalogue(&ctx.data)?;
    out.add_input("data", ctx.data.to_string());
    let extra = extra_events(ctx)?;
    if let Some(extra) = &extra {
        out.add_input("extra_events", extra.to_string());
    }
    let dates = choose_split(ctx, &tracks)?;
    let split = split_events(ctx, &mut out, &tracks, extra.as_ref(), &dates)?;
    out.add_parquet(parquet_io::write_batch(out.path(USERS_FILE), &users_batch(&split.users))?);
    write_catalogue(&mut out, &tracks, &names)?;
    let summary = summarize(split, tracks.len(), &dates);
    // The dates used, not `auto`: later stages (eda, features) read them from here.
    let params = ctx.params(json!({"preprocess": dates.dates, "data": config.data}));
    let fingerprint = musicrec_config::fingerprint_of(&params);
    Ok(out.commit(fingerprint, params, &summary)?)
}

/// The `data.extra_events` location, its interactions file brought local.
fn extra_events(ctx: &RunContext) -> Result<Option<Location>, PipelineError> {
    let Some(text) = &ctx.config.data.extra_events else { return Ok(None) };
    let location = Location::parse(text)?;
    location.join(musicrec_data::schema::INTERACTIONS_FILE).fetch()?;
    Ok(Some(location))
}

/// The split dates preprocess used, as its manifest's params record them: later stages read
/// them from there, since the configuration may say `auto` or have changed since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitDates {
    pub train_end: chrono::NaiveDate,
    pub target_end: chrono::NaiveDate,
}

impl SplitDates {
    pub fn of(manifest: &Manifest, dir: &std::path::Path) -> Result<Self, PipelineError> {
        Self::deserialize(&manifest.params["preprocess"]).map_err(|e| PipelineError::Artifact {
            path: dir.join(musicrec_artifacts::layout::MANIFEST_FILE).display().to_string(),
            reason: format!("params.preprocess: {e}"),
        })
    }
}

/// The split dates of this run and what chose them.
struct ChosenSplit {
    dates: SplitDates,
    chosen_by: &'static str,
}

/// The configured split dates, or with `auto` the split the data's own time line suggests
/// (`musicrec_data::timeline`), from a first pass over the interactions: the events kept
/// after dropping unknown tracks, per day. The choice is logged and recorded in the manifest.
fn choose_split(ctx: &RunContext, tracks: &Tracks) -> Result<ChosenSplit, PipelineError> {
    let split = &ctx.config.preprocess;
    if let (SplitDate::Date(train_end), SplitDate::Date(target_end)) = (split.train_end, split.target_end) {
        return Ok(ChosenSplit { dates: SplitDates { train_end, target_end }, chosen_by: "configured" });
    }
    let mut days = DayCounts::default();
    let fail_on_unknown = ctx.config.data.unknown_tracks == UnknownTracks::Fail;
    layout::scan_interactions(&ctx.data, tracks, fail_on_unknown, |rows| {
        days.add_days(&rows.day);
        Ok(())
    })?;
    let auto = timeline::auto_split(&days)?;
    let dates =
        SplitDates { train_end: timeline::date_of(auto.train_end), target_end: timeline::date_of(auto.target_end) };
    tracing::info!(
        train_end = %dates.train_end,
        target_end = %dates.target_end,
        rule = auto.rule.as_str(),
        "automatic split: {}",
        auto.rule.describe()
    );
    Ok(ChosenSplit { dates, chosen_by: auto.rule.as_str() })
}

fn read_catalogue(data: &Location) -> Result<(Tracks, CatalogNames), PipelineError> {
    layout::fetch(data)?;
    let tracks = layout::read_tracks(data)?;
    let names = layout::read_catalog_names(data)?;
    tracing::info!(tracks = tracks.len(), names = names.id.len(), "catalogue read");
    Ok((tracks, names))
}

/// Streams the interactions into the window files by date. Every later stage needs all three
/// windows, so an empty one is an error: the split dates miss the data.
/// The extra events, when given, are read after the data set's, by the same rules, into the
/// same windows.
fn split_events(
    ctx: &RunContext,
    out: &mut StageWriter,
    tracks: &Tracks,
    extra: Option<&Location>,
    chosen: &ChosenSplit,
) -> Result<SplitEvents, PipelineError> {
    let split = &chosen.dates;
    let (train_end, target_end) = (epoch_day(split.train_end), epoch_day(split.target_end));
    let window_of = |day: i32| {
        if day < train_end {
            Window::Train
        } else if day < target_end {
            Window::Target
        } else {
            Window::Test
        }
    };
    let schema = events_schema();
    let mut sinks = PerWindow::from_fn(|w| ParquetSink::create(out.path(w.file()), schema.clone())).transpose()?;
    let mut users: PerWindow<UserSet> = PerWindow::default();
    let mut events: PerWindow<u64> = PerWindow::default();
    let mut days = (i32::MAX, i32::MIN);
    let rows_of = |dir: &Location| {
        parquet_io::row_count(dir.join(musicrec_data::schema::INTERACTIONS_FILE).as_path()).unwrap_or(0)
    };
    let bar = progress::bar(rows_of(&ctx.data) + extra.map_or(0, rows_of), "preprocess");
    let fail_on_unknown = ctx.config.data.unknown_tracks == UnknownTracks::Fail;
    let mut split_rows = |rows: InteractionRows| -> Result<(), DataError> {
        bar.inc(rows.len() as u64);
        let mut parts: PerWindow<Vec<usize>> = PerWindow::default();
        for (i, &day) in rows.day.iter().enumerate() {
            let w = window_of(day);
            parts[w].push(i);
            users[w].push(rows.user_id[i]);
            days = (days.0.min(day), days.1.max(day));
        }
        for (w, part) in parts.iter() {
            if !part.is_empty() {
                events[w] += part.len() as u64;
                sinks[w].write(&events_batch(&schema, &rows, part, tracks))?;
            }
        }
        Ok(())
    };
    let mut scan = layout::scan_interactions(&ctx.data, tracks, fail_on_unknown, &mut split_rows)?;
    warn_scan(&ctx.data, &scan);
    let extra = match extra {
        None => None,
        Some(dir) => {
            let extra = layout::scan_interactions(dir, tracks, fail_on_unknown, &mut split_rows)?;
            warn_scan(dir, &extra);
            scan.rows_read += extra.rows_read;
            scan.rows_kept += extra.rows_kept;
            scan.unknown_track_rows += extra.unknown_track_rows;
            // Distinct ids are counted per source: the sum may count an id twice.
            scan.unknown_track_ids += extra.unknown_track_ids;
            let room = 5usize.saturating_sub(scan.unknown_track_examples.len());
            scan.unknown_track_examples.extend(extra.unknown_track_examples.iter().take(room));
            tracing::info!(events = extra.rows_kept, location = %dir, "extra events added");
            Some(ExtraEventsSummary {
                location: dir.to_string(),
                events_read: extra.rows_read,
                events_kept: extra.rows_kept,
                unknown_track_events_dropped: extra.unknown_track_rows,
            })
        }
    };
    bar.finish_and_clear();
    if let Some((window, _)) = events.iter().find(|&(_, &n)| n == 0) {
        return Err(PipelineError::EmptyWindow {
            window: window.as_str(),
            first_day: epoch_date(days.0).to_string(),
            last_day: epoch_date(days.1).to_string(),
            train_end: split.train_end.to_string(),
            target_end: split.target_end.to_string(),
        });
    }
    for sink in [sinks.train, sinks.target, sinks.test] {
        out.add_parquet(sink.finish()?);
    }
    Ok(SplitEvents { scan, extra, events, users: users.map(UserSet::finish), days })
}

/// What a scan dropped or found suspicious but kept, for the user to hear about.
fn warn_scan(source: &Location, scan: &ScanReport) {
    if let Some(far) = &scan.far_dates {
        tracing::warn!("{far}");
    }
    if scan.unknown_track_rows > 0 {
        tracing::warn!(
            %source,
            events = scan.unknown_track_rows,
            tracks = scan.unknown_track_ids,
            examples = ?scan.unknown_track_examples,
            "dropped events of tracks missing from tracks.parquet (data.unknown_tracks: drop)"
        );
    }
}

/// The catalogue tables: track ids, track → album/artist/genre pairs, names per entity type.
fn write_catalogue(out: &mut StageWriter, tracks: &Tracks, names: &CatalogNames) -> Result<(), PipelineError> {
    out.add_parquet(parquet_io::write_batch(
        out.path(TRACKS_FILE),
        &RecordBatch::try_from_iter([(
            "track_id",
            Arc::new(Int64Array::from(tracks.encoder.ids().to_vec())) as ArrayRef,
        )])
        .expect("one column"),
    )?);
    for (kind, lists) in [
        (EntityType::Album, &tracks.albums),
        (EntityType::Artist, &tracks.artists),
        (EntityType::Genre, &tracks.genres),
    ] {
        out.add_parquet(parquet_io::write_batch(out.path(&track_entities_file(kind)), &explode(tracks, lists, kind))?);
    }
    for kind in EntityType::ALL {
        let rows: Vec<usize> = (0..names.id.len()).filter(|&i| names.kind[i] == kind).collect();
        let batch = RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from_iter_values(rows.iter().map(|&i| names.id[i]))) as ArrayRef),
            ("name", Arc::new(StringArray::from_iter_values(rows.iter().map(|&i| names.name[i].as_str()))) as ArrayRef),
        ])
        .expect("equal lengths");
        out.add_parquet(parquet_io::write_batch(out.path(&names_file(kind)), &batch)?);
    }
    Ok(())
}

fn summarize(split: SplitEvents, catalogue_tracks: usize, chosen: &ChosenSplit) -> PreprocessSummary {
    let train_users = &split.users.train;
    let windows = PerWindow::from_fn(|w| {
        let users = &split.users[w];
        let old_users = users.iter().filter(|u| train_users.binary_search(u).is_ok()).count();
        WindowSummary { events: split.events[w], users: users.len(), old_users, new_users: users.len() - old_users }
    });
    PreprocessSummary {
        events_read: split.scan.rows_read,
        events_kept: split.scan.rows_kept,
        unknown_track_events_dropped: split.scan.unknown_track_rows,
        unknown_track_ids: split.scan.unknown_track_ids,
        unknown_track_examples: split.scan.unknown_track_examples,
        first_day: epoch_date(split.days.0).to_string(),
        last_day: epoch_date(split.days.1).to_string(),
        catalogue_tracks,
        split: SplitSummary {
            train_end: chosen.dates.train_end.to_string(),
            target_end: chosen.dates.target_end.to_string(),
            chosen_by: chosen.chosen_by.to_string(),
        },
        windows,
        extra_events: split.extra,
    }
}

fn events_batch(schema: &SchemaRef, rows: &InteractionRows, part: &[usize], tracks: &Tracks) -> RecordBatch {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(part.iter().map(|&i| rows.user_id[i]))),
        Arc::new(Int64Array::from_iter_values(part.iter().map(|&i| tracks.encoder.decode(rows.track[i])))),
        Arc::new(Int32Array::from_iter_values(part.iter().map(|&i| rows.track_seq[i]))),
        Arc::new(Date32Array::from_iter_values(part.iter().map(|&i| rows.day[i]))),
    ];
    RecordBatch::try_new(schema.clone(), columns).expect("columns match the events schema")
}

fn users_batch(users: &PerWindow<Vec<i64>>) -> RecordBatch {
    let mut all: Vec<i64> = users.iter().flat_map(|(_, list)| list).copied().collect();
    all.sort_unstable();
    all.dedup();
    let member = |set: &[i64]| {
        Arc::new(BooleanArray::from_iter(all.iter().map(|u| Some(set.binary_search(u).is_ok())))) as ArrayRef
    };
    RecordBatch::try_from_iter([
        ("user_id", Arc::new(Int64Array::from(all.clone())) as ArrayRef),
        ("old", member(&users.train)),
        ("in_target", member(&users.target)),
        ("in_test", member(&users.test)),
    ])
    .expect("equal lengths")
}

fn explode(tracks: &Tracks, lists: &IdLists, kind: EntityType) -> RecordBatch {
    let mut track_ids = Vec::with_capacity(lists.values.len());
    for t in 0..lists.len() {
        track_ids.extend(std::iter::repeat_n(tracks.encoder.decode(t as u32), lists.get(t).len()));
    }
    RecordBatch::try_from_iter([
        ("track_id", Arc::new(Int64Array::from(track_ids)) as ArrayRef),
        (format!("{}_id", kind.as_str()).as_str(), Arc::new(Int64Array::from(lists.values.clone())) as ArrayRef),
    ])
    .expect("equal lengths")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_window_values_are_indexed_and_keyed_by_window() {
        let mut users = PerWindow::from_fn(|w| w.as_str().len());
        users[Window::Test] += 10;
        let listed: Vec<(Window, usize)> = users.iter().map(|(w, &n)| (w, n)).collect();
        assert_eq!(listed, [(Window::Train, 5), (Window::Target, 6), (Window::Test, 14)]);
        assert_eq!(serde_json::to_value(users).unwrap(), json!({"train": 5, "target": 6, "test": 14}));
    }
}
