use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use musicrec_data::Location;
use musicrec_data::layout::{self, CatalogNames, Tracks};
use musicrec_data::schema::EntityType;
use musicrec_import::{ImportSummary, Source, import};
use parquet::arrow::ArrowWriter;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// An import into a fresh temporary directory, read back with our readers.
pub struct Imported {
    pub dir: tempfile::TempDir,
    pub summary: ImportSummary,
    pub tracks: Tracks,
    pub names: CatalogNames,
    /// (user, track, position, day) in file order.
    pub events: Vec<(i64, i64, i32, i32)>,
}

impl Imported {
    pub fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Names by kind and id.
    pub fn name(&self, kind: EntityType, id: i64) -> Option<&str> {
        (0..self.names.id.len())
            .find(|&i| self.names.kind[i] == kind && self.names.id[i] == id)
            .map(|i| self.names.name[i].as_str())
    }

    pub fn names_of(&self, kind: EntityType) -> BTreeMap<i64, String> {
        (0..self.names.id.len())
            .filter(|&i| self.names.kind[i] == kind)
            .map(|i| (self.names.id[i], self.names.name[i].clone()))
            .collect()
    }

    /// The genre names of a track.
    pub fn genres_of(&self, track: i64) -> Vec<String> {
        let index = self.tracks.encoder.encode(track).expect("a catalogue track") as usize;
        let mut names: Vec<String> = self
            .tracks
            .genres
            .get(index)
            .iter()
            .map(|&g| self.name(EntityType::Genre, g).unwrap().to_string())
            .collect();
        names.sort();
        names
    }
}

pub fn run(source: &Source, from: &Path) -> Imported {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let summary = import(source, from, &out).unwrap_or_else(|e| panic!("{e}"));
    let location = Location::local(&out);
    let tracks = layout::read_tracks(&location).unwrap();
    let names = layout::read_catalog_names(&location).unwrap();
    let mut events = Vec::new();
    layout::scan_interactions(&location, &tracks, true, |rows| {
        for i in 0..rows.len() {
            events.push((rows.user_id[i], tracks.encoder.decode(rows.track[i]), rows.track_seq[i], rows.day[i]));
        }
        Ok(())
    })
    .unwrap();
    Imported { dir, summary, tracks, names, events }
}

pub fn day(date: &str) -> i32 {
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
    (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()).num_days() as i32
}

pub fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

pub fn arr<A: arrow_array::Array + 'static>(a: A) -> ArrayRef {
    Arc::new(a)
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() { out.extend(files_under(&p)) } else { out.push(p) }
        }
    }
    out
}
