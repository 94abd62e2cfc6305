//! Does the `small` data set (the default demo data) look like real listening logs, and can
//! collaborative filtering learn from it? Generated once per test run and shared by the tests.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::OnceLock;

use common::DataSet;
use musicrec_synth::{GenerateOptions, GenerateSummary, Scale, generate};

/// 2022-12-16 and 2022-12-23 as date32: the pipeline's default split.
const TRAIN_END: i32 = 19_342;
const TARGET_END: i32 = 19_349;

struct Small {
    summary: GenerateSummary,
    data: DataSet,
}

fn small() -> &'static Small {
    static SMALL: OnceLock<Small> = OnceLock::new();
    SMALL.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("musicrec-synth-realism-small");
        let summary = generate(&GenerateOptions { scale: Scale::Small, seed: 7 }, &dir).unwrap();
        let data = common::read(&dir);
        Small { summary, data }
    })
}

#[test]
fn small_has_the_advertised_size_and_structure() {
    let Small { summary, data } = small();
    assert_eq!(summary.users, 10_000);
    assert_eq!(summary.tracks, 20_000);
    assert!((1_000_000..1_500_000).contains(&summary.events), "events {}", summary.events);
    assert_eq!(data.interactions.user.len() as u64, summary.events);
    common::check_invariants(data, summary.users);
}

#[test]
fn popularity_is_skewed_and_favourites_are_replayed() {
    let stats = &small().summary.stats;
    assert!((0.25..=0.45).contains(&stats.top1pct_track_share), "top 1% share {}", stats.top1pct_track_share);
    assert!(stats.share_tracks_under_5_users >= 0.4, "tracks under 5 users {}", stats.share_tracks_under_5_users);
    assert!((0.2..=0.5).contains(&stats.repeat_share), "repeat share {}", stats.repeat_share);
    assert!(stats.events_per_user_mean > 1.5 * stats.events_per_user_median, "activity is heavy-tailed");
}

#[test]
fn the_default_split_leaves_real_target_and_test_windows() {
    let stats = &small().summary.stats;
    for (window, share) in [("target", stats.target_window_share), ("test", stats.test_window_share)] {
        assert!((0.02..=0.1).contains(&share), "{window} window share {share}");
    }
    assert!(stats.target_users_in_train_share > 0.8, "{}", stats.target_users_in_train_share);
    assert!(stats.test_users_in_train_share > 0.8, "{}", stats.test_users_in_train_share);
    assert!((0.01..=0.08).contains(&stats.new_user_share), "new users {}", stats.new_user_share);
}

/// The manifest's statistics, recomputed independently from the files.
#[test]
fn manifest_statistics_match_the_files() {
    let Small { summary, data } = small();
    let events = &data.interactions;
    let total = events.track.len() as f64;
    let mut listens: HashMap<i32, u64> = HashMap::new();
    let mut listeners: HashMap<i32, HashSet<i32>> = HashMap::new();
    let mut repeats = 0;
    for (&user, &track) in events.user.iter().zip(&events.track) {
        *listens.entry(track).or_default() += 1;
        if !listeners.entry(track).or_default().insert(user) {
            repeats += 1;
        }
    }
    let mut counts: Vec<u64> = data.tracks.iter().map(|t| listens.get(&(t.id as i32)).copied().unwrap_or(0)).collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let top = counts[..counts.len().div_ceil(100)].iter().sum::<u64>() as f64 / total;
    let under_5 = data.tracks.iter().filter(|t| listeners.get(&(t.id as i32)).is_none_or(|l| l.len() < 5)).count()
        as f64
        / data.tracks.len() as f64;
    let in_window =
        |range: std::ops::Range<i32>| events.date.iter().filter(|d| range.contains(d)).count() as f64 / total;
    let mut first_date: HashMap<i32, i32> = HashMap::new();
    for (&user, &date) in events.user.iter().zip(&events.date) {
        first_date.entry(user).or_insert(date);
    }
    let new_users = first_date.values().filter(|&&d| d >= TRAIN_END).count() as f64 / first_date.len() as f64;

    let stats = &summary.stats;
    let close = |a: f64, b: f64| (a - b).abs() <= 5e-7;
    assert!(close(stats.top1pct_track_share, top), "{} vs {top}", stats.top1pct_track_share);
    assert!(close(stats.share_tracks_under_5_users, under_5));
    assert!(close(stats.repeat_share, repeats as f64 / total));
    assert!(close(stats.target_window_share, in_window(TRAIN_END..TARGET_END)));
    assert!(close(stats.test_window_share, in_window(TARGET_END..i32::MAX)));
    assert!(close(stats.new_user_share, new_users));
}

