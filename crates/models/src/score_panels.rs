//! The scores of a block of queries against a block of candidates on CPUs with AVX-512: dot
//! products (ALS and BPR top-k) and negated manhattan distances (Item2Item's), the work behind
//! every user's and every track's top-k.
//!
//! The AVX2 fallbacks (`matrixmultiply`'s GEMM, `topk`'s manhattan scan) do half the work per
//! instruction, and scoring is most of a candidate model's time at the real data's size
//! (1.3M users × 90k tracks). The candidates are copied into panels of 16, dimension by
//! dimension, so one load feeds 16 candidates; eight queries' values are broadcast against two
//! panels at a time (16 accumulators of the 32 registers). Every score is one chain of
//! operations over the dimensions in order, so it does not depend on the other queries or
//! candidates of the block.

use std::arch::x86_64::*;
use std::ops::Range;

use crate::topk::Kernel;

/// Candidates per panel: one 512-bit register of f32.
const LANES: usize = 16;
/// Candidates per register tile: two panels.
pub(crate) const TILE_CANDIDATES: usize = 2 * LANES;
/// Queries per register tile.
const TILE_QUERIES: usize = 8;

/// A candidate matrix copied into panels for the AVX-512 kernel, once per search: every block
/// of queries reads the same panels, so no block pays for a copy.
pub(crate) struct PanelScorer {
    panels: Vec<f32>,
    dim: usize,
    n: usize,
}

impl PanelScorer {
    /// The `dim`-wide rows of `candidates` in panels, where this CPU has AVX-512F.
    pub(crate) fn for_candidates(candidates: &[f32], dim: usize) -> Option<Self> {
        if !is_x86_feature_detected!("avx512f") || dim == 0 {
            return None;
        }
        let n = candidates.len() / dim;
        Some(Self { panels: pack(candidates, dim, n), dim, n })
    }

    /// `out` (m × `range.len()`, row-major) = the `kernel` scores of the m `queries` (row-major,
    /// `dim` values per row) against candidates `range`, which starts at a multiple of
    /// `TILE_CANDIDATES`.
    pub(crate) fn scores(&self, kernel: Kernel, queries: &[f32], m: usize, range: Range<usize>, out: &mut [f32]) {
        let (dim, width) = (self.dim, range.len());
        assert!(
            range.start.is_multiple_of(TILE_CANDIDATES) && range.end <= self.n,
            "candidate range {range:?} of {}",
            self.n
        );
        assert!(queries.len() >= m * dim && out.len() >= m * width, "score block shapes");
        if m == 0 || width == 0 {
            return;
        }
        let panels = &self.panels[range.start * dim..range.end.next_multiple_of(TILE_CANDIDATES) * dim];
        // SAFETY: a `PanelScorer` exists only where AVX-512F was detected; the shapes were
        // checked above and `pack` padded the panels to whole tiles.
        unsafe {
            match kernel {
                Kernel::Dot => scores_avx512::<false>(queries, panels, m, dim, width, out),
                Kernel::NegManhattan => scores_avx512::<true>(queries, panels, m, dim, width, out),
            }
        }
    }
}

/// Copies `n` candidate rows into panels of `LANES` candidates, each panel dimension-major
/// (`dim` runs of 16 values), zero-padded to whole tiles.
fn pack(candidates: &[f32], dim: usize, n: usize) -> Vec<f32> {
    let mut panels = vec![0.0; n.next_multiple_of(TILE_CANDIDATES) * dim];
    for (panel, rows) in panels.chunks_exact_mut(LANES * dim).zip(candidates[..n * dim].chunks(LANES * dim)) {
        for (lane, row) in rows.chunks_exact(dim).enumerate() {
            for (d, &value) in row.iter().enumerate() {
                panel[d * LANES + lane] = value;
            }
        }
    }
    panels
}

#[target_feature(enable = "avx512f")]
unsafe fn scores_avx512<const MANHATTAN: bool>(
    queries: &[f32],
    panels: &[f32],
    m: usize,
    dim: usize,
    n: usize,
    out: &mut [f32],
) {
    for tile in 0..n.div_ceil(TILE_CANDIDATES) {
        let first = tile * TILE_CANDIDATES;
        let panel = &panels[first * dim..(first + TILE_CANDIDATES) * dim];
        let mut q = 0;
        while q < m {
            let rows = TILE_QUERIES.min(m - q);
            let tile =
                Tile { queries: &queries[q * dim..(q + rows) * dim], panel, dim, first, n, out: &mut out[q * n..] };
            // SAFETY: AVX-512F is enabled in this function; the tile's slices hold `rows`
            // queries, two full panels and `rows` output rows.
            unsafe {
                match rows {
                    8 => tile.run::<8, MANHATTAN>(),
                    7 => tile.run::<7, MANHATTAN>(),
                    6 => tile.run::<6, MANHATTAN>(),
                    5 => tile.run::<5, MANHATTAN>(),
                    4 => tile.run::<4, MANHATTAN>(),
                    3 => tile.run::<3, MANHATTAN>(),
                    2 => tile.run::<2, MANHATTAN>(),
                    _ => tile.run::<1, MANHATTAN>(),
                }
            }
            q += rows;
        }
    }
}

