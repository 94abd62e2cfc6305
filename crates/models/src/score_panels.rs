//! The scores of a block of queries against a block of candidates with register-tiled
//! kernels: dot products (ALS and BPR top-k) and negated manhattan distances (Item2Item's),
//! the work behind every user's and every track's top-k, and most of a candidate model's
//! time at the real data's size (1.3M users × 90k tracks).
//!
//! The candidates are copied once per search into panels of one register's width (16 `f32`
//! with AVX-512, 8 with AVX2), dimension by dimension, so one load feeds a whole panel. The
//! queries of a block are interleaved in groups, so that a tile broadcasts each query's value
//! at a dimension from one pointer, against two panels at a time: each (query, panel) pair is
//! an accumulator register (16 of AVX-512's 32 registers, 12 of AVX2's 16). A tile's panels
//! stay in L1 while every group of the block (51 KB at 200 dimensions) passes them from L2.
//!
//! Every score is one chain of operations over the dimensions in order, so it does not depend
//! on the other queries or candidates of the block, nor on the register width: every x86-64
//! CPU with AVX2 gives the same bits. Against the generic paths (`docs/perf/scoring.md`):
//! `matrixmultiply`'s GEMM takes 1.1–1.25× the time of the AVX2 panels with its AVX2 kernel,
//! about the time of the AVX-512 panels with its AVX-512 kernel; `topk`'s manhattan scan takes
//! 1.1× (AVX2) and 1.5× (AVX-512) their time.

use std::arch::x86_64::*;
use std::ops::Range;

use crate::topk::{Kernel, PanelWidth};

/// Candidates per panel at the widest register (AVX-512's 16 `f32`).
pub(crate) const MAX_LANES: usize = 16;

impl PanelWidth {
    /// Candidates per panel: one register of `f32`.
    fn lanes(self) -> usize {
        match self {
            PanelWidth::Avx512 => Zmm::LANES,
            PanelWidth::Avx2 => Ymm::LANES,
        }
    }

    /// Candidates per register tile: two panels.
    fn tile_candidates(self) -> usize {
        2 * self.lanes()
    }
}

/// A candidate matrix copied into panels for one register width, once per search: every
/// block of queries reads the same panels, so no block pays for a copy.
pub(crate) struct PanelScorer {
    panels: Vec<f32>,
    width: PanelWidth,
    dim: usize,
    n: usize,
}

impl PanelScorer {
    /// The `dim`-wide rows of `candidates` in panels of `width`, where this CPU runs it.
    pub(crate) fn for_candidates(width: PanelWidth, candidates: &[f32], dim: usize) -> Option<Self> {
        if !width.is_supported() || dim == 0 {
            return None;
        }
        let n = candidates.len() / dim;
        Some(Self { panels: pack(candidates, dim, n, width.lanes()), width, dim, n })
    }

    /// `out` (m × `range.len()`, row-major) = the `kernel` scores of the m `queries` (row-major,
    /// `dim` values per row) against candidates `range`, which starts at a multiple of
    /// `2 * MAX_LANES`.
    pub(crate) fn scores(&self, kernel: Kernel, queries: &[f32], m: usize, range: Range<usize>, out: &mut [f32]) {
        let (dim, cols, tile) = (self.dim, range.len(), self.width.tile_candidates());
        assert!(range.start.is_multiple_of(tile) && range.end <= self.n, "candidate range {range:?} of {}", self.n);
        assert!(queries.len() >= m * dim && out.len() >= m * cols, "score block shapes");
        if m == 0 || cols == 0 {
            return;
        }
        let panels = &self.panels[range.start * dim..range.end.next_multiple_of(tile) * dim];
        let block = Block { queries, panels, m, dim, n: cols, out };
        // SAFETY: a `PanelScorer` exists only where its width's features were detected; the
        // shapes were checked above and `pack` padded the panels to whole tiles.
        unsafe {
            match (self.width, kernel) {
                (PanelWidth::Avx512, Kernel::Dot) => scores_avx512::<false>(block),
                (PanelWidth::Avx512, Kernel::NegManhattan) => scores_avx512::<true>(block),
                (PanelWidth::Avx2, Kernel::Dot) => scores_avx2::<false>(block),
                (PanelWidth::Avx2, Kernel::NegManhattan) => scores_avx2::<true>(block),
            }
        }
    }
}

