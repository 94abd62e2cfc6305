//! ALS on a data directory in the Yandex layout, measured the way the Python reference
//! (`../shared/bench/peer_pipeline.py --only als`, i.e. `implicit`) measures itself, so that
//! the two can be compared as ratios in one session:
//!
//! ```text
//! cargo bench -p musicrec-models --bench als -- --data DIR --threads 2 --factors 64 --min-users-per-item 5
//! python peer_pipeline.py --data DIR --threads 2 --als-factors 64 --min-users-per-item 5 --only als
//! ```
//!
//! Same split (train = days before --train-end, test = days from --target-end), same encoding
//! (train users and train tracks by ascending raw id), same matrix (listen counts), same
//! parameters, and the training loss computed every iteration as the reference asks implicit
//! to (`--no-loss` to leave it out). Test NDCG@10 follows SPEC §3 as the reference computes it:
//! relevant = distinct tracks a user played in the test window, averaged over the window's
//! users that received recommendations (old users with factors). Prints one JSON object.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use musicrec_data::layout::{read_tracks, scan_interactions};
use musicrec_data::{CsrMatrix, IdEncoder, Location};
use musicrec_models::{Als, AlsParams, Recommender};

struct Args {
    data: String,
    threads: usize,
    params: AlsParams,
    train_end: String,
    target_end: String,
    loss: bool,
    /// Stop after the fit (for profiling it).
    fit_only: bool,
    k: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        data: String::new(),
        threads: 2,
        params: AlsParams { factors: 64, min_users_per_item: 5, ..AlsParams::default() },
        train_end: "2022-12-16".into(),
        target_end: "2022-12-23".into(),
        loss: true,
        fit_only: false,
        k: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "--no-loss" => args.loss = false,
            "--fit-only" => args.fit_only = true,
            "--data" => args.data = value()?,
            "--threads" => args.threads = number(value()?)? as usize,
            "--factors" => args.params.factors = number(value()?)? as usize,
            "--iterations" => args.params.iterations = number(value()?)? as usize,
            "--regularization" => args.params.regularization = number(value()?)? as f32,
            "--alpha" => args.params.alpha = number(value()?)? as f32,
            "--min-users-per-item" => args.params.min_users_per_item = number(value()?)? as usize,
            "--seed" => args.params.seed = number(value()?)? as u64,
            "--train-end" => args.train_end = value()?,
            "--target-end" => args.target_end = value()?,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.data.is_empty() {
        return Err("--data DIR is required".into());
    }
    Ok(args)
}

/// CPU seconds this process has used (user + system), from /proc on Linux: on a shared,
/// busy machine it varies less than wall time. None elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn day_number(date: &str) -> Result<i32, String> {
    let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|e| format!("{date}: {e}"))?;
    Ok((day - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32)
}

