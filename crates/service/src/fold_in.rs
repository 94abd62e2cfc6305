//! The real-time ALS fold-in: a user's factor vector solved from their listens against the
//! fixed ALS item factors, then the catalogue scored with it.
//!
//! With the item factors Y fixed, the implicit-ALS objective of one user (see
//! `musicrec_models::als`) is minimised in closed form by
//! `(G + Σ_i (c_i − 1) y_i y_iᵀ) x = Σ_i c_i y_i`, G = YᵀY + λI, c_i = alpha · listens of
//! item i: exactly the user step of training, solved here exactly instead of by a few CG steps.
//!
//! Speed (a request's budget is microseconds; the solve and the scan are millions of
//! multiply-adds done naively). G does not depend on the user: it is factored once at load,
//! G = L Lᵀ, and the items are kept whitened, w = L⁻¹ y. In those coordinates the system is
//! `(I + Σ d_i w_i w_iᵀ) q = z` with d_i = c_i − 1, z = Σ c_i w_i and q = Lᵀx, and the score of
//! item j is x · y_j = q · w_j, so no request touches an n × n matrix:
//! - z is a sum of stored rows; items with d_i = 0 (single listens at alpha 1, the common case)
//!   contribute nothing else;
//! - the m items with d_i ≠ 0 are a rank-m term, solved by the Woodbury identity as the m × m
//!   system `(D⁻¹ + WᵀW) t = Wᵀz`, q = z − W t (or, for m above the factor count, by factoring
//!   the n × n matrix, the cheaper of the two);
//! - the catalogue is kept in descending order of ‖w‖, so the scan stops once the k-th score
//!   beats ‖q‖·‖w‖ of the next item (Cauchy–Schwarz: nothing later can enter). The answer is
//!   the full scan's, ties to the lower item index;
//! - the loops run with AVX2 + FMA when the CPU has them (the workspace builds for baseline
//!   x86-64, where they would be SSE2 without fused multiply-adds).

use musicrec_models::{Als, Recommender};

/// Rows scored between two checks of the stopping bound (a multiple of `PANEL`).
const BLOCK: usize = 256;
/// Rows interleaved dimension by dimension in the scan's layout: one vector register holds
/// one dimension of `PANEL` items, so their scores accumulate side by side with no horizontal
/// sums.
const PANEL: usize = 8;

pub struct FoldIn {
    dim: usize,
    regularization: f32,
    alpha: f32,
    /// Items that have factors, by descending whitened norm, their whitened factors L⁻¹y in
    /// that order (panels of `PANEL` rows, dimension-major inside a panel, the last panel
    /// padded with zeros), and those norms.
    order: Vec<u32>,
    whitened: Vec<f32>,
    norms: Vec<f32>,
    /// Row in `order` of each item index; `u32::MAX` for an item without factors.
    row_of: Vec<u32>,
    fused: bool,
}

impl FoldIn {
    /// `None` when YᵀY + λI is not positive definite (a model with zero regularization and
    /// degenerate factors), so no user can be folded in.
    pub fn new(model: &Als) -> Option<Self> {
        let f = model.factors();
        let dim = f.dim();
        let fused = fused_multiply_add();
        let params = model.params();
        let l = gram_factor(model, fused)?;
        // Whitened in the model's item order, then laid out by descending norm.
        let items = f.items();
        let mut w = vec![0.0f64; dim];
        let mut by_item = Vec::with_capacity(items.len() * dim);
        let mut by_norm: Vec<(f32, u32, usize)> = Vec::with_capacity(items.len());
        for (at, &item) in items.iter().enumerate() {
            let y = f.item_vector(item).expect("items() have vectors");
            w.iter_mut().zip(y).for_each(|(w, &y)| *w = f64::from(y));
            forward_solve(fused, &l, &mut w, dim);
            by_norm.push((w.iter().map(|v| v * v).sum::<f64>().sqrt() as f32, item, at));
            by_item.extend(w.iter().map(|&v| v as f32));
        }
        by_norm.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut row_of = vec![u32::MAX; f.n_items()];
        let mut whitened = vec![0.0f32; by_norm.len().div_ceil(PANEL) * PANEL * dim];
        for (row, &(_, item, at)) in by_norm.iter().enumerate() {
            row_of[item as usize] = row as u32;
            let panel = &mut whitened[row / PANEL * PANEL * dim..];
            for (d, &v) in by_item[at * dim..(at + 1) * dim].iter().enumerate() {
                panel[d * PANEL + row % PANEL] = v;
            }
        }
        Some(Self {
            dim,
            regularization: params.regularization,
            alpha: params.alpha,
            order: by_norm.iter().map(|r| r.1).collect(),
            norms: by_norm.iter().map(|r| r.0).collect(),
            whitened,
            row_of,
            fused,
        })
    }

