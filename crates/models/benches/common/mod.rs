//! What the model benches share: the data directory read and split the way the Python
//! reference (`bench/reference/`) does it, the common flags, CPU time, and
//! test NDCG@K as the reference computes it.
//!
//! Same split (train = days before --train-end, test = days from --target-end), same encoding
//! (train users and train tracks by ascending raw id), same matrix (listen counts). Test
//! NDCG@K follows docs/metrics.md#ndcg as the reference computes it: relevant = distinct tracks a user
//! played in the test window, averaged over the window's users that received recommendations
//! (old users with factors).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use musicrec_data::layout::{read_tracks, scan_interactions};
use musicrec_data::{CsrMatrix, IdEncoder, Location};
use musicrec_models::{Recommendations, Recommender, SimilarItems};

/// The flags every model bench takes; a bench parses its own model's flags through `parse`.
pub struct Common {
    pub data: String,
    pub threads: usize,
    pub train_end: String,
    pub target_end: String,
    /// Stop after the fit (for profiling it).
    pub fit_only: bool,
    pub k: usize,
}

/// Parses the command line: common flags here, every other one handed to `model` with a way
/// to take its value; `model` returns false for a flag it does not know.
pub fn parse(
    mut model: impl FnMut(&str, &mut dyn FnMut() -> Result<f64, String>) -> Result<bool, String>,
) -> Result<Common, String> {
    let mut common = Common {
        data: String::new(),
        threads: 2,
        train_end: "2022-12-16".into(),
        target_end: "2022-12-23".into(),
        fit_only: false,
        k: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "--fit-only" => common.fit_only = true,
            "--data" => common.data = value()?,
            "--threads" => common.threads = number(&flag, value()?)? as usize,
            "--train-end" => common.train_end = value()?,
            "--target-end" => common.target_end = value()?,
            other => {
                let mut model_value = || number(other, value()?);
                if !model(other, &mut model_value)? {
                    return Err(format!("unknown flag {other}"));
                }
            }
        }
    }
    if common.data.is_empty() {
        return Err("--data DIR is required".into());
    }
    Ok(common)
}

fn number(flag: &str, v: String) -> Result<f64, String> {
    v.parse::<f64>().map_err(|e| format!("{flag}: {e}"))
}

/// CPU seconds this process has used (user + system), from /proc on Linux: on a shared,
/// busy machine it varies less than wall time. None elsewhere.
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU seconds between two `cpu_seconds` readings, as JSON.
pub fn cpu_json(before: Option<f64>) -> String {
    before.zip(cpu_seconds()).map_or("null".to_string(), |(a, b)| format!("{:.2}", b - a))
}

fn day_number(date: &str) -> Result<i32, String> {
    let day = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").map_err(|e| format!("{date}: {e}"))?;
    Ok((day - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32)
}

/// The train matrix and the test window.
pub struct Data {
    pub matrix: CsrMatrix,
    pub user_encoder: IdEncoder,
    /// Catalogue index of each train item code.
    pub train_tracks: Vec<u32>,
    /// Test window: distinct catalogue tracks per raw user id.
    pub relevant: HashMap<i64, HashSet<u32>>,
    /// Test-window users that are train users, as codes, ascending.
    pub test_users: Vec<u32>,
    pub prepare_s: f64,
}

pub fn load(common: &Common) -> Result<Data, String> {
    let (train_day, target_day) = (day_number(&common.train_end)?, day_number(&common.target_end)?);
    let started = Instant::now();
    let dir = Location::local(&common.data);
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
    let mut relevant: HashMap<i64, HashSet<u32>> = HashMap::new();
    for e in (0..days.len()).filter(|&e| days[e] >= target_day) {
        relevant.entry(users[e]).or_default().insert(items[e]);
    }
    let mut test_users: Vec<u32> = relevant.keys().filter_map(|&id| user_encoder.encode(id)).collect();
    test_users.sort_unstable();
    Ok(Data { matrix, user_encoder, train_tracks, relevant, test_users, prepare_s: started.elapsed().as_secs_f64() })
}

/// Mean NDCG@k over the users of `recs` that received recommendations, and their number.
pub fn ndcg(data: &Data, recs: &Recommendations, k: usize) -> (f64, usize) {
    let ideal: Vec<f64> = (0..k).map(|i| 1.0 / ((i + 2) as f64).log2()).collect();
    let (mut ndcg_sum, mut with_recs) = (0.0, 0usize);
    for (user, recommended, _) in recs.iter() {
        if recommended.is_empty() {
            continue;
        }
        let rel = &data.relevant[&data.user_encoder.decode(user)];
        let dcg: f64 = recommended
            .iter()
            .enumerate()
            .filter(|&(_, &item)| rel.contains(&data.train_tracks[item as usize]))
            .map(|(rank, _)| ideal[rank])
            .sum();
        let idcg: f64 = ideal[..rel.len().min(k)].iter().sum();
        ndcg_sum += dcg / idcg;
        with_recs += 1;
    }
    (ndcg_sum / with_recs.max(1) as f64, with_recs)
}

/// Times top-k for the test users and similar items for every modelled item, and scores the
/// test NDCG: the part of a factor-model bench that does not depend on the model. Returns
/// the JSON fields to splice into the bench's one-line report.
pub fn serving_json<M: Recommender + SimilarItems>(
    pool: &rayon::ThreadPool,
    model: &M,
    items: &[u32],
    data: &Data,
    k: usize,
) -> Result<String, String> {
    let started = Instant::now();
    let recs = pool.install(|| model.recommend(&data.test_users, &data.matrix, k)).map_err(|e| e.to_string())?;
    let recommend_s = started.elapsed().as_secs_f64();
    let (ndcg, with_recs) = ndcg(data, &recs, k);
    let started = Instant::now();
    let similar = pool.install(|| model.similar_items(items, 10));
    let similar_s = started.elapsed().as_secs_f64();
    Ok(format!(
        "\"recommend_test_s\": {recommend_s:.3}, \"test_users_per_s\": {:.0}, \"similar_items_s\": {similar_s:.3}, \
         \"similar_pairs\": {}, \"test_users_evaluated\": {}, \"test_users_with_recs\": {with_recs}, \"test_ndcg@{k}\": {ndcg:.4}",
        data.test_users.len() as f64 / recommend_s,
        similar.pairs(),
        data.relevant.len(),
    ))
}
