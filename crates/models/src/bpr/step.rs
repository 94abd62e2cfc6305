//! One sample's SGD step on the shared half-precision rows, in two passes over the three rows
//! (user, liked, disliked) and nothing in between: the first widens them and sums
//! x_u·(y_i − y_j); the second widens them again (from L1 now), updates and narrows them back.
//!
//! Why fused: the step used to copy each row into an `f32` scratch row, run five loops over
//! the copies (difference, dot, three updates) and copy them back. At 200 factors that was
//! about 3,000 instructions a sample, and a sample whose rows were all in cache cost as much
//! as one whose rows came from memory: the fit was bound by instructions, not by misses
//! (`docs/perf/bpr.md`). Two passes are about a third of that with AVX2 and a sixth with
//! AVX-512, which holds 16 values per register.
//!
//! A width is a `Lanes` type; `step` is written once over it. Rows are whole cache lines
//! (`SharedRows`), 32 halves each, so every width divides a row and there is no tail.
//!
//! The update, with `z = σ(−score)` and every item update using x_u from before the step:
//!
//! ```text
//! y_i ← y_i + lr (z x_u − reg y_i)
//! y_j ← y_j + lr (−z x_u − reg y_j)      (y_j read after y_i's update when j = i)
//! x_u ← x_u + lr (z (y_i − y_j) − reg x_u)
//! ```

use std::sync::atomic::{AtomicU32, Ordering};

use half::f16;

/// The three rows of a sample, as cells of two halves, all of one length. `liked` and
/// `disliked` are the same row when a sample's negative is its positive (possible only
/// without verified negatives).
#[derive(Clone, Copy)]
pub(super) struct SampleRows<'a> {
    pub user: &'a [AtomicU32],
    pub liked: &'a [AtomicU32],
    pub disliked: &'a [AtomicU32],
}

/// A register of `LANES` `f32` values and the operations a step needs.
///
/// # Safety
/// Every method may be called only inside a function that enables the implementer's target
/// features; `load` reads and `store` writes `LANES / 2` cells at the pointer it is given,
/// each as a `Relaxed` atomic access would (see the `x86` module for the vector widths).
pub(super) trait Lanes: Copy {
    const LANES: usize;
    unsafe fn load(cells: *const AtomicU32) -> Self;
    unsafe fn store(self, cells: *const AtomicU32);
    unsafe fn splat(value: f32) -> Self;
    unsafe fn sub(self, other: Self) -> Self;
    unsafe fn mul(self, other: Self) -> Self;
    /// `a·b + c`, fused where the width has FMA.
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
    unsafe fn sum(self) -> f32;
}

/// x_u·(y_i − y_j) over the taste columns (the bias apart).
///
/// # Safety
/// As `Lanes`: called where `L`'s features are enabled; the rows are of one length, a
/// multiple of `L::LANES / 2` cells.
#[inline(always)]
pub(super) unsafe fn taste_score<L: Lanes>(rows: SampleRows<'_>) -> f32 {
    let cells = L::LANES / 2;
    // SAFETY: as the function's contract; every offset is below the rows' common length.
    unsafe {
        let mut acc = L::splat(0.0);
        for at in (0..rows.user.len()).step_by(cells) {
            let user = L::load(rows.user.as_ptr().add(at));
            let difference = L::load(rows.liked.as_ptr().add(at)).sub(L::load(rows.disliked.as_ptr().add(at)));
            acc = L::mul_add(user, difference, acc);
        }
        acc.sum()
    }
}