    /// Copies the whitened factors of `item` into `out`; false for an item without factors.
    fn whitened_vector(&self, item: u32, out: &mut [f32]) -> bool {
        let Some(&row) = self.row_of.get(item as usize).filter(|&&r| r != u32::MAX) else { return false };
        let (row, dim) = (row as usize, self.dim);
        let panel = &self.whitened[row / PANEL * PANEL * dim..(row / PANEL + 1) * PANEL * dim];
        out.iter_mut().zip(panel[row % PANEL..].iter().step_by(PANEL)).for_each(|(o, &v)| *o = v);
        true
    }

    /// The user's factors in whitened coordinates, q = Lᵀx, from `listens` (item, listen
    /// count; items ascending, no repeats), or `None` when no listened item has factors.
    fn query(&self, listens: &[(u32, f32)]) -> Option<Vec<f64>> {
        let n = self.dim;
        let mut z = vec![0.0f64; n];
        let mut w = vec![0.0f32; n];
        // The rows with c ≠ 1, one after another, and their weights c − 1.
        let (mut repeated, mut weights) = (Vec::new(), Vec::new());
        let mut any = false;
        for &(item, count) in listens {
            if !self.whitened_vector(item, &mut w) {
                continue;
            }
            any = true;
            let c = f64::from(self.alpha * count);
            if c != 1.0 {
                repeated.extend_from_slice(&w);
                weights.push(c - 1.0);
            }
            z.iter_mut().zip(&w).for_each(|(z, &w)| *z += c * f64::from(w));
        }
        if !any {
            return None;
        }
        let updates: Vec<(&[f32], f64)> = repeated.chunks_exact(n).zip(weights).collect();
        if updates.len() <= n
            && let Some(q) = self.woodbury(&z, &updates)
        {
            return Some(q);
        }
        // (I + Σ d w wᵀ) q = z, factored whole.
        let mut a = vec![0.0f64; n * n];
        for j in 0..n {
            a[j * n + j] = 1.0;
        }
        for &(w, d) in &updates {
            add_outer(self.fused, &mut a, w, d);
        }
        cholesky(self.fused, &mut a, n)?;
        forward_solve(self.fused, &a, &mut z, n);
        backward_solve(self.fused, &a, &mut z, n);
        Some(z)
    }

    /// `q = z − W (D⁻¹ + WᵀW)⁻¹ Wᵀz`: about m²·n/2 + m³/6 multiply-adds for m updates, against
    /// m·n²/2 + n³/6 for the n × n system. `None` when D⁻¹ + WᵀW is not positive definite
    /// (weights below zero, alpha · listens < 1): the caller factors the n × n system instead.
    fn woodbury(&self, z: &[f64], updates: &[(&[f32], f64)]) -> Option<Vec<f64>> {
        let m = updates.len();
        let mut s = vec![0.0f64; m * m];
        let mut t = vec![0.0f64; m];
        for (i, &(wi, di)) in updates.iter().enumerate() {
            for (j, &(wj, _)) in updates[..=i].iter().enumerate() {
                s[i * m + j] = dot_mixed(self.fused, wi, wj);
            }
            s[i * m + i] += 1.0 / di;
            t[i] = wi.iter().zip(z).map(|(&w, &z)| f64::from(w) * z).sum();
        }
        cholesky(self.fused, &mut s, m)?;
        forward_solve(self.fused, &s, &mut t, m);
        backward_solve(self.fused, &s, &mut t, m);
        let mut q = z.to_vec();
        for (&ti, &(wi, _)) in t.iter().zip(updates) {
            q.iter_mut().zip(wi).for_each(|(q, &w)| *q -= ti * f64::from(w));
        }
        Some(q)
    }