/// A user's future listens are predictable from what similar users listened to: recommending
/// the most popular unheard tracks of the user's favourite genre (a crude "users like you"
/// model) finds far more of the test window than recommending the globally most popular ones.
#[test]
fn similar_users_predict_future_listens_better_than_global_popularity() {
    let Small { data, .. } = small();
    let events = &data.interactions;
    let genre_of: HashMap<i32, i64> = data.tracks.iter().map(|t| (t.id as i32, t.genres[0])).collect();

    let mut heard: HashMap<i32, HashSet<i32>> = HashMap::new();
    let mut genre_listens: HashMap<i32, HashMap<i64, u64>> = HashMap::new();
    let mut popularity: HashMap<i32, u64> = HashMap::new();
    let mut relevant: HashMap<i32, HashSet<i32>> = HashMap::new();
    for row in 0..events.user.len() {
        let (user, track, date) = (events.user[row], events.track[row], events.date[row]);
        if date < TRAIN_END {
            heard.entry(user).or_default().insert(track);
            *genre_listens.entry(user).or_default().entry(genre_of[&track]).or_default() += 1;
            *popularity.entry(track).or_default() += 1;
        } else if date >= TARGET_END {
            relevant.entry(user).or_default().insert(track);
        }
    }
    let mut ranked: Vec<(i32, u64)> = popularity.into_iter().collect();
    ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut ranked_in_genre: HashMap<i64, Vec<i32>> = HashMap::new();
    for &(track, _) in &ranked {
        ranked_in_genre.entry(genre_of[&track]).or_default().push(track);
    }

    let top_10_unheard = |candidates: &mut dyn Iterator<Item = i32>, heard: &HashSet<i32>| -> Vec<i32> {
        candidates.filter(|t| !heard.contains(t)).take(10).collect()
    };
    let (mut global_recall, mut genre_recall, mut users) = (0.0, 0.0, 0);
    for (user, future) in &relevant {
        let Some(past) = heard.get(user) else { continue };
        let future: HashSet<i32> = future.difference(past).copied().collect();
        if future.is_empty() {
            continue;
        }
        let recall = |recommended: Vec<i32>| {
            recommended.iter().filter(|t| future.contains(t)).count() as f64 / future.len() as f64
        };
        let top_genre = genre_listens[user].iter().max_by_key(|&(genre, n)| (*n, -genre)).map(|(g, _)| *g).unwrap();
        global_recall += recall(top_10_unheard(&mut ranked.iter().map(|r| r.0), past));
        let genre_first = ranked_in_genre[&top_genre].iter().copied().chain(ranked.iter().map(|r| r.0));
        genre_recall += recall(top_10_unheard(&mut genre_first.into_iter(), past));
        users += 1;
    }
    let (global_recall, genre_recall) = (global_recall / users as f64, genre_recall / users as f64);
    eprintln!("recall@10 over {users} users: genre-popular {genre_recall:.4}, globally popular {global_recall:.4}");
    assert!(users > 1_000, "enough test users to judge: {users}");
    assert!(
        genre_recall > 2.0 * global_recall,
        "genre-popular {genre_recall:.4} vs globally popular {global_recall:.4}"
    );
    assert!(genre_recall > 0.02, "genre-popular recall@10 is substantial: {genre_recall:.4}");
}