/// Copies `n` candidate rows into panels of `lanes` candidates, each panel dimension-major
/// (`dim` runs of `lanes` values), zero-padded to whole tiles of two panels.
fn pack(candidates: &[f32], dim: usize, n: usize, lanes: usize) -> Vec<f32> {
    let mut panels = vec![0.0; n.next_multiple_of(2 * lanes) * dim];
    for (panel, rows) in panels.chunks_exact_mut(lanes * dim).zip(candidates[..n * dim].chunks(lanes * dim)) {
        for (lane, row) in rows.chunks_exact(dim).enumerate() {
            for (d, &value) in row.iter().enumerate() {
                panel[d * lanes + lane] = value;
            }
        }
    }
    panels
}

/// One call's operands: `m` queries against the `n` candidates whose panels start `panels`.
struct Block<'a> {
    queries: &'a [f32],
    panels: &'a [f32],
    m: usize,
    dim: usize,
    n: usize,
    out: &'a mut [f32],
}

/// # Safety
/// The CPU must have AVX-512F (`PanelScorer` is made only where it was detected).
#[target_feature(enable = "avx512f")]
unsafe fn scores_avx512<const MANHATTAN: bool>(block: Block<'_>) {
    // SAFETY: AVX-512F is enabled in this function, which `score` requires of its caller.
    unsafe { block.score::<Zmm, MANHATTAN>() }
}

/// # Safety
/// The CPU must have AVX2 and FMA (`PanelScorer` is made only where they were detected).
#[target_feature(enable = "avx2,fma")]
unsafe fn scores_avx2<const MANHATTAN: bool>(block: Block<'_>) {
    // SAFETY: AVX2 and FMA are enabled in this function, which `score` requires of its caller.
    unsafe { block.score::<Ymm, MANHATTAN>() }
}

impl Block<'_> {
    /// # Safety
    /// Only inside a function that enables `R`'s target features.
    #[inline(always)]
    unsafe fn score<R: Register, const MANHATTAN: bool>(self) {
        let Block { queries, panels, m, dim, n, out } = self;
        let (tile_candidates, group) = (2 * R::LANES, R::TILE_QUERIES);
        let groups = interleave(queries, m, dim, group);
        for index in 0..n.div_ceil(tile_candidates) {
            let first = index * tile_candidates;
            let panel = &panels[first * dim..(first + tile_candidates) * dim];
            let mut q = 0;
            while q < m {
                let rows = group.min(m - q);
                let members = &groups[q * dim..(q + group) * dim];
                let tile = Tile { queries: members, panel, dim, first, n, out: &mut out[q * n..] };
                // SAFETY: the caller enabled `R`'s features; the tile's slices hold `rows`
                // queries, two full panels and `rows` output rows.
                unsafe { R::run_tile::<MANHATTAN>(tile, rows) };
                q += rows;
            }
        }
    }
}

/// The `m` queries (row-major, `dim` values each) in groups of `group`, each group
/// dimension-major (`dim` runs of `group` values, zero-padded): the values a tile broadcasts at
/// one dimension are adjacent, at fixed offsets from one pointer.
fn interleave(queries: &[f32], m: usize, dim: usize, group: usize) -> Vec<f32> {
    let mut groups = vec![0.0; m.next_multiple_of(group) * dim];
    for (interleaved, rows) in groups.chunks_exact_mut(group * dim).zip(queries[..m * dim].chunks(group * dim)) {
        for (r, row) in rows.chunks_exact(dim).enumerate() {
            for (d, &value) in row.iter().enumerate() {
                interleaved[d * group + r] = value;
            }
        }
    }
    groups
}

