//! Times `evaluate` at Yandex Music scale on synthetic data:
//! `cargo run --release -p musicrec-eval --example evaluate_speed [users] [runs]`.

use std::time::Instant;

use musicrec_eval::{Recommendations, Relevance, TrainHistory, evaluate};

const N_ITEMS: u32 = 1_000_000;
const K: usize = 10;

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
    let lists = (0..n_users).map(|user| (user, (0..K).map(|_| rng.item()).collect::<Vec<_>>()));
    let recs = Recommendations::from_lists(lists).expect("one list per user");
    let relevant = Relevance::from_events(window);
    let history = TrainHistory::from_events(train, N_ITEMS as usize).expect("items in the catalogue");
    println!("inputs built in {:.2?}", started.elapsed());

    for _ in 0..runs {
        let started = Instant::now();
        let metrics = evaluate(&recs, &relevant, &history, K).expect("consistent inputs");
        println!("evaluate: {:.1?}  {}", started.elapsed(), metrics.to_json());
    }
}
