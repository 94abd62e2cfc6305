//! The machine's limits that bound an ALS iteration (docs/perf/als.md): peak `f32` FMA
//! throughput, streaming memory bandwidth, and the rate of fetching factor rows at random, on
//! 1 and 2 threads; and the rate of each top-K scoring path against them
//! (docs/perf/scoring.md).
//!
//! ```text
//! cargo run --release -p musicrec-models --example fma_peak
//! cargo run --release -p musicrec-models --example fma_peak -- --k 200 --rows 200000
//! ```
//!
//! Peak: every thread runs `CHAINS` independent chains of vector FMAs on registers, enough to
//! cover the FMA latency on both FMA pipes, so the loop is bound by FMA throughput alone.
//! 256-bit (AVX2, what our kernels use) and, when the CPU has it, 512-bit (AVX-512F).
//! Triad: `a = b + s·c` over arrays far larger than the last-level cache, counted as STREAM
//! counts it (12 bytes per element). Gather: dot products of a fixed vector with factor rows of
//! `--k` floats picked at random among `--rows`, each row prefetched a few rows ahead, as the
//! ALS solve fetches the other side's rows. Mat-vec: the product of a k × k matrix (in L2)
//! with a vector, in 64-column panels of 8 register accumulators: the loop of every CG step
//! (`musicrec_models::symmetric_mat_vec`, measured itself), one load of the matrix per FMA.
//! Scoring: the 10 best of `--rows` candidates of `--k` values for each of `SCORED_QUERIES`
//! queries (`musicrec_models::topk::top_k_with`, the search behind every recommendation and
//! similar-tracks list), by dot product and by manhattan distance, on each path this CPU runs:
//! the AVX-512 and AVX2 panel kernels and the generic one (the GEMM for dot products, the
//! scan for manhattan), with each one's time relative to the generic one's.
//! Each figure is the best of a few repetitions: the machine is shared, and the best run is the
//! one least disturbed.

use std::hint::black_box;
use std::time::Instant;

/// Independent accumulator chains per thread: FMA latency (4 cycles) × 2 FMA pipes = 8 in
/// flight at least; 12 leaves a margin and still fits in the 16 vector registers of AVX2.
const CHAINS: usize = 12;
/// FMA steps per chain and call: about a second of work per thread at tens of GFLOP/s.
const FMA_STEPS: u64 = 100_000_000;
/// Elements per triad array: 3 × 256 MiB, far beyond any cache.
const TRIAD_LEN: usize = 1 << 26;
/// Random rows fetched per thread and repetition.
const GATHERS: usize = 2_000_000;
/// Matrix-vector products per thread and repetition.
const MAT_VECS: usize = 20_000;
/// Rows ahead that are prefetched, as in the ALS solve.
const PREFETCH_AHEAD: usize = 4;
/// Queries of the scoring measure: a few seconds of work per path.
const SCORED_QUERIES: usize = 1024;
const REPEATS: usize = 3;

fn main() -> Result<(), String> {
    let (mut k, mut rows) = (200usize, 200_000usize);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || -> Result<usize, String> {
            let v = args.next().ok_or(format!("{flag} needs a value"))?;
            v.parse().map_err(|e| format!("{flag}: {e}"))
        };
        match flag.as_str() {
            "--k" => k = value()?,
            "--rows" => rows = value()?,
            other => return Err(format!("unknown flag {other} (flags: --k, --rows)")),
        }
    }
    if k == 0 || rows == 0 {
        return Err("--k and --rows must be positive".into());
    }
    #[cfg(target_arch = "x86_64")]
    x86::run(k, rows);
    #[cfg(not(target_arch = "x86_64"))]
    println!("the machine's limits are measured with x86-64 instructions only; scoring follows");
    scoring(k, rows)
}

