//! One import per format and layout, every output value checked by hand.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use musicrec_data::schema::EntityType;
use musicrec_import::{ColumnMap, Source, TimeUnit, YambdaEvents, YambdaOptions, stable_id};

use crate::common::*;
use crate::yambda_fixture::write_yambda;

#[test]
fn movielens_100k() {
    let out = run(&Source::MovieLens { min_rating: 3.0 }, &fixture("movielens-100k"));
    // The rating of 2 (user 2, movie 3) is not a listen; positions follow the file per user.
    let d = |date| day(date);
    assert_eq!(
        out.events,
        vec![
            (1, 1, 0, d("1997-09-22")),
            (1, 2, 1, d("1997-09-23")),
            (2, 1, 0, d("1997-09-24")),
            (3, 3, 0, d("1997-09-26")),
            (3, 2, 1, d("1997-09-27")),
            (1, 3, 2, d("1997-09-28")),
        ]
    );
    // Movie 4 has no ratings but is in the catalogue.
    assert_eq!(out.tracks.encoder.ids(), &[1, 2, 3, 4]);
    assert_eq!(out.name(EntityType::Track, 3), Some("Café Society (1995)"), "Latin-1 decoded");
    assert_eq!(out.genres_of(3), ["Comedy", "Drama"]);
    assert_eq!(out.genres_of(4), ["unknown"]);
    assert_eq!(out.names_of(EntityType::Genre).len(), 4);
    assert!(out.tracks.albums.values.is_empty() && out.tracks.artists.values.is_empty());
    let s = &out.summary;
    assert_eq!((s.rows_read, s.events, s.users, s.tracks), (7, 6, 3, 4));
    // Six days, nothing in the week before the last: the quantile rule.
    assert_eq!(
        (s.suggested_split.train_end.as_str(), s.suggested_split.target_end.as_str(), s.suggested_split.rule),
        ("1997-09-27", "1997-09-28", "event_quantiles")
    );
    let config = std::fs::read_to_string(out.out().join("config.yaml")).unwrap();
    assert!(config.contains("train_end: 1997-09-27\n  target_end: 1997-09-28\n"), "{config}");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.out().join("import.json")).unwrap()).unwrap();
    assert_eq!(manifest["events"], 6);
    assert_eq!(manifest["format"], "movielens");
    // Only the published files: no staging directory left.
    let mut files: Vec<String> =
        files_under(&out.out()).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(
        files,
        ["catalog_names.parquet", "config.yaml", "import.json", "interactions.parquet", "tracks.parquet"]
    );
}

#[test]
fn movielens_csv_and_the_default_threshold() {
    let out = run(&Source::MovieLens { min_rating: f64::NEG_INFINITY }, &fixture("movielens-csv"));
    assert_eq!(out.events.len(), 4, "every rating is a listen by default");
    assert_eq!(out.name(EntityType::Track, 10), Some("Heat, The (1995)"));
    assert_eq!(out.genres_of(10), ["Action", "Crime"]);
    assert_eq!(out.genres_of(30), Vec::<String>::new(), "(no genres listed) is no genre");
    // Genre ids are stable ids of the names, shared with the 100K layout's.
    assert_eq!(
        out.names_of(EntityType::Genre).get(&stable_id("genre", &["Action"]).0).map(String::as_str),
        Some("Action")
    );
    let out = run(&Source::MovieLens { min_rating: 3.5 }, &fixture("movielens-csv"));
    assert_eq!(out.events.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(), [(1, 10), (1, 20), (2, 10)]);
}

#[test]
fn lastfm_1k() {
    let out = run(&Source::LastFm1k, &fixture("lastfm-1k"));
    let flashdance = stable_id("track", &["mbid", "b1000000-0000-0000-0000-000000000001"]).0;
    let say_hello = stable_id("track", &["name", "Deep Dish", "Say Hello"]).0;
    let quoted = stable_id("track", &["name", "The \"Quoted\" Band", "Track \"One\""]).0;
    let slippy = stable_id("track", &["name", "Underworld", "Born Slippy"]).0;
    let events: Vec<(i64, i64, i32)> = out.events.iter().map(|e| (e.0, e.1, e.2)).collect();
    assert_eq!(events, [(1, flashdance, 0), (1, say_hello, 1), (1, quoted, 2), (2, flashdance, 0), (2, slippy, 1)]);
    assert_eq!(out.events[2].3, day("2009-05-04"));
    assert_eq!(out.name(EntityType::Track, quoted), Some("Track \"One\""));
    let deep_dish = stable_id("artist", &["mbid", "a1000000-0000-0000-0000-000000000001"]).0;
    let artists = out.names_of(EntityType::Artist);
    assert_eq!(artists.values().cloned().collect::<Vec<_>>().len(), 3);
    assert_eq!(artists[&deep_dish], "Deep Dish");
    let index = out.tracks.encoder.encode(say_hello).unwrap() as usize;
    assert_eq!(out.tracks.artists.get(index), [deep_dish]);
    // Stable: a second import gives the same ids.
    let again = run(&Source::LastFm1k, &fixture("lastfm-1k/userid-timestamp-artid-artname-traid-traname.tsv"));
    assert_eq!(again.tracks.encoder.ids(), out.tracks.encoder.ids());
}

