//! The real-time ALS fold-in: a user's factor vector solved from their listens against the
//! fixed ALS item factors, then the catalogue scored with it.
//!
//! With the item factors Y fixed, the implicit-ALS objective of one user (see
//! `musicrec_models::als`) is minimised in closed form by
//! `(YᵀY + Σ_i (c_i − 1) y_i y_iᵀ + λI) x = Σ_i c_i y_i`, where c_i = alpha · listens of item i:
//! exactly the user step of training, solved here by Cholesky instead of a few CG steps.
//!
//! Speed (a request's budget is a few microseconds of a core, the solve and the scan are
//! millions of multiply-adds):
//! - `YᵀY + λI` and its Cholesky factor do not depend on the user and are computed at load.
//!   A user adds one rank-one term per item with c_i ≠ 1 (repeated listens); m such terms are
//!   solved through the precomputed factor by the Woodbury identity (an m × m system), or by
//!   factoring the whole matrix when m is so large that this is cheaper. Single listens at
//!   alpha 1 (most new listeners) cost two triangular solves.
//! - The catalogue is kept in descending order of factor norm, so the scan can stop exactly:
//!   once the n-th best score is above ‖x‖·‖y‖ of the next item, no later item can enter
//!   (Cauchy–Schwarz). The answer is the full scan's, ties to the lower item index.
//! - The loops run with AVX2 + FMA when the CPU has them (the workspace builds for baseline
//!   x86-64, where they would be SSE2 without fused multiply-adds).

use musicrec_models::{Als, Recommender};

/// Rows scored between two checks of the stopping bound.
const BLOCK: usize = 256;

pub struct FoldIn {
    dim: usize,
    regularization: f32,
    alpha: f32,
    /// Items that have factors, by descending factor norm, their factors row-major in that
    /// order, and their norms.
    order: Vec<u32>,
    factors: Vec<f32>,
    norms: Vec<f32>,
    /// Row in `order` of each item index; `u32::MAX` for an item without factors.
    row_of: Vec<u32>,
    /// YᵀY + λI, row-major dim × dim (lower triangle used).
    gram_reg: Vec<f64>,
    /// Its Cholesky factor L (lower triangle, row-major).
    gram_chol: Vec<f64>,
    fused: bool,
}

impl FoldIn {
    /// `None` when YᵀY + λI is not positive definite (a model with zero regularization and
    /// degenerate factors), so no user can be folded in.
    pub fn new(model: &Als) -> Option<Self> {
        let f = model.factors();
        let dim = f.dim();
        let vector = |item: u32| f.item_vector(item).expect("items() have vectors");
        let norm = |v: &[f32]| v.iter().map(|&a| f64::from(a) * f64::from(a)).sum::<f64>().sqrt() as f32;
        let mut order = f.items().to_vec();
        let norms_by_item: Vec<f32> = order.iter().map(|&i| norm(vector(i))).collect();
        let mut by_norm: Vec<(f32, u32)> = norms_by_item.into_iter().zip(order.iter().copied()).collect();
        by_norm.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        order = by_norm.iter().map(|&(_, i)| i).collect();
        let norms = by_norm.iter().map(|&(n, _)| n).collect();
        let mut factors = Vec::with_capacity(order.len() * dim);
        let mut row_of = vec![u32::MAX; f.n_items()];
        for (row, &item) in order.iter().enumerate() {
            factors.extend_from_slice(vector(item));
            row_of[item as usize] = row as u32;
        }
        let params = model.params();
        let fused = fused_multiply_add();
        let mut gram_reg = vec![0.0f64; dim * dim];
        for row in factors.chunks_exact(dim) {
            add_outer(fused, &mut gram_reg, row, 1.0);
        }
        for j in 0..dim {
            gram_reg[j * dim + j] += f64::from(params.regularization);
        }
        let mut gram_chol = gram_reg.clone();
        cholesky(fused, &mut gram_chol, dim)?;
        Some(Self {
            dim,
            regularization: params.regularization,
            alpha: params.alpha,
            order,
            factors,
            norms,
            row_of,
            gram_reg,
            gram_chol,
            fused,
        })
    }

