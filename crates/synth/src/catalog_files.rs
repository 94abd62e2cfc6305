//! tracks.parquet and catalog_names.parquet, written from the in-memory catalogue in batches
//! so that even the real-data-size catalogue never needs a second full copy as arrow arrays.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use musicrec_data::parquet_io::ParquetSink;
use musicrec_data::schema::{EntityType, catalog_names_schema, tracks_schema};

use crate::SynthError;
use crate::catalog::{Catalog, NO_ENTRY};
use crate::names::{self, NameMaker};
use crate::random::{Random, Stream};

const BATCH_ROWS: usize = 1 << 17;

/// Genre ids are small and start at 1, like the real data set's.
fn genre_id(genre: u16) -> i64 {
    i64::from(genre) + 1
}

pub(crate) fn write_tracks(catalog: &Catalog, path: &Path) -> Result<(), SynthError> {
    let mut sink = ParquetSink::create(path, tracks_schema())?;
    for rows in catalog.tracks.by_id.chunks(BATCH_ROWS) {
        let mut track_ids = Int64Builder::with_capacity(rows.len());
        let mut albums = ListBuilder::new(Int64Builder::new());
        let mut artists = ListBuilder::new(Int64Builder::new());
        let mut genres = ListBuilder::new(Int64Builder::new());
        for &track in rows {
            let track = track as usize;
            let album = catalog.tracks.album[track];
            track_ids.append_value(i64::from(catalog.tracks.id[track]));

            albums.values().append_value(catalog.albums[album as usize].id);
            if let Some(compilation) = present(catalog.tracks.compilation[track]) {
                albums.values().append_value(catalog.albums[compilation as usize].id);
            }
            albums.append(true);

            artists.values().append_value(catalog.artists[catalog.tracks.artist[track] as usize].id);
            if let Some(featured) = present(catalog.tracks.featured_artist[track]) {
                artists.values().append_value(catalog.artists[featured as usize].id);
            }
            artists.append(true);

            for genre in catalog.album_genres(album) {
                genres.values().append_value(genre_id(genre));
            }
            genres.append(true);
        }
        let batch = RecordBatch::try_new(
            tracks_schema(),
            vec![
                Arc::new(track_ids.finish()) as ArrayRef,
                Arc::new(albums.finish()),
                Arc::new(artists.finish()),
                Arc::new(genres.finish()),
            ],
        )?;
        sink.write(&batch)?;
    }
    sink.finish()?;
    Ok(())
}

fn present(entry: u32) -> Option<u32> {
    (entry != NO_ENTRY).then_some(entry)
}

/// One row per genre, artist, album and track, each type in id order. Names come from their
/// own random stream, so they never disturb the listening data.
pub(crate) fn write_catalog_names(catalog: &Catalog, seed: u64, path: &Path) -> Result<(), SynthError> {
    let mut out = NamesWriter::new(ParquetSink::create(path, catalog_names_schema())?);
    let mut maker = NameMaker::new(Random::new(seed, Stream::Names));

    for genre in 0..catalog.genre_count {
        out.push(genre_id(genre), EntityType::Genre, &names::genre(catalog.genre_rank[usize::from(genre)]))?;
    }
    let mut artists: Vec<usize> = (0..catalog.artists.len()).collect();
    artists.sort_by_key(|&a| catalog.artists[a].id);
    for artist in artists {
        out.push(catalog.artists[artist].id, EntityType::Artist, &maker.artist())?;
    }
    let mut albums: Vec<usize> = (0..catalog.albums.len()).collect();
    albums.sort_by_key(|&a| catalog.albums[a].id);
    for album in albums.into_iter().map(|a| &catalog.albums[a]) {
        let name = if album.is_compilation { maker.compilation() } else { maker.album() };
        out.push(album.id, EntityType::Album, &name)?;
    }
    for &track in &catalog.tracks.by_id {
        out.push(i64::from(catalog.tracks.id[track as usize]), EntityType::Track, &maker.track())?;
    }
    out.finish()
}

struct NamesWriter {
    sink: ParquetSink,
    ids: Vec<i64>,
    types: Vec<&'static str>,
    names: StringBuilder,
}

impl NamesWriter {
    fn new(sink: ParquetSink) -> Self {
        Self {
            sink,
            ids: Vec::with_capacity(BATCH_ROWS),
            types: Vec::with_capacity(BATCH_ROWS),
            names: StringBuilder::new(),
        }
    }

    fn push(&mut self, id: i64, entity: EntityType, name: &str) -> Result<(), SynthError> {
        self.ids.push(id);
        self.types.push(entity.as_str());
        self.names.append_value(name);
        if self.ids.len() == BATCH_ROWS { self.flush() } else { Ok(()) }
    }

    fn flush(&mut self) -> Result<(), SynthError> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let batch = RecordBatch::try_new(
            catalog_names_schema(),
            vec![
                Arc::new(Int64Array::from(std::mem::take(&mut self.ids))) as ArrayRef,
                Arc::new(StringArray::from(std::mem::take(&mut self.types))),
                Arc::new(self.names.finish()),
            ],
        )?;
        self.sink.write(&batch)?;
        Ok(())
    }

    fn finish(mut self) -> Result<(), SynthError> {
        self.flush()?;
        self.sink.finish()?;
        Ok(())
    }
}
