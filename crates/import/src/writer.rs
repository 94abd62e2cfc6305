//! Our layout written from a stream of events: interactions go out batch by batch; what is
//! held until the end is per user (the next history position) and per catalogue entity (the
//! track's albums, artists and genres, names), never per event.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, Date32Array, Int32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use musicrec_data::atomic::write_atomic;
use musicrec_data::parquet_io::ParquetSink;
use musicrec_data::schema::{
    CATALOG_NAMES_FILE, DATA_FILES, EntityType, INTERACTIONS_FILE, STARTED_AT, TRACK_ID, TRACK_SEQ, TRACKS_FILE,
    USER_ID, catalog_names_schema, tracks_schema,
};
use musicrec_data::timeline::{self, AutoSplit, DayCounts};
use serde::Serialize;

use crate::error::ImportError;

/// Written last into the output directory: the import is complete exactly when it exists.
pub const IMPORT_MANIFEST: &str = "import.json";
/// The configuration with the split the data suggests, beside the data.
pub const SUGGESTED_CONFIG: &str = "config.yaml";

const BATCH_ROWS: usize = 1 << 16;

/// Interactions as we write them: 64-bit ids (outside ids need not fit 32 bits), 32-bit
/// positions, days. The readers accept any integer width.
fn interactions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(USER_ID, DataType::Int64, false),
        Field::new(TRACK_ID, DataType::Int64, false),
        Field::new(TRACK_SEQ, DataType::Int32, false),
        Field::new(STARTED_AT, DataType::Date32, false),
    ]))
}

#[derive(Default)]
struct Events {
    user: Vec<i64>,
    track: Vec<i64>,
    seq: Vec<i32>,
    day: Vec<i32>,
}

/// What an import wrote; also the content of `import.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportSummary {
    pub format: &'static str,
    pub source: String,
    /// Rows of the source's event files read.
    pub rows_read: u64,
    /// Events written: the rows that count as listens.
    pub events: u64,
    pub users: usize,
    pub tracks: usize,
    pub names: usize,
    pub first_day: String,
    pub last_day: String,
    pub suggested_split: SuggestedSplit,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuggestedSplit {
    pub train_end: String,
    pub target_end: String,
    pub rule: &'static str,
}

impl SuggestedSplit {
    fn of(split: AutoSplit) -> Self {
        Self {
            train_end: timeline::date_of(split.train_end).to_string(),
            target_end: timeline::date_of(split.target_end).to_string(),
            rule: split.rule.as_str(),
        }
    }
}

/// The data set being written into a hidden staging directory inside the output directory;
/// `finish` moves the files into place, `import.json` last. Dropped unfinished, it removes the
/// staging directory (and the output directory if it created it), so a failed import leaves
/// nothing behind.
pub struct LayoutWriter {
    out: PathBuf,
    staging: PathBuf,
    created_out: bool,
    finished: bool,
    interactions: Option<ParquetSink>,
    events: Events,
    positions: HashMap<i64, i32>,
    seen_tracks: HashSet<i64>,
    days: DayCounts,
    written: u64,
    /// (track, entity kind, entity) memberships, sorted and deduplicated at the end.
    links: Vec<(i64, EntityType, i64)>,
    names: BTreeMap<(EntityType, i64), String>,
}

impl LayoutWriter {
    pub fn create(out: &Path) -> Result<Self, ImportError> {
        if out.exists() && !out.is_dir() {
            return Err(ImportError::BadOption {
                option: "--out",
                reason: format!("{} exists and is not a directory", out.display()),
            });
        }
        let created_out = !out.exists();
        fs::create_dir_all(out).map_err(|e| ImportError::io(out, e))?;
        let staging = out.join(format!(".import-{}.tmp", std::process::id()));
        let _ = fs::remove_dir_all(&staging);
        fs::create_dir_all(&staging).map_err(|e| ImportError::io(&staging, e))?;
        let mut writer = Self {
            out: out.to_path_buf(),
            staging,
            created_out,
            finished: false,
            interactions: None,
            events: Events::default(),
            positions: HashMap::new(),
            seen_tracks: HashSet::new(),
            days: DayCounts::default(),
            written: 0,
            links: Vec::new(),
            names: BTreeMap::new(),
        };
        writer.interactions = Some(ParquetSink::create(writer.staging.join(INTERACTIONS_FILE), interactions_schema())?);
        Ok(writer)
    }