    fn vector(&self, item: u32) -> Option<&[f32]> {
        let row = *self.row_of.get(item as usize)?;
        (row != u32::MAX).then(|| &self.factors[row as usize * self.dim..(row as usize + 1) * self.dim])
    }

    /// The user's factors from `listens` (item, listen count; items ascending, no repeats), or
    /// `None` when no listened item has factors.
    pub fn user_vector(&self, listens: &[(u32, f32)]) -> Option<Vec<f32>> {
        let dim = self.dim;
        let mut b = vec![0.0f64; dim];
        let mut updates = Vec::new();
        let mut any = false;
        for &(item, count) in listens {
            let Some(y) = self.vector(item) else { continue };
            any = true;
            let c = f64::from(self.alpha * count);
            // A single listen at alpha 1 (the common case) adds nothing to the matrix.
            if c != 1.0 {
                updates.push((y, c - 1.0));
            }
            b.iter_mut().zip(y).for_each(|(b, &y)| *b += c * f64::from(y));
        }
        if !any {
            return None;
        }
        let m = updates.len();
        if m * m * (3 * dim + m) < dim * dim * dim
            && let Some(x) = self.solve_low_rank(&b, &updates)
        {
            return Some(x);
        }
        let mut a = self.gram_reg.clone();
        for (y, weight) in updates {
            add_outer(self.fused, &mut a, y, weight);
        }
        cholesky(self.fused, &mut a, dim)?;
        forward_solve(self.fused, &a, &mut b, dim);
        backward_solve(self.fused, &a, &mut b, dim);
        Some(b.into_iter().map(|v| v as f32).collect())
    }

    /// `(G + U D Uᵀ)⁻¹ b` by the Woodbury identity on the precomputed factor G = L Lᵀ, with
    /// W = L⁻¹U: `x = L⁻ᵀ (z − W S⁻¹ Wᵀ z)`, z = L⁻¹b, S = D⁻¹ + WᵀW (m × m). About
    /// m·n²/2 + m²·n/2 + m³/6 multiply-adds against n³/6 for factoring the whole matrix, so the
    /// cheaper one for m updates is chosen by the caller. `None` when S is not positive
    /// definite (weights below zero, alpha · listens < 1): the caller factors instead.
    fn solve_low_rank(&self, b: &[f64], updates: &[(&[f32], f64)]) -> Option<Vec<f32>> {
        let (n, m) = (self.dim, updates.len());
        let l = &self.gram_chol;
        let mut w = vec![0.0f64; m * n];
        for ((y, _), w) in updates.iter().zip(w.chunks_exact_mut(n)) {
            w.iter_mut().zip(y.iter()).for_each(|(w, &y)| *w = f64::from(y));
            forward_solve(self.fused, l, w, n);
        }
        let mut z = b.to_vec();
        forward_solve(self.fused, l, &mut z, n);
        let mut s = vec![0.0f64; m * m];
        let mut t = vec![0.0f64; m];
        for i in 0..m {
            let wi = &w[i * n..(i + 1) * n];
            for j in 0..=i {
                s[i * m + j] = dot_f64(wi, &w[j * n..(j + 1) * n]);
            }
            s[i * m + i] += 1.0 / updates[i].1;
            t[i] = dot_f64(wi, &z);
        }
        cholesky(self.fused, &mut s, m)?;
        forward_solve(self.fused, &s, &mut t, m);
        backward_solve(self.fused, &s, &mut t, m);
        for (&ti, wi) in t.iter().zip(w.chunks_exact(n)) {
            z.iter_mut().zip(wi).for_each(|(z, &w)| *z -= ti * w);
        }
        backward_solve(self.fused, l, &mut z, n);
        Some(z.into_iter().map(|v| v as f32).collect())
    }

