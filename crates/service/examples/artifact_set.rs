//! Writes a synthetic artifact set of a chosen size for load tests and memory measurements of
//! `musicrec serve`: `cargo run --release -p musicrec-service --example artifact_set -- DIR
//! USERS TRACKS`. Every old user has 10 offline recommendations and 10 train listens, every
//! track 10 similar tracks per source; the ALS model (64 factors) serves the fold-in.

#[path = "../tests/common/mod.rs"]
mod common;

use musicrec_data::CsrMatrix;

/// A small deterministic generator (SplitMix64): no dependency for throwaway data.
struct Mix(u64);

impl Mix {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }

    /// Popular tracks more often: the square of a uniform draw.
    fn skewed(&mut self, n: usize) -> usize {
        let u = self.below(1 << 20) as f64 / f64::from(1 << 20);
        ((u * u) * n as f64) as usize
    }

    fn distinct(&mut self, count: usize, n: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(count);
        while out.len() < count.min(n) {
            let i = self.skewed(n);
            if !out.contains(&i) {
                out.push(i);
            }
        }
        out
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, users, tracks] = &args[..] else {
        eprintln!("usage: artifact_set DIR USERS TRACKS");
        std::process::exit(2);
    };
    let (n_users, n_tracks): (usize, usize) = (users.parse().unwrap(), tracks.parse().unwrap());
    let mut rng = Mix(42);
    let track_id = |i: usize| 1_000_000 + i as i64;
    let (mut rows, mut cols, mut offline) = (Vec::new(), Vec::new(), Vec::with_capacity(n_users));
    for u in 0..n_users {
        for i in rng.distinct(10, n_tracks) {
            rows.push(u as u32);
            cols.push(i as u32);
        }
        offline.push((u as i64 + 1, rng.distinct(10, n_tracks).into_iter().map(track_id).collect()));
    }
    let ones = vec![1.0f32; rows.len()];
    let user_item = CsrMatrix::from_coo(n_users, n_tracks, &rows, &cols, &ones);
    let mut similar = || -> Vec<(i64, Vec<i64>)> {
        (0..n_tracks).map(|t| (track_id(t), rng.distinct(10, n_tracks).into_iter().map(track_id).collect())).collect()
    };
    let (als_similar, bpr_similar) = (similar(), similar());
    let set = common::ArtifactSet {
        users: (1..=n_users as i64).collect(),
        tracks: (0..n_tracks).map(track_id).collect(),
        user_item,
        als_similar,
        bpr_similar,
        offline,
        als_factors: 64,
        top_n: 100,
    };
    set.write(std::path::Path::new(dir), "synthetic");
    println!("wrote {n_users} users x {n_tracks} tracks to {dir}");
}