    /// One listen of `track` by `user` on `day`; its position in the user's history is the
    /// order in which the source lists the user's events.
    pub fn event(&mut self, user: i64, track: i64, day: i32) -> Result<(), ImportError> {
        let position = self.positions.entry(user).or_insert(0);
        let seq = *position;
        *position = position.saturating_add(1);
        self.seen_tracks.insert(track);
        self.days.add(day, 1);
        let e = &mut self.events;
        e.user.push(user);
        e.track.push(track);
        e.seq.push(seq);
        e.day.push(day);
        if e.user.len() >= BATCH_ROWS { self.flush() } else { Ok(()) }
    }

    /// True when `track` has events so far (to keep a huge catalogue to the listened part).
    pub fn has_events_of(&self, track: i64) -> bool {
        self.seen_tracks.contains(&track)
    }

    /// `track` belongs to `entity` of `kind` (album, artist or genre).
    pub fn link(&mut self, track: i64, kind: EntityType, entity: i64) {
        self.links.push((track, kind, entity));
    }

    /// The name of an entity; the first name given wins.
    pub fn name(&mut self, kind: EntityType, id: i64, name: &str) {
        self.names.entry((kind, id)).or_insert_with(|| name.to_string());
    }

    fn flush(&mut self) -> Result<(), ImportError> {
        if self.events.user.is_empty() {
            return Ok(());
        }
        let e = std::mem::take(&mut self.events);
        self.written += e.user.len() as u64;
        let batch = RecordBatch::try_new(
            interactions_schema(),
            vec![
                Arc::new(Int64Array::from(e.user)) as ArrayRef,
                Arc::new(Int64Array::from(e.track)),
                Arc::new(Int32Array::from(e.seq)),
                Arc::new(Date32Array::from(e.day)),
            ],
        )
        .expect("columns match the interactions schema");
        self.interactions.as_mut().expect("open until finish").write(&batch)?;
        Ok(())
    }

    /// Writes the catalogue, the suggested configuration and the manifest, then publishes
    /// everything into the output directory. `no_events` says why, when no row was a listen.
    pub fn finish(
        mut self,
        format: &'static str,
        source: &Path,
        rows_read: u64,
        no_events: impl FnOnce() -> String,
    ) -> Result<ImportSummary, ImportError> {
        self.flush()?;
        if self.written == 0 {
            return Err(ImportError::NoEvents { source_dir: source.display().to_string(), reason: no_events() });
        }
        self.interactions.take().expect("open until finish").finish()?;
        let split = timeline::auto_split(&self.days)?;
        let (first, last) = self.days.span().expect("events were written");
        let (tracks, names) = self.write_catalogue()?;
        let summary = ImportSummary {
            format,
            source: source.display().to_string(),
            rows_read,
            events: self.written,
            users: self.positions.len(),
            tracks,
            names,
            first_day: timeline::date_of(first).to_string(),
            last_day: timeline::date_of(last).to_string(),
            suggested_split: SuggestedSplit::of(split),
        };
        write_atomic(self.staging.join(SUGGESTED_CONFIG), suggested_config(&summary, split).as_bytes())?;
        let json = serde_json::to_vec_pretty(&summary).expect("the summary serializes");
        write_atomic(self.staging.join(IMPORT_MANIFEST), &json)?;
        self.publish()?;
        Ok(summary)
    }

