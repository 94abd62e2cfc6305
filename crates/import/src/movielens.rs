//! MovieLens: the classic 100K layout (`u.data`, `u.item`, `u.genre`) or the CSV layout of the
//! later releases (`ratings.csv`, `movies.csv`). A movie is a track; its genres are our
//! genres; a rating at or above the threshold is a listen on its day.

use std::path::Path;

use musicrec_data::schema::EntityType;

use crate::error::ImportError;
use crate::ids::StableIds;
use crate::text::{CSV, Delimited, Dialect};
use crate::time::{TimeUnit, day_of_ticks};
use crate::writer::LayoutWriter;
use crate::{Layout, detect};

const CLASSIC: Layout = Layout { name: "MovieLens 100K", files: &["u.data", "u.item", "u.genre"] };
const CSV_LAYOUT: Layout = Layout { name: "MovieLens CSV", files: &["ratings.csv", "movies.csv"] };

/// Rows read; listens go to `out`.
pub fn import(source: &Path, min_rating: f64, out: &mut LayoutWriter) -> Result<u64, ImportError> {
    let mut genres = StableIds::new("genre");
    match detect(source, "MovieLens", &[CLASSIC, CSV_LAYOUT])? {
        0 => {
            let names = classic_genres(&source.join("u.genre"))?;
            classic_movies(&source.join("u.item"), &names, &mut genres, out)?;
            let tab = Dialect { delimiter: b'\t', header: false, quoting: false };
            ratings(&source.join("u.data"), tab, [0, 1, 2, 3], min_rating, out)
        }
        _ => {
            csv_movies(&source.join("movies.csv"), &mut genres, out)?;
            let mut file = Delimited::open(&source.join("ratings.csv"), CSV)?;
            let columns = ["userId", "movieId", "rating", "timestamp"].map(|c| file.column(c));
            let [u, m, r, t] = columns;
            let columns = [u?, m?, r?, t?];
            read_ratings(&mut file, columns, min_rating, out)
        }
    }
}

/// `u.genre`: `name|index` per line; the flags of `u.item` follow this order.
fn classic_genres(path: &Path) -> Result<Vec<String>, ImportError> {
    let mut file = Delimited::open(path, Dialect { delimiter: b'|', header: false, quoting: false })?;
    let mut names: Vec<(usize, String)> = Vec::new();
    while let Some(record) = file.next()? {
        record.expect_fields(2, "genre|index")?;
        let index: usize = record.parse(1, "index", "a genre index")?;
        names.push((index, record.latin1(0)));
    }
    names.sort();
    if names.iter().enumerate().any(|(i, (index, _))| *index != i) {
        return Err(ImportError::Line {
            file: file.file.clone(),
            line: 0,
            reason: "genre indexes must run 0, 1, 2, ... (one per genre flag of u.item)".into(),
        });
    }
    Ok(names.into_iter().map(|(_, name)| name).collect())
}

/// `u.item`: `id|title|release|video release|IMDb URL|flag per genre`, Latin-1.
fn classic_movies(
    path: &Path,
    genre_names: &[String],
    genres: &mut StableIds,
    out: &mut LayoutWriter,
) -> Result<(), ImportError> {
    let mut file = Delimited::open(path, Dialect { delimiter: b'|', header: false, quoting: false })?;
    while let Some(record) = file.next()? {
        record.expect_fields(
            5 + genre_names.len(),
            "movie id|title|release date|video release date|IMDb URL|genre flags",
        )?;
        let movie: i64 = record.parse(0, "movie id", "an integer movie id")?;
        out.name(EntityType::Track, movie, &record.latin1(1));
        for (g, genre) in genre_names.iter().enumerate() {
            let flag = record.text(5 + g);
            match flag.as_ref() {
                "1" => {
                    let id = genres.id(&[genre])?;
                    out.link(movie, EntityType::Genre, id);
                    out.name(EntityType::Genre, id, genre);
                }
                "0" => {}
                other => return Err(record.bad(&format!("genre flag {genre}"), other, "0 or 1")),
            }
        }
    }
    Ok(())
}

/// `movies.csv`: `movieId,title,genres` with genres `|`-separated.
fn csv_movies(path: &Path, genres: &mut StableIds, out: &mut LayoutWriter) -> Result<(), ImportError> {
    let mut file = Delimited::open(path, CSV)?;
    let (m, t, g) = (file.column("movieId")?, file.column("title")?, file.column("genres")?);
    while let Some(record) = file.next()? {
        let movie: i64 = record.parse(m, "movieId", "an integer movie id")?;
        out.name(EntityType::Track, movie, &record.text(t));
        let list = record.text(g);
        for genre in list.split('|').map(str::trim).filter(|g| !g.is_empty() && *g != "(no genres listed)") {
            let id = genres.id(&[genre])?;
            out.link(movie, EntityType::Genre, id);
            out.name(EntityType::Genre, id, genre);
        }
    }
    Ok(())
}

fn ratings(
    path: &Path,
    dialect: Dialect,
    columns: [usize; 4],
    min_rating: f64,
    out: &mut LayoutWriter,
) -> Result<u64, ImportError> {
    let mut file = Delimited::open(path, dialect)?;
    read_ratings(&mut file, columns, min_rating, out)
}

/// user, movie, rating, timestamp (seconds) per record at the given columns.
fn read_ratings(
    file: &mut Delimited,
    [u, m, r, t]: [usize; 4],
    min_rating: f64,
    out: &mut LayoutWriter,
) -> Result<u64, ImportError> {
    let mut rows = 0;
    let need = u.max(m).max(r).max(t) + 1;
    while let Some(record) = file.next()? {
        rows += 1;
        record.expect_fields(need, "user, movie, rating, timestamp")?;
        let user: i64 = record.parse(u, "user id", "an integer user id")?;
        let movie: i64 = record.parse(m, "movie id", "an integer movie id")?;
        let rating: f64 = record.parse(r, "rating", "a number")?;
        let seconds: i64 = record.parse(t, "timestamp", TimeUnit::Seconds.expected())?;
        let Some(day) = day_of_ticks(seconds, 86_400) else {
            return Err(record.bad("timestamp", &seconds.to_string(), "a time between the years 1900 and 2999"));
        };
        if rating >= min_rating {
            out.event(user, movie, day)?;
        }
    }
    Ok(rows)
}
