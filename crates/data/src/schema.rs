//! The Yandex Music layout (docs/data.md#layout): file and column names, and the exact arrow schemas this
//! program writes. Readers accept any integer width and any date/timestamp unit; writers emit
//! exactly these types so generated data is byte-identical to what a reader of the real data
//! set expects.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};

pub const INTERACTIONS_FILE: &str = "interactions.parquet";
pub const TRACKS_FILE: &str = "tracks.parquet";
pub const CATALOG_NAMES_FILE: &str = "catalog_names.parquet";
/// The files of a data set.
pub const DATA_FILES: [&str; 3] = [INTERACTIONS_FILE, TRACKS_FILE, CATALOG_NAMES_FILE];

pub const USER_ID: &str = "user_id";
pub const TRACK_ID: &str = "track_id";
pub const TRACK_SEQ: &str = "track_seq";
pub const STARTED_AT: &str = "started_at";
pub const ALBUMS: &str = "albums";
pub const ARTISTS: &str = "artists";
pub const GENRES: &str = "genres";
pub const ID: &str = "id";
pub const TYPE: &str = "type";
pub const NAME: &str = "name";

/// The four kinds of named catalog entity, in the order used for feature columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityType {
    Album,
    Artist,
    Genre,
    Track,
}

impl EntityType {
    pub const ALL: [EntityType; 4] = [Self::Album, Self::Artist, Self::Genre, Self::Track];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Album => "album",
            Self::Artist => "artist",
            Self::Genre => "genre",
            Self::Track => "track",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

fn list_of_i64(name: &str) -> Field {
    Field::new(name, DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))), false)
}

/// interactions: user_id int32, track_id int32, track_seq int16, started_at date32.
pub fn interactions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(USER_ID, DataType::Int32, false),
        Field::new(TRACK_ID, DataType::Int32, false),
        Field::new(TRACK_SEQ, DataType::Int16, false),
        Field::new(STARTED_AT, DataType::Date32, false),
    ]))
}

/// tracks: track_id int64, albums/artists/genres list<int64>.
pub fn tracks_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(TRACK_ID, DataType::Int64, false),
        list_of_i64(ALBUMS),
        list_of_i64(ARTISTS),
        list_of_i64(GENRES),
    ]))
}

/// catalog_names: id int64, type utf8, name utf8.
pub fn catalog_names_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(ID, DataType::Int64, false),
        Field::new(TYPE, DataType::Utf8, false),
        Field::new(NAME, DataType::Utf8, false),
    ]))
}
