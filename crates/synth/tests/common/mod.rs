//! Reading a generated data directory back into plain vectors, for the integration tests.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int16Type, Int32Type, Int64Type};
use arrow_array::{Array, ListArray, RecordBatch};
use musicrec_data::parquet_io::read_batches;
use musicrec_data::schema::{CATALOG_NAMES_FILE, INTERACTIONS_FILE, TRACKS_FILE};

pub struct Interactions {
    pub user: Vec<i32>,
    pub track: Vec<i32>,
    pub seq: Vec<i16>,
    /// Days since 1970-01-01 (arrow date32).
    pub date: Vec<i32>,
}

pub struct TrackRow {
    pub id: i64,
    pub albums: Vec<i64>,
    pub artists: Vec<i64>,
    pub genres: Vec<i64>,
}

pub struct NameRow {
    pub id: i64,
    pub kind: String,
    pub name: String,
}

pub struct DataSet {
    pub interactions: Interactions,
    pub tracks: Vec<TrackRow>,
    pub names: Vec<NameRow>,
}

pub fn batches(dir: &Path, file: &str) -> Vec<RecordBatch> {
    read_batches(&dir.join(file)).unwrap()
}

pub fn read(dir: &Path) -> DataSet {
    let mut interactions = Interactions { user: vec![], track: vec![], seq: vec![], date: vec![] };
    for batch in batches(dir, INTERACTIONS_FILE) {
        interactions.user.extend(batch.column(0).as_primitive::<Int32Type>().values());
        interactions.track.extend(batch.column(1).as_primitive::<Int32Type>().values());
        interactions.seq.extend(batch.column(2).as_primitive::<Int16Type>().values());
        interactions.date.extend(batch.column(3).as_primitive::<Date32Type>().values());
    }
    let mut tracks = vec![];
    for batch in batches(dir, TRACKS_FILE) {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let (albums, artists, genres) =
            (batch.column(1).as_list(), batch.column(2).as_list(), batch.column(3).as_list());
        for row in 0..batch.num_rows() {
            tracks.push(TrackRow {
                id: ids.value(row),
                albums: list_values(albums, row),
                artists: list_values(artists, row),
                genres: list_values(genres, row),
            });
        }
    }
    let mut names = vec![];
    for batch in batches(dir, CATALOG_NAMES_FILE) {
        let (ids, kinds, texts) = (
            batch.column(0).as_primitive::<Int64Type>(),
            batch.column(1).as_string::<i32>(),
            batch.column(2).as_string::<i32>(),
        );
        for row in 0..batch.num_rows() {
            names.push(NameRow {
                id: ids.value(row),
                kind: kinds.value(row).to_owned(),
                name: texts.value(row).to_owned(),
            });
        }
    }
    DataSet { interactions, tracks, names }
}

fn list_values(list: &ListArray, row: usize) -> Vec<i64> {
    assert!(list.is_valid(row));
    list.value(row).as_primitive::<Int64Type>().values().to_vec()
}

/// The structural invariants every generated data set must satisfy.
pub fn check_invariants(data: &DataSet, users: u64) {
    use std::collections::{HashMap, HashSet};

    let track_ids: HashSet<i64> = data.tracks.iter().map(|t| t.id).collect();
    assert_eq!(track_ids.len(), data.tracks.len(), "track ids are unique");
    assert!(data.tracks.windows(2).all(|w| w[0].id < w[1].id), "tracks.parquet is ordered by id");
    let max_id = data.tracks.iter().map(|t| t.id).max().unwrap();
    assert!(data.tracks[0].id > 0 && max_id < i64::from(i32::MAX), "track ids positive and int32-safe");
    assert!(max_id as usize > 2 * data.tracks.len(), "track ids are scattered, not dense");

    let names: HashMap<(String, i64), &str> =
        data.names.iter().map(|n| ((n.kind.clone(), n.id), n.name.as_str())).collect();
    assert_eq!(names.len(), data.names.len(), "one name row per (type, id)");
    assert!(data.names.iter().all(|n| ["album", "artist", "genre", "track"].contains(&n.kind.as_str())));
    assert!(data.names.iter().all(|n| !n.name.trim().is_empty()));
    let named = |kind: &str, id: i64| names.contains_key(&(kind.to_owned(), id));
    for track in &data.tracks {
        assert!(named("track", track.id), "track {} has a name", track.id);
        for (kind, ids) in [("album", &track.albums), ("artist", &track.artists), ("genre", &track.genres)] {
            assert!((1..=2).contains(&ids.len()), "track {} has 1-2 {kind}s: {ids:?}", track.id);
            assert!(ids.iter().all(|&id| named(kind, id)), "track {}: every {kind} is named", track.id);
        }
    }
    let named_per_kind = |kind: &str| data.names.iter().filter(|n| n.kind == kind).count();
    assert_eq!(named_per_kind("track"), data.tracks.len(), "no names for tracks that do not exist");
    for kind in ["album", "artist", "genre"] {
        let used: HashSet<i64> = data
            .tracks
            .iter()
            .flat_map(|t| match kind {
                "album" => &t.albums,
                "artist" => &t.artists,
                _ => &t.genres,
            })
            .copied()
            .collect();
        assert_eq!(used.len(), named_per_kind(kind), "every named {kind} is used by a track");
    }

    let events = &data.interactions;
    assert!(events.track.iter().all(|&t| track_ids.contains(&i64::from(t))), "every listened track exists");
    let year = 18_993..=19_357; // 2022-01-01 ..= 2022-12-31
    assert!(events.date.iter().all(|d| year.contains(d)), "every event is in 2022");
    let mut expected_user = 0;
    for row in 0..events.user.len() {
        let continues = row > 0 && events.user[row] == events.user[row - 1];
        if continues {
            assert_eq!(events.seq[row], events.seq[row - 1] + 1, "track_seq counts up by one (row {row})");
            assert!(events.date[row] >= events.date[row - 1], "history is in time order (row {row})");
        } else {
            assert_eq!(events.user[row], expected_user, "users are ordered and every user listened (row {row})");
            assert_eq!(events.seq[row], 1, "track_seq starts at 1 (row {row})");
            expected_user += 1;
        }
    }
    assert_eq!(expected_user as u64, users);
}