/// Top-10 searches of `SCORED_QUERIES` queries among `rows` candidates on each scoring path,
/// on rayon pools of 1 and 2 threads, as GFLOP/s of the products (2k per score).
fn scoring(k: usize, rows: usize) -> Result<(), String> {
    use musicrec_models::topk::{Candidates, Kernel, PanelWidth, top_k_with};
    // Values in [-1, 1) from a multiplicative hash: the selection sees no runs or ties.
    let value = |i: usize| ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as f32 / 8_388_608.0 - 1.0;
    let vectors: Vec<f32> = (0..rows * k).map(value).collect();
    let queries: Vec<f32> = (0..SCORED_QUERIES * k).map(|i| value(i + rows * k)).collect();
    let ids: Vec<u32> = (0..rows as u32).collect();
    let query_ids: Vec<u32> = (0..SCORED_QUERIES as u32).collect();
    let candidates = Candidates { vectors: &vectors, ids: &ids, dim: k };
    let paths = [Some(PanelWidth::Avx512), Some(PanelWidth::Avx2), None];
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| e.to_string())?;
        for kernel in [Kernel::Dot, Kernel::NegManhattan] {
            let mut generic_seconds = None;
            for path in paths.into_iter().rev().filter(|path| path.is_none_or(PanelWidth::is_supported)) {
                let seconds = best_time(|| {
                    black_box(pool.install(|| {
                        let vector = |q: usize| Some(&queries[q * k..(q + 1) * k]);
                        top_k_with(path, kernel, &query_ids, vector, |_| &[][..], candidates, 10)
                    }));
                });
                let generic = *generic_seconds.get_or_insert(seconds);
                let flops = (SCORED_QUERIES * rows * k * 2) as f64;
                let name = path.map_or("generic".to_string(), |width| format!("{width:?} panels"));
                println!(
                    "scoring top-10 of {rows} x {k}, {kernel:?}, {name}, {threads} thread(s): {:.1} GFLOP/s, {:.2}x the generic time",
                    flops / seconds / 1e9,
                    seconds / generic
                );
            }
        }
    }
    Ok(())
}

