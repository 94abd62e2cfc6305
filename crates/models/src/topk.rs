//! Batched top-K over query × candidate scores, for all queries at once: dot products, or
//! negated manhattan distances (Item2Item's metric that no product expresses).
//!
//! Queries are taken in blocks; each block is scored against a block of candidates (on
//! AVX-512 or AVX2 CPUs by `score_panels`; elsewhere dot: one dense product, `matrixmultiply`'s
//! GEMM, manhattan: a scan of every pair, the query block staying in L1) into a buffer that
//! fits in cache, and each query's row of that buffer is scanned straight away into a small
//! selection of its best `n`. The full queries × candidates matrix never exists: memory stays
//! at a few blocks per thread, whatever the number of users and items. Blocks of queries run
//! in parallel on the current rayon pool.
//!
//! Order: higher score first; equal scores by ascending candidate id, so results are
//! deterministic. Only scores greater than −∞ are returned (finite factors never give NaN or
//! −∞, so in practice every candidate that is not excluded is eligible).

use rayon::prelude::*;

use crate::dense::mul_transposed;
use crate::recommendations::Recommendations;
#[cfg(target_arch = "x86_64")]
use crate::score_panels::{MAX_LANES, PanelScorer};
#[cfg(target_arch = "x86_64")]
use crate::simd::Avx2Fma;
use crate::simd::{Portable, Simd};

/// The candidates copied for a panel kernel (x86-64 only).
#[cfg(target_arch = "x86_64")]
type Panels = PanelScorer;
#[cfg(not(target_arch = "x86_64"))]
type Panels = std::convert::Infallible;

/// The register width of the panel kernels (`score_panels`) that score a block: the default
/// path on x86-64, chosen by `detect`; `top_k_with` takes one explicitly, so that a benchmark
/// can compare them on one machine (`docs/perf/scoring.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanelWidth {
    /// 512-bit registers (AVX-512F): panels of 16 candidates.
    Avx512,
    /// 256-bit registers (AVX2 and FMA): panels of 8 candidates.
    Avx2,
}

impl PanelWidth {
    /// The widest this CPU runs; `None` where neither does (the generic path scores then).
    pub fn detect() -> Option<Self> {
        [Self::Avx512, Self::Avx2].into_iter().find(|width| width.is_supported())
    }

    /// Whether this CPU runs this width (never off x86-64).
    pub fn is_supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return match self {
            Self::Avx512 => is_x86_feature_detected!("avx512f"),
            Self::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
        };
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
}

/// Queries scored together: one GEMM's rows, and the unit of parallel work. A caller that
/// splits its queries at multiples of it scores every query exactly as one call would.
pub const QUERY_BLOCK: usize = 64;
/// Candidates scored together: a QUERY_BLOCK × CANDIDATE_BLOCK score buffer is 512 KiB.
const CANDIDATE_BLOCK: usize = 2048;
// The panel kernels score candidate blocks that start on their tiles (two panels).
#[cfg(target_arch = "x86_64")]
const _: () = assert!(CANDIDATE_BLOCK.is_multiple_of(2 * MAX_LANES));

/// The rows queries are scored against.
#[derive(Debug, Clone, Copy)]
pub struct Candidates<'a> {
    /// Row-major, `ids.len()` rows of `dim` values.
    pub vectors: &'a [f32],
    /// The id reported for each row; strictly ascending, which ties and exclusions rely on.
    pub ids: &'a [u32],
    pub dim: usize,
}

/// How a query vector scores a candidate vector; higher ranks first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// `q · c`.
    Dot,
    /// `−Σ|q_i − c_i|`: the nearest candidate by manhattan distance scores highest.
    NegManhattan,
}