fn main() -> Result<(), String> {
    let args = parse_args()?;
    let (train_day, target_day) = (day_number(&args.train_end)?, day_number(&args.target_end)?);
    let started = Instant::now();
    let dir = Location::local(&args.data);
    let tracks = read_tracks(&dir).map_err(|e| e.to_string())?;
    let (mut users, mut items, mut days) = (Vec::new(), Vec::new(), Vec::new());
    scan_interactions(&dir, &tracks, false, |rows| {
        users.extend_from_slice(&rows.user_id);
        items.extend_from_slice(&rows.track);
        days.extend_from_slice(&rows.day);
        Ok(())
    })
    .map_err(|e| e.to_string())?;
    let train: Vec<usize> = (0..days.len()).filter(|&e| days[e] < train_day).collect();
    let user_encoder = IdEncoder::new(train.iter().map(|&e| users[e]).collect());
    // Catalogue indices ascend with track ids, so this is the reference's sorted-id encoding.
    let mut train_tracks: Vec<u32> = train.iter().map(|&e| items[e]).collect();
    train_tracks.sort_unstable();
    train_tracks.dedup();
    let mut item_code = vec![u32::MAX; tracks.len()];
    for (code, &track) in train_tracks.iter().enumerate() {
        item_code[track as usize] = code as u32;
    }
    let rows: Vec<u32> = train.iter().map(|&e| user_encoder.encode(users[e]).expect("train user")).collect();
    let cols: Vec<u32> = train.iter().map(|&e| item_code[items[e] as usize]).collect();
    let matrix = CsrMatrix::from_coo(user_encoder.len(), train_tracks.len(), &rows, &cols, &vec![1.0; rows.len()]);
    let prepare_s = started.elapsed().as_secs_f64();

    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build().map_err(|e| e.to_string())?;
    let mut losses = Vec::new();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let model = pool
        .install(|| {
            if args.loss {
                Als::fit_reporting(&args.params, &matrix, &mut |r| losses.push(r.loss))
            } else {
                Als::fit(&args.params, &matrix)
            }
        })
        .map_err(|e| e.to_string())?;
    let fit_s = started.elapsed().as_secs_f64();
    let fit_cpu_s = cpu_before.zip(cpu_seconds()).map_or("null".to_string(), |(a, b)| format!("{:.2}", b - a));
    if args.fit_only {
        println!("{{\"als_fit_s\": {fit_s:.3}, \"als_fit_cpu_s\": {fit_cpu_s}}}");
        return Ok(());
    }

    // Test window: relevant = distinct catalogue tracks per raw user id.
    let mut relevant: HashMap<i64, HashSet<u32>> = HashMap::new();
    for e in (0..days.len()).filter(|&e| days[e] >= target_day) {
        relevant.entry(users[e]).or_default().insert(items[e]);
    }
    let mut test_users: Vec<u32> = relevant.keys().filter_map(|&id| user_encoder.encode(id)).collect();
    test_users.sort_unstable();
    let started = Instant::now();
    let recs = pool.install(|| model.recommend(&test_users, &matrix, args.k)).map_err(|e| e.to_string())?;
    let recommend_s = started.elapsed().as_secs_f64();
    let ideal: Vec<f64> = (0..args.k).map(|i| 1.0 / ((i + 2) as f64).log2()).collect();
    let (mut ndcg_sum, mut with_recs) = (0.0, 0usize);
    for (user, recommended, _) in recs.iter() {
        if recommended.is_empty() {
            continue;
        }
        let rel = &relevant[&user_encoder.decode(user)];
        let dcg: f64 = recommended
            .iter()
            .enumerate()
            .filter(|&(_, &item)| rel.contains(&train_tracks[item as usize]))
            .map(|(rank, _)| ideal[rank])
            .sum();
        let idcg: f64 = ideal[..rel.len().min(args.k)].iter().sum();
        ndcg_sum += dcg / idcg;
        with_recs += 1;
    }

    let all_items: Vec<u32> = model.factors().items().to_vec();
    let started = Instant::now();
    let similar = pool.install(|| model.similar_items(&all_items, 10));
    let similar_s = started.elapsed().as_secs_f64();

    println!(
        "{{\"data\": {:?}, \"threads\": {}, \"factors\": {}, \"iterations\": {}, \"train_users\": {}, \"train_items\": {}, \
         \"train_nnz\": {}, \"model_users\": {}, \"model_items\": {}, \"prepare_s\": {prepare_s:.3}, \"als_fit_s\": {fit_s:.3}, \"als_fit_cpu_s\": {fit_cpu_s}, \
         \"loss_reported\": {}, \"final_loss\": {}, \"recommend_test_s\": {recommend_s:.3}, \"test_users_per_s\": {:.0}, \
         \"similar_items_s\": {similar_s:.3}, \"similar_pairs\": {}, \"test_users_evaluated\": {}, \"test_users_with_recs\": {with_recs}, \
         \"test_ndcg@{}\": {:.4}}}",
        args.data,
        args.threads,
        args.params.factors,
        args.params.iterations,
        matrix.rows,
        matrix.cols,
        matrix.nnz(),
        model.factors().users().len(),
        model.factors().items().len(),
        args.loss,
        losses.last().map_or("null".to_string(), |l| format!("{l:.6}")),
        test_users.len() as f64 / recommend_s,
        similar.pairs(),
        relevant.len(),
        args.k,
        ndcg_sum / with_recs.max(1) as f64,
    );
    Ok(())
}
