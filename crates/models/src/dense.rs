//! Matrix products on row-major matrices, through `matrixmultiply` (a blocked GEMM that
//! picks AVX/FMA at run time), in `f32` for factors and `f64` for the SVD of Item2Item. The
//! only unsafe code of these calls lives here, behind shape checks.

use rayon::prelude::*;

/// The element types `matrixmultiply` multiplies.
pub(crate) trait Real: Copy + Send + Sync + Default + std::ops::AddAssign + 'static {
    const ZERO: Self;

    /// `matrixmultiply`'s `sgemm`/`dgemm`: c = alpha·a·b + beta·c with the given strides.
    ///
    /// # Safety
    /// As `matrixmultiply::sgemm`: every index the shapes and strides reach is inside the
    /// allocations, and `c` aliases neither input.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
}

macro_rules! real {
    ($t:ty, $gemm:path) => {
        impl Real for $t {
            const ZERO: Self = 0.0;

            unsafe fn gemm(
                m: usize,
                k: usize,
                n: usize,
                a: *const Self,
                rsa: isize,
                csa: isize,
                b: *const Self,
                rsb: isize,
                csb: isize,
                c: *mut Self,
                rsc: isize,
                csc: isize,
            ) {
                // SAFETY: forwarded to the caller (see the trait).
                unsafe { $gemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, csc) }
            }
        }
    };
}
real!(f32, matrixmultiply::sgemm);
real!(f64, matrixmultiply::dgemm);

/// Rows of `mul`'s output per parallel task.
const MUL_ROWS_PER_TASK: usize = 512;

/// `out` (m × n, row-major) = `a` (m × k, row-major) · `b`, where `b` is k × n row-major;
/// blocks of rows in parallel (each output row is computed the same way whatever the split).
pub(crate) fn mul<T: Real>(a: &[T], b: &[T], m: usize, k: usize, n: usize, out: &mut [T]) {
    assert!(a.len() >= m * k && b.len() >= k * n && out.len() >= m * n, "matrix slices shorter than their shapes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out[..m * n].fill(T::ZERO);
        return;
    }
    out[..m * n].par_chunks_mut(MUL_ROWS_PER_TASK * n).enumerate().for_each(|(task, out)| {
        let rows = out.len() / n;
        let a = &a[task * MUL_ROWS_PER_TASK * k..];
        // SAFETY: this task's `rows` rows of `a` and of `out` are inside the slices (checked
        // above for all m rows); `out` is borrowed mutably, so it aliases neither input.
        unsafe {
            T::gemm(rows, k, n, a.as_ptr(), k as isize, 1, b.as_ptr(), n as isize, 1, out.as_mut_ptr(), n as isize, 1);
        }
    });
}

/// `out` (m × n, row-major) = `a` (m × k, row-major) · `b`ᵀ, where `b` is n × k row-major: the
/// scores of m queries against n candidates.
pub(crate) fn mul_transposed<T: Real>(a: &[T], b: &[T], m: usize, k: usize, n: usize, out: &mut [T]) {
    assert!(a.len() >= m * k && b.len() >= n * k && out.len() >= m * n, "matrix slices shorter than their shapes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out[..m * n].fill(T::ZERO);
        return;
    }
    // SAFETY: the assert above keeps every index the strides reach inside the three slices;
    // `out` is borrowed mutably, so it aliases neither input.
    unsafe {
        T::gemm(m, k, n, a.as_ptr(), k as isize, 1, b.as_ptr(), 1, k as isize, out.as_mut_ptr(), n as isize, 1);
    }
}

/// Rows per partial product of `gram`: enough work per task to amortise the GEMM set-up.
const GRAM_ROWS_PER_TASK: usize = 8192;

/// `yᵀy` (k × k, row-major) of a row-major matrix with `k` columns, on all cores.
pub(crate) fn gram<T: Real>(y: &[T], k: usize) -> Vec<T> {
    gram_in_tasks_of(y, k, GRAM_ROWS_PER_TASK)
}

/// `gram` with `rows_per_task` rows per partial product: fewer for a matrix with few rows and
/// many columns, where the product is large but the default would leave one task.
pub(crate) fn gram_in_tasks_of<T: Real>(y: &[T], k: usize, rows_per_task: usize) -> Vec<T> {
    if k == 0 {
        return Vec::new();
    }
    y.par_chunks(rows_per_task * k)
        .map(|rows| {
            let n = rows.len() / k;
            let mut out = vec![T::ZERO; k * k];
            // SAFETY: `rows` holds n × k values read as the k × n matrix yᵀ (row stride 1,
            // column stride k) and as y itself; `out` holds k × k and aliases neither.
            unsafe {
                T::gemm(
                    k,
                    n,
                    k,
                    rows.as_ptr(),
                    1,
                    k as isize,
                    rows.as_ptr(),
                    k as isize,
                    1,
                    out.as_mut_ptr(),
                    k as isize,
                    1,
                );
            }
            out
        })
        .collect::<Vec<_>>()
        .into_iter()
        // Summed in row order, not in whatever order threads finish: the factors of a fit must
        // not depend on the number of threads.
        .reduce(|mut sum, part| {
            sum.iter_mut().zip(&part).for_each(|(s, &p)| *s += p);
            sum
        })
        .unwrap_or_else(|| vec![T::ZERO; k * k])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_match_naive_loops() {
        let (m, k, n) = (5, 19, 7);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..n * k).map(|i| ((i * 3) % 13) as f32 - 6.0).collect();
        let mut out = vec![f32::NAN; m * n];
        mul_transposed(&a, &b, m, k, n, &mut out);
        for i in 0..m {
            for j in 0..n {
                let naive: f32 = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum();
                assert_eq!(out[i * n + j], naive);
            }
        }
        let g = gram(&a, k);
        for p in 0..k {
            for q in 0..k {
                let naive: f32 = (0..m).map(|i| a[i * k + p] * a[i * k + q]).sum();
                assert_eq!(g[p * k + q], naive);
            }
        }
        let c: Vec<f64> = (0..k * n).map(|i| ((i * 5) % 7) as f64 - 3.0).collect();
        let a64: Vec<f64> = a.iter().map(|&v| f64::from(v)).collect();
        let mut product = vec![f64::NAN; m * n];
        mul(&a64, &c, m, k, n, &mut product);
        for i in 0..m {
            for j in 0..n {
                let naive: f64 = (0..k).map(|p| a64[i * k + p] * c[p * n + j]).sum();
                assert_eq!(product[i * n + j], naive);
            }
        }
    }
}
