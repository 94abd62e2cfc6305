//! The kernels of ALS: warm-started conjugate-gradient solves of the rows (users, or items)
//! of one half-iteration, and those rows' share of the training loss.
//!
//! Row u's problem is `A_u x = b_u` with `A_u = YᵀY + λI + Σᵢ (cᵢ − 1) yᵢyᵢᵀ` and
//! `b_u = Σᵢ cᵢ yᵢ`, i over the row's entries. Each CG step needs `A_u p`: a k × k
//! matrix-vector product with `YᵀY + λI` (kept in registers, see `Simd::symmetric_mat_vec`)
//! and one pass over the row's entries, which skips those with confidence exactly 1 (one
//! listen at alpha 1, the most common value): they add nothing to `A_u`.
//!
//! Rows are solved four at a time in lockstep, all steps of the four together: the factor rows
//! of their entries are fetched from memory once (prefetched a few entries ahead) and stay in
//! L2 for the other passes, and each CG step's four products with `YᵀY + λI` share one pass
//! over it (`Simd::symmetric_mat_vec4`), which the steps are bound by: alone, every FMA waits
//! for its own load of the matrix from L2. Batching the dense products of many more rows into
//! one GEMM was measured slower: it keeps every row's entries live across the steps, more than
//! L2 holds.

use half::f16;
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
    /// The other side's factors, row-major, rounded to halves: the rows are fetched from
    /// memory at random, one per entry, and half the bytes take about half the time
    /// (`docs/perf/als.md`).
    pub fixed: &'a [f16],
    /// `YᵀY + λI` of the other side (k × k); symmetric.
    pub gram_reg: &'a [f32],
    pub k: usize,
    pub cg_steps: usize,
}

/// Rows solved together (see the module's comment).
const LOCKSTEP: usize = 4;

/// Per-thread work vectors of the CG solve, one set per row of a lockstep block.
pub(super) struct Scratch {
    residual: [Vec<f32>; LOCKSTEP],
    direction: [Vec<f32>; LOCKSTEP],
    product: [Vec<f32>; LOCKSTEP],
    /// Each row's squared residual norm.
    norm: [f32; LOCKSTEP],
}

impl Scratch {
    pub fn new(k: usize) -> Self {
        let vectors = || std::array::from_fn(|_| vec![0.0; k]);
        Self { residual: vectors(), direction: vectors(), product: vectors(), norm: [0.0; LOCKSTEP] }
    }
}

/// Improves the factors `xs` (rows `first_row..` of the side) with `cg_steps` CG steps from
/// their current values. A row without entries becomes 0, its regularised optimum (as in
/// implicit).
///
/// With `observed_loss`, also returns the observed pairs' part of the training loss for these
/// rows at their new factors: Σ cᵢ (1 − yᵢ·x)² − (yᵢ·x)², the correction of the all-pairs
/// term xᵀYᵀYx, with the yᵢ as the solve read them (halves). Taken right after each row's
/// solve, it finds the factor rows it reads still in cache; a separate pass would fetch them
/// from memory again. 0 otherwise.
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
#[target_feature(enable = "avx2,fma,f16c")]
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
fn fixed_row<'a>(side: &Side<'a>, i: u32) -> &'a [f16] {
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
    for (block, xs) in xs.chunks_mut(LOCKSTEP * side.k).enumerate() {
        let first = first_row + block * LOCKSTEP;
        solve_block(simd, side, first, xs, scratch);
        if observed_loss {
            for (row, x) in xs.chunks_exact(side.k).enumerate() {
                let (columns, confidences) = side.confidence.row(first + row);
                for (&i, &c) in columns.iter().zip(confidences) {
                    let score = f64::from(simd.dot(fixed_row(side, i), x));
                    let c = f64::from(c);
                    loss += (c - 1.0) * score * score - 2.0 * c * score + c;
                }
            }
        }
    }
    loss
}

/// `outs[r] = (YᵀY + λI) · ins[r]` for the active rows: one pass over the matrix for all four
/// when all four are active (a row stops when its residual vanishes; a block at the end of a
/// task may be short).
#[inline(always)]
fn gram_times<S: Simd>(
    simd: S,
    gram: &[f32],
    active: [bool; LOCKSTEP],
    ins: [&[f32]; LOCKSTEP],
    outs: [&mut [f32]; LOCKSTEP],
) {
    if active == [true; LOCKSTEP] {
        simd.symmetric_mat_vec4(gram, ins, outs);
        return;
    }
    for ((v, out), on) in ins.into_iter().zip(outs).zip(active) {
        if on {
            simd.symmetric_mat_vec(gram, v, out);
        }
    }
}

