//! Drawing BPR's negative items: in proportion to their number of users (the item of a
//! uniformly drawn nonzero, as implicit draws it), from a Walker alias table (Vose's
//! construction) of the items' counts.
//!
//! Why a table: reading the item of a random nonzero is a memory miss per sample on a real
//! catalogue (the matrix's column indices are tens of megabytes), while the table holds 8
//! bytes per item and stays in cache; the distribution is the same, up to the 2⁻³² steps of
//! the thresholds.

/// One slot per item: draw the slot uniformly, then keep its item if the second draw is
/// below `threshold` (out of 2³²), else take `alias`.
#[derive(Debug, Clone, Copy)]
struct Slot {
    threshold: u32,
    alias: u32,
}

#[derive(Debug)]
pub(super) struct NegativeSampler {
    slots: Vec<Slot>,
}

impl NegativeSampler {
    /// From the number of entries of each item (column); at least one must be positive.
    pub(super) fn new(counts: &[u64]) -> Self {
        let n = counts.len();
        let total: u64 = counts.iter().sum();
        assert!(n > 0 && total > 0, "a training matrix has entries");
        // Each slot's share scaled so that the mean is exactly 2³²: shares are compared and
        // moved in u128 units of 1/total, so no rounding builds up across slots.
        let scale = |c: u64| u128::from(c) * n as u128;
        let full = u128::from(total) << 32;
        let mut share: Vec<u128> = counts.iter().map(|&c| scale(c) << 32).collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| share[i] < full);
        let mut slots: Vec<Slot> = (0..n).map(|i| Slot { threshold: u32::MAX, alias: i as u32 }).collect();
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            slots[s] = Slot { threshold: (share[s] / u128::from(total)) as u32, alias: l as u32 };
            share[l] -= full - share[s];
            if share[l] < full {
                large.pop();
                small.push(l);
            }
        }
        // What is left holds a whole slot's share (up to the last unit): always itself.
        Self { slots }
    }

    /// An item, from 64 uniform random bits.
    #[inline(always)]
    pub(super) fn draw(&self, bits: u64) -> u32 {
        let at = (((bits >> 32) * self.slots.len() as u64) >> 32) as usize;
        let slot = self.slots[at];
        if (bits as u32) < slot.threshold { at as u32 } else { slot.alias }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Each item's probability as the table gives it: its own slot's kept share plus the
    /// shares that other slots hand to it.
    fn probabilities(sampler: &NegativeSampler) -> Vec<f64> {
        let n = sampler.slots.len() as f64;
        let mut p = vec![0.0; sampler.slots.len()];
        for (i, slot) in sampler.slots.iter().enumerate() {
            let keep = if slot.threshold == u32::MAX { 1.0 } else { f64::from(slot.threshold) / 2f64.powi(32) };
            p[i] += keep / n;
            p[slot.alias as usize] += (1.0 - keep) / n;
        }
        p
    }

    proptest! {
        #[test]
        fn each_item_is_drawn_in_proportion_to_its_count(counts in proptest::collection::vec(0u64..1000, 1..300)) {
            prop_assume!(counts.iter().any(|&c| c > 0));
            let total: u64 = counts.iter().sum();
            let p = probabilities(&NegativeSampler::new(&counts));
            for (i, (&c, &p)) in counts.iter().zip(&p).enumerate() {
                let expected = c as f64 / total as f64;
                prop_assert!((p - expected).abs() < 1e-6, "item {i}: {p} against {expected}");
            }
        }
    }

    #[test]
    fn an_item_without_entries_is_never_drawn() {
        let sampler = NegativeSampler::new(&[3, 0, 1, 0, 4]);
        let mut bits = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..100_000 {
            bits = bits.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let item = sampler.draw(bits);
            assert!(item == 0 || item == 2 || item == 4, "drew {item}");
        }
    }
}