    /// The `n` best items for `listens` by fold-in score, none of the listened items; equal
    /// scores rank the lower item index first.
    pub fn recommend(&self, listens: &[(u32, f32)], n: usize) -> Vec<u32> {
        let Some(x) = self.user_vector(listens) else { return Vec::new() };
        if n == 0 {
            return Vec::new();
        }
        let x_norm = x.iter().map(|&a| f64::from(a) * f64::from(a)).sum::<f64>().sqrt();
        // Best first; an item enters when it beats the last one.
        let mut best: Vec<(f32, u32)> = Vec::with_capacity(n + 1);
        let mut scores = [0.0f32; BLOCK];
        for (block, start) in (0..self.order.len()).step_by(BLOCK).enumerate() {
            if block > 0 && best.len() == n {
                // Rounding of the f32 dots is covered by a relative slack far above f32 epsilon.
                let bound = x_norm * f64::from(self.norms[start]) * (1.0 + 1e-4);
                if f64::from(best[n - 1].0) > bound {
                    break;
                }
            }
            let end = (start + BLOCK).min(self.order.len());
            let rows = &self.factors[start * self.dim..end * self.dim];
            dots(self.fused, &x, rows, &mut scores[..end - start]);
            for (&score, &item) in scores[..end - start].iter().zip(&self.order[start..end]) {
                let enters = best.len() < n || {
                    let (worst, worst_item) = best[n - 1];
                    score > worst || (score == worst && item < worst_item)
                };
                if enters && listens.binary_search_by_key(&item, |&(i, _)| i).is_err() {
                    let at = best.partition_point(|&(s, i)| s > score || (s == score && i < item));
                    best.insert(at, (score, item));
                    best.truncate(n);
                }
            }
        }
        best.into_iter().map(|(_, item)| item).collect()
    }

    /// The regularization and alpha the model was trained with (and fold-in uses).
    pub fn params(&self) -> (f32, f32) {
        (self.regularization, self.alpha)
    }
}