/// A vector register of `f32` lanes and what the kernel does with it. Implemented for
/// AVX-512F's and AVX2's; every method is `inline(always)`, to be compiled into the entry
/// point that enables its features.
///
/// # Safety
/// Every method may be called only inside a function that enables the implementer's target
/// features; `load` reads and `store` writes `LANES` values at the pointer it is given.
trait Register: Copy {
    /// Candidates per panel.
    const LANES: usize;
    /// Queries per register tile: 2 × this many accumulators, leaving registers for the two
    /// panel loads and a broadcast.
    const TILE_QUERIES: usize;
    unsafe fn zero() -> Self;
    unsafe fn load(from: *const f32) -> Self;
    unsafe fn splat(value: f32) -> Self;
    /// `sum + a·b`, fused.
    unsafe fn mul_add(a: Self, b: Self, sum: Self) -> Self;
    /// `sum + |a − b|`.
    unsafe fn add_abs_difference(sum: Self, a: Self, b: Self) -> Self;
    /// `0 − self`.
    unsafe fn negated(self) -> Self;
    /// Writes all `LANES` values.
    unsafe fn store(self, to: *mut f32);
    /// `tile.run::<Self, ROWS, MANHATTAN>()` for `rows` (1..=TILE_QUERIES), a constant per
    /// variant so that the accumulators stay in registers.
    unsafe fn run_tile<const MANHATTAN: bool>(tile: Tile<'_>, rows: usize);
}

#[derive(Clone, Copy)]
struct Zmm(__m512);

#[derive(Clone, Copy)]
struct Ymm(__m256);

// SAFETY (every `unsafe` block below): the caller enabled AVX-512F (see `Register`), and the
// pointers are as each method's contract says.
impl Register for Zmm {
    const LANES: usize = 16;
    const TILE_QUERIES: usize = 8;

    #[inline(always)]
    unsafe fn zero() -> Self {
        Self(unsafe { _mm512_setzero_ps() })
    }

    #[inline(always)]
    unsafe fn load(from: *const f32) -> Self {
        // SAFETY: the caller points at `LANES` readable values.
        Self(unsafe { _mm512_loadu_ps(from) })
    }

    #[inline(always)]
    unsafe fn splat(value: f32) -> Self {
        Self(unsafe { _mm512_set1_ps(value) })
    }

    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, sum: Self) -> Self {
        Self(unsafe { _mm512_fmadd_ps(a.0, b.0, sum.0) })
    }

    #[inline(always)]
    unsafe fn add_abs_difference(sum: Self, a: Self, b: Self) -> Self {
        Self(unsafe { _mm512_add_ps(sum.0, _mm512_abs_ps(_mm512_sub_ps(a.0, b.0))) })
    }

    #[inline(always)]
    unsafe fn negated(self) -> Self {
        Self(unsafe { _mm512_sub_ps(_mm512_setzero_ps(), self.0) })
    }

    #[inline(always)]
    unsafe fn store(self, to: *mut f32) {
        // SAFETY: the caller points at `LANES` writable values.
        unsafe { _mm512_storeu_ps(to, self.0) }
    }

    #[inline(always)]
    unsafe fn run_tile<const MANHATTAN: bool>(tile: Tile<'_>, rows: usize) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match rows {
                8 => tile.run::<Self, 8, MANHATTAN>(),
                7 => tile.run::<Self, 7, MANHATTAN>(),
                6 => tile.run::<Self, 6, MANHATTAN>(),
                5 => tile.run::<Self, 5, MANHATTAN>(),
                4 => tile.run::<Self, 4, MANHATTAN>(),
                3 => tile.run::<Self, 3, MANHATTAN>(),
                2 => tile.run::<Self, 2, MANHATTAN>(),
                _ => tile.run::<Self, 1, MANHATTAN>(),
            }
        }
    }
}

// SAFETY (every `unsafe` block below): the caller enabled AVX2 and FMA (see `Register`), and
// the pointers are as each method's contract says.
impl Register for Ymm {
    const LANES: usize = 8;
    const TILE_QUERIES: usize = 6;

    #[inline(always)]
    unsafe fn zero() -> Self {
        Self(unsafe { _mm256_setzero_ps() })
    }

    #[inline(always)]
    unsafe fn load(from: *const f32) -> Self {
        // SAFETY: the caller points at `LANES` readable values.
        Self(unsafe { _mm256_loadu_ps(from) })
    }

