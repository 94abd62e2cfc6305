//! Bootstrap intervals over users (docs/metrics.md#intervals): users are drawn with replacement
//! and every series (a model's per-user NDCG, another's per-user recall, ...) is averaged over
//! the same draws, so the difference of two series' resampled means is a paired bootstrap.

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::EvalError;

/// An estimate with a percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    /// Whether the interval lies wholly on one side of 0 (a difference that is not chance).
    pub fn excludes_zero(&self) -> bool {
        self.low > 0.0 || self.high < 0.0
    }
}

/// The mean of every series under each of `resamples` resamplings of its positions (users):
/// `result[s][b]` is series `s` averaged over draw `b`. Every series must be over the same
/// users in the same order. Draw `b` depends on `seed` and `b` only, so the result does not
/// depend on the thread count, and adding a series does not change the others' resamples.
pub fn bootstrap_means(series: &[&[f64]], resamples: usize, seed: u64) -> Result<Vec<Vec<f64>>, EvalError> {
    let n = series.first().map_or(0, |s| s.len());
    if let Some((index, s)) = series.iter().enumerate().find(|(_, s)| s.len() != n) {
        return Err(EvalError::SeriesLength { series: index, len: s.len(), expected: n });
    }
    if n == 0 {
        return Ok(series.iter().map(|_| vec![0.0; resamples]).collect());
    }
    let by_draw: Vec<Vec<f64>> = (0..resamples as u64)
        .into_par_iter()
        .map(|draw| {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ draw.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            // How often each user is drawn; one weight vector serves every series.
            let mut weights = vec![0.0f64; n];
            for _ in 0..n {
                // Lemire's multiply-shift: an index below n without a division.
                weights[((u128::from(rng.next_u64()) * n as u128) >> 64) as usize] += 1.0;
            }
            series.iter().map(|s| s.iter().zip(&weights).map(|(x, w)| x * w).sum::<f64>() / n as f64).collect()
        })
        .collect();
    Ok((0..series.len()).map(|s| by_draw.iter().map(|draw| draw[s]).collect()).collect())
}

/// The central 95% percentile interval of `resampled` around `estimate` (linear interpolation
/// between order statistics). With no resamples the interval is the estimate itself.
pub fn interval(estimate: f64, resampled: &[f64]) -> Interval {
    let mut sorted = resampled.to_vec();
    sorted.sort_by(f64::total_cmp);
    Interval {
        estimate,
        low: quantile(&sorted, 0.025).unwrap_or(estimate),
        high: quantile(&sorted, 0.975).unwrap_or(estimate),
    }
}

fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let position = q * last as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(last);
    Some(sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_order_statistics() {
        // 41 values 0..=40: the 2.5% point is at position 1.0, the 97.5% one at 39.0.
        let values: Vec<f64> = (0..=40).rev().map(f64::from).collect();
        assert_eq!(interval(20.0, &values), Interval { estimate: 20.0, low: 1.0, high: 39.0 });
        // 3 values: positions 0.05 and 1.95.
        let small = interval(0.0, &[0.0, 10.0, 20.0]);
        assert!((small.low - 0.5).abs() < 1e-12 && (small.high - 19.5).abs() < 1e-12, "{small:?}");
        assert_eq!(interval(3.0, &[]), Interval { estimate: 3.0, low: 3.0, high: 3.0 });
    }

    #[test]
    fn a_constant_series_resamples_to_itself() {
        let means = bootstrap_means(&[&[0.25; 7]], 50, 1).unwrap();
        assert!(means[0].iter().all(|&m| (m - 0.25).abs() < 1e-12));
    }

    #[test]
    fn resamples_are_seeded_and_paired() {
        let a: Vec<f64> = (0..200).map(|i| f64::from(i % 7)).collect();
        let b: Vec<f64> = a.iter().map(|x| x + 1.0).collect();
        let first = bootstrap_means(&[&a, &b], 100, 7).unwrap();
        assert_eq!(first, bootstrap_means(&[&a, &b], 100, 7).unwrap());
        assert_ne!(first[0], bootstrap_means(&[&a], 100, 8).unwrap()[0]);
        // The same draws for both series: their difference is exactly 1 in every resample.
        assert!(first[0].iter().zip(&first[1]).all(|(x, y)| (y - x - 1.0).abs() < 1e-9));
        // A series' resamples do not depend on the other series given with it.
        assert_eq!(first[0], bootstrap_means(&[&a], 100, 7).unwrap()[0]);
    }

    #[test]
    fn the_interval_covers_the_mean_of_a_spread_series() {
        let values: Vec<f64> = (0..1000).map(|i| if i % 4 == 0 { 1.0 } else { 0.0 }).collect();
        let means = bootstrap_means(&[&values], 400, 3).unwrap();
        let ci = interval(0.25, &means[0]);
        // Standard error sqrt(0.25 · 0.75 / 1000) ≈ 0.0137: the interval is about ±0.027.
        assert!(ci.low < 0.25 && ci.high > 0.25 && ci.high - ci.low > 0.04 && ci.high - ci.low < 0.07, "{ci:?}");
        assert!(ci.excludes_zero());
    }

    #[test]
    fn series_of_different_users_are_refused() {
        let error = bootstrap_means(&[&[1.0, 2.0], &[1.0]], 10, 0).unwrap_err();
        assert_eq!(error, EvalError::SeriesLength { series: 1, len: 1, expected: 2 });
    }
}