fn fused_multiply_add() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Runs `body` compiled for AVX2 + FMA when `fused` (so the inlined loops below use them), as
/// plain code otherwise.
macro_rules! dispatch {
    ($fused:expr, $name:ident, fn($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {{
        #[inline(always)]
        fn portable($($arg: $ty),*) $(-> $ret)? $body
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        fn $name($($arg: $ty),*) $(-> $ret)? $body
        #[cfg(target_arch = "x86_64")]
        if $fused {
            // SAFETY: `fused` is true only when the CPU reported AVX2 and FMA.
            return unsafe { $name($($arg),*) };
        }
        portable($($arg),*)
    }};
}

/// `a · b` with independent partial sums, so the additions pipeline (and vectorise) instead
/// of waiting on one another.
#[inline(always)]
fn dot_f64(a: &[f64], b: &[f64]) -> f64 {
    let mut partial = [0.0f64; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        partial.iter_mut().zip(x).zip(y).for_each(|((p, x), y)| *p += x * y);
    }
    partial.iter().sum::<f64>() + tail
}

#[inline(always)]
fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let mut partial = [0.0f32; 16];
    let (a16, b16) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = a16.remainder().iter().zip(b16.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a16.zip(b16) {
        partial.iter_mut().zip(x).zip(y).for_each(|((p, x), y)| *p += x * y);
    }
    partial.iter().sum::<f32>() + tail
}

/// `out[r]` = x · row r of the row-major `rows`.
fn dots(fused: bool, x: &[f32], rows: &[f32], out: &mut [f32]) {
    dispatch!(fused, dots_avx2, fn(x: &[f32], rows: &[f32], out: &mut [f32]) {
        for (o, row) in out.iter_mut().zip(rows.chunks_exact(x.len())) {
            *o = dot_f32(x, row);
        }
    })
}

/// `a += weight · y yᵀ` on the lower triangle, the only part the factorization reads.
fn add_outer(fused: bool, a: &mut [f64], y: &[f32], weight: f64) {
    dispatch!(fused, add_outer_avx2, fn(a: &mut [f64], y: &[f32], weight: f64) {
        let dim = y.len();
        for (r, &yr) in y.iter().enumerate() {
            let w = weight * f64::from(yr);
            a[r * dim..r * dim + r + 1].iter_mut().zip(y).for_each(|(a, &yc)| *a += w * f64::from(yc));
        }
    })
}

/// Replaces the lower triangle of the symmetric `a` (n × n) by its Cholesky factor; `None` if
/// `a` is not positive definite (a zero regularization with too few listens).
fn cholesky(fused: bool, a: &mut [f64], n: usize) -> Option<()> {
    dispatch!(fused, cholesky_avx2, fn(a: &mut [f64], n: usize) -> Option<()> {
        for j in 0..n {
            let (done, rest) = a.split_at_mut((j + 1) * n);
            let row_j = &mut done[j * n..];
            let d = row_j[j] - dot_f64(&row_j[..j], &row_j[..j]);
            if d <= 0.0 || !d.is_finite() {
                return None;
            }
            let d = d.sqrt();
            row_j[j] = d;
            let row_j = &done[j * n..j * n + j];
            for row_i in rest.chunks_exact_mut(n) {
                row_i[j] = (row_i[j] - dot_f64(&row_i[..j], row_j)) / d;
            }
        }
        Some(())
    })
}

/// Solves `L y = b` in place (`b` becomes y) for the lower-triangular `l`.
fn forward_solve(fused: bool, l: &[f64], b: &mut [f64], n: usize) {
    dispatch!(fused, forward_solve_avx2, fn(l: &[f64], b: &mut [f64], n: usize) {
        for i in 0..n {
            b[i] = (b[i] - dot_f64(&l[i * n..i * n + i], &b[..i])) / l[i * n + i];
        }
    })
}

/// Solves `Lᵀ x = y` in place for the lower-triangular `l`, by rows of L (contiguous) rather
/// than its columns.
fn backward_solve(fused: bool, l: &[f64], b: &mut [f64], n: usize) {
    dispatch!(fused, backward_solve_avx2, fn(l: &[f64], b: &mut [f64], n: usize) {
        for i in (0..n).rev() {
            b[i] /= l[i * n + i];
            let xi = b[i];
            b[..i].iter_mut().zip(&l[i * n..i * n + i]).for_each(|(b, &l)| *b -= xi * l);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use musicrec_data::CsrMatrix;
    use musicrec_models::AlsParams;

    #[test]
    fn cholesky_solves_a_known_system_with_and_without_fma() {
        for fused in [false, fused_multiply_add()] {
            let mut a = vec![4.0, 2.0, 2.0, 3.0];
            let mut b = vec![2.0, 1.0];
            cholesky(fused, &mut a, 2).unwrap();
            forward_solve(fused, &a, &mut b, 2);
            backward_solve(fused, &a, &mut b, 2);
            assert!((b[0] - 0.5).abs() < 1e-12 && b[1].abs() < 1e-12, "{b:?}");
            assert!(cholesky(fused, &mut [0.0], 1).is_none());
        }
    }

    /// Folding a trained user back in from their own listens gives (nearly) the user's trained
    /// vector: the fold-in is the training's user step, run to convergence.
    #[test]
    fn fold_in_reproduces_the_trained_user_step() {
        let (rows, cols) = (30usize, 12usize);
        let (mut r, mut c) = (Vec::new(), Vec::new());
        for u in 0..rows as u32 {
            for i in 0..cols as u32 {
                if (u * 7 + i * 3) % 5 < 2 {
                    r.push(u);
                    c.push(i);
                }
            }
        }
        let ones = vec![1.0f32; r.len()];
        let m = CsrMatrix::from_coo(rows, cols, &r, &c, &ones);
        let params =
            AlsParams { factors: 4, iterations: 30, min_users_per_item: 1, cg_steps: 50, ..Default::default() };
        let als = Als::fit(&params, &m).unwrap();
        let fold = FoldIn::new(&als).unwrap();
        let (items, counts) = m.row(3);
        let listens: Vec<(u32, f32)> = items.iter().copied().zip(counts.iter().copied()).collect();
        let x = fold.user_vector(&listens).unwrap();
        let trained = als.factors().user_vector(3).unwrap();
        for (a, b) in x.iter().zip(trained) {
            assert!((a - b).abs() < 1e-2 * (1.0 + b.abs()), "{x:?} vs {trained:?}");
        }
        let recs = fold.recommend(&listens, 3);
        assert_eq!(recs.len(), 3);
        assert!(recs.iter().all(|i| !items.contains(i)));
        assert!(fold.user_vector(&[]).is_none());
    }

    /// The norm-ordered scan with its early stop answers what scoring every item and sorting
    /// answers, for single listens (the precomputed factor) and repeated ones (a new one).
    #[test]
    fn early_stopping_scan_equals_the_full_scan() {
        let (rows, cols) = (200usize, 150usize);
        let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for u in 0..rows as u32 {
            for i in 0..cols as u32 {
                // Skewed popularity, so factor norms differ and the scan can stop early.
                if (u * 31 + i * 17) % (3 + i / 10) == 0 {
                    r.push(u);
                    c.push(i);
                    v.push(1.0 + (u % 3) as f32);
                }
            }
        }
        let m = CsrMatrix::from_coo(rows, cols, &r, &c, &v);
        let params = AlsParams { factors: 16, iterations: 5, min_users_per_item: 1, ..Default::default() };
        let als = Als::fit(&params, &m).unwrap();
        let fold = FoldIn::new(&als).unwrap();
        for (case, listens) in
            [vec![(3u32, 1.0f32), (40, 1.0)], vec![(5, 3.0), (77, 1.0), (120, 2.0)]].iter().enumerate()
        {
            let x = fold.user_vector(listens).unwrap();
            let mut all: Vec<(f32, u32)> = (0..cols as u32)
                .filter(|i| listens.iter().all(|&(l, _)| l != *i))
                .filter_map(|i| fold.vector(i).map(|y| (dot_f32(&x, y), i)))
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for n in [1, 10, 40] {
                let expected: Vec<u32> = all.iter().take(n).map(|&(_, i)| i).collect();
                assert_eq!(fold.recommend(listens, n), expected, "case {case}, n = {n}");
            }
        }
    }

    /// The Woodbury path and factoring the whole matrix give the same vector, including the
    /// fallback for negative weights (alpha · listens < 1).
    #[test]
    fn low_rank_solve_equals_factoring_the_whole_matrix() {
        let (rows, cols) = (60usize, 40usize);
        let (mut r, mut c) = (Vec::new(), Vec::new());
        for u in 0..rows as u32 {
            for i in 0..cols as u32 {
                if (u * 13 + i * 7) % 4 == 0 {
                    r.push(u);
                    c.push(i);
                }
            }
        }
        let m = CsrMatrix::from_coo(rows, cols, &r, &c, &vec![1.0; r.len()]);
        for alpha in [1.0f32, 0.4] {
            let params = AlsParams { factors: 12, iterations: 3, alpha, min_users_per_item: 1, ..Default::default() };
            let fold = FoldIn::new(&Als::fit(&params, &m).unwrap()).unwrap();
            // Five repeated items of eight: m = 5 is the Woodbury path at 32 factors.
            let listens: Vec<(u32, f32)> = (0..8).map(|i| (i * 3, 1.0 + (i % 3 != 0) as u8 as f32 * 2.0)).collect();
            let x = fold.user_vector(&listens).unwrap();
            let dim = fold.dim;
            let (mut a, mut b) = (fold.gram_reg.clone(), vec![0.0f64; dim]);
            for &(item, count) in &listens {
                let y = fold.vector(item).unwrap();
                let c = f64::from(alpha * count);
                add_outer(false, &mut a, y, c - 1.0);
                b.iter_mut().zip(y).for_each(|(b, &y)| *b += c * f64::from(y));
            }
            cholesky(false, &mut a, dim).unwrap();
            forward_solve(false, &a, &mut b, dim);
            backward_solve(false, &a, &mut b, dim);
            for (got, want) in x.iter().zip(&b) {
                assert!((f64::from(*got) - want).abs() < 1e-4 * (1.0 + want.abs()), "alpha {alpha}: {x:?} vs {b:?}");
            }
        }
    }
}