    #[inline(always)]
    unsafe fn splat(value: f32) -> Self {
        Self(unsafe { _mm256_set1_ps(value) })
    }

    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, sum: Self) -> Self {
        Self(unsafe { _mm256_fmadd_ps(a.0, b.0, sum.0) })
    }

    #[inline(always)]
    unsafe fn add_abs_difference(sum: Self, a: Self, b: Self) -> Self {
        // |x| clears the sign bit: andnot with −0.0, which is the sign bit alone.
        Self(unsafe { _mm256_add_ps(sum.0, _mm256_andnot_ps(_mm256_set1_ps(-0.0), _mm256_sub_ps(a.0, b.0))) })
    }

    #[inline(always)]
    unsafe fn negated(self) -> Self {
        Self(unsafe { _mm256_sub_ps(_mm256_setzero_ps(), self.0) })
    }

    #[inline(always)]
    unsafe fn store(self, to: *mut f32) {
        // SAFETY: the caller points at `LANES` writable values.
        unsafe { _mm256_storeu_ps(to, self.0) }
    }

    #[inline(always)]
    unsafe fn run_tile<const MANHATTAN: bool>(tile: Tile<'_>, rows: usize) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match rows {
                6 => tile.run::<Self, 6, MANHATTAN>(),
                5 => tile.run::<Self, 5, MANHATTAN>(),
                4 => tile.run::<Self, 4, MANHATTAN>(),
                3 => tile.run::<Self, 3, MANHATTAN>(),
                2 => tile.run::<Self, 2, MANHATTAN>(),
                _ => tile.run::<Self, 1, MANHATTAN>(),
            }
        }
    }
}

/// Up to `TILE_QUERIES` queries against the two panels starting at candidate `first`.
struct Tile<'a> {
    /// One group of `interleave`.
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
    ///
    /// # Safety
    /// Only inside a function that enables `R`'s target features.
    #[inline(always)]
    unsafe fn run<R: Register, const ROWS: usize, const MANHATTAN: bool>(self) {
        let (dim, lanes, group) = (self.dim, R::LANES, R::TILE_QUERIES);
        assert!(
            ROWS <= group && self.queries.len() >= group * dim && self.panel.len() >= 2 * lanes * dim,
            "tile shapes"
        );
        assert!(self.out.len() >= (ROWS - 1) * self.n + self.n.min(self.first + 2 * lanes), "tile output");
        // SAFETY (every block below): the caller enabled `R`'s features; with d < dim and
        // r < ROWS ≤ group, loads read `lanes` values inside a panel of `dim × lanes` and one
        // value inside the group of `dim × group` (no bounds checks in the inner loop: they
        // would cost as many instructions as the FMAs); stores write `lanes` values into
        // `row`, a slice of exactly `lanes`, or into the local `values`.
        let mut sums = [[unsafe { R::zero() }; 2]; ROWS];
        let (left, right) = self.panel.split_at(lanes * dim);
        let queries = self.queries.as_ptr();
        for d in 0..dim {
            let (b0, b1) = unsafe { (R::load(left.as_ptr().add(d * lanes)), R::load(right.as_ptr().add(d * lanes))) };
            for (r, pair) in sums.iter_mut().enumerate() {
                let a = unsafe { R::splat(*queries.add(d * group + r)) };
                unsafe {
                    if MANHATTAN {
                        pair[0] = R::add_abs_difference(pair[0], a, b0);
                        pair[1] = R::add_abs_difference(pair[1], a, b1);
                    } else {
                        pair[0] = R::mul_add(a, b0, pair[0]);
                        pair[1] = R::mul_add(a, b1, pair[1]);
                    }
                }
            }
        }
        let mut values = [0f32; MAX_LANES];
        for (r, pair) in sums.iter().enumerate() {
            for (half, &sum) in pair.iter().enumerate() {
                let start = self.first + half * lanes;
                let valid = self.n.saturating_sub(start).min(lanes);
                if valid == 0 {
                    continue;
                }
                let sum = if MANHATTAN { unsafe { sum.negated() } } else { sum };
                let row = &mut self.out[r * self.n + start..][..valid];
                if valid == lanes {
                    unsafe { sum.store(row.as_mut_ptr()) };
                } else {
                    unsafe { sum.store(values.as_mut_ptr()) };
                    row.copy_from_slice(&values[..valid]);
                }
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
            let tile = 2 * MAX_LANES;
            let first = (skip_tiles * tile).min(n / tile * tile);
            let width = n - first;
            let kernel = if manhattan { Kernel::NegManhattan } else { Kernel::Dot };
            for panels in [PanelWidth::Avx512, PanelWidth::Avx2] {
                let Some(scorer) = PanelScorer::for_candidates(panels, &candidates, dim) else { continue };
                let mut out = vec![f32::NAN; m * width];
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
                        prop_assert_eq!(got.to_bits(), expected.to_bits(), "{:?}: query {} candidate {}", panels, q, c);
                    }
                }
            }
        }
    }
}