    /// tracks.parquet (every track with events or memberships, by id) and
    /// catalog_names.parquet (every track and linked entity; one without a name in the
    /// source is named by its kind and id, `track 42`).
    fn write_catalogue(&mut self) -> Result<(usize, usize), ImportError> {
        let mut links = std::mem::take(&mut self.links);
        links.sort_unstable();
        links.dedup();
        let mut tracks: Vec<i64> = self.seen_tracks.drain().chain(links.iter().map(|l| l.0)).collect();
        tracks.sort_unstable();
        tracks.dedup();

        let mut sink = ParquetSink::create(self.staging.join(TRACKS_FILE), tracks_schema())?;
        let mut next = 0;
        for chunk in tracks.chunks(BATCH_ROWS) {
            let mut ids = Int64Builder::with_capacity(chunk.len());
            let mut lists: [ListBuilder<Int64Builder>; 3] =
                std::array::from_fn(|_| ListBuilder::new(Int64Builder::new()));
            for &track in chunk {
                ids.append_value(track);
                while next < links.len() && links[next].0 == track {
                    let (_, kind, entity) = links[next];
                    lists[list_index(kind)].values().append_value(entity);
                    next += 1;
                }
                for list in &mut lists {
                    list.append(true);
                }
            }
            let [mut albums, mut artists, mut genres] = lists;
            let batch = RecordBatch::try_new(
                tracks_schema(),
                vec![
                    Arc::new(ids.finish()) as ArrayRef,
                    Arc::new(albums.finish()),
                    Arc::new(artists.finish()),
                    Arc::new(genres.finish()),
                ],
            )
            .expect("columns match the tracks schema");
            sink.write(&batch)?;
        }
        sink.finish()?;

        let mut entities: Vec<(EntityType, i64)> = links.iter().map(|&(_, kind, id)| (kind, id)).collect();
        entities.extend(tracks.iter().map(|&t| (EntityType::Track, t)));
        entities.sort_unstable();
        entities.dedup();
        let mut sink = ParquetSink::create(self.staging.join(CATALOG_NAMES_FILE), catalog_names_schema())?;
        for chunk in entities.chunks(BATCH_ROWS) {
            let mut names = StringBuilder::new();
            for key in chunk {
                match self.names.get(key) {
                    Some(name) => names.append_value(name),
                    None => names.append_value(format!("{} {}", key.0.as_str(), key.1)),
                }
            }
            let batch = RecordBatch::try_new(
                catalog_names_schema(),
                vec![
                    Arc::new(Int64Array::from_iter_values(chunk.iter().map(|k| k.1))) as ArrayRef,
                    Arc::new(arrow_array::StringArray::from_iter_values(chunk.iter().map(|k| k.0.as_str()))),
                    Arc::new(names.finish()),
                ],
            )
            .expect("columns match the names schema");
            sink.write(&batch)?;
        }
        sink.finish()?;
        Ok((tracks.len(), entities.len()))
    }

    /// Moves the staged files into the output directory: the old manifest goes first, the new
    /// one last, so a reader never takes a mix of two imports for a complete one.
    fn publish(&mut self) -> Result<(), ImportError> {
        let manifest = self.out.join(IMPORT_MANIFEST);
        match fs::remove_file(&manifest) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(ImportError::io(&manifest, e)),
            _ => {}
        }
        for file in DATA_FILES.into_iter().chain([SUGGESTED_CONFIG, IMPORT_MANIFEST]) {
            let to = self.out.join(file);
            fs::rename(self.staging.join(file), &to).map_err(|e| ImportError::io(&to, e))?;
        }
        self.finished = true;
        fs::remove_dir_all(&self.staging).map_err(|e| ImportError::io(&self.staging, e))
    }
}

fn list_index(kind: EntityType) -> usize {
    match kind {
        EntityType::Album => 0,
        EntityType::Artist => 1,
        EntityType::Genre => 2,
        EntityType::Track => unreachable!("a track is not linked to a track"),
    }
}

impl Drop for LayoutWriter {
    fn drop(&mut self) {
        if !self.finished {
            self.interactions = None;
            let _ = fs::remove_dir_all(&self.staging);
            if self.created_out {
                let _ = fs::remove_dir(&self.out);
            }
        }
    }
}

/// Our configuration's keys with the split this data suggests (`musicrec_data::timeline`, the
/// rule of `preprocess.train_end: auto`), written out so the user sees and can edit the dates.
fn suggested_config(summary: &ImportSummary, split: AutoSplit) -> String {
    format!(
        "# Written by `musicrec import {format}`: the split this data's time line suggests\n\
         # ({rule}; the data spans {first}..{last}). Use it with\n\
         #   musicrec run --data <this directory> --config <this file>\n\
         # or set both keys to `auto` to let preprocess choose again (docs/pipeline.md#automatic-split).\n\
         preprocess:\n  train_end: {train_end}\n  target_end: {target_end}\n",
        format = summary.format,
        rule = split.rule.describe(),
        first = summary.first_day,
        last = summary.last_day,
        train_end = summary.suggested_split.train_end,
        target_end = summary.suggested_split.target_end,
    )
}
