//! The short vector loops of the solvers (dot, axpy) and of Item2Item's search (manhattan
//! distance) with the instruction set chosen at run
//! time. The workspace builds for baseline x86-64 (SSE2), where these loops run at a
//! quarter of what AVX2 + FMA machines can do, and the compiler's auto-vectoriser turns the
//! dot product's reduction into 2-lane code; so the AVX2 path is written with intrinsics.
//!
//! A kernel is written once, generic over `Simd`, and instantiated twice: for `Portable`,
//! and for `Avx2Fma` inside a `#[target_feature]` function, so the intrinsics inline into it.
//! `Avx2Fma` can only be obtained from `detect`, which is what makes its safe methods sound.

use half::f16;

/// A value of a factor row: `f32`, or a half that the loops widen as they load it (ALS solves
/// against a half-precision copy of the fixed side, half the bytes to fetch per row).
pub(crate) trait FactorValue: Copy + Send + Sync {
    fn widen(self) -> f32;

    /// Eight values from `at`, widened.
    ///
    /// # Safety
    /// `at` points to eight readable values, and the caller enables AVX2 and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(at: *const Self) -> std::arch::x86_64::__m256;
}

impl FactorValue for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(at: *const Self) -> std::arch::x86_64::__m256 {
        // SAFETY: as the method's contract.
        unsafe { std::arch::x86_64::_mm256_loadu_ps(at) }
    }
}

impl FactorValue for f16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }

    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(at: *const Self) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::{_mm_loadu_si128, _mm256_cvtph_ps};
        // SAFETY: as the method's contract; eight halves are the 16 bytes loaded.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(at.cast())) }
    }
}

pub(crate) trait Simd: Copy + Send + Sync {
    fn dot<V: FactorValue>(self, a: &[V], b: &[f32]) -> f32;

    /// Σ |a_i − b_i|.
    fn manhattan(self, a: &[f32], b: &[f32]) -> f32;

    /// `out[j]` = the manhattan distance between `a` and row j of `rows` (8 rows of `a.len()`
    /// values): the query's values are loaded once for 8 candidates, and the 8 sums are
    /// reduced together.
    fn manhattan8(self, a: &[f32], rows: &[f32], out: &mut [f32]);

    /// `y += alpha · x`.
    fn axpy<V: FactorValue>(self, alpha: f32, x: &[V], y: &mut [f32]);

    /// `out[i]` = `values[i]` rounded to the nearest half (ties to even).
    fn narrow(self, values: &[f32], out: &mut [f16]);

    /// `out = Σ_j v[j] · m_j` over the rows m_j of the k × k row-major `m`, k = `v.len()`:
    /// `m · v` for the symmetric matrices of the solvers.
    fn symmetric_mat_vec(self, m: &[f32], v: &[f32], out: &mut [f32]);

    /// [`Simd::symmetric_mat_vec`] of four vectors at once, each result bit for bit the one
    /// alone: a kernel may load each value of `m` once for the four (the CG steps of ALS are
    /// bound by those loads, not by the FMAs).
    fn symmetric_mat_vec4(self, m: &[f32], vs: [&[f32]; 4], outs: [&mut [f32]; 4]) {
        for (v, out) in vs.into_iter().zip(outs) {
            self.symmetric_mat_vec(m, v, out);
        }
    }

    /// Asks for `values` to be brought into cache ahead of use: the solvers gather factor
    /// rows in an order no hardware prefetcher can guess (BPR: ids and rows of random samples).
    fn prefetch<T>(self, values: &[T]);
}

/// Plain loops, for CPUs without AVX2 and FMA.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Portable;

