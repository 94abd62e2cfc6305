//! Randomized truncated SVD of a sparse matrix (Halko, Martinsson, Tropp 2011, algorithms 4.4
//! and 5.1), in `f64`: the item-feature matrices are small next to the listening matrix, and
//! double precision keeps the orthonormalisations exact enough without pivoting.
//!
//! 1. Y = A·Ω for a seeded random n × l test matrix Ω (l = k + oversampling);
//! 2. power iterations Y = (A·Aᵀ)^q·A·Ω, re-orthonormalised after every product (otherwise the
//!    columns collapse onto the top singular vector in floating point);
//! 3. Q = an orthonormal basis of Y; B = Qᵀ·A is l × n, and the eigendecomposition of the
//!    small l × l matrix B·Bᵀ = U_B·Σ²·U_Bᵀ gives A ≈ (Q·U_B)·Σ·Vᵀ.
//!
//! Orthonormal bases come from Gram–Schmidt carried out on the small Gram matrix (Cholesky QR,
//! with GEMMs for the tall products), applied twice like CholeskyQR2: the second pass removes
//! what rounding left of the first. Dependent columns are dropped, so a matrix of rank below l
//! gives fewer columns instead of a division by zero.
//! Every product is thread-count independent (rows in parallel, sums in a fixed order).

use rayon::prelude::*;

use musicrec_data::CsrMatrix;

use crate::dense::{gram_in_tasks_of, mul};
use crate::training::initial_factors;

/// Extra random directions beyond k: the error bound falls off quickly with them (Halko §10).
const OVERSAMPLES: usize = 10;
/// Power iterations: scikit-learn's choice for few components of a large matrix. One-hot
/// feature matrices have slowly decaying spectra, where power iterations matter most.
const POWER_ITERATIONS: usize = 7;
/// Below this share (of the largest eigenvalue, or of a column's own squared norm) is rank
/// deficiency, not signal.
const RANK_TOLERANCE: f64 = 1e-12;
/// Rows per partial Gram product: a few hundred thousand values per task.
const GRAM_ROWS_PER_TASK: usize = 1024;
/// Cyclic Jacobi converges quadratically; this bound is never reached in practice.
const MAX_SWEEPS: usize = 100;

/// The leading singular triplets of a matrix, as its rows' coordinates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TruncatedSvd {
    /// Components: `singular_values.len()`, at most the k asked for (fewer if the rank is).
    pub dim: usize,
    /// Row-major rows × dim: U·Σ, the coordinates of each row of A on the right singular
    /// vectors (what scikit-learn's `TruncatedSVD.fit_transform` returns).
    pub scores: Vec<f64>,
    /// Descending.
    pub singular_values: Vec<f64>,
}

/// The `k` leading components of `a`, from random directions seeded by `seed`.
pub(crate) fn truncated_svd(a: &CsrMatrix, k: usize, seed: u64) -> TruncatedSvd {
    let at = a.transpose();
    let l = (k + OVERSAMPLES).min(a.rows).min(a.cols);
    let omega: Vec<f64> = initial_factors(seed, 2, a.cols, l, -1.0..1.0).into_iter().map(f64::from).collect();
    // Between power iterations the bases only keep the columns apart, so one Gram–Schmidt
    // pass is enough there; the final basis gets two.
    let (mut q, mut width) = orthonormal_basis(sparse_mul(a, &omega, l), l, 1);
    for iteration in 0..POWER_ITERATIONS {
        let (z, z_width) = orthonormal_basis(sparse_mul(&at, &q, width), width, 1);
        let passes = if iteration + 1 == POWER_ITERATIONS { 2 } else { 1 };
        (q, width) = orthonormal_basis(sparse_mul(a, &z, z_width), z_width, passes);
    }
    // Bᵀ = Aᵀ·Q (n × width), so B·Bᵀ is its Gram matrix.
    let bt = sparse_mul(&at, &q, width);
    let (eigenvalues, eigenvectors) = symmetric_eigen(gram_in_tasks_of(&bt, width, GRAM_ROWS_PER_TASK), width);
    let rank = significant(&eigenvalues);
    let dim = k.min(rank);
    let singular_values: Vec<f64> = eigenvalues[..dim].iter().map(|&v| v.sqrt()).collect();
    // U·Σ = Q·U_B·Σ: the first `dim` eigenvector columns, scaled, then one product.
    let mut scaled = vec![0.0f64; width * dim];
    for r in 0..width {
        for (j, &sigma) in singular_values.iter().enumerate() {
            scaled[r * dim + j] = eigenvectors[r * width + j] * sigma;
        }
    }
    let mut scores = vec![0.0f64; a.rows * dim];
    mul(&q, &scaled, a.rows, width, dim, &mut scores);
    TruncatedSvd { dim, scores, singular_values }
}

