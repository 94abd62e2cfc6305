//! The served tracks' names: each track's name, album, artists and genres from the catalogue
//! tables the preprocess stage publishes (`musicrec_artifacts::layout::preprocess`), held per
//! dense item so that describing a recommended track is a few array reads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_cast::cast;
use arrow_schema::DataType;
use musicrec_artifacts::layout::preprocess::{names_file, track_entities_file};
use musicrec_data::parquet_io::for_each_batch;
use musicrec_data::schema::EntityType;
use musicrec_data::{DataError, IdEncoder};
use serde::Serialize;
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::blend::Source;
use crate::error::ServiceError;

/// Each dense item's links to the named entities of one kind, as indices into
/// `Catalogue::entity_names`: `names[offsets[item]..offsets[item + 1]]`.
#[derive(Debug, Default)]
struct Links {
    offsets: Vec<u32>,
    names: Vec<u32>,
}

impl Links {
    fn get(&self, item: u32) -> &[u32] {
        let i = item as usize;
        if i + 1 >= self.offsets.len() {
            return &[];
        }
        &self.names[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }
}

#[derive(Debug, Default)]
pub struct Catalogue {
    /// Per dense item, an index into `entity_names`, `u32::MAX` for a track without a name.
    track_names: Vec<u32>,
    albums: Links,
    artists: Links,
    genres: Links,
    entity_names: Vec<Box<str>>,
}

/// What the catalogue says of one track.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Details<'a> {
    pub name: Option<&'a str>,
    pub artists: Vec<&'a str>,
    pub album: Option<&'a str>,
    pub genres: Vec<&'a str>,
}

impl Catalogue {
    /// Reads the names and the track → album/artist/genre tables; `listed` gives the path of a
    /// file the preprocess stage's manifest lists. Rows of tracks outside `items` (catalogue
    /// tracks no one listened to in any window) are not kept.
    pub fn load(
        listed: impl Fn(&str) -> Result<PathBuf, ServiceError>,
        items: &IdEncoder,
    ) -> Result<Self, ServiceError> {
        let mut entity_names = Vec::new();
        let mut index = HashMap::new();
        for kind in EntityType::ALL {
            let path = listed(&names_file(kind))?;
            read_pairs(&path, "id", "name", |id, name| {
                index.insert((kind, id), entity_names.len() as u32);
                entity_names.push(name.into());
            })?;
        }
        let mut track_names = vec![u32::MAX; items.len()];
        for (&(kind, id), &name) in &index {
            if kind == EntityType::Track
                && let Some(item) = items.encode(id)
            {
                track_names[item as usize] = name;
            }
        }
        let links = |kind: EntityType| -> Result<Links, ServiceError> {
            let path = listed(&track_entities_file(kind))?;
            let entity_column = format!("{}_id", kind.as_str());
            let mut pairs = Vec::new();
            read_ids(&path, "track_id", &entity_column, |track, entity| {
                if let (Some(item), Some(&name)) = (items.encode(track), index.get(&(kind, entity))) {
                    pairs.push((item, name));
                }
            })?;
            // Stable: a track's entities keep the catalogue's order (its first album first).
            pairs.sort_by_key(|&(item, _)| item);
            let mut offsets = vec![0u32; items.len() + 1];
            for &(item, _) in &pairs {
                offsets[item as usize + 1] += 1;
            }
            for i in 0..items.len() {
                offsets[i + 1] += offsets[i];
            }
            Ok(Links { offsets, names: pairs.into_iter().map(|(_, name)| name).collect() })
        };
        Ok(Self {
            albums: links(EntityType::Album)?,
            artists: links(EntityType::Artist)?,
            genres: links(EntityType::Genre)?,
            track_names,
            entity_names,
        })
    }

    fn name(&self, index: u32) -> Option<&str> {
        self.entity_names.get(index as usize).map(|n| &**n)
    }

    /// The names of the dense item `item`; all empty for an item the catalogue does not name.
    pub fn details(&self, item: u32) -> Details<'_> {
        let names = |links: &Links| -> Vec<&str> { links.get(item).iter().filter_map(|&n| self.name(n)).collect() };
        Details {
            name: self.track_names.get(item as usize).and_then(|&n| self.name(n)),
            artists: names(&self.artists),
            album: self.albums.get(item).first().and_then(|&n| self.name(n)),
            genres: names(&self.genres),
        }
    }
}

/// How much of each track an answer carries (`fields=` of the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Fields {
    /// `track_id` (and `source` in lists that have one).
    Ids,
    /// Also `score`, `name`, `artists`, `album`, `genres`.
    #[default]
    All,
}

impl Fields {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ids" => Some(Self::Ids),
            "all" => Some(Self::All),
            _ => None,
        }
    }
}

