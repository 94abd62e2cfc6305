//! The kernels of ALS: warm-started conjugate-gradient solves of the rows (users, or items)
//! of one half-iteration, and those rows' share of the training loss.
//!
//! Row u's problem is `A_u x = b_u` with `A_u = YᵀY + λI + Σᵢ (cᵢ − 1) yᵢyᵢᵀ` and
//! `b_u = Σᵢ cᵢ yᵢ`, i over the row's entries. Each CG step needs `A_u p`: a k × k
//! matrix-vector product with `YᵀY + λI` (kept in registers, see `Simd::symmetric_mat_vec`)
//! and one pass over the row's entries, which skips those with confidence exactly 1 (one
//! listen at alpha 1, the most common value): they add nothing to `A_u`.
//!
//! Rows are solved one at a time, all steps in a row: the factor rows of its entries are
//! fetched from memory once (prefetched a few entries ahead) and stay in L1/L2 for the other
//! passes. Batching the dense products of many rows into one GEMM was measured slower here:
//! it keeps every row's entries live across the steps, more than L2 holds.

use musicrec_data::CsrMatrix;

#[cfg(target_arch = "x86_64")]
use crate::simd::Avx2Fma;
use crate::simd::{Portable, Simd};

/// Rows per parallel task: enough to amortise the task and the instruction-set dispatch.
pub(super) const ROWS_PER_TASK: usize = 32;

/// A CG residual this small means the row is solved; implicit uses the same bound.
const CONVERGED: f32 = 1e-20;

/// Entries ahead whose factor rows are prefetched during the first pass over a row.
const PREFETCH_AHEAD: usize = 4;

/// One half-iteration: the rows being solved and what stays fixed meanwhile.
pub(super) struct Side<'a> {
    /// Confidences, one row per solved row, columns index `fixed`.
    pub confidence: &'a CsrMatrix,
    /// The other side's factors, row-major.
    pub fixed: &'a [f32],
    /// `YᵀY + λI` of the other side (k × k); symmetric.
    pub gram_reg: &'a [f32],
    pub k: usize,
    pub cg_steps: usize,
}

/// Per-thread work vectors of the CG solve.
pub(super) struct Scratch {
    residual: Vec<f32>,
    direction: Vec<f32>,
    product: Vec<f32>,
}

impl Scratch {
    pub fn new(k: usize) -> Self {
        Self { residual: vec![0.0; k], direction: vec![0.0; k], product: vec![0.0; k] }
    }
}

/// Improves the factors `xs` (rows `first_row..` of the side) with `cg_steps` CG steps from
/// their current values. A row without entries becomes 0, its regularised optimum (as in
/// implicit).
///
/// With `observed_loss`, also returns the observed pairs' part of the training loss for these
/// rows at their new factors: Σ cᵢ (1 − yᵢ·x)² − (yᵢ·x)², the correction of the all-pairs
/// term xᵀYᵀYx. Taken right after each row's solve, it finds the factor rows it reads still in
/// cache; a separate pass would fetch them from memory again. 0 otherwise.
pub(super) fn solve_rows(
    side: &Side<'_>,
    first_row: usize,
    xs: &mut [f32],
    scratch: &mut Scratch,
    observed_loss: bool,
) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = Avx2Fma::detect() {
        // SAFETY: the token proves AVX2 and FMA are present.
        return unsafe { solve_rows_avx2(simd, side, first_row, xs, scratch, observed_loss) };
    }
    solve_rows_with(Portable, side, first_row, xs, scratch, observed_loss)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn solve_rows_avx2(
    simd: Avx2Fma,
    side: &Side<'_>,
    first_row: usize,
    xs: &mut [f32],
    scratch: &mut Scratch,
    observed_loss: bool,
) -> f64 {
    solve_rows_with(simd, side, first_row, xs, scratch, observed_loss)
}

/// The fixed side's factor row `i`.
#[inline(always)]
fn fixed_row<'a>(side: &Side<'a>, i: u32) -> &'a [f32] {
    &side.fixed[i as usize * side.k..(i as usize + 1) * side.k]
}

#[inline(always)]
fn solve_rows_with<S: Simd>(
    simd: S,
    side: &Side<'_>,
    first_row: usize,
    xs: &mut [f32],
    scratch: &mut Scratch,
    observed_loss: bool,
) -> f64 {
    let mut loss = 0.0f64;
    for (row, x) in xs.chunks_exact_mut(side.k).enumerate() {
        let (columns, confidences) = side.confidence.row(first_row + row);
        solve_row(simd, side, columns, confidences, x, scratch);
        if observed_loss {
            for (&i, &c) in columns.iter().zip(confidences) {
                let score = f64::from(simd.dot(fixed_row(side, i), x));
                let c = f64::from(c);
                loss += (c - 1.0) * score * score - 2.0 * c * score + c;
            }
        }
    }
    loss
}

#[inline(always)]
fn solve_row<S: Simd>(
    simd: S,
    side: &Side<'_>,
    columns: &[u32],
    confidences: &[f32],
    x: &mut [f32],
    scratch: &mut Scratch,
) {
    if columns.is_empty() {
        x.fill(0.0);
        return;
    }
    let Scratch { residual: r, direction: p, product: ap } = scratch;
    // r = b − A·x. The first touch of the row's factor rows: they come from memory, so ask for
    // them a few entries ahead.
    simd.symmetric_mat_vec(side.gram_reg, x, r);
    r.iter_mut().for_each(|v| *v = -*v);
    for (e, (&i, &c)) in columns.iter().zip(confidences).enumerate() {
        if let Some(&ahead) = columns.get(e + PREFETCH_AHEAD) {
            simd.prefetch(fixed_row(side, ahead));
        }
        let y = fixed_row(side, i);
        let weight = if c == 1.0 { c } else { c - (c - 1.0) * simd.dot(y, x) };
        simd.axpy(weight, y, r);
    }
    p.copy_from_slice(r);
    let mut residual_norm = simd.dot(r, r);
    if residual_norm < CONVERGED {
        return;
    }
    for _ in 0..side.cg_steps {
        simd.symmetric_mat_vec(side.gram_reg, p, ap);
        for (&i, &c) in columns.iter().zip(confidences) {
            if c != 1.0 {
                let y = fixed_row(side, i);
                simd.axpy((c - 1.0) * simd.dot(y, p), y, ap);
            }
        }
        let step = residual_norm / simd.dot(p, ap);
        simd.axpy(step, p, x);
        simd.axpy(-step, ap, r);
        let norm = simd.dot(r, r);
        if norm < CONVERGED {
            break;
        }
        let keep = norm / residual_norm;
        for (pi, ri) in p.iter_mut().zip(r.iter()) {
            *pi = ri + keep * *pi;
        }
        residual_norm = norm;
    }
}