/// `a` (sparse, rows × cols) · `b` (cols × l, row-major), rows in parallel.
fn sparse_mul(a: &CsrMatrix, b: &[f64], l: usize) -> Vec<f64> {
    let mut out = vec![0.0f64; a.rows * l];
    if l == 0 {
        return out;
    }
    out.par_chunks_mut(l).enumerate().for_each(|(r, row)| {
        let (cols, vals) = a.row(r);
        for (&c, &v) in cols.iter().zip(vals) {
            let v = f64::from(v);
            let from = &b[c as usize * l..(c as usize + 1) * l];
            row.iter_mut().zip(from).for_each(|(o, &x)| *o += v * x);
        }
    });
    out
}

/// How many of the descending `eigenvalues` are above the rank tolerance.
fn significant(eigenvalues: &[f64]) -> usize {
    let largest = eigenvalues.first().copied().unwrap_or(0.0);
    if largest <= 0.0 {
        return 0;
    }
    eigenvalues.iter().take_while(|&&v| v > largest * RANK_TOLERANCE).count()
}

/// An orthonormal basis of the column space of the rows × `width` matrix `y`, and its width
/// (below `width` when `y` is rank deficient), after `passes` Gram–Schmidt passes.
fn orthonormal_basis(mut y: Vec<f64>, mut width: usize, passes: usize) -> (Vec<f64>, usize) {
    let rows = y.len().checked_div(width).unwrap_or(0);
    for _ in 0..passes {
        let (transform, kept) = gram_schmidt_transform(&gram_in_tasks_of(&y, width, GRAM_ROWS_PER_TASK), width);
        let mut basis = vec![0.0f64; rows * kept];
        mul(&y, &transform, rows, width, kept, &mut basis);
        (y, width) = (basis, kept);
    }
    (y, width)
}

/// Gram–Schmidt on the columns of Y, carried out on their Gram matrix `g` = YᵀY (n × n)
/// alone: returns T (n × kept, row-major) such that the columns of Y·T are orthonormal and
/// span the columns of Y. A column whose part independent of the earlier ones is below the
/// rank tolerance of its own norm is dropped. This is Cholesky QR (T = R⁻¹) that survives
/// rank deficiency, at O(n³) on the small side instead of O(rows · n²).
fn gram_schmidt_transform(g: &[f64], n: usize) -> (Vec<f64>, usize) {
    let mut columns: Vec<Vec<f64>> = Vec::with_capacity(n);
    let mut v = vec![0.0f64; n];
    let mut gv = vec![0.0f64; n];
    for j in 0..n {
        v.fill(0.0);
        v[j] = 1.0;
        // Subtract the projections onto the kept columns: ⟨Y·t, Y·e_j⟩ = tᵀ·g·e_j.
        for t in &columns {
            let overlap: f64 = t.iter().enumerate().map(|(i, &ti)| ti * g[i * n + j]).sum();
            v.iter_mut().zip(t).for_each(|(vi, &ti)| *vi -= overlap * ti);
        }
        for (i, out) in gv.iter_mut().enumerate() {
            *out = (0..n).map(|k| g[i * n + k] * v[k]).sum();
        }
        let norm_squared: f64 = v.iter().zip(&gv).map(|(a, b)| a * b).sum();
        if norm_squared > g[j * n + j] * RANK_TOLERANCE && norm_squared > 0.0 {
            let scale = 1.0 / norm_squared.sqrt();
            columns.push(v.iter().map(|&x| x * scale).collect());
        }
    }
    let kept = columns.len();
    let mut transform = vec![0.0f64; n * kept];
    for (c, t) in columns.iter().enumerate() {
        for (r, &x) in t.iter().enumerate() {
            transform[r * kept + c] = x;
        }
    }
    (transform, kept)
}