/// Up to `LOCKSTEP` rows (`xs`, from `first_row`), each with exactly the CG of a row solved
/// alone: the same operations in the same order, only interleaved with the other rows'.
#[inline(always)]
fn solve_block<S: Simd>(simd: S, side: &Side<'_>, first_row: usize, xs: &mut [f32], scratch: &mut Scratch) {
    let mut rows = xs.chunks_exact_mut(side.k);
    // Past a short block's end: empty rows, never active.
    let mut x: [&mut [f32]; LOCKSTEP] = std::array::from_fn(|_| rows.next().unwrap_or_default());
    let entries: [(&[u32], &[f32]); LOCKSTEP] =
        std::array::from_fn(|r| if x[r].is_empty() { (&[][..], &[][..]) } else { side.confidence.row(first_row + r) });
    let mut active: [bool; LOCKSTEP] = std::array::from_fn(|r| !entries[r].0.is_empty());
    // A row without entries becomes 0, its regularised optimum.
    for (x, &on) in x.iter_mut().zip(&active) {
        if !on {
            x.fill(0.0);
        }
    }
    let Scratch { residual, direction, product, norm } = scratch;

    // r = b − A·x. The first touch of the rows' factor rows: they come from memory, so ask for
    // them a few entries ahead.
    gram_times(simd, side.gram_reg, active, x.each_ref().map(|x| &**x), residual.each_mut().map(Vec::as_mut_slice));
    for r in 0..LOCKSTEP {
        if !active[r] {
            continue;
        }
        let (columns, confidences) = entries[r];
        let (res, x) = (&mut residual[r], &*x[r]);
        res.iter_mut().for_each(|v| *v = -*v);
        for (e, (&i, &c)) in columns.iter().zip(confidences).enumerate() {
            if let Some(&ahead) = columns.get(e + PREFETCH_AHEAD) {
                simd.prefetch(fixed_row(side, ahead));
            }
            let y = fixed_row(side, i);
            let weight = if c == 1.0 { c } else { c - (c - 1.0) * simd.dot(y, x) };
            simd.axpy(weight, y, res);
        }
        direction[r].copy_from_slice(res);
        norm[r] = simd.dot(res, res);
        active[r] = norm[r] >= CONVERGED;
    }

    for _ in 0..side.cg_steps {
        if !active.contains(&true) {
            break;
        }
        let (ins, outs) = (direction.each_ref().map(Vec::as_slice), product.each_mut().map(Vec::as_mut_slice));
        gram_times(simd, side.gram_reg, active, ins, outs);
        for r in 0..LOCKSTEP {
            if !active[r] {
                continue;
            }
            let (columns, confidences) = entries[r];
            let (p, ap, res) = (&mut direction[r], &mut product[r], &mut residual[r]);
            for (&i, &c) in columns.iter().zip(confidences) {
                if c != 1.0 {
                    let y = fixed_row(side, i);
                    simd.axpy((c - 1.0) * simd.dot(y, p), y, ap);
                }
            }
            let step = norm[r] / simd.dot(p, ap);
            simd.axpy(step, p, x[r]);
            simd.axpy(-step, ap, res);
            let next = simd.dot(res, res);
            if next < CONVERGED {
                active[r] = false;
                continue;
            }
            let keep = next / norm[r];
            for (pi, ri) in p.iter_mut().zip(res.iter()) {
                *pi = ri + keep * *pi;
            }
            norm[r] = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows solved in lockstep blocks (full blocks of four products at once, a block with an
    /// empty row, a short block at the end) end exactly where each row solved alone ends, and
    /// so does the loss up to its summation order.
    #[test]
    fn lockstep_blocks_solve_each_row_as_alone() {
        let (rows, items, k) = (11usize, 9usize, 13usize);
        let (mut r, mut c, mut v) = (Vec::new(), Vec::new(), Vec::new());
        for row in 0..rows {
            for item in 0..items {
                // Row 3 has no entries, row 5 only confidences of 1.
                if row != 3 && (row * 7 + item * 3) % 4 != 0 {
                    r.push(row as u32);
                    c.push(item as u32);
                    v.push(if row == 5 { 1.0 } else { 1.0 + ((row + item) % 5) as f32 });
                }
            }
        }
        let confidence = CsrMatrix::from_coo(rows, items, &r, &c, &v);
        let fixed: Vec<f16> = (0..items * k).map(|i| f16::from_f32(((i * 37) % 23) as f32 / 11.0 - 1.0)).collect();
        let mut gram_reg = vec![0.0f32; k * k];
        for a in 0..k {
            for b in 0..k {
                gram_reg[a * k + b] = (0..items).map(|i| fixed[i * k + a].to_f32() * fixed[i * k + b].to_f32()).sum();
            }
            gram_reg[a * k + a] += 0.1;
        }
        let side = Side { confidence: &confidence, fixed: &fixed, gram_reg: &gram_reg, k, cg_steps: 3 };
        let start: Vec<f32> = (0..rows * k).map(|i| ((i * 13) % 7) as f32 / 10.0 - 0.3).collect();
        let mut together = start.clone();
        let mut scratch = Scratch::new(k);
        let loss = solve_rows(&side, 0, &mut together, &mut scratch, true);
        let mut alone = start;
        let mut alone_loss = 0.0;
        for (row, x) in alone.chunks_exact_mut(k).enumerate() {
            alone_loss += solve_rows(&side, row, x, &mut scratch, true);
        }
        assert_eq!(together, alone);
        assert!((loss - alone_loss).abs() <= 1e-12 * alone_loss.abs(), "{loss} against {alone_loss}");
        assert!(together[3 * k..4 * k].iter().all(|&x| x == 0.0), "an empty row becomes 0");
    }
}
