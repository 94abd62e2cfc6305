//! Stage `preprocess` (docs/pipeline.md#preprocess): validate the input, split events by date into the train,
//! target and test windows, mark users old (seen in train) or new, explode the catalogue into
//! track → album/artist/genre tables and name tables per entity type.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Date32Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use musicrec_artifacts::layout::preprocess::{TRACKS_FILE, USERS_FILE, Window, names_file, track_entities_file};
use musicrec_artifacts::{Manifest, Stage};
use musicrec_config::UnknownTracks;
use musicrec_data::layout::{self, IdLists, InteractionRows, Tracks};
use musicrec_data::parquet_io::{self, ParquetSink};
use musicrec_data::schema::EntityType;
use serde_json::json;

use crate::error::PipelineError;
use crate::progress;
use crate::stage::RunContext;

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

pub fn run(ctx: &RunContext) -> Result<Manifest, PipelineError> {
    let config = &ctx.config;
    layout::fetch(&ctx.data)?;
    let tracks = layout::read_tracks(&ctx.data)?;
    let names = layout::read_catalog_names(&ctx.data)?;
    tracing::info!(tracks = tracks.len(), names = names.id.len(), "catalogue read");

    let mut out = ctx.artifacts.begin(Stage::Preprocess, &ctx.run_id)?;
    out.add_input("data", ctx.data.to_string());
    let train_end = epoch_day(config.preprocess.train_end);
    let target_end = epoch_day(config.preprocess.target_end);
    let schema = events_schema();
    let mut sinks = Window::ALL
        .map(|w| ParquetSink::create(out.path(w.file()), schema.clone()))
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let mut users: [UserSet; 3] = Default::default();
    let mut events = [0u64; 3];
    let mut day_range = (i32::MAX, i32::MIN);
    let total = parquet_io::row_count(ctx.data.join(musicrec_data::schema::INTERACTIONS_FILE).as_path()).unwrap_or(0);
    let bar = progress::bar(total, "preprocess");
    let report =
        layout::scan_interactions(&ctx.data, &tracks, config.data.unknown_tracks == UnknownTracks::Fail, |rows| {
            bar.inc(rows.len() as u64);
            let mut parts: [Vec<usize>; 3] = Default::default();
            for (i, &day) in rows.day.iter().enumerate() {
                let w = if day < train_end {
                    0
                } else if day < target_end {
                    1
                } else {
                    2
                };
                parts[w].push(i);
                users[w].push(rows.user_id[i]);
                day_range = (day_range.0.min(day), day_range.1.max(day));
            }
            for (w, part) in parts.iter().enumerate() {
                if !part.is_empty() {
                    events[w] += part.len() as u64;
                    sinks[w].write(&events_batch(&schema, &rows, part, &tracks))?;
                }
            }
            Ok(())
        })?;
    bar.finish_and_clear();
    if report.unknown_track_rows > 0 {
        tracing::warn!(
            events = report.unknown_track_rows,
            tracks = report.unknown_track_ids,
            examples = ?report.unknown_track_examples,
            "dropped events of tracks missing from tracks.parquet (data.unknown_tracks: drop)"
        );
    }
    // Every later stage needs all three windows: an empty one means the split dates miss the data.
    if let Some(w) = (0..3).find(|&w| events[w] == 0) {
        return Err(PipelineError::EmptyWindow {
            window: Window::ALL[w].as_str(),
            first_day: epoch_date(day_range.0).to_string(),
            last_day: epoch_date(day_range.1).to_string(),
            train_end: config.preprocess.train_end.to_string(),
            target_end: config.preprocess.target_end.to_string(),
        });
    }
    for sink in sinks {
        out.add_parquet(sink.finish()?);
    }

    let [train_users, target_users, test_users] = users.map(UserSet::finish);
    let window_summary = |w: usize, list: &[i64]| {
        let old = list.iter().filter(|u| train_users.binary_search(u).is_ok()).count();
        json!({"events": events[w], "users": list.len(), "old_users": old, "new_users": list.len() - old})
    };
    let summary = json!({
        "events_read": report.rows_read,
        "events_kept": report.rows_kept,
        "unknown_track_events_dropped": report.unknown_track_rows,
        "unknown_track_ids": report.unknown_track_ids,
        "unknown_track_examples": report.unknown_track_examples,
        "first_day": epoch_date(day_range.0).to_string(),
        "last_day": epoch_date(day_range.1).to_string(),
        "catalogue_tracks": tracks.len(),
        "windows": {
            "train": window_summary(0, &train_users),
            "target": window_summary(1, &target_users),
            "test": window_summary(2, &test_users),
        },
    });
    out.add_parquet(parquet_io::write_batch(
        out.path(USERS_FILE),
        &users_batch(&train_users, &target_users, &test_users),
    )?);
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
        out.add_parquet(parquet_io::write_batch(out.path(&track_entities_file(kind)), &explode(&tracks, lists, kind))?);
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
    let params = ctx.params(json!({"preprocess": config.preprocess, "data": config.data}));
    let fingerprint = musicrec_config::fingerprint_of(&params);
    Ok(out.commit(fingerprint, params, summary)?)
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

fn users_batch(train: &[i64], target: &[i64], test: &[i64]) -> RecordBatch {
    let mut all: Vec<i64> = train.iter().chain(target).chain(test).copied().collect();
    all.sort_unstable();
    all.dedup();
    let member = |set: &[i64]| {
        Arc::new(BooleanArray::from_iter(all.iter().map(|u| Some(set.binary_search(u).is_ok())))) as ArrayRef
    };
    RecordBatch::try_from_iter([
        ("user_id", Arc::new(Int64Array::from(all.clone())) as ArrayRef),
        ("old", member(train)),
        ("in_target", member(target)),
        ("in_test", member(test)),
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