    /// The `n` best items for `listens` by fold-in score, none of the listened items; equal
    /// scores rank the lower item index first.
    pub fn recommend(&self, listens: &[(u32, f32)], n: usize) -> Vec<u32> {
        let Some(q) = self.query(listens) else { return Vec::new() };
        if n == 0 {
            return Vec::new();
        }
        let q_norm = q.iter().map(|v| v * v).sum::<f64>().sqrt();
        let q: Vec<f32> = q.into_iter().map(|v| v as f32).collect();
        // Best first; an item enters when it beats the last one.
        let mut best: Vec<(f32, u32)> = Vec::with_capacity(n + 1);
        let mut scores = [0.0f32; BLOCK];
        for (block, start) in (0..self.order.len()).step_by(BLOCK).enumerate() {
            if block > 0 && best.len() == n {
                // Rounding of the f32 dots is covered by a relative slack far above f32 epsilon.
                let bound = q_norm * f64::from(self.norms[start]) * (1.0 + 1e-4);
                if f64::from(best[n - 1].0) > bound {
                    break;
                }
            }
            let end = (start + BLOCK).min(self.order.len());
            let panels = (end - start).div_ceil(PANEL);
            let rows = &self.whitened[start * self.dim..(start + panels * PANEL) * self.dim];
            dots(self.fused, &q, rows, &mut scores[..panels * PANEL]);
            let scores = &scores[..end - start];
            // Most blocks hold nothing that enters: one pass over their maximum decides.
            if best.len() == n && scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s)) < best[n - 1].0 {
                continue;
            }
            for (&score, &item) in scores.iter().zip(&self.order[start..end]) {
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

/// The Cholesky factor L of YᵀY + λI (lower triangle, row-major).
fn gram_factor(model: &Als, fused: bool) -> Option<Vec<f64>> {
    let f = model.factors();
    let dim = f.dim();
    let mut g = vec![0.0f64; dim * dim];
    for &item in f.items() {
        add_outer(fused, &mut g, f.item_vector(item).expect("items() have vectors"), 1.0);
    }
    for j in 0..dim {
        g[j * dim + j] += f64::from(model.params().regularization);
    }
    cholesky(fused, &mut g, dim)?;
    Some(g)
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

/// `a · b` of two f32 vectors summed in f64, for the m × m system.
fn dot_mixed(fused: bool, a: &[f32], b: &[f32]) -> f64 {
    dispatch!(fused, dot_mixed_avx2, fn(a: &[f32], b: &[f32]) -> f64 {
        let mut partial = [0.0f64; 8];
        let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f64 = a8.remainder().iter().zip(b8.remainder()).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
        for (x, y) in a8.zip(b8) {
            partial.iter_mut().zip(x).zip(y).for_each(|((p, &x), &y)| *p += f64::from(x) * f64::from(y));
        }
        partial.iter().sum::<f64>() + tail
    })
}

/// `out[r]` = q · row r, for the rows of the panels in `panels` (see `FoldIn::whitened`).
fn dots(fused: bool, q: &[f32], panels: &[f32], out: &mut [f32]) {
    dispatch!(fused, dots_avx2, fn(q: &[f32], panels: &[f32], out: &mut [f32]) {
        for (panel, out) in panels.chunks_exact(q.len() * PANEL).zip(out.chunks_exact_mut(PANEL)) {
            // Four accumulators (dimensions 4i, 4i+1, ...) so the additions pipeline.
            let mut acc = [[0.0f32; PANEL]; 4];
            let (q4, columns4) = (q.chunks_exact(4), panel.chunks_exact(4 * PANEL));
            let (q_tail, columns_tail) = (q4.remainder(), columns4.remainder());
            for (qs, columns) in q4.zip(columns4) {
                for (k, acc) in acc.iter_mut().enumerate() {
                    let column = &columns[k * PANEL..(k + 1) * PANEL];
                    acc.iter_mut().zip(column).for_each(|(a, &c)| *a += qs[k] * c);
                }
            }
            for (&qd, column) in q_tail.iter().zip(columns_tail.chunks_exact(PANEL)) {
                acc[0].iter_mut().zip(column).for_each(|(a, &c)| *a += qd * c);
            }
            for (l, out) in out.iter_mut().enumerate() {
                *out = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
            }
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

    /// The user's factors x = L⁻ᵀq from the fold-in's whitened answer.
    fn user_vector(fold: &FoldIn, model: &Als, listens: &[(u32, f32)]) -> Option<Vec<f64>> {
        let mut x = fold.query(listens)?;
        backward_solve(false, &gram_factor(model, false).unwrap(), &mut x, fold.dim);
        Some(x)
    }

    /// `(YᵀY + λI + Σ(c−1)yyᵀ) x = Σ c y` solved directly in the original coordinates.
    fn direct_solve(model: &Als, listens: &[(u32, f32)]) -> Vec<f64> {
        let f = model.factors();
        let (dim, alpha) = (f.dim(), model.params().alpha);
        let mut a = vec![0.0f64; dim * dim];
        for &item in f.items() {
            add_outer(false, &mut a, f.item_vector(item).unwrap(), 1.0);
        }
        for j in 0..dim {
            a[j * dim + j] += f64::from(model.params().regularization);
        }
        let mut b = vec![0.0f64; dim];
        for &(item, count) in listens {
            let y = f.item_vector(item).unwrap();
            let c = f64::from(alpha * count);
            add_outer(false, &mut a, y, c - 1.0);
            b.iter_mut().zip(y).for_each(|(b, &y)| *b += c * f64::from(y));
        }
        cholesky(false, &mut a, dim).unwrap();
        forward_solve(false, &a, &mut b, dim);
        backward_solve(false, &a, &mut b, dim);
        b
    }

    fn matrix(rows: usize, cols: usize, keep: impl Fn(u32, u32) -> Option<f32>) -> CsrMatrix {
        let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for u in 0..rows as u32 {
            for i in 0..cols as u32 {
                if let Some(value) = keep(u, i) {
                    r.push(u);
                    c.push(i);
                    v.push(value);
                }
            }
        }
        CsrMatrix::from_coo(rows, cols, &r, &c, &v)
    }

    /// Folding a trained user back in from their own listens gives (nearly) the user's trained
    /// vector: the fold-in is the training's user step, run to convergence.
    #[test]
    fn fold_in_reproduces_the_trained_user_step() {
        let m = matrix(30, 12, |u, i| ((u * 7 + i * 3) % 5 < 2).then_some(1.0));
        let params =
            AlsParams { factors: 4, iterations: 30, min_users_per_item: 1, cg_steps: 50, ..Default::default() };
        let als = Als::fit(&params, &m).unwrap();
        let fold = FoldIn::new(&als).unwrap();
        let (items, counts) = m.row(3);
        let listens: Vec<(u32, f32)> = items.iter().copied().zip(counts.iter().copied()).collect();
        let x = user_vector(&fold, &als, &listens).unwrap();
        let trained = als.factors().user_vector(3).unwrap();
        for (a, &b) in x.iter().zip(trained) {
            assert!((a - f64::from(b)).abs() < 1e-2 * (1.0 + f64::from(b).abs()), "{x:?} vs {trained:?}");
        }
        let recs = fold.recommend(&listens, 3);
        assert_eq!(recs.len(), 3);
        assert!(recs.iter().all(|i| !items.contains(i)));
        assert!(fold.query(&[]).is_none());
    }

    /// Every path of the solve (Woodbury for few repeated listens, the fallback for negative
    /// weights at alpha · listens < 1, the n × n system for more repeats than factors) gives
    /// the vector of solving the original system directly.
    #[test]
    fn every_solve_path_equals_the_direct_solve() {
        let m = matrix(60, 40, |u, i| ((u * 13 + i * 7) % 4 == 0).then_some(1.0));
        // (factors, alpha, listens): 5 repeated items of 8 at 32 factors; the same at alpha
        // 0.4; 20 repeated items at 8 factors.
        let few: Vec<(u32, f32)> = (0..8).map(|i| (i * 3, if i % 3 == 0 { 1.0 } else { 3.0 })).collect();
        let many: Vec<(u32, f32)> = (0..20).map(|i| (i * 2, 2.0)).collect();
        for (factors, alpha, listens) in [(32, 1.0f32, &few), (32, 0.4, &few), (8, 1.0, &many)] {
            let params = AlsParams { factors, iterations: 3, alpha, min_users_per_item: 1, ..Default::default() };
            let als = Als::fit(&params, &m).unwrap();
            let fold = FoldIn::new(&als).unwrap();
            let x = user_vector(&fold, &als, listens).unwrap();
            let want = direct_solve(&als, listens);
            for (got, want) in x.iter().zip(&want) {
                assert!((got - want).abs() < 1e-4 * (1.0 + want.abs()), "{factors} {alpha}: {x:?} vs {want:?}");
            }
            // Scores in whitened coordinates are the original x · y.
            let q = fold.query(listens).unwrap();
            let mut w = vec![0.0f32; factors];
            for item in [1u32, 17, 39] {
                assert!(fold.whitened_vector(item, &mut w));
                let y = als.factors().item_vector(item).unwrap();
                let whitened: f64 = q.iter().zip(&w).map(|(q, &w)| q * f64::from(w)).sum();
                let original: f64 = x.iter().zip(y).map(|(x, &y)| x * f64::from(y)).sum();
                assert!((whitened - original).abs() < 1e-4 * (1.0 + original.abs()), "{whitened} vs {original}");
            }
        }
    }

    /// The norm-ordered scan with its early stop answers what scoring every item and sorting
    /// answers, for single listens and repeated ones.
    #[test]
    fn early_stopping_scan_equals_the_full_scan() {
        // Skewed popularity, so factor norms differ and the scan can stop early.
        let m = matrix(200, 150, |u, i| ((u * 31 + i * 17) % (3 + i / 10) == 0).then_some(1.0 + (u % 3) as f32));
        let params = AlsParams { factors: 16, iterations: 5, min_users_per_item: 1, ..Default::default() };
        let als = Als::fit(&params, &m).unwrap();
        let fold = FoldIn::new(&als).unwrap();
        for (case, listens) in
            [vec![(3u32, 1.0f32), (40, 1.0)], vec![(5, 3.0), (77, 1.0), (120, 2.0)]].iter().enumerate()
        {
            // Every item scored by the same kernel, in one pass over all panels.
            let q: Vec<f32> = fold.query(listens).unwrap().into_iter().map(|v| v as f32).collect();
            let mut scores = vec![0.0f32; fold.whitened.len() / fold.dim];
            dots(fold.fused, &q, &fold.whitened, &mut scores);
            let mut w = vec![0.0f32; fold.dim];
            for (&item, &score) in fold.order.iter().zip(&scores) {
                assert!(fold.whitened_vector(item, &mut w));
                let exact: f64 = q.iter().zip(&w).map(|(&q, &w)| f64::from(q) * f64::from(w)).sum();
                assert!((f64::from(score) - exact).abs() < 1e-4 * (1.0 + exact.abs()), "{score} vs {exact}");
            }
            let mut all: Vec<(f32, u32)> = fold
                .order
                .iter()
                .zip(&scores)
                .filter(|(i, _)| listens.iter().all(|&(l, _)| l != **i))
                .map(|(&i, &s)| (s, i))
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for n in [1, 10, 40] {
                let expected: Vec<u32> = all.iter().take(n).map(|&(_, i)| i).collect();
                assert_eq!(fold.recommend(listens, n), expected, "case {case}, n = {n}");
            }
        }
    }
}
