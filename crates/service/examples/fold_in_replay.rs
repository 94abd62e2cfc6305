//! Does the fold-in improve the blend? Replays a finished run's test window as a stream: for
//! a sample of its users (old and new), the first M test listens are the recent events, k = 10
//! recommendations are asked for, and hits are counted against the user's remaining test
//! listens, with the fold-in source on and off (everything else the same config).
//! `cargo run --release -p musicrec-service --example fold_in_replay -- ARTIFACTS [USERS] [M]`

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use musicrec_artifacts::layout::preprocess::Window;
use musicrec_artifacts::{Artifacts, Stage};
use musicrec_data::parquet_io::read_i64_column;
use musicrec_service::model::ServingModel;

const K: usize = 10;

#[derive(Default)]
struct Score {
    users: usize,
    hits: usize,
    relevant: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: fold_in_replay ARTIFACTS [USERS] [M]")?);
    let sample: usize = args.next().map_or(Ok(2000), |a| a.parse())?;
    let m: usize = args.next().map_or(Ok(2), |a| a.parse())?;
    let config = musicrec_config::Config::load(None)?.service;
    let artifacts = Artifacts::new(&dir);
    let on = ServingModel::load(&artifacts, &musicrec_config::ServiceConfig { fold_in: true, ..config.clone() })?;
    let off = ServingModel::load(&artifacts, &musicrec_config::ServiceConfig { fold_in: false, ..config })?;

    artifacts.manifest(Stage::Preprocess)?;
    let test = artifacts.dir(Stage::Preprocess).join(Window::Test.file());
    let read = |column| read_i64_column(&test, column);
    let (users, tracks) = (read("user_id")?, read("track_id")?);
    // Each user's test listens in file order (the window's chronological order).
    let mut streams: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for (user, track) in users.into_iter().zip(tracks) {
        streams.entry(user).or_default().push(track);
    }
    let eligible: Vec<(&i64, &Vec<i64>)> = streams.iter().filter(|(_, s)| s.len() > m).collect();
    let step = (eligible.len() / sample.max(1)).max(1);

    let mut scores: BTreeMap<(&str, &str), Score> = BTreeMap::new();
    let mut seconds: BTreeMap<&str, f64> = BTreeMap::new();
    for &(&user, stream) in eligible.iter().step_by(step).take(sample) {
        let group = if on.users.encode(user).is_some() { "old" } else { "new" };
        // The events store answers newest first.
        let recent: Vec<u32> = stream[..m].iter().rev().filter_map(|&t| on.items.encode(t)).collect();
        let rest: HashSet<i64> = stream[m..].iter().copied().filter(|t| !stream[..m].contains(t)).collect();
        if rest.is_empty() {
            continue;
        }
        for (name, model) in [("off", &off), ("on", &on)] {
            let started = std::time::Instant::now();
            let picks = model.recommend(user, &recent, K);
            *seconds.entry(name).or_default() += started.elapsed().as_secs_f64();
            let s = scores.entry((group, name)).or_default();
            s.users += 1;
            s.hits += picks.iter().filter(|p| rest.contains(&model.items.decode(p.item))).count();
            s.relevant += rest.len().min(K);
        }
    }
    let asked: usize = scores.iter().filter(|((_, name), _)| *name == "on").map(|(_, s)| s.users).sum();
    println!("test-window replay, {m} listens posted first, k = {K}");
    for (name, total) in &seconds {
        // Each user is asked once per setting, so the fold-in cache never answers here.
        println!("fold-in {name}: {:.1} µs per recommendation", total * 1e6 / asked.max(1) as f64);
    }
    println!("{:<6} {:<8} {:>7} {:>13} {:>10}", "users", "fold-in", "count", "precision@10", "recall@10");
    for ((group, name), s) in &scores {
        println!(
            "{group:<6} {name:<8} {:>7} {:>13.4} {:>10.4}",
            s.users,
            s.hits as f64 / (s.users * K) as f64,
            s.hits as f64 / s.relevant.max(1) as f64
        );
    }
    Ok(())
}