/// The best wall time of `REPEATS` calls of `run`, in seconds.
fn best_time(mut run: impl FnMut()) -> f64 {
    (0..REPEATS)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Runs `work(t)` on `threads` threads t at once and waits for all of them.
fn on_threads<R>(threads: usize, work: impl Fn(usize) -> R + Sync) {
    std::thread::scope(|scope| {
        for t in 0..threads {
            let work = &work;
            scope.spawn(move || {
                black_box(work(t));
            });
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::*;

    pub fn run(k: usize, rows: usize) {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let avx512 = is_x86_feature_detected!("avx512f");
        println!("avx2+fma: {avx2}, avx512f: {avx512}");
        for threads in [1, 2] {
            if avx2 {
                // SAFETY: AVX2 and FMA were detected above.
                let seconds = best_time(|| on_threads(threads, |_| unsafe { fma_chains_256(FMA_STEPS) }));
                let flops = (threads as u64 * FMA_STEPS * CHAINS as u64 * 8 * 2) as f64;
                println!("peak fma 256-bit, {threads} thread(s): {:.1} GFLOP/s", flops / seconds / 1e9);
            }
            if avx512 {
                // SAFETY: AVX-512F was detected above.
                let seconds = best_time(|| on_threads(threads, |_| unsafe { fma_chains_512(FMA_STEPS) }));
                let flops = (threads as u64 * FMA_STEPS * CHAINS as u64 * 16 * 2) as f64;
                println!("peak fma 512-bit, {threads} thread(s): {:.1} GFLOP/s", flops / seconds / 1e9);
            }
        }

        if avx2 {
            let m: Vec<f32> = (0..k * k).map(|i| (i % 5) as f32 * 0.125).collect();
            let v = vec![0.5f32; k];
            for threads in [1, 2] {
                let seconds = best_time(|| on_threads(threads, |_| mat_vecs(&m, &v)));
                let flops = (threads * MAT_VECS * 2 * k * k) as f64;
                println!("mat-vec {k} x {k}, {threads} thread(s): {:.1} GFLOP/s", flops / seconds / 1e9);
            }
        }

        let (mut a, b, c) = (vec![0.0f32; TRIAD_LEN], vec![1.0f32; TRIAD_LEN], vec![2.0f32; TRIAD_LEN]);
        for threads in [1, 2] {
            let share = TRIAD_LEN / threads;
            let seconds = best_time(|| {
                std::thread::scope(|scope| {
                    for (t, out) in a.chunks_mut(share).enumerate() {
                        let range = t * share..(t + 1) * share;
                        let (b, c) = (&b[range.clone()], &c[range]);
                        scope.spawn(move || triad(out, b, c, 3.0));
                    }
                });
            });
            let bytes = (12 * share * threads) as f64;
            println!("triad, {threads} thread(s): {:.1} GB/s", bytes / seconds / 1e9);
        }
        drop((a, b, c));

        if avx2 {
            let matrix: Vec<f32> = (0..rows * k).map(|i| (i % 7) as f32 * 0.25).collect();
            let query = vec![0.5f32; k];
            for threads in [1, 2] {
                // SAFETY: AVX2 and FMA were detected above.
                let seconds = best_time(|| {
                    on_threads(threads, |t| unsafe { gather_dots(&matrix, &query, rows, k, 0x9E37_79B9 + t as u64) })
                });
                let fetched = (threads * GATHERS) as f64;
                println!(
                    "random rows of {k} floats among {rows}, {threads} thread(s): {:.1} M rows/s, {:.1} GB/s",
                    fetched / seconds / 1e6,
                    fetched * (k * 4) as f64 / seconds / 1e9
                );
            }
        }
    }

    /// `CHAINS` independent chains of `steps` FMAs each on 8-lane vectors.
    #[target_feature(enable = "avx2,fma")]
    fn fma_chains_256(steps: u64) -> f32 {
        let (scale, shift) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_setzero_ps(); CHAINS];
        for _ in 0..steps {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, scale, shift);
            }
        }
        let total = acc.iter().fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), total) };
        lanes.iter().sum()
    }

    /// The same on 16-lane vectors.
    #[target_feature(enable = "avx512f")]
    fn fma_chains_512(steps: u64) -> f32 {
        let (scale, shift) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        for _ in 0..steps {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, scale, shift);
            }
        }
        _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |s, &a| _mm512_add_ps(s, a)))
    }

    /// `MAT_VECS` products `m · v` (k × k row-major, k = `v.len()`), each fed the previous
    /// result scaled down, so none can be skipped; returns the last one's sum.
    fn mat_vecs(m: &[f32], v: &[f32]) -> f32 {
        let k = v.len();
        let (mut input, mut out) = (v.to_vec(), vec![0.0f32; k]);
        for _ in 0..MAT_VECS {
            musicrec_models::symmetric_mat_vec(m, &input, &mut out);
            input.iter_mut().zip(&out).for_each(|(i, &o)| *i = o * 1e-3);
        }
        out.iter().sum()
    }

    /// `out = b + s·c`, left to the compiler's vectoriser: a memory-bound loop needs no more.
    fn triad(out: &mut [f32], b: &[f32], c: &[f32], s: f32) {
        for ((o, &x), &y) in out.iter_mut().zip(b).zip(c) {
            *o = x + s * y;
        }
    }

    /// Sum of `GATHERS` dot products of `query` with rows of `matrix` (rows × k) drawn by a
    /// xorshift stream from `seed`; row indices are drawn `PREFETCH_AHEAD` ahead and prefetched.
    #[target_feature(enable = "avx2,fma")]
    fn gather_dots(matrix: &[f32], query: &[f32], rows: usize, k: usize, seed: u64) -> f32 {
        let mut state = seed | 1;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % rows as u64) as usize
        };
        let mut ahead = [0usize; PREFETCH_AHEAD];
        ahead.iter_mut().for_each(|r| *r = next());
        let mut total = 0.0f32;
        for g in 0..GATHERS {
            let row = ahead[g % PREFETCH_AHEAD];
            let coming = next();
            ahead[g % PREFETCH_AHEAD] = coming;
            for line in matrix[coming * k..(coming + 1) * k].chunks(16) {
                _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast());
            }
            total += dot(&matrix[row * k..(row + 1) * k], query);
        }
        total
    }

    #[target_feature(enable = "avx2,fma")]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n and both slices hold n values.
            unsafe {
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr().add(i)), _mm256_loadu_ps(b.as_ptr().add(i)), acc)
            };
            i += 8;
        }
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
        lanes.iter().sum::<f32>() + a[i..n].iter().zip(&b[i..n]).map(|(x, y)| x * y).sum::<f32>()
    }
}
