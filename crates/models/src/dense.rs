//! Matrix products on row-major factor matrices, through `matrixmultiply` (a blocked GEMM
//! that picks AVX/FMA at run time). The only unsafe code of these calls lives here, behind
//! shape checks.

use rayon::prelude::*;

/// `out` (m × n, row-major) = `a` (m × k, row-major) · `b`ᵀ, where `b` is n × k row-major: the
/// scores of m queries against n candidates.
pub(crate) fn mul_transposed(a: &[f32], b: &[f32], m: usize, k: usize, n: usize, out: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= n * k && out.len() >= m * n, "matrix slices shorter than their shapes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        out[..m * n].fill(0.0);
        return;
    }
    // SAFETY: the assert above keeps every index the strides reach inside the three slices;
    // `out` is borrowed mutably, so it aliases neither input.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            1,
            k as isize,
            0.0,
            out.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Rows per partial product of `gram`: enough work per task to amortise the GEMM set-up.
const GRAM_ROWS_PER_TASK: usize = 8192;

/// `yᵀy` (k × k, row-major) of a row-major matrix with `k` columns, on all cores.
pub(crate) fn gram(y: &[f32], k: usize) -> Vec<f32> {
    if k == 0 {
        return Vec::new();
    }
    y.par_chunks(GRAM_ROWS_PER_TASK * k)
        .map(|rows| {
            let n = rows.len() / k;
            let mut out = vec![0.0f32; k * k];
            // SAFETY: `rows` holds n × k values read as the k × n matrix yᵀ (row stride 1,
            // column stride k) and as y itself; `out` holds k × k and aliases neither.
            unsafe {
                matrixmultiply::sgemm(
                    k,
                    n,
                    k,
                    1.0,
                    rows.as_ptr(),
                    1,
                    k as isize,
                    rows.as_ptr(),
                    k as isize,
                    1,
                    0.0,
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
            sum.iter_mut().zip(&part).for_each(|(s, p)| *s += p);
            sum
        })
        .unwrap_or_else(|| vec![0.0f32; k * k])
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
    }
}