/// One track of an answer, as the API and `musicrec recommend --json` print it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Track<'a> {
    pub track_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub about: Option<About<'a>>,
}

/// The `fields=all` part of a track.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct About<'a> {
    /// What the list's producer scored the track: see docs/service.md#scores.
    pub score: Option<f32>,
    #[serde(flatten)]
    pub details: Details<'a>,
}

/// Written by hand rather than derived: every field but `track_id` is absent with `fields=ids`
/// (`about` is flattened and optional as a whole), which the derive cannot say.
impl PartialSchema for Track<'_> {
    fn schema() -> RefOr<Schema> {
        let nullable = |kind: Type| SchemaType::from_iter([kind, Type::Null]);
        let strings = || ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::String));
        ObjectBuilder::new()
            .description(Some(
                "A track; with fields=ids only track_id (and source). source is present in lists that have one.",
            ))
            .property(
                "track_id",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64))),
            )
            .required("track_id")
            .property("source", Ref::from_schema_name(Source::name()))
            .property(
                "score",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::Number))
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Float)))
                    .description(Some("What the list's producer scored the track; null where it has none")),
            )
            .property("name", ObjectBuilder::new().schema_type(nullable(Type::String)))
            .property("artists", strings())
            .property("album", ObjectBuilder::new().schema_type(nullable(Type::String)))
            .property("genres", strings())
            .into()
    }
}

impl ToSchema for Track<'_> {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((Source::name().into(), Source::schema()));
    }
}

/// Calls `each(id, name)` for every row of an (int64, utf8) pair of columns.
fn read_pairs(path: &Path, id: &str, name: &str, mut each: impl FnMut(i64, &str)) -> Result<(), DataError> {
    for_each_batch(path, &[id, name], |batch| {
        let ids = integers(path, batch.column(0), id)?;
        let names = cast(batch.column(1), &DataType::Utf8)
            .map_err(|e| DataError::corrupt(path, format!("column `{name}` is not a text column: {e}")))?;
        let (ids, names) = (ids.as_primitive::<Int64Type>(), names.as_string::<i32>());
        for row in 0..batch.num_rows() {
            if !ids.is_null(row) && !names.is_null(row) {
                each(ids.value(row), names.value(row));
            }
        }
        Ok(())
    })
}

/// Calls `each(a, b)` for every row of two integer columns.
fn read_ids(path: &Path, a: &str, b: &str, mut each: impl FnMut(i64, i64)) -> Result<(), DataError> {
    for_each_batch(path, &[a, b], |batch| {
        let (xs, ys) = (integers(path, batch.column(0), a)?, integers(path, batch.column(1), b)?);
        let (xs, ys) = (xs.as_primitive::<Int64Type>(), ys.as_primitive::<Int64Type>());
        for row in 0..batch.num_rows() {
            if !xs.is_null(row) && !ys.is_null(row) {
                each(xs.value(row), ys.value(row));
            }
        }
        Ok(())
    })
}

fn integers(path: &Path, column: &arrow_array::ArrayRef, name: &str) -> Result<arrow_array::ArrayRef, DataError> {
    cast(column, &DataType::Int64)
        .map_err(|e| DataError::corrupt(path, format!("column `{name}` is not an integer column: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_serialize_with_or_without_their_names() {
        let details = Details { name: Some("Song"), artists: vec!["A", "B"], album: None, genres: vec!["rock"] };
        let all = Track {
            track_id: 7,
            source: Some(Source::Offline),
            about: Some(About { score: Some(0.5), details: details.clone() }),
        };
        assert_eq!(
            serde_json::to_value(&all).unwrap(),
            serde_json::json!({"track_id": 7, "source": "offline", "score": 0.5, "name": "Song",
                               "artists": ["A", "B"], "album": null, "genres": ["rock"]})
        );
        let ids = Track { track_id: 7, source: None, about: None };
        assert_eq!(serde_json::to_value(&ids).unwrap(), serde_json::json!({"track_id": 7}));
        let unscored = Track { track_id: 7, source: None, about: Some(About { score: None, details }) };
        assert_eq!(serde_json::to_value(&unscored).unwrap()["score"], serde_json::Value::Null);
        assert_eq!(
            (Fields::parse("ids"), Fields::parse("all"), Fields::parse("names")),
            (Some(Fields::Ids), Some(Fields::All), None)
        );
    }

    #[test]
    fn links_of_an_unknown_item_are_empty() {
        let links = Links { offsets: vec![0, 2, 2], names: vec![0, 1] };
        assert_eq!((links.get(0), links.get(1), links.get(9)), (&[0, 1][..], &[][..], &[][..]));
    }
}
