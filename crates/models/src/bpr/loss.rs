//! The summed BPR loss of a block's samples, −ln σ(s) = ln(1 + e^−s) for a sample's score s,
//! without a logarithm per sample.
//!
//! Why: with the loss reported, a `log1p` and a second `exp` per sample were 10–17 % of the
//! fit's profile (`docs/perf/bpr.md`, round 6). Written as max(−s, 0) + ln(1 + t) with
//! t = e^−|s| ∈ (0, 1], the logarithms' sum is the logarithm of a product of factors in (1, 2]:
//! the product is kept in `f64` and its logarithm taken once every `FACTORS_PER_LOG` samples,
//! before it can overflow. And t is the e^s that the update computes for σ anyway, or its
//! inverse, so no sample pays a transcendental function for the loss.

/// At most 2^512 before a logarithm is taken: far below `f64`'s 2^1024, and the product's
/// relative rounding (512 × 2⁻⁵³) is far below the `f32` terms' own.
const FACTORS_PER_LOG: u32 = 512;

#[derive(Debug, Clone, Copy)]
pub(super) struct LossSum {
    /// Σ max(−s, 0) and the logarithms of the products already closed.
    closed: f64,
    product: f64,
    factors: u32,
}

impl Default for LossSum {
    fn default() -> Self {
        Self { closed: 0.0, product: 1.0, factors: 0 }
    }
}

impl LossSum {
    /// Adds the loss of a sample from its score and `exp_score` = e^score, as computed for
    /// the update.
    #[inline(always)]
    pub(super) fn add(&mut self, score: f32, exp_score: f32) {
        // e^−|s|: e^s itself for s ≤ 0, its inverse above (0 once e^s overflows, as it should).
        let t = if score <= 0.0 { exp_score } else { 1.0 / exp_score };
        self.closed += f64::from((-score).max(0.0));
        self.product *= 1.0 + f64::from(t);
        self.factors += 1;
        if self.factors == FACTORS_PER_LOG {
            self.closed += self.product.ln();
            (self.product, self.factors) = (1.0, 0);
        }
    }

    pub(super) fn total(self) -> f64 {
        self.closed + self.product.ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn summed(scores: &[f32]) -> f64 {
        let mut sum = LossSum::default();
        for &s in scores {
            sum.add(s, s.exp());
        }
        sum.total()
    }

    /// Each term in `f64`, the way the loss is defined.
    fn reference(scores: &[f32]) -> f64 {
        scores.iter().map(|&s| f64::from(s)).map(|s| (-s).max(0.0) + (-s.abs()).exp().ln_1p()).sum()
    }

    proptest! {
        #[test]
        fn equals_the_sum_of_the_samples_losses(scores in proptest::collection::vec(-120f32..120.0, 0..3000)) {
            let (ours, exact) = (summed(&scores), reference(&scores));
            prop_assert!((ours - exact).abs() <= 1e-6 * exact + 1e-9, "{ours} against {exact}");
        }

        /// Scores near 0 multiply factors near 2, the most the product grows by: thousands of
        /// them must not overflow it.
        #[test]
        fn long_runs_of_near_zero_scores_do_not_overflow(scores in proptest::collection::vec(-1e-3f32..1e-3, 2000..5000)) {
            let (ours, exact) = (summed(&scores), reference(&scores));
            prop_assert!((ours - exact).abs() <= 1e-6 * exact, "{ours} against {exact}");
        }
    }

    #[test]
    fn scores_whose_exponential_overflows_or_vanishes_keep_their_loss() {
        // e^200 is infinite in f32, e^−200 is 0: the loss is ≈ 0 and ≈ 200.
        let ours = summed(&[200.0, -200.0]);
        assert!((ours - 200.0).abs() < 1e-9, "{ours}");
    }
}
