//! Randomness that depends on nothing but this code and the seed: a seeded xoshiro stream per
//! purpose, and the handful of distributions the generator needs, written out here so that a
//! new version of some distribution crate can never change the data.

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};

/// The independent random streams of one generation. Each part of the data draws from its own
/// stream so that, e.g., a change in how names are made leaves the listening data untouched.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Catalog,
    Names,
    /// One stream per chunk of users, so chunks can be generated in any order on any thread.
    Users {
        chunk: u32,
    },
}

impl Stream {
    fn key(self) -> u64 {
        match self {
            Self::Catalog => 1,
            Self::Names => 2,
            Self::Users { chunk } => (3 << 32) | u64::from(chunk),
        }
    }
}

/// The splitmix64 finaliser: a bijection that spreads every input bit over the whole output,
/// so neighbouring (seed, stream) pairs give unrelated generator states.
pub(crate) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) struct Random(Xoshiro256PlusPlus);

impl Random {
    pub(crate) fn new(seed: u64, stream: Stream) -> Self {
        Self(Xoshiro256PlusPlus::seed_from_u64(splitmix(splitmix(seed) ^ stream.key())))
    }

    /// Uniform in [0, 1), with the full 53 bits of an f64 mantissa.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in (0, 1]: safe to take the logarithm of.
    fn unit_open_below(&mut self) -> f64 {
        1.0 - self.unit()
    }

    /// Uniform integer in [0, n); the multiply-shift bias is below 2^-32 for any n used here.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.0.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub(crate) fn below_usize(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub(crate) fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    pub(crate) fn exponential(&mut self, mean: f64) -> f64 {
        -mean * self.unit_open_below().ln()
    }

    /// Standard normal by Box–Muller (one of the pair is dropped: simplicity over speed, it is
    /// drawn only a few times per user or track).
    pub(crate) fn normal(&mut self) -> f64 {
        let radius = (-2.0 * self.unit_open_below().ln()).sqrt();
        radius * (std::f64::consts::TAU * self.unit()).cos()
    }

    /// Log-normal with the given median and shape σ (the σ of the underlying normal).
    pub(crate) fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Pareto with minimum 1 and tail index `alpha`: P(X > x) = x^-alpha.
    pub(crate) fn pareto(&mut self, alpha: f64) -> f64 {
        self.unit_open_below().powf(-1.0 / alpha)
    }

    /// A random permutation of 0..n (Fisher–Yates).
    pub(crate) fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut items: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            items.swap(i, self.below_usize(i + 1));
        }
        items
    }
}

/// A discrete distribution given by non-negative weights, sampled by binary search over the
/// running sums. Besides the whole range it samples any contiguous sub-range in O(log n), which
/// is what lets one table serve "a track of this artist" (an artist's tracks are contiguous) or
/// "a track of this genre near this style" (a genre's slice of a flat index).
#[derive(Debug, Clone)]
pub(crate) struct CumulativeWeights {
    /// running[i] = weights[0] + .. + weights[i].
    running: Vec<f64>,
}

impl CumulativeWeights {
    pub(crate) fn new(weights: impl IntoIterator<Item = f64>) -> Self {
        let mut total = 0.0;
        let running = weights
            .into_iter()
            .map(|w| {
                debug_assert!(w >= 0.0 && w.is_finite(), "weights are finite and non-negative");
                total += w;
                total
            })
            .collect();
        Self { running }
    }

    pub(crate) fn len(&self) -> usize {
        self.running.len()
    }

    /// Sum of the weights of items 0..end.
    fn sum_before(&self, end: usize) -> f64 {
        if end == 0 { 0.0 } else { self.running[end - 1] }
    }

    pub(crate) fn sum_of(&self, start: usize, end: usize) -> f64 {
        self.sum_before(end) - self.sum_before(start)
    }

    pub(crate) fn sample(&self, rng: &mut Random) -> usize {
        self.sample_range(0, self.len(), rng)
    }