/// The update of the three rows (module doc), `z` being σ(−score).
///
/// # Safety
/// As `taste_score`.
#[inline(always)]
pub(super) unsafe fn update<L: Lanes>(rows: SampleRows<'_>, z: f32, learning_rate: f32, regularization: f32) {
    let cells = L::LANES / 2;
    let same_item = std::ptr::eq(rows.liked, rows.disliked);
    // SAFETY: as the function's contract.
    unsafe {
        // y + lr (g·x − reg y) as (1 − lr reg) y + (lr g) x: two operations, not three.
        let keep = L::splat(1.0 - learning_rate * regularization);
        let (towards, away) = (L::splat(learning_rate * z), L::splat(-learning_rate * z));
        let step = |y: L, g: L, x: L| L::mul_add(g, x, y.mul(keep));
        for at in (0..rows.user.len()).step_by(cells) {
            let (user_at, liked_at, disliked_at) =
                (rows.user.as_ptr().add(at), rows.liked.as_ptr().add(at), rows.disliked.as_ptr().add(at));
            let (user, liked, disliked) = (L::load(user_at), L::load(liked_at), L::load(disliked_at));
            let liked_new = step(liked, towards, user);
            // implicit updates a row drawn twice twice, the second update reading the first's
            // result.
            let disliked_new = step(if same_item { liked_new } else { disliked }, away, user);
            let user_new = step(user, towards, liked.sub(disliked));
            user_new.store(user_at);
            liked_new.store(liked_at);
            disliked_new.store(disliked_at);
        }
    }
}

/// The two halves of a cell, widened: the lower 16 bits first (their order in memory).
#[inline(always)]
fn widen_cell(bits: u32) -> [f32; 2] {
    [bits as u16, (bits >> 16) as u16].map(|half| f16::from_bits(half).to_f32())
}

/// Two values rounded to the nearest halves (ties to even), as one cell.
#[inline(always)]
fn narrow_cell(values: [f32; 2]) -> u32 {
    let [low, high] = values.map(|v| u32::from(f16::from_f32(v).to_bits()));
    low | high << 16
}

/// `values` rounded to halves into `cells`, two per cell (an odd last value paired with a
/// zero), each cell written as by a `Relaxed` store.
pub(super) fn narrow_row(values: &[f32], cells: &[AtomicU32]) {
    for (pair, cell) in values.chunks(2).zip(cells) {
        cell.store(narrow_cell([pair[0], pair.get(1).copied().unwrap_or(0.0)]), Ordering::Relaxed);
    }
}

/// Every value of `cells`, widened, each cell read as by a `Relaxed` load.
pub(super) fn widen_row(cells: &[AtomicU32]) -> Vec<f32> {
    cells.iter().flat_map(|cell| widen_cell(cell.load(Ordering::Relaxed))).collect()
}

/// Two values per cell, for targets without a vector path; the arithmetic is unfused.
#[derive(Clone, Copy)]
pub(super) struct Pair([f32; 2]);

// SAFETY (every `unsafe` block of the impl): `load` and `store` use atomics, the rest is
// plain arithmetic.
impl Lanes for Pair {
    const LANES: usize = 2;

    #[inline(always)]
    unsafe fn load(cells: *const AtomicU32) -> Self {
        // SAFETY: the caller points at one readable cell.
        Self(widen_cell(unsafe { &*cells }.load(Ordering::Relaxed)))
    }

    #[inline(always)]
    unsafe fn store(self, cells: *const AtomicU32) {
        // SAFETY: the caller points at one writable cell.
        unsafe { &*cells }.store(narrow_cell(self.0), Ordering::Relaxed);
    }

    #[inline(always)]
    unsafe fn splat(value: f32) -> Self {
        Self([value; 2])
    }

    #[inline(always)]
    unsafe fn sub(self, other: Self) -> Self {
        Self([self.0[0] - other.0[0], self.0[1] - other.0[1]])
    }

    #[inline(always)]
    unsafe fn mul(self, other: Self) -> Self {
        Self([self.0[0] * other.0[0], self.0[1] * other.0[1]])
    }