impl Simd for Portable {
    #[inline(always)]
    fn dot<V: FactorValue>(self, a: &[V], b: &[f32]) -> f32 {
        // Eight independent partial sums: SSE2 code keeps two registers busy.
        let (a_chunks, a_rest) = a.as_chunks::<8>();
        let (b_chunks, b_rest) = b.as_chunks::<8>();
        let mut acc = [0.0f32; 8];
        for (x, y) in a_chunks.iter().zip(b_chunks) {
            for l in 0..8 {
                acc[l] += x[l].widen() * y[l];
            }
        }
        let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x.widen() * y).sum();
        acc.iter().sum::<f32>() + tail
    }

    #[inline(always)]
    fn manhattan(self, a: &[f32], b: &[f32]) -> f32 {
        let (a_chunks, a_rest) = a.as_chunks::<8>();
        let (b_chunks, b_rest) = b.as_chunks::<8>();
        let mut acc = [0.0f32; 8];
        for (x, y) in a_chunks.iter().zip(b_chunks) {
            for l in 0..8 {
                acc[l] += (x[l] - y[l]).abs();
            }
        }
        let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| (x - y).abs()).sum();
        acc.iter().sum::<f32>() + tail
    }

    #[inline(always)]
    fn manhattan8(self, a: &[f32], rows: &[f32], out: &mut [f32]) {
        let n = a.len();
        for (j, o) in out[..8].iter_mut().enumerate() {
            *o = self.manhattan(a, &rows[j * n..(j + 1) * n]);
        }
    }

    #[inline(always)]
    fn axpy<V: FactorValue>(self, alpha: f32, x: &[V], y: &mut [f32]) {
        for (yi, xi) in y.iter_mut().zip(x) {
            *yi += alpha * xi.widen();
        }
    }

    #[inline(always)]
    fn narrow(self, values: &[f32], out: &mut [f16]) {
        for (o, &v) in out.iter_mut().zip(values) {
            *o = f16::from_f32(v);
        }
    }

    #[inline(always)]
    fn symmetric_mat_vec(self, m: &[f32], v: &[f32], out: &mut [f32]) {
        out.fill(0.0);
        for (&scale, row) in v.iter().zip(m.chunks_exact(v.len())) {
            self.axpy(scale, row, out);
        }
    }

    #[inline(always)]
    fn prefetch<T>(self, _values: &[T]) {}
}

/// `out = m · v` for a symmetric k × k `m` (k = `v.len()`) with the instruction set the ALS
/// solve uses on this machine: public so that `examples/fma_peak.rs` measures the CG loop
/// itself, not a copy of it.
pub fn symmetric_mat_vec(m: &[f32], v: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = Avx2Fma::detect() {
        return simd.symmetric_mat_vec(m, v, out);
    }
    Portable.symmetric_mat_vec(m, v, out)
}