    /// An item of start..end drawn in proportion to its weight; uniform when they all weigh 0.
    pub(crate) fn sample_range(&self, start: usize, end: usize, rng: &mut Random) -> usize {
        debug_assert!(start < end && end <= self.len(), "sampling a non-empty range");
        let base = self.sum_before(start);
        let top = self.sum_before(end);
        if top <= base {
            return start + rng.below_usize(end - start);
        }
        let target = base + (top - base) * rng.unit();
        let running = &self.running[start..end];
        let offset = running.partition_point(|&sum| sum <= target);
        if offset < running.len() {
            start + offset
        } else {
            // Rounding put `target` at the very top: it belongs to the item that reaches the top
            // (not to trailing weightless items).
            start + running.partition_point(|&sum| sum < top)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::strategy::Just;

    use super::*;

    #[test]
    fn streams_differ_by_seed_and_purpose_and_repeat_exactly() {
        let draw = |seed, stream| {
            let mut rng = Random::new(seed, stream);
            (0..4).map(|_| rng.below(1 << 40)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, Stream::Catalog), draw(7, Stream::Catalog));
        assert_ne!(draw(7, Stream::Catalog), draw(8, Stream::Catalog));
        assert_ne!(draw(7, Stream::Catalog), draw(7, Stream::Names));
        assert_ne!(draw(7, Stream::Users { chunk: 0 }), draw(7, Stream::Users { chunk: 1 }));
    }

    #[test]
    fn cumulative_sampling_follows_weights_within_the_range() {
        let weights = CumulativeWeights::new([5.0, 0.0, 1.0, 3.0, 1.0]);
        let mut rng = Random::new(1, Stream::Catalog);
        let mut counts = [0u32; 5];
        for _ in 0..50_000 {
            counts[weights.sample_range(1, 4, &mut rng)] += 1;
        }
        assert_eq!(counts[0] + counts[1] + counts[4], 0, "never outside the range, never a zero weight");
        let share_of_3 = f64::from(counts[3]) / 50_000.0;
        assert!((share_of_3 - 0.75).abs() < 0.01, "item 3 carries 3/4 of the range's weight: {share_of_3}");
        assert_eq!(weights.sum_of(2, 5), 5.0);
    }

    proptest::proptest! {
        #[test]
        fn samples_stay_in_the_range_and_skip_weightless_items(
            weights in proptest::collection::vec(proptest::prop_oneof![Just(0.0), 0.001f64..1e6], 1..60),
            bounds in (0usize..60, 1usize..60),
            seed: u64,
        ) {
            let start = bounds.0 % weights.len();
            let end = (start + bounds.1).min(weights.len()).max(start + 1);
            let table = CumulativeWeights::new(weights.iter().copied());
            let any_weight = weights[start..end].iter().any(|&w| w > 0.0);
            let mut rng = Random::new(seed, Stream::Catalog);
            for _ in 0..20 {
                let item = table.sample_range(start, end, &mut rng);
                proptest::prop_assert!((start..end).contains(&item));
                proptest::prop_assert!(!any_weight || weights[item] > 0.0, "picked weightless item {}", item);
            }
        }
    }

    #[test]
    fn an_all_zero_range_is_sampled_uniformly() {
        let weights = CumulativeWeights::new([1.0, 0.0, 0.0]);
        let mut rng = Random::new(3, Stream::Catalog);
        let seen: std::collections::BTreeSet<usize> = (0..200).map(|_| weights.sample_range(1, 3, &mut rng)).collect();
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn distributions_have_their_textbook_moments() {
        let mut rng = Random::new(11, Stream::Catalog);
        let n = 200_000;
        let mean = |values: &mut dyn FnMut() -> f64| (0..n).map(|_| values()).sum::<f64>() / n as f64;
        assert!((mean(&mut || rng.exponential(4.0)) - 4.0).abs() < 0.05);
        assert!(mean(&mut || rng.normal()).abs() < 0.01);
        let mut logs: Vec<f64> = (0..n).map(|_| rng.log_normal(50.0, 1.0)).collect();
        logs.sort_by(f64::total_cmp);
        assert!((logs[n / 2] / 50.0 - 1.0).abs() < 0.02, "median of the log-normal");
        let over_10 = (0..n).filter(|_| rng.pareto(1.5) > 10.0).count() as f64 / n as f64;
        assert!((over_10 - 10f64.powf(-1.5)).abs() < 0.003, "Pareto tail {over_10}");
    }
}