/// Up to `TILE_QUERIES` queries against the two panels starting at candidate `first`.
struct Tile<'a> {
    queries: &'a [f32],
    panel: &'a [f32],
    dim: usize,
    first: usize,
    /// Candidates in the whole block: the output rows' stride, and where the last panel's
    /// padding starts.
    n: usize,
    out: &'a mut [f32],
}

impl Tile<'_> {
    /// `MANHATTAN`: each score is `−Σ|q_d − c_d|`, else `Σ q_d·c_d` (fused).
    #[target_feature(enable = "avx512f")]
    unsafe fn run<const ROWS: usize, const MANHATTAN: bool>(self) {
        let dim = self.dim;
        assert!(self.queries.len() >= ROWS * dim && self.panel.len() >= 2 * LANES * dim, "tile shapes");
        assert!(self.out.len() >= (ROWS - 1) * self.n + self.n.min(self.first + 2 * LANES), "tile output");
        let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
        let (left, right) = self.panel.split_at(LANES * dim);
        for d in 0..dim {
            // SAFETY: d < dim, so both loads read 16 values inside their panel.
            let (b0, b1) = unsafe {
                (_mm512_loadu_ps(left.as_ptr().add(d * LANES)), _mm512_loadu_ps(right.as_ptr().add(d * LANES)))
            };
            for (r, sums) in acc.iter_mut().enumerate() {
                let a = _mm512_set1_ps(self.queries[r * dim + d]);
                if MANHATTAN {
                    sums[0] = _mm512_add_ps(sums[0], _mm512_abs_ps(_mm512_sub_ps(a, b0)));
                    sums[1] = _mm512_add_ps(sums[1], _mm512_abs_ps(_mm512_sub_ps(a, b1)));
                } else {
                    sums[0] = _mm512_fmadd_ps(a, b0, sums[0]);
                    sums[1] = _mm512_fmadd_ps(a, b1, sums[1]);
                }
            }
        }
        for (r, sums) in acc.iter().enumerate() {
            for (half, &sum) in sums.iter().enumerate() {
                let sum = if MANHATTAN { _mm512_sub_ps(_mm512_setzero_ps(), sum) } else { sum };
                let start = self.first + half * LANES;
                let valid = self.n.saturating_sub(start).min(LANES);
                if valid == 0 {
                    continue;
                }
                let row = &mut self.out[r * self.n + start..r * self.n + start + valid];
                let mask = (u32::MAX >> (32 - valid)) as __mmask16;
                // SAFETY: the mask writes the first `valid` lanes, which `row` holds.
                unsafe { _mm512_mask_storeu_ps(row.as_mut_ptr(), mask, sum) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn scores_are_one_chain_per_pair_whatever_the_shape(
            m in 0usize..20,
            n in 0usize..90,
            dim in 1usize..40,
            skip_tiles in 0usize..3,
            seed in any::<u64>(),
            manhattan in any::<bool>(),
        ) {
            let value = |i: usize| (((i as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32) / 8e6 - 1.0;
            let candidates: Vec<f32> = (0..n * dim).map(|i| value(i + 1_000_000)).collect();
            let queries: Vec<f32> = (0..m * dim).map(value).collect();
            let Some(scorer) = PanelScorer::for_candidates(&candidates, dim) else { return Ok(()) };
            let first = (skip_tiles * TILE_CANDIDATES).min(n / TILE_CANDIDATES * TILE_CANDIDATES);
            let width = n - first;
            let mut out = vec![f32::NAN; m * width];
            let kernel = if manhattan { Kernel::NegManhattan } else { Kernel::Dot };
            scorer.scores(kernel, &queries, m, first..n, &mut out);
            for q in 0..m {
                for c in first..n {
                    let (a, b) = (&queries[q * dim..(q + 1) * dim], &candidates[c * dim..(c + 1) * dim]);
                    let expected = if manhattan {
                        0.0 - a.iter().zip(b).fold(0f32, |s, (x, y)| s + (x - y).abs())
                    } else {
                        a.iter().zip(b).fold(0f32, |s, (x, y)| x.mul_add(*y, s))
                    };
                    let got = out[q * width + c - first];
                    prop_assert_eq!(got.to_bits(), expected.to_bits(), "query {} candidate {}", q, c);
                }
            }
        }
    }
}
