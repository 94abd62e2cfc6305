//! Times `evaluate` (three Ks) and the bootstrap of one model's per-user metrics at Yandex Music scale on synthetic data:
//! `cargo run --release -p musicrec-eval --example evaluate_speed [users] [runs]`.

use std::time::Instant;

use musicrec_eval::{
    ItemGroups, Recommendations, Relevance, TrainHistory, Truth, UserMetric, bootstrap_means, evaluate,
};

const N_ITEMS: u32 = 1_000_000;
const KS: [usize; 3] = [5, 10, 20];
const RESAMPLES: usize = 1000;

/// SplitMix64: a dependency-free, seeded stream of random numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }

    /// Skewed towards low indices, as listening is towards popular tracks.
    fn item(&mut self) -> u32 {
        let uniform = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (uniform.powi(3) * f64::from(N_ITEMS)) as u32
    }
}

fn main() {
    let mut args = std::env::args().skip(1).map(|arg| arg.parse::<usize>().expect("arguments: numbers"));
    let n_users = args.next().map_or(1_400_000, |users| users as u32);
    let runs = args.next().unwrap_or(5);
    let mut rng = Rng(42);
    let started = Instant::now();
    let mut window = Vec::new();
    let mut train = Vec::new();
    for user in 0..n_users {
        // About 90% of users are in the window; every one has a training history.
        if rng.below(10) > 0 {
            window.extend((0..1 + rng.below(30)).map(|_| (user, rng.item())));
        }
        train.extend((0..1 + rng.below(60)).map(|_| (user, rng.item())));
    }
    let lists = (0..n_users).map(|user| (user, (0..KS[2]).map(|_| rng.item()).collect::<Vec<_>>()));
    let recs = Recommendations::from_lists(lists).expect("one list per user");
    let relevant = Relevance::from_events(window);
    let history = TrainHistory::from_events(train, N_ITEMS as usize).expect("items in the catalogue");
    // One artist per track out of 100,000, one genre out of 200.
    let artists =
        ItemGroups::from_pairs((0..N_ITEMS).map(|item| (item, item % 100_000)), N_ITEMS as usize).expect("in range");
    let genres =
        ItemGroups::from_pairs((0..N_ITEMS).map(|item| (item, item % 200)), N_ITEMS as usize).expect("in range");
    let truth = Truth { relevance: &relevant, history: &history, artists: &artists, genres: &genres };
    println!("inputs built in {:.2?}", started.elapsed());

    for _ in 0..runs {
        let started = Instant::now();
        let evaluation = evaluate(&recs, &truth, &KS).expect("consistent inputs");
        let evaluated = started.elapsed();
        let started = Instant::now();
        let at = evaluation.at_k(10).expect("K = 10 evaluated");
        let series: Vec<&[f64]> = UserMetric::ALL.iter().map(|&metric| at.per_user.get(metric)).collect();
        bootstrap_means(&series, RESAMPLES, 42).expect("same users");
        println!(
            "evaluate at K = 5, 10, 20: {evaluated:.1?}; bootstrap of the 6 per-user metrics at K = 10, {RESAMPLES} resamples: {:.1?}",
            started.elapsed()
        );
    }
}