/// Eigenvalues (descending) and eigenvectors (the columns of a row-major n × n matrix, in the
/// same order) of the symmetric row-major n × n matrix `a`, by cyclic Jacobi rotations:
/// simple, accurate to rounding, and fast for the few hundred rows it is used on.
pub(crate) fn symmetric_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0.0f64; n * n];
    (0..n).for_each(|i| v[i * n + i] = 1.0);
    let diagonal_norm = |a: &[f64]| (0..n).map(|i| a[i * n + i] * a[i * n + i]).sum::<f64>();
    for _ in 0..MAX_SWEEPS {
        let off: f64 = (0..n).flat_map(|p| (p + 1..n).map(move |q| (p, q))).map(|(p, q)| a[p * n + q].powi(2)).sum();
        if off <= f64::EPSILON.powi(2) * diagonal_norm(&a) || off == 0.0 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                // The rotation that zeroes a[p][q]: t = tan φ, the smaller root of t² + 2θt − 1.
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vkp, vkq) = (v[k * n + p], v[k * n + q]);
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vectors = vec![0.0f64; n * n];
    for r in 0..n {
        for (to, &from) in order.iter().enumerate() {
            vectors[r * n + to] = v[r * n + from];
        }
    }
    (values, vectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_diagonalises_a_symmetric_matrix() {
        let n = 5;
        let mut a = vec![0.0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = 1.0 / (1 + i + j) as f64; // Hilbert: positive definite, ill-conditioned
            }
        }
        let (values, vectors) = symmetric_eigen(a.clone(), n);
        assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
        for j in 0..n {
            for i in 0..n {
                let av: f64 = (0..n).map(|k| a[i * n + k] * vectors[k * n + j]).sum();
                assert!((av - values[j] * vectors[i * n + j]).abs() < 1e-12, "A·v = λ·v for pair {j}");
            }
        }
        // The largest eigenvalue of the 5 × 5 Hilbert matrix.
        assert!((values[0] - 1.567_050_691_098_231).abs() < 1e-12, "{}", values[0]);
    }

    /// A sparse matrix of exact rank 3: rows are sums of 3 planted sparse patterns.
    fn low_rank() -> CsrMatrix {
        let (rows, cols) = (40usize, 30usize);
        let patterns: [&[usize]; 3] = [&[0, 3, 7, 11], &[1, 3, 20, 21, 29], &[5, 6, 7, 25]];
        let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for row in 0..rows {
            for (p, pattern) in patterns.iter().enumerate() {
                let weight = ((row * 7 + p * 3) % 5) as f32;
                for &col in pattern.iter() {
                    if weight > 0.0 {
                        r.push(row as u32);
                        c.push(col as u32);
                        v.push(weight * (1 + p) as f32);
                    }
                }
            }
        }
        CsrMatrix::from_coo(rows, cols, &r, &c, &v)
    }

    fn dense(m: &CsrMatrix) -> Vec<f64> {
        let mut d = vec![0.0f64; m.rows * m.cols];
        for r in 0..m.rows {
            let (cols, vals) = m.row(r);
            cols.iter().zip(vals).for_each(|(&c, &v)| d[r * m.cols + c as usize] = f64::from(v));
        }
        d
    }

    #[test]
    fn recovers_a_low_rank_matrix_exactly() {
        let a = low_rank();
        let svd = truncated_svd(&a, 10, 3);
        assert_eq!(svd.dim, 3, "rank 3: the other directions are dropped");
        // Three components hold all of A: Σσ² = ‖A‖²_F.
        let frobenius: f64 = a.values.iter().map(|&v| f64::from(v).powi(2)).sum();
        let captured: f64 = svd.singular_values.iter().map(|s| s * s).sum();
        assert!((frobenius - captured).abs() < 1e-9 * frobenius, "{frobenius} vs {captured}");
        // And projecting A's columns onto the left singular vectors leaves nothing.
        let d = dense(&a);
        let (rows, cols, k) = (a.rows, a.cols, svd.dim);
        for col in 0..cols {
            let mut residual: Vec<f64> = (0..rows).map(|r| d[r * cols + col]).collect();
            for j in 0..k {
                let u: Vec<f64> = (0..rows).map(|r| svd.scores[r * k + j] / svd.singular_values[j]).collect();
                let dot: f64 = u.iter().zip(&residual).map(|(x, y)| x * y).sum();
                residual.iter_mut().zip(&u).for_each(|(x, &ui)| *x -= dot * ui);
            }
            assert!(residual.iter().all(|x| x.abs() < 1e-9), "column {col}: {residual:?}");
        }
    }

    #[test]
    fn singular_values_match_the_exact_ones() {
        // A full-rank matrix whose exact singular values are the square roots of the
        // eigenvalues of AᵀA, computed here by the (separately tested) Jacobi routine.
        // More columns than k + oversamples: the random projection does not see all of A.
        let (rows, cols) = (80usize, 40usize);
        let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for row in 0..rows {
            for col in 0..cols {
                let h = (row * 31 + col * 17) % 11;
                if h < 4 {
                    r.push(row as u32);
                    c.push(col as u32);
                    v.push(1.0 + (h + col) as f32);
                }
            }
        }
        let a = CsrMatrix::from_coo(rows, cols, &r, &c, &v);
        let d = dense(&a);
        let mut ata = vec![0.0f64; cols * cols];
        for i in 0..cols {
            for j in 0..cols {
                ata[i * cols + j] = (0..rows).map(|row| d[row * cols + i] * d[row * cols + j]).sum();
            }
        }
        let (exact, _) = symmetric_eigen(ata, cols);
        let svd = truncated_svd(&a, 4, 11);
        assert_eq!(svd.dim, 4);
        for (got, want) in svd.singular_values.iter().zip(&exact) {
            assert!((got - want.sqrt()).abs() < 1e-6 * want.sqrt(), "{got} vs {}", want.sqrt());
        }
    }
}
