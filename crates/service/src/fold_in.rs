//! The real-time ALS fold-in: a user's factor vector solved from their listens against the
//! fixed ALS item factors, then the catalogue scored with it.
//!
//! With the item factors Y fixed, the implicit-ALS objective of one user (see
//! `musicrec_models::als`) is minimised in closed form by
//! `(YᵀY + Σ_i (c_i − 1) y_i y_iᵀ + λI) x = Σ_i c_i y_i`, where c_i = alpha · listens of item i:
//! exactly the user step of training, solved here by Cholesky instead of a few CG steps.
//! `YᵀY + λI` does not depend on the user and is computed once at load.

use musicrec_models::topk::{Candidates, top_k};
use musicrec_models::{Als, Recommender};

pub struct FoldIn {
    dim: usize,
    regularization: f32,
    alpha: f32,
    /// Items that have factors, ascending, and their factors row-major.
    items: Vec<u32>,
    factors: Vec<f32>,
    /// YᵀY + λI, row-major dim × dim.
    gram_reg: Vec<f64>,
}

impl FoldIn {
    pub fn new(model: &Als) -> Self {
        let f = model.factors();
        let dim = f.dim();
        let items = f.items().to_vec();
        let mut factors = Vec::with_capacity(items.len() * dim);
        for &item in &items {
            factors.extend_from_slice(f.item_vector(item).expect("items() have vectors"));
        }
        let params = model.params();
        let mut gram_reg = vec![0.0f64; dim * dim];
        for row in factors.chunks_exact(dim) {
            add_outer(&mut gram_reg, row, 1.0);
        }
        for j in 0..dim {
            gram_reg[j * dim + j] += f64::from(params.regularization);
        }
        Self { dim, regularization: params.regularization, alpha: params.alpha, items, factors, gram_reg }
    }

    fn vector(&self, item: u32) -> Option<&[f32]> {
        let row = self.items.binary_search(&item).ok()?;
        Some(&self.factors[row * self.dim..(row + 1) * self.dim])
    }

    /// The user's factors from `listens` (item, listen count; items ascending, no repeats), or
    /// `None` when no listened item has factors.
    pub fn user_vector(&self, listens: &[(u32, f32)]) -> Option<Vec<f32>> {
        let dim = self.dim;
        let mut a = self.gram_reg.clone();
        let mut b = vec![0.0f64; dim];
        let mut any = false;
        for &(item, count) in listens {
            let Some(y) = self.vector(item) else { continue };
            any = true;
            let c = f64::from(self.alpha * count);
            // A single listen at alpha 1 (the common case) adds nothing to the matrix.
            if c != 1.0 {
                add_outer(&mut a, y, c - 1.0);
            }
            b.iter_mut().zip(y).for_each(|(b, &y)| *b += c * f64::from(y));
        }
        if !any {
            return None;
        }
        cholesky_solve(&mut a, &mut b, dim)?;
        Some(b.into_iter().map(|v| v as f32).collect())
    }

    /// The `n` best items for `listens` by fold-in score, none of the listened items.
    pub fn recommend(&self, listens: &[(u32, f32)], n: usize) -> Vec<u32> {
        let Some(x) = self.user_vector(listens) else { return Vec::new() };
        let heard: Vec<u32> = listens.iter().map(|&(i, _)| i).collect();
        let candidates = Candidates { vectors: &self.factors, ids: &self.items, dim: self.dim };
        let recs = top_k(&[0], |_| Some(x.as_slice()), |_| heard.as_slice(), candidates, n);
        recs.get(0).1.to_vec()
    }

    /// The regularization and alpha the model was trained with (and fold-in uses).
    pub fn params(&self) -> (f32, f32) {
        (self.regularization, self.alpha)
    }
}

/// `a += weight · y yᵀ` on the lower triangle, the only part `cholesky_solve` reads.
fn add_outer(a: &mut [f64], y: &[f32], weight: f64) {
    let dim = y.len();
    for (r, &yr) in y.iter().enumerate() {
        let w = weight * f64::from(yr);
        a[r * dim..r * dim + r + 1].iter_mut().zip(y).for_each(|(a, &yc)| *a += w * f64::from(yc));
    }
}

/// `a · b` with independent partial sums, so the additions pipeline (and vectorise) instead
/// of waiting on one another: most of the solve's time at a few hundred factors.
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut partial = [0.0f64; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = a8.remainder().iter().zip(b8.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a8.zip(b8) {
        partial.iter_mut().zip(x).zip(y).for_each(|((p, x), y)| *p += x * y);
    }
    partial.iter().sum::<f64>() + tail
}

/// Solves `a x = b` in place (`b` becomes x) for a symmetric positive definite `a`; `None` if
/// it is not (a zero regularization with too few listens).
fn cholesky_solve(a: &mut [f64], b: &mut [f64], n: usize) -> Option<()> {
    for j in 0..n {
        let (done, rest) = a.split_at_mut((j + 1) * n);
        let row_j = &mut done[j * n..];
        let d = row_j[j] - dot(&row_j[..j], &row_j[..j]);
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        row_j[j] = d;
        let row_j = &done[j * n..j * n + j];
        for row_i in rest.chunks_exact_mut(n) {
            row_i[j] = (row_i[j] - dot(&row_i[..j], row_j)) / d;
        }
    }
    for i in 0..n {
        b[i] = (b[i] - dot(&a[i * n..i * n + i], &b[..i])) / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use musicrec_data::CsrMatrix;
    use musicrec_models::AlsParams;

    #[test]
    fn cholesky_solves_a_known_system() {
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let mut b = vec![2.0, 1.0];
        cholesky_solve(&mut a, &mut b, 2).unwrap();
        assert!((b[0] - 0.5).abs() < 1e-12 && b[1].abs() < 1e-12, "{b:?}");
        assert!(cholesky_solve(&mut [0.0], &mut [1.0], 1).is_none());
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
        let fold = FoldIn::new(&als);
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
}
