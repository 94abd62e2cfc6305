//! The generated files on `tiny`: exact schemas, determinism, invariants, and the manifest
//! protocol (written last; a stale one is removed first).

mod common;

use std::fs;
use std::path::Path;

use arrow_schema::SchemaRef;
use musicrec_data::schema::{
    CATALOG_NAMES_FILE, INTERACTIONS_FILE, TRACKS_FILE, catalog_names_schema, interactions_schema, tracks_schema,
};
use musicrec_synth::{GENERATOR_MANIFEST, GENERATOR_VERSION, GenerateOptions, Scale, generate, read_manifest};

const FILES: [&str; 4] = [INTERACTIONS_FILE, TRACKS_FILE, CATALOG_NAMES_FILE, GENERATOR_MANIFEST];

fn tiny(seed: u64, dir: &Path) -> musicrec_synth::GenerateSummary {
    generate(&GenerateOptions { scale: Scale::Tiny, seed }, dir).unwrap()
}

fn contents(dir: &Path) -> Vec<Vec<u8>> {
    FILES.iter().map(|file| fs::read(dir.join(file)).unwrap()).collect()
}

#[test]
fn files_have_exactly_the_yandex_layout_schemas() {
    let dir = tempfile::tempdir().unwrap();
    tiny(1, dir.path());
    let expected: [(&str, SchemaRef); 3] = [
        (INTERACTIONS_FILE, interactions_schema()),
        (TRACKS_FILE, tracks_schema()),
        (CATALOG_NAMES_FILE, catalog_names_schema()),
    ];
    for (file, schema) in expected {
        let batches = common::batches(dir.path(), file);
        assert!(!batches.is_empty(), "{file} has rows");
        for batch in batches {
            assert_eq!(batch.schema().fields(), schema.fields(), "{file}");
        }
    }
}

#[test]
fn tiny_has_its_advertised_size_and_satisfies_the_invariants() {
    let dir = tempfile::tempdir().unwrap();
    let summary = tiny(2, dir.path());
    assert_eq!((summary.users, summary.tracks), (300, 1_000));
    assert!((10_000..20_000).contains(&summary.events), "events {}", summary.events);
    let data = common::read(dir.path());
    assert_eq!(data.interactions.user.len() as u64, summary.events);
    assert_eq!(data.tracks.len() as u64, summary.tracks);
    let count = |kind: &str| data.names.iter().filter(|n| n.kind == kind).count() as u64;
    assert_eq!((count("album"), count("artist"), count("genre")), (summary.albums, summary.artists, summary.genres));
    common::check_invariants(&data, summary.users);
}

#[test]
fn catalogue_has_features_compilations_and_several_genres() {
    let dir = tempfile::tempdir().unwrap();
    tiny(3, dir.path());
    let data = common::read(dir.path());
    let share = |n: usize| n as f64 / data.tracks.len() as f64;
    let featured = data.tracks.iter().filter(|t| t.artists.len() == 2).count();
    let compiled = data.tracks.iter().filter(|t| t.albums.len() == 2).count();
    let two_genres = data.tracks.iter().filter(|t| t.genres.len() == 2).count();
    assert!(share(featured) > 0.02, "features: {featured}");
    assert!(compiled > 0, "compilations");
    assert!(share(two_genres) > 0.05, "two-genre tracks: {two_genres}");
}

#[test]
fn same_seed_gives_the_same_bytes_and_another_seed_other_data() {
    let (first, second, other) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    tiny(11, first.path());
    tiny(11, second.path());
    tiny(12, other.path());
    assert!(contents(first.path()) == contents(second.path()), "same seed, same bytes");
    for (index, file) in FILES.iter().enumerate() {
        assert!(contents(first.path())[index] != contents(other.path())[index], "{file} differs between seeds");
    }
}

#[test]
fn thread_count_does_not_change_the_data() {
    let run = |threads: usize| {
        let dir = tempfile::tempdir().unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| tiny(5, dir.path()));
        contents(dir.path())
    };
    let single = run(1);
    assert!(single == run(2), "1 thread vs 2 threads");
    assert!(single == run(3), "1 thread vs 3 threads");
}

#[test]
fn manifest_is_written_last_and_describes_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let summary = tiny(4, dir.path());
    let manifest = read_manifest(dir.path()).unwrap().expect("a complete data set has a manifest");
    assert_eq!(manifest, summary);
    assert_eq!((manifest.generator_version, manifest.scale, manifest.seed), (GENERATOR_VERSION, Scale::Tiny, 4));
    let modified = |file: &str| fs::metadata(dir.path().join(file)).unwrap().modified().unwrap();
    for file in &FILES[..3] {
        assert!(modified(file) <= modified(GENERATOR_MANIFEST), "{file} is written before the manifest");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join(GENERATOR_MANIFEST)).unwrap()).unwrap();
    assert_eq!(json["scale"], "tiny");
    assert!(json["stats"]["repeat_share"].is_f64());
}

#[test]
fn a_stale_manifest_is_removed_before_anything_is_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    tiny(6, dir.path());
    // Generating into a path whose parent is a file fails on the first parquet file; by then the
    // old manifest must already be gone, so the directory no longer claims to be complete.
    fs::remove_file(dir.path().join(TRACKS_FILE)).unwrap();
    fs::create_dir(dir.path().join(TRACKS_FILE)).unwrap();
    assert!(generate(&GenerateOptions { scale: Scale::Tiny, seed: 6 }, dir.path()).is_err());
    assert!(read_manifest(dir.path()).unwrap().is_none());
    assert!(!dir.path().join(GENERATOR_MANIFEST).exists());
}

#[test]
fn no_manifest_means_no_data_set_and_a_corrupt_one_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(read_manifest(dir.path()).unwrap().is_none());
    fs::write(dir.path().join(GENERATOR_MANIFEST), b"{ not json").unwrap();
    let error = read_manifest(dir.path()).unwrap_err().to_string();
    assert!(error.contains(GENERATOR_MANIFEST), "{error}");
}