/// [`Simd::narrow`] with the instruction set of this machine.
pub(crate) fn narrow(values: &[f32], out: &mut [f16]) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = Avx2Fma::detect() {
        return simd.narrow(values, out);
    }
    Portable.narrow(values, out)
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::Avx2Fma;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::{FactorValue, Simd};

    /// Proof that this CPU has AVX2, FMA and F16C (every AVX2 CPU has F16C, which came a
    /// generation earlier).
    #[derive(Debug, Clone, Copy)]
    pub(crate) struct Avx2Fma {
        _detected: (),
    }

    impl Avx2Fma {
        pub fn detect() -> Option<Self> {
            (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c"))
                .then_some(Self { _detected: () })
        }
    }

    impl Simd for Avx2Fma {
        #[inline(always)]
        fn dot<V: FactorValue>(self, a: &[V], b: &[f32]) -> f32 {
            // SAFETY: `self` exists only where AVX2, FMA and F16C were detected.
            unsafe { dot(a, b) }
        }

        #[inline(always)]
        fn manhattan(self, a: &[f32], b: &[f32]) -> f32 {
            // SAFETY: as above.
            unsafe { manhattan(a, b) }
        }

        #[inline(always)]
        fn manhattan8(self, a: &[f32], rows: &[f32], out: &mut [f32]) {
            // SAFETY: as above.
            unsafe { manhattan8(a, rows, out) }
        }

        #[inline(always)]
        fn axpy<V: FactorValue>(self, alpha: f32, x: &[V], y: &mut [f32]) {
            // SAFETY: as above.
            unsafe { axpy(alpha, x, y) }
        }

        #[inline(always)]
        fn narrow(self, values: &[f32], out: &mut [f16]) {
            // SAFETY: as above.
            unsafe { narrow(values, out) }
        }

        #[inline(always)]
        fn symmetric_mat_vec(self, m: &[f32], v: &[f32], out: &mut [f32]) {
            // SAFETY: as above.
            unsafe { symmetric_mat_vec(m, v, out) }
        }

        #[inline(always)]
        fn symmetric_mat_vec4(self, m: &[f32], vs: [&[f32]; 4], outs: [&mut [f32]; 4]) {
            // SAFETY: as above.
            unsafe { symmetric_mat_vec4(m, vs, outs) }
        }

        #[inline(always)]
        fn prefetch<T>(self, values: &[T]) {
            // One prefetch per 64-byte cache line (16 floats).
            for line in values.chunks((64 / size_of::<T>().max(1)).max(1)) {
                // SAFETY: SSE is part of x86-64; a prefetch never faults, and the pointer is
                // inside `values` anyway.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot<V: FactorValue>(a: &[V], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        // SAFETY (all loads): i + 16 <= n, resp. i + 8 <= n, and both slices hold n values.
        while i + 16 <= n {
            unsafe {
                acc0 = _mm256_fmadd_ps(V::load8(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)), acc0);
                acc1 = _mm256_fmadd_ps(V::load8(a.as_ptr().add(i + 8)), _mm256_loadu_ps(b.as_ptr().add(i + 8)), acc1);
            }
            i += 16;
        }
        if i + 8 <= n {
            unsafe {
                acc0 = _mm256_fmadd_ps(V::load8(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)), acc0);
            }
            i += 8;
        }
        let mut sum = horizontal_sum(_mm256_add_ps(acc0, acc1));
        for j in i..n {
            sum += a[j].widen() * b[j];
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    fn manhattan(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        // |x| is x with the sign bit cleared.
        let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        // SAFETY (all loads): i + 16 <= n, resp. i + 8 <= n, and both slices hold n values.
        while i + 16 <= n {
            unsafe {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)));
                let d1 = _mm256_sub_ps(_mm256_loadu_ps(a.as_ptr().add(i + 8)), _mm256_loadu_ps(b.as_ptr().add(i + 8)));
                acc0 = _mm256_add_ps(acc0, _mm256_and_ps(d0, magnitude));
                acc1 = _mm256_add_ps(acc1, _mm256_and_ps(d1, magnitude));
            }
            i += 16;
        }
        if i + 8 <= n {
            unsafe {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)));
                acc0 = _mm256_add_ps(acc0, _mm256_and_ps(d0, magnitude));
            }
            i += 8;
        }
        let mut sum = horizontal_sum(_mm256_add_ps(acc0, acc1));
        for j in i..n {
            sum += (a[j] - b[j]).abs();
        }
        sum
    }

    #[target_feature(enable = "avx2,fma")]
    fn manhattan8(a: &[f32], rows: &[f32], out: &mut [f32]) {
        let n = a.len();
        assert!(rows.len() >= 8 * n && out.len() >= 8, "manhattan8 shapes");
        let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX));
        let mut acc = [_mm256_setzero_ps(); 8];
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n; row j spans j·n .. (j + 1)·n inside `rows`.
            let x = unsafe { _mm256_loadu_ps(a.as_ptr().add(i)) };
            for (j, acc) in acc.iter_mut().enumerate() {
                let y = unsafe { _mm256_loadu_ps(rows.as_ptr().add(j * n + i)) };
                *acc = _mm256_add_ps(*acc, _mm256_and_ps(_mm256_sub_ps(x, y), magnitude));
            }
            i += 8;
        }
        // Sums of the 8 accumulators at once: pairwise horizontal adds, then the two halves.
        let h01 = _mm256_hadd_ps(acc[0], acc[1]);
        let h23 = _mm256_hadd_ps(acc[2], acc[3]);
        let h45 = _mm256_hadd_ps(acc[4], acc[5]);
        let h67 = _mm256_hadd_ps(acc[6], acc[7]);
        let h0123 = _mm256_hadd_ps(h01, h23);
        let h4567 = _mm256_hadd_ps(h45, h67);
        // h0123 holds [s0 s1 s2 s3 | s0' s1' s2' s3'] as low and high lane partial sums.
        let low = _mm256_permute2f128_ps::<0x20>(h0123, h4567);
        let high = _mm256_permute2f128_ps::<0x31>(h0123, h4567);
        // SAFETY: out holds at least 8 values.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), _mm256_add_ps(low, high)) };
        for (j, o) in out[..8].iter_mut().enumerate() {
            for k in i..n {
                *o += (a[k] - rows[j * n + k]).abs();
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn horizontal_sum(acc: __m256) -> f32 {
        let half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let quarter = _mm_add_ps(half, _mm_movehl_ps(half, half));
        _mm_cvtss_f32(_mm_add_ss(quarter, _mm_movehdup_ps(quarter)))
    }

    /// Output columns in panels of 64: eight accumulator registers that stay in registers over
    /// all k rows, so every load of `m` feeds one FMA and nothing is stored until the end.
    #[target_feature(enable = "avx2,fma")]
    fn symmetric_mat_vec(m: &[f32], v: &[f32], out: &mut [f32]) {
        let k = v.len();
        assert!(m.len() >= k * k && out.len() >= k, "matrix-vector shapes");
        let mut start = 0;
        while start + 64 <= k {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (j, &scale) in v.iter().enumerate() {
                let scale = _mm256_set1_ps(scale);
                for (l, a) in acc.iter_mut().enumerate() {
                    // SAFETY: j < k and start + 8l + 8 <= start + 64 <= k: inside row j of m.
                    *a = _mm256_fmadd_ps(scale, unsafe { _mm256_loadu_ps(m.as_ptr().add(j * k + start + 8 * l)) }, *a);
                }
            }
            for (l, a) in acc.iter().enumerate() {
                // SAFETY: start + 8l + 8 <= k <= out.len().
                unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(start + 8 * l), *a) };
            }
            start += 64;
        }
        while start + 8 <= k {
            let mut acc = _mm256_setzero_ps();
            for (j, &scale) in v.iter().enumerate() {
                // SAFETY: j < k and start + 8 <= k: inside row j of m.
                acc = _mm256_fmadd_ps(
                    _mm256_set1_ps(scale),
                    unsafe { _mm256_loadu_ps(m.as_ptr().add(j * k + start)) },
                    acc,
                );
            }
            // SAFETY: start + 8 <= k <= out.len().
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(start), acc) };
            start += 8;
        }
        for (column, o) in out.iter_mut().enumerate().take(k).skip(start) {
            *o = v.iter().enumerate().map(|(j, &scale)| scale * m[j * k + column]).sum();
        }
    }

    /// Panels of 16 output columns for the four vectors: eight accumulators, and each pair of
    /// loads of `m` feeds eight FMAs (the one-vector kernel: one load per FMA). Every column is
    /// accumulated in the same order as there, so the results are the same to the bit.
    #[target_feature(enable = "avx2,fma")]
    fn symmetric_mat_vec4(m: &[f32], vs: [&[f32]; 4], mut outs: [&mut [f32]; 4]) {
        let k = vs[0].len();
        assert!(
            m.len() >= k * k && vs.iter().all(|v| v.len() == k) && outs.iter().all(|o| o.len() >= k),
            "matrix-vector shapes"
        );
        let mut start = 0;
        while start + 16 <= k {
            let mut acc = [[_mm256_setzero_ps(); 2]; 4];
            for j in 0..k {
                // SAFETY: j < k and start + 16 <= k: inside row j of m.
                let row = unsafe { m.as_ptr().add(j * k + start) };
                let (low, high) = unsafe { (_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8))) };
                for (a, v) in acc.iter_mut().zip(&vs) {
                    let scale = _mm256_set1_ps(v[j]);
                    a[0] = _mm256_fmadd_ps(scale, low, a[0]);
                    a[1] = _mm256_fmadd_ps(scale, high, a[1]);
                }
            }
            for (a, out) in acc.iter().zip(outs.iter_mut()) {
                // SAFETY: start + 16 <= k <= out.len().
                unsafe {
                    _mm256_storeu_ps(out.as_mut_ptr().add(start), a[0]);
                    _mm256_storeu_ps(out.as_mut_ptr().add(start + 8), a[1]);
                }
            }
            start += 16;
        }
        while start + 8 <= k {
            let mut acc = [_mm256_setzero_ps(); 4];
            for j in 0..k {
                // SAFETY: j < k and start + 8 <= k: inside row j of m.
                let row = unsafe { _mm256_loadu_ps(m.as_ptr().add(j * k + start)) };
                for (a, v) in acc.iter_mut().zip(&vs) {
                    *a = _mm256_fmadd_ps(_mm256_set1_ps(v[j]), row, *a);
                }
            }
            for (a, out) in acc.iter().zip(outs.iter_mut()) {
                // SAFETY: start + 8 <= k <= out.len().
                unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(start), *a) };
            }
            start += 8;
        }
        for (v, out) in vs.into_iter().zip(outs) {
            for (column, o) in out.iter_mut().enumerate().take(k).skip(start) {
                *o = v.iter().enumerate().map(|(j, &scale)| scale * m[j * k + column]).sum();
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn axpy<V: FactorValue>(alpha: f32, x: &[V], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let scale = _mm256_set1_ps(alpha);
        let mut i = 0;
        // SAFETY: i + 8 <= n and both slices hold n values; `y` is exclusively borrowed.
        while i + 8 <= n {
            unsafe {
                let yp = y.as_mut_ptr().add(i);
                _mm256_storeu_ps(yp, _mm256_fmadd_ps(scale, V::load8(x.as_ptr().add(i)), _mm256_loadu_ps(yp)));
            }
            i += 8;
        }
        for j in i..n {
            y[j] += alpha * x[j].widen();
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    fn narrow(values: &[f32], out: &mut [f16]) {
        let n = values.len().min(out.len());
        let mut i = 0;
        // SAFETY: i + 8 <= n; eight halves are the 16 bytes stored, inside `out`.
        while i + 8 <= n {
            unsafe {
                let halves = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(values.as_ptr().add(i)));
                _mm_storeu_si128(out.as_mut_ptr().add(i).cast(), halves);
            }
            i += 8;
        }
        for j in i..n {
            out[j] = f16::from_f32(values[j]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Small integers: every summation order gives the exact result, so all instruction sets
    /// must agree to the bit.
    fn check<S: Simd>(simd: S) {
        for n in [0usize, 1, 7, 8, 9, 16, 23, 64, 200] {
            let a: Vec<f32> = (0..n).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
            let b: Vec<f32> = (0..n).map(|i| ((i * 3) % 13) as f32 - 6.0).collect();
            let exact: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert_eq!(simd.dot(&a, &b), exact, "dot, n = {n}");
            let distance: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum();
            assert_eq!(simd.manhattan(&a, &b), distance, "manhattan, n = {n}");
            let rows: Vec<f32> = (0..8 * n).map(|i| ((i * 5) % 9) as f32 - 4.0).collect();
            let expected: Vec<f32> =
                (0..8).map(|j| a.iter().zip(&rows[j * n..(j + 1) * n]).map(|(x, y)| (x - y).abs()).sum()).collect();
            let mut out = vec![f32::NAN; 8];
            simd.manhattan8(&a, &rows, &mut out);
            assert_eq!(out, expected, "manhattan8, n = {n}");
            let mut expected = b.clone();
            expected.iter_mut().zip(&a).for_each(|(y, x)| *y += 0.5 * x);
            let mut y = b.clone();
            simd.axpy(0.5, &a, &mut y);
            assert_eq!(y, expected, "axpy, n = {n}");
            // Small integers are halves exactly: the half-precision loops give the same sums.
            let a_halves: Vec<f16> = a.iter().map(|&x| f16::from_f32(x)).collect();
            assert_eq!(simd.dot(&a_halves, &b), exact, "dot of halves, n = {n}");
            let mut y = b.clone();
            simd.axpy(0.5, &a_halves, &mut y);
            assert_eq!(y, expected, "axpy of halves, n = {n}");
        }
        // k = 72 crosses a full 64-column panel, an 8-column panel; k = 13 leaves scalars.
        for k in [1usize, 13, 64, 72] {
            let m: Vec<f32> = (0..k * k).map(|i| ((i * 5) % 9) as f32 - 4.0).collect();
            let v: Vec<f32> = (0..k).map(|i| ((i * 3) % 7) as f32 - 3.0).collect();
            let expected: Vec<f32> = (0..k).map(|c| (0..k).map(|j| v[j] * m[j * k + c]).sum()).collect();
            let mut out = vec![f32::NAN; k];
            simd.symmetric_mat_vec(&m, &v, &mut out);
            assert_eq!(out, expected, "mat_vec, k = {k}");
        }
        // Four at once equal each alone to the bit, with values whose sums do round.
        for k in [1usize, 13, 16, 24, 72, 200] {
            let m: Vec<f32> = (0..k * k).map(|i| ((i * 37) % 101) as f32 / 7.0 - 6.5).collect();
            let vs: Vec<Vec<f32>> =
                (0..4).map(|n| (0..k).map(|i| ((i * 13 + n * 5) % 17) as f32 / 3.0 - 2.7).collect()).collect();
            let alone: Vec<Vec<f32>> = vs
                .iter()
                .map(|v| {
                    let mut out = vec![f32::NAN; k];
                    simd.symmetric_mat_vec(&m, v, &mut out);
                    out
                })
                .collect();
            let mut outs = vec![vec![f32::NAN; k]; 4];
            let [a, b, c, d] = &mut outs[..] else { unreachable!() };
            simd.symmetric_mat_vec4(&m, [&vs[0], &vs[1], &vs[2], &vs[3]], [a, b, c, d]);
            assert_eq!(outs, alone, "mat_vec4, k = {k}");
        }
    }

    /// Rounding to halves as `half` rounds, over every width's tail: ties to even, values too
    /// small for a normal half, too large for any, infinities and NaN.
    fn check_narrow<S: Simd>(simd: S) {
        let special = [
            0.0f32,
            -0.0,
            1.0 + f32::EPSILON,
            // Halfway between two halves: 1 + 2^-11 rounds down to even, 1 + 3·2^-11 up.
            1.0 + 2f32.powi(-11),
            1.0 + 3.0 * 2f32.powi(-11),
            6e-6,
            -3e-8,
            65504.0,
            65520.0,
            -1e9,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.1,
            -2.7,
        ];
        for n in [0usize, 1, 7, 8, 9, 15, 16, 17] {
            let values: Vec<f32> = special.iter().cycle().take(n).copied().collect();
            let expected: Vec<u16> = values.iter().map(|&v| f16::from_f32(v).to_bits()).collect();
            let mut out = vec![f16::NAN; n];
            simd.narrow(&values, &mut out);
            assert_eq!(out.iter().map(|h| h.to_bits()).collect::<Vec<_>>(), expected, "narrow, n = {n}");
        }
        let mut out = [f16::ZERO; 9];
        simd.narrow(&[f32::NAN; 9], &mut out);
        assert!(out.iter().all(|h| h.is_nan()), "NaN stays NaN");
    }

    #[test]
    fn every_instruction_set_computes_the_same_loops() {
        check(Portable);
        check_narrow(Portable);
        #[cfg(target_arch = "x86_64")]
        if let Some(avx) = Avx2Fma::detect() {
            check(avx);
            check_narrow(avx);
        }
    }
}