impl Kernel {
    /// `out` (m × n, row-major) = the scores of the m `queries` against the n `candidates`
    /// (both row-major with `dim` values per row).
    fn score(self, queries: &[f32], candidates: &[f32], m: usize, dim: usize, n: usize, out: &mut [f32]) {
        match self {
            Kernel::Dot => mul_transposed(queries, candidates, m, dim, n, out),
            Kernel::NegManhattan => {
                #[cfg(target_arch = "x86_64")]
                if let Some(simd) = Avx2Fma::detect() {
                    // SAFETY: the token proves AVX2 and FMA are present.
                    return unsafe { neg_manhattan_avx2(simd, queries, candidates, m, dim, n, out) };
                }
                neg_manhattan(Portable, queries, candidates, m, dim, n, out)
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn neg_manhattan_avx2(
    simd: Avx2Fma,
    queries: &[f32],
    candidates: &[f32],
    m: usize,
    dim: usize,
    n: usize,
    out: &mut [f32],
) {
    neg_manhattan(simd, queries, candidates, m, dim, n, out)
}

/// Candidates scanned by all queries of a block before the next ones: 64 candidates of 100
/// values stay in L1 next to a query.
const MANHATTAN_CANDIDATES: usize = 64;

/// Candidates in small groups, every query of the block against a group while it is in cache;
/// eight candidates per kernel call, so each query value is loaded once for eight of them.
#[inline(always)]
fn neg_manhattan<S: Simd>(
    simd: S,
    queries: &[f32],
    candidates: &[f32],
    m: usize,
    dim: usize,
    n: usize,
    out: &mut [f32],
) {
    assert!(queries.len() >= m * dim && candidates.len() >= n * dim && out.len() >= m * n, "score block shapes");
    for start in (0..n).step_by(MANHATTAN_CANDIDATES) {
        let end = (start + MANHATTAN_CANDIDATES).min(n);
        for (q, query) in queries.chunks_exact(dim).take(m).enumerate() {
            let row = &mut out[q * n..(q + 1) * n];
            let mut c = start;
            while c + 8 <= end {
                simd.manhattan8(query, &candidates[c * dim..(c + 8) * dim], &mut row[c..c + 8]);
                c += 8;
            }
            for c in c..end {
                row[c] = simd.manhattan(query, &candidates[c * dim..(c + 1) * dim]);
            }
            row[start..end].iter_mut().for_each(|s| *s = -*s);
        }
    }
}

/// For every query `q` of `queries`: the `n` best candidates by `vector(q) · candidate`, best
/// first, skipping the candidates whose ids are in `excluded(q)` (ascending ids). A query
/// whose `vector` is `None` gets an empty list. Fewer than `n` items come back only when
/// fewer than `n` candidates are eligible.
///
/// # Panics
/// If a query vector or the candidate matrix does not have `dim` values per row, or candidate
/// ids are not strictly ascending: callers build both from one model.
pub fn top_k<'v>(
    queries: &[u32],
    vector: impl Fn(usize) -> Option<&'v [f32]> + Sync,
    excluded: impl Fn(usize) -> &'v [u32] + Sync,
    candidates: Candidates<'_>,
    n: usize,
) -> Recommendations {
    top_k_by(Kernel::Dot, queries, vector, excluded, candidates, n)
}

/// `top_k` with the scores of `kernel`.
pub fn top_k_by<'v>(
    kernel: Kernel,
    queries: &[u32],
    vector: impl Fn(usize) -> Option<&'v [f32]> + Sync,
    excluded: impl Fn(usize) -> &'v [u32] + Sync,
    candidates: Candidates<'_>,
    n: usize,
) -> Recommendations {
    top_k_with(PanelWidth::detect(), kernel, queries, vector, excluded, candidates, n)
}

/// `top_k_by`, its blocks scored by the panel kernels of `panels` where this CPU runs them,
/// else (and with `None`) by the generic path. The paths differ in speed and in float rounding
/// only: the panels of either width give the same bits, the generic paths sum in other orders.
pub fn top_k_with<'v>(
    panels: Option<PanelWidth>,
    kernel: Kernel,
    queries: &[u32],
    vector: impl Fn(usize) -> Option<&'v [f32]> + Sync,
    excluded: impl Fn(usize) -> &'v [u32] + Sync,
    candidates: Candidates<'_>,
    n: usize,
) -> Recommendations {
    let dim = candidates.dim;
    assert_eq!(candidates.vectors.len(), candidates.ids.len() * dim, "candidate matrix shape");
    debug_assert!(candidates.ids.windows(2).all(|w| w[0] < w[1]), "candidate ids must be strictly ascending");
    // Copied once per search; every block of queries reads the same panels.
    #[cfg(target_arch = "x86_64")]
    let panels = panels.and_then(|width| PanelScorer::for_candidates(width, candidates.vectors, dim));
    #[cfg(not(target_arch = "x86_64"))]
    let _ = panels;
    #[cfg(not(target_arch = "x86_64"))]
    let panels: Option<Panels> = None;
    let blocks: Vec<Recommendations> = queries
        .par_chunks(QUERY_BLOCK)
        .enumerate()
        .map(|(block, chunk)| {
            let first = block * QUERY_BLOCK;
            top_k_block(kernel, panels.as_ref(), chunk, first, &vector, &excluded, candidates, n)
        })
        .collect();
    let mut out = Recommendations::new();
    for block in &blocks {
        out.append(block);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn top_k_block<'v>(
    kernel: Kernel,
    panels: Option<&Panels>,
    chunk: &[u32],
    first: usize,
    vector: &(impl Fn(usize) -> Option<&'v [f32]> + Sync),
    excluded: &(impl Fn(usize) -> &'v [u32] + Sync),
    candidates: Candidates<'_>,
    n: usize,
) -> Recommendations {
    let dim = candidates.dim;
    // Queries with a vector, as positions in `chunk`, and their vectors packed for the GEMM.
    let mut scored = Vec::with_capacity(chunk.len());
    let mut packed = Vec::with_capacity(chunk.len() * dim);
    if n > 0 {
        for position in 0..chunk.len() {
            if let Some(v) = vector(first + position) {
                assert_eq!(v.len(), dim, "query vector length");
                scored.push(position);
                packed.extend_from_slice(v);
            }
        }
    }
    let mut selections: Vec<Selection> = scored.iter().map(|_| Selection::new(n)).collect();
    let mut pending: Vec<&[u32]> = scored.iter().map(|&p| excluded(first + p)).collect();
    let total = candidates.ids.len();
    let mut scores = vec![0.0f32; scored.len() * CANDIDATE_BLOCK.min(total)];
    for start in (0..total).step_by(CANDIDATE_BLOCK) {
        let end = (start + CANDIDATE_BLOCK).min(total);
        let width = end - start;
        let ids = &candidates.ids[start..end];
        match panels {
            #[cfg(target_arch = "x86_64")]
            Some(panels) => panels.scores(kernel, &packed, scored.len(), start..end, &mut scores),
            _ => kernel.score(
                &packed,
                &candidates.vectors[start * dim..end * dim],
                scored.len(),
                dim,
                width,
                &mut scores,
            ),
        }
        for (q, (selection, pending)) in selections.iter_mut().zip(&mut pending).enumerate() {
            scan_skipping(selection, &scores[q * width..(q + 1) * width], ids, pending);
        }
    }
    let mut out = Recommendations::new();
    let mut selections = selections.into_iter();
    let mut next_scored = scored.iter().peekable();
    let (mut items, mut item_scores) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for (position, &query) in chunk.iter().enumerate() {
        items.clear();
        item_scores.clear();
        if next_scored.next_if(|&&p| p == position).is_some() {
            for (score, item) in selections.next().expect("one selection per scored query").into_sorted() {
                items.push(item);
                item_scores.push(score);
            }
        }
        out.push(query, &items, &item_scores);
    }
    out
}

/// Feeds one query's scores for a block of candidates to its selection, skipping the ids of
/// `pending` (the query's exclusions not yet passed, ascending) and consuming those that fall
/// inside this block, so the whole scan is one merge of two sorted lists.
fn scan_skipping(selection: &mut Selection, scores: &[f32], ids: &[u32], pending: &mut &[u32]) {
    let last = *ids.last().expect("a candidate block is never empty");
    let mut from = 0;
    while let Some((&skip, rest)) = pending.split_first() {
        if skip > last {
            break;
        }
        let at = from + ids[from..].partition_point(|&id| id < skip);
        selection.scan(&scores[from..at], &ids[from..at]);
        from = if at < ids.len() && ids[at] == skip { at + 1 } else { at };
        *pending = rest;
    }
    selection.scan(&scores[from..], &ids[from..]);
}

/// The best `n` (score, id) pairs seen so far, fed in ascending id order.
///
/// Candidates go to an unsorted buffer of up to `2n` (at least `n + 32`) entries; when it fills,
/// a linear-time selection keeps the best `n` and their worst score becomes the entry bar.
/// Because ids arrive ascending, a later candidate with a score equal to the bar ranks below
/// every kept one, so "strictly above the bar" is the exact entry test.
struct Selection {
    n: usize,
    capacity: usize,
    buffer: Vec<(f32, u32)>,
    bar: f32,
}

impl Selection {
    fn new(n: usize) -> Self {
        let capacity = n + n.max(32);
        Self { n, capacity, buffer: Vec::with_capacity(capacity), bar: f32::NEG_INFINITY }
    }

    #[inline]
    fn scan(&mut self, scores: &[f32], ids: &[u32]) {
        for (&score, &id) in scores.iter().zip(ids) {
            if score > self.bar {
                self.buffer.push((score, id));
                if self.buffer.len() == self.capacity {
                    self.keep_best();
                }
            }
        }
    }

    fn keep_best(&mut self) {
        let n = self.n;
        self.buffer.select_nth_unstable_by(n - 1, ranks_before);
        self.buffer.truncate(n);
        self.bar = self.buffer[n - 1].0;
    }

    fn into_sorted(mut self) -> Vec<(f32, u32)> {
        self.buffer.sort_unstable_by(ranks_before);
        self.buffer.truncate(self.n);
        self.buffer
    }
}

/// Higher score first, then lower id. Scores in a selection are never NaN (they passed a `>`
/// test), so the partial comparison is total here.
fn ranks_before(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    b.0.partial_cmp(&a.0).expect("selected scores are not NaN").then(a.1.cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every eligible candidate scored one by one and fully sorted.
    fn naive(kernel: Kernel, query: &[f32], excluded: &[u32], candidates: Candidates<'_>, n: usize) -> Vec<(f32, u32)> {
        let mut all: Vec<(f32, u32)> = candidates
            .ids
            .iter()
            .enumerate()
            .filter(|(_, id)| !excluded.contains(id))
            .map(|(row, &id)| {
                let v = &candidates.vectors[row * candidates.dim..(row + 1) * candidates.dim];
                let score = match kernel {
                    Kernel::Dot => query.iter().zip(v).map(|(a, b)| a * b).sum::<f32>(),
                    Kernel::NegManhattan => -query.iter().zip(v).map(|(a, b)| (a - b).abs()).sum::<f32>(),
                };
                (score, id)
            })
            .collect();
        all.sort_by(ranks_before);
        all.truncate(n);
        all
    }

    /// (dim, candidate ids, candidate vectors, query vectors, exclusions per query, n).
    type Case = (usize, Vec<u32>, Vec<f32>, Vec<f32>, Vec<Vec<u32>>, usize);

    fn case() -> impl Strategy<Value = Case> {
        (1usize..6, 0usize..90, 0usize..150, 0usize..40).prop_flat_map(|(dim, n_candidates, n_queries, n)| {
            (
                Just(dim),
                // Ids with gaps, so that exclusions of ids outside the candidates occur.
                proptest::collection::vec(1u32..4, n_candidates).prop_map(|gaps| {
                    gaps.iter()
                        .scan(0u32, |id, gap| {
                            *id += gap;
                            Some(*id)
                        })
                        .collect::<Vec<_>>()
                }),
                // Small integers: exact products in any summation order, and many ties.
                proptest::collection::vec((-3i8..=3).prop_map(f32::from), n_candidates * dim),
                proptest::collection::vec((-3i8..=3).prop_map(f32::from), n_queries * dim),
                proptest::collection::vec(
                    proptest::collection::btree_set(0u32..400, 0..60).prop_map(|s| s.into_iter().collect()),
                    n_queries,
                ),
                Just(n),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn equals_a_full_sort((dim, ids, vectors, queries, excluded, n) in case(), manhattan in any::<bool>()) {
            let kernel = if manhattan { Kernel::NegManhattan } else { Kernel::Dot };
            let candidates = Candidates { vectors: &vectors, ids: &ids, dim };
            let query_ids: Vec<u32> = (0..excluded.len() as u32).map(|q| q * 10).collect();
            // Every third query has no vector and must get an empty list.
            let vector = |q: usize| (q % 3 != 2).then(|| &queries[q * dim..(q + 1) * dim]);
            for panels in [Some(PanelWidth::Avx512), Some(PanelWidth::Avx2), None] {
                let got = top_k_with(panels, kernel, &query_ids, vector, |q| excluded[q].as_slice(), candidates, n);
                prop_assert_eq!(got.len(), query_ids.len());
                for (q, (query, items, scores)) in got.iter().enumerate() {
                    prop_assert_eq!(query, query_ids[q]);
                    let expected = match vector(q) {
                        Some(v) => naive(kernel, v, &excluded[q], candidates, n),
                        None => Vec::new(),
                    };
                    let eligible = ids.iter().filter(|id| !excluded[q].contains(id)).count();
                    if vector(q).is_some() {
                        prop_assert_eq!(items.len(), n.min(eligible));
                    }
                    prop_assert!(items.iter().all(|i| !excluded[q].contains(i)));
                    let got_pairs: Vec<(f32, u32)> = scores.iter().copied().zip(items.iter().copied()).collect();
                    prop_assert_eq!(got_pairs, expected);
                }
            }
        }
    }

    #[test]
    fn many_blocks_of_queries_and_candidates() {
        // More candidates than one block and more queries than one block, with a planted best
        // item per query, so that block boundaries are crossed both ways.
        let dim = 2;
        let n_candidates = CANDIDATE_BLOCK * 2 + 17;
        let ids: Vec<u32> = (0..n_candidates as u32).map(|i| i * 2).collect();
        let mut vectors = vec![0.0f32; n_candidates * dim];
        for row in 0..n_candidates {
            vectors[row * dim] = 1.0;
            vectors[row * dim + 1] = (row % 1000) as f32 / 1000.0;
        }
        let queries: Vec<u32> = (0..(QUERY_BLOCK * 3 + 5) as u32).collect();
        let query_vector = [0.0f32, 1.0];
        // Rows 999, 1999, 2999, 3999 score highest; query q excludes the first of them.
        let excluded = [999u32 * 2];
        let got = top_k(
            &queries,
            |_| Some(&query_vector[..]),
            |_| &excluded[..],
            Candidates { vectors: &vectors, ids: &ids, dim },
            3,
        );
        for (_, items, scores) in got.iter() {
            assert_eq!(items, &[1999 * 2, 2999 * 2, 3999 * 2]);
            assert!(scores.iter().all(|&s| s == 0.999));
        }
    }
}