    #[inline(always)]
    unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
        Self([a.0[0] * b.0[0] + c.0[0], a.0[1] * b.0[1] + c.0[1]])
    }

    #[inline(always)]
    unsafe fn sum(self) -> f32 {
        self.0[0] + self.0[1]
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{Avx2Lanes, Avx512Lanes};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::asm;
    use std::arch::x86_64::*;
    use std::sync::atomic::AtomicU32;

    use super::Lanes;

    /// 8 values: AVX2, FMA and F16C.
    #[derive(Clone, Copy)]
    pub(in crate::bpr) struct Avx2Lanes(__m256);

    /// 16 values: AVX-512F (which converts halves itself).
    #[derive(Clone, Copy)]
    pub(in crate::bpr) struct Avx512Lanes(__m512);

    // Why inline assembly: Rust has no atomic vector load or store, and a plain (intrinsic)
    // vector access racing with another thread's store is undefined behaviour in Rust's memory
    // model, whatever the hardware does. An `asm!` block is opaque to the compiler and only
    // has to behave like some sequence of operations the abstract machine allows: a `vmovdqu`
    // of 4-byte-aligned cells reads or writes each of them whole (an aligned 4-byte access
    // never splits across cache lines), which is what one `Relaxed` atomic access per cell
    // does, with no promise of ordering between them. So the race stays defined, and a row
    // moves 8 or 16 values per instruction instead of 2.
    //
    // SAFETY (every `unsafe` block of both impls): the caller enabled the features (see
    // `Lanes`), and the pointers are as its contract says.
    impl Lanes for Avx2Lanes {
        const LANES: usize = 8;

        #[inline(always)]
        unsafe fn load(cells: *const AtomicU32) -> Self {
            let halves: __m128i;
            unsafe {
                asm!(
                    "vmovdqu {h}, xmmword ptr [{p}]",
                    p = in(reg) cells,
                    h = out(xmm_reg) halves,
                    options(nostack, preserves_flags, readonly),
                );
                Self(_mm256_cvtph_ps(halves))
            }
        }

        #[inline(always)]
        unsafe fn store(self, cells: *const AtomicU32) {
            unsafe {
                let halves = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(self.0);
                asm!(
                    "vmovdqu xmmword ptr [{p}], {h}",
                    p = in(reg) cells,
                    h = in(xmm_reg) halves,
                    options(nostack, preserves_flags),
                );
            }
        }

        #[inline(always)]
        unsafe fn splat(value: f32) -> Self {
            Self(unsafe { _mm256_set1_ps(value) })
        }

        #[inline(always)]
        unsafe fn sub(self, other: Self) -> Self {
            Self(unsafe { _mm256_sub_ps(self.0, other.0) })
        }

        #[inline(always)]
        unsafe fn mul(self, other: Self) -> Self {
            Self(unsafe { _mm256_mul_ps(self.0, other.0) })
        }

        #[inline(always)]
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
            Self(unsafe { _mm256_fmadd_ps(a.0, b.0, c.0) })
        }

        #[inline(always)]
        unsafe fn sum(self) -> f32 {
            unsafe {
                let half = _mm_add_ps(_mm256_castps256_ps128(self.0), _mm256_extractf128_ps::<1>(self.0));
                let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
                _mm_cvtss_f32(_mm_add_ss(quarter, _mm_movehdup_ps(quarter)))
            }
        }
    }

    impl Lanes for Avx512Lanes {
        const LANES: usize = 16;

        // Not `inline(always)`, which a `target_feature` function cannot be; the callers
        // enable the same features, so it inlines anyway. The feature is needed here for the
        // `ymm` register of the `asm!`.
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn load(cells: *const AtomicU32) -> Self {
            let halves: __m256i;
            unsafe {
                asm!(
                    "vmovdqu {h}, ymmword ptr [{p}]",
                    p = in(reg) cells,
                    h = out(ymm_reg) halves,
                    options(nostack, preserves_flags, readonly),
                );
                Self(_mm512_cvtph_ps(halves))
            }
        }

        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn store(self, cells: *const AtomicU32) {
            unsafe {
                let halves = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(self.0);
                asm!(
                    "vmovdqu ymmword ptr [{p}], {h}",
                    p = in(reg) cells,
                    h = in(ymm_reg) halves,
                    options(nostack, preserves_flags),
                );
            }
        }

        #[inline(always)]
        unsafe fn splat(value: f32) -> Self {
            Self(unsafe { _mm512_set1_ps(value) })
        }

        #[inline(always)]
        unsafe fn sub(self, other: Self) -> Self {
            Self(unsafe { _mm512_sub_ps(self.0, other.0) })
        }

        #[inline(always)]
        unsafe fn mul(self, other: Self) -> Self {
            Self(unsafe { _mm512_mul_ps(self.0, other.0) })
        }

        #[inline(always)]
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
            Self(unsafe { _mm512_fmadd_ps(a.0, b.0, c.0) })
        }

        #[inline(always)]
        unsafe fn sum(self) -> f32 {
            unsafe { _mm512_reduce_add_ps(self.0) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a step computes, in `f64` from the same halves, each result rounded to a half once.
    fn reference(rows: [&[f32]; 3], same_item: bool, lr: f64, reg: f64) -> (f64, [Vec<f32>; 3]) {
        let [user, liked, disliked] = rows.map(|r| r.iter().map(|&v| f64::from(v)).collect::<Vec<_>>());
        let disliked = if same_item { liked.clone() } else { disliked };
        let score: f64 = user.iter().zip(liked.iter().zip(&disliked)).map(|(u, (i, j))| u * (i - j)).sum();
        let z = 1.0 / (1.0 + score.exp());
        let liked_new: Vec<f64> = liked.iter().zip(&user).map(|(y, x)| y + lr * (z * x - reg * y)).collect();
        let disliked_from = if same_item { &liked_new } else { &disliked };
        let disliked_new: Vec<f64> =
            disliked_from.iter().zip(&user).map(|(y, x)| y + lr * (-z * x - reg * y)).collect();
        let user_new: Vec<f64> =
            (0..user.len()).map(|k| user[k] + lr * (z * (liked[k] - disliked[k]) - reg * user[k])).collect();
        let half = |v: &[f64]| v.iter().map(|&x| f16::from_f64(x).to_f32()).collect();
        // One row updated twice holds the second update.
        let liked_new = if same_item { &disliked_new } else { &liked_new };
        (score, [half(&user_new), half(liked_new), half(&disliked_new)])
    }

    fn cells(values: &[f32]) -> Vec<AtomicU32> {
        let cells: Vec<AtomicU32> = (0..values.len() / 2).map(|_| AtomicU32::new(u32::MAX)).collect();
        narrow_row(values, &cells);
        cells
    }

    /// Runs a step of width `L` on halves of `rows`: the score and the three rows after it.
    ///
    /// # Safety
    /// `L`'s features are enabled.
    #[inline(always)]
    unsafe fn run<L: Lanes>(rows: [&[f32]; 3], same_item: bool, lr: f32, reg: f32) -> (f32, [Vec<f32>; 3]) {
        let [user, liked, disliked] = rows.map(cells);
        let rows = SampleRows { user: &user, liked: &liked, disliked: if same_item { &liked } else { &disliked } };
        // SAFETY: the caller's contract; the rows are of one length, a multiple of 8 cells.
        let score = unsafe { taste_score::<L>(rows) };
        let z = 1.0 / (1.0 + score.exp());
        // SAFETY: as above.
        unsafe { update::<L>(rows, z, lr, reg) };
        let disliked = if same_item { widen_row(&liked) } else { widen_row(&disliked) };
        (score, [widen_row(&user), widen_row(&liked), disliked])
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn run_avx2(rows: [&[f32]; 3], same_item: bool, lr: f32, reg: f32) -> (f32, [Vec<f32>; 3]) {
        // SAFETY: this function enables AVX2, FMA and F16C; it runs only where they were detected.
        unsafe { run::<Avx2Lanes>(rows, same_item, lr, reg) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    fn run_avx512(rows: [&[f32]; 3], same_item: bool, lr: f32, reg: f32) -> (f32, [Vec<f32>; 3]) {
        // SAFETY: as `run_avx2`, for AVX-512F.
        unsafe { run::<Avx512Lanes>(rows, same_item, lr, reg) }
    }

    /// Every width this CPU runs, by name.
    #[allow(clippy::type_complexity)]
    fn widths() -> Vec<(&'static str, fn([&[f32]; 3], bool, f32, f32) -> (f32, [Vec<f32>; 3]))> {
        // SAFETY: `Pair` needs no feature.
        let mut widths: Vec<(&'static str, fn([&[f32]; 3], bool, f32, f32) -> (f32, [Vec<f32>; 3]))> =
            vec![("pair", |rows, same, lr, reg| unsafe { run::<Pair>(rows, same, lr, reg) })];
        #[cfg(target_arch = "x86_64")]
        if crate::simd::Avx2Fma::detect().is_some() {
            // SAFETY: AVX2, FMA and F16C were detected just above.
            widths.push(("avx2", |rows, same, lr, reg| unsafe { run_avx2(rows, same, lr, reg) }));
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: detected just above.
                widths.push(("avx512", |rows, same, lr, reg| unsafe { run_avx512(rows, same, lr, reg) }));
            }
        }
        widths
    }

    fn rows_of(lines: usize) -> impl Strategy<Value = [Vec<f32>; 3]> {
        let row = proptest::collection::vec(-0.5f32..0.5, lines * 32);
        [row.clone(), row.clone(), row]
            .prop_map(|rows| rows.map(|r| r.iter().map(|&v| f16::from_f32(v).to_f32()).collect()))
    }

    proptest! {
        /// Each width scores and updates as the `f64` reference does, up to the rounding of
        /// `f32` sums and one half's step in each stored value.
        #[test]
        fn every_width_steps_as_the_reference(rows in (1usize..8).prop_flat_map(rows_of), same_item: bool, lr in 0.001f32..0.2, reg in 0f32..0.01) {
            let [user, liked, disliked] = &rows;
            let (score, expected) = reference([user, liked, disliked], same_item, f64::from(lr), f64::from(reg));
            for (name, run) in widths() {
                let (got_score, got) = run([user, liked, disliked], same_item, lr, reg);
                prop_assert!((f64::from(got_score) - score).abs() < 1e-4, "{name}: score {got_score} against {score}");
                for (row, (got, expected)) in ["user", "liked", "disliked"].iter().zip(got.iter().zip(&expected)) {
                    for (k, (&g, &e)) in got.iter().zip(expected).enumerate() {
                        // A value may round to the half next to the reference's.
                        let step = f32::from(f16::EPSILON) * e.abs().max(f32::from(f16::MIN_POSITIVE));
                        prop_assert!((g - e).abs() <= step, "{name}: {row}[{k}] {g} against {e}");
                    }
                }
            }
        }
    }

    #[test]
    fn rows_go_to_halves_and_back_rounded_to_the_nearest() {
        for n in [0usize, 1, 2, 7, 8, 200] {
            let values: Vec<f32> = (0..n).map(|i| (i as f32 * 0.377 - 3.1).powi(3) * 1e-3).collect();
            let cells: Vec<AtomicU32> = (0..n.div_ceil(2)).map(|_| AtomicU32::new(u32::MAX)).collect();
            narrow_row(&values, &cells);
            let mut nearest: Vec<f32> = values.iter().map(|&v| f16::from_f32(v).to_f32()).collect();
            // An odd last value is paired with a zero.
            nearest.resize(cells.len() * 2, 0.0);
            assert_eq!(widen_row(&cells), nearest, "n = {n}");
        }
    }
}