fn yambda(events: YambdaEvents) -> Source {
    Source::Yambda(YambdaOptions {
        events,
        min_played_ratio: 50.0,
        start_date: NaiveDate::from_ymd_opt(2022, 1, 1).unwrap(),
    })
}

#[test]
fn yambda_listens_likes_and_mappings() {
    let root = tempfile::tempdir().unwrap();
    let events = write_yambda(root.path());
    let out = run(&yambda(YambdaEvents::Listens), &events);
    let d = |date| day(date);
    assert_eq!(
        out.events,
        [
            (100, 7, 0, d("2022-01-01")),
            (100, 9, 1, d("2022-01-03")),
            (200, 7, 0, d("2022-01-04")),
            (200, 8, 1, d("2022-01-11"))
        ]
    );
    assert_eq!(out.tracks.encoder.ids(), &[7, 8, 9], "only tracks with events");
    let index = out.tracks.encoder.encode(9).unwrap() as usize;
    assert_eq!((out.tracks.albums.get(index), out.tracks.artists.get(index)), (&[90, 91][..], &[900][..]));
    assert_eq!(out.name(EntityType::Track, 9), Some("track 9"), "anonymised: named by id");
    assert_eq!(out.name(EntityType::Album, 91), Some("album 91"));
    assert_eq!(out.summary.rows_read, 5);

    let both = run(&yambda(YambdaEvents::Both), &events);
    assert_eq!(both.events.len(), 5);
    assert_eq!(both.events[4], (300, 9, 0, d("2022-01-06")));
    // One like on one day: nothing to split.
    let err = musicrec_import::import(&yambda(YambdaEvents::Likes), &events, &root.path().join("likes")).unwrap_err();
    assert!(err.to_string().contains("only 1 distinct day(s) (2022-01-06..2022-01-06)"), "{err}");
}

#[test]
fn generic_csv_with_an_item_table() {
    let map = ColumnMap {
        user: "listener".into(),
        item: "song".into(),
        time: "played_at".into(),
        unit: TimeUnit::Rfc3339,
        items: Some(fixture("csv/items.csv")),
    };
    let out = run(&Source::Csv(map), &fixture("csv/events.csv"));
    let user = |name: &str| stable_id("user", &[name]).0;
    let song = |name: &str| stable_id("track", &[name]).0;
    let events: Vec<(i64, i64, i32)> = out.events.iter().map(|e| (e.0, e.1, e.3)).collect();
    assert_eq!(
        events,
        [
            (user("alice"), song("s1"), day("2024-03-01")),
            (user("bob"), song("s2"), day("2024-03-02")),
            // 00:30 at +01:00 is the previous day in UTC.
            (user("alice"), song("s2"), day("2024-03-02")),
            (user("carol"), song("s3"), day("2024-03-04")),
        ]
    );
    assert_eq!(out.name(EntityType::Track, song("s1")), Some("Song One"));
    assert_eq!(out.genres_of(song("s1")), ["pop", "rock"]);
    let albums: BTreeMap<i64, String> = out.names_of(EntityType::Album);
    assert_eq!(albums.values().collect::<Vec<_>>(), ["Album X"]);
    let s3 = out.tracks.encoder.encode(song("s3")).unwrap() as usize;
    assert!(out.tracks.artists.get(s3).is_empty() && out.tracks.genres.get(s3).is_empty());
}

#[test]
fn generic_parquet_with_timestamps_and_integer_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.parquet");
    let ms = |date: &str| i64::from(day(date)) * 86_400_000 + 3_600_000;
    write_parquet(
        &path,
        vec![
            ("u", arr(arrow_array::Int32Array::from(vec![5, 6, 5]))),
            ("t", arr(arrow_array::StringArray::from(vec!["x", "y", "x"]))),
            (
                "when",
                arr(arrow_array::TimestampMillisecondArray::from(vec![
                    ms("2023-06-01"),
                    ms("2023-06-02"),
                    ms("2023-06-03"),
                ])),
            ),
        ],
    );
    let map =
        ColumnMap { user: "u".into(), item: "t".into(), time: "when".into(), unit: TimeUnit::Seconds, items: None };
    let out = run(&Source::Csv(map), &path);
    let x = stable_id("track", &["x"]).0;
    assert_eq!(out.events[0], (5, x, 0, day("2023-06-01")));
    assert_eq!(out.events[2], (5, x, 1, day("2023-06-03")));
    assert_eq!(out.name(EntityType::Track, x), Some(&*format!("track {x}")));
}
