//! Bayesian personalized ranking (Rendle et al. 2009) by lock-free parallel SGD: the model,
//! sampling and updates of `implicit.cpu.bpr.BayesianPersonalizedRanking` (0.7), so that
//! results at equal parameters are comparable.
//!
//! Model, as implicit has it: every user and item has `factors` latent values plus one more
//! column, the item's bias, against which every user holds a constant 1; a score is the dot
//! product over all `factors + 1` columns. Factors start uniform in
//! [−0.5 / factors, 0.5 / factors) (implicit: `(rand − 0.5) / factors`), user bias columns at 1.
//!
//! An epoch draws as many samples as the training matrix has nonzeros. A sample is an observed
//! (user u, item i) pair, uniform over the nonzeros, and a negative item j, **also drawn as
//! the nonzeros' items are**, i.e. in proportion to its number of users: that is what
//! implicit's CPU code does (`disliked_id = itemids[rng.generate()]`), not uniform over the
//! catalogue; we draw it from an alias table of the same distribution (see `alias`).
//! With `verify_negative_samples`, a sample whose j the user has is skipped (counted as
//! skipped, not redrawn), as implicit does (a Bloom filter of the pairs answers most of
//! these tests from cache, the user's row the rest: see `pairs`). Then, with
//! `z = x_u·(y_i − y_j)` and `σ = sigmoid(−z)`:
//!
//! ```text
//! x_u += lr (σ (y_i − y_j) − reg x_u)     (not the bias column, which stays 1)
//! y_i += lr (σ x_u − reg y_i)             (x_u before this sample's update)
//! y_j += lr (−σ x_u − reg y_j)
//! ```
//!
//! Samples are cut into fixed blocks, each with its own random stream from (seed, epoch,
//! block), and blocks run in parallel on the current rayon pool, all threads updating the
//! shared factors without locks (Hogwild, Niu et al. 2011; see `SharedFactors`). So the samples
//! drawn never depend on the number of threads, but with more than one thread the order in
//! which their updates interleave does: **results are not bit-reproducible with more than one
//! thread** (neither are implicit's); with one thread they are, for a given seed. Within a
//! block, samples go through a short pipeline so that the ids, rows and factors of later
//! samples are prefetched while earlier ones are updated (timing only, not results). During
//! training, the taste rows are held in half precision (`f16`), padded to whole cache lines,
//! with the item bias apart in `f32` (see `SharedFactors`); the arithmetic of an update is in
//! `f32`, and the model keeps implicit's `factors + 1` columns in `f32`.
//!
//! `similar_items` is the cosine of the item vectors **without** the bias column. The bias is
//! an item's popularity, not its taste: included, it would pull popular items towards each
//! other whatever their listeners, and its size relative to the taste columns changes with
//! `factors`. implicit takes the cosine over all columns; this is a deliberate difference.
//! `recommend` scores with the bias (the model's ranking score).
//!
//! Model file: the `MRMODEL` container (see `format`) of kind `BPR`, whose payload is the
//! hyperparameters (`u64` factors, `u64` iterations, `f32` learning_rate, `f32`
//! regularization, `u64` min_users_per_item, `u64` seed, `u64` verify_negative_samples, 0 or
//! 1), then the factor model (see `factors`) with `factors + 1` values per vector, the last
//! being the bias column.

mod alias;
mod loss;
mod pairs;
mod step;

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rayon::prelude::*;

use musicrec_data::CsrMatrix;

use crate::error::ModelError;
use crate::factors::FactorModel;
use crate::format::{ModelReader, ModelWriter};
use crate::huge_pages;
use crate::params::{Hyperparameters, InvalidParameter, ParamCheck};
use crate::recommendations::Recommendations;
#[cfg(target_arch = "x86_64")]
use crate::simd::Avx2Fma;
use crate::simd::{Portable, Simd};
use crate::training::{initial_factors, training_set, users_per_item};
use crate::{FitStep, Recommender, SimilarItems, TrainingData};
use alias::NegativeSampler;
use loss::LossSum;
use pairs::PairFilter;
#[cfg(target_arch = "x86_64")]
use step::{Avx2Lanes, Avx512Lanes};
use step::{Lanes, Pair, SampleRows};

const NAME: &str = "bpr";
/// Vectors hold factors + 1 values; ALS's bound on the vector length (memory of a real
/// catalogue) applies to that.
const MAX_FACTORS: usize = 4095;
/// Catches a misplaced digit: a run needs tens of iterations.
const MAX_ITERATIONS: usize = 10_000;
/// Samples per random stream and per parallel task: the unit that makes the samples drawn
/// independent of the thread count.
const SAMPLES_PER_BLOCK: usize = 1 << 14;

#[derive(Debug, Clone, PartialEq)]
pub struct BprParams {
    /// Latent factors per user and item, the item bias column not counted.
    pub factors: usize,
    /// Epochs; each draws as many samples as the training matrix has nonzeros.
    pub iterations: usize,
    /// SGD step size.
    pub learning_rate: f32,
    /// L2 penalty applied with every update of a vector.
    pub regularization: f32,
    /// Items with fewer distinct users are left out of training and recommendations.
    pub min_users_per_item: usize,
    /// Seed of the initial factors and of the samples.
    pub seed: u64,
    /// Skip a sample whose negative item the user actually has.
    pub verify_negative_samples: bool,
}

impl Default for BprParams {
    /// The configuration's documented defaults: the original system's values, but for
    /// `min_users_per_item`, sized for the small data set.
    fn default() -> Self {
        Self {
            factors: 200,
            iterations: 50,
            learning_rate: 0.05,
            regularization: 0.0001,
            min_users_per_item: 5,
            seed: 42,
            verify_negative_samples: true,
        }
    }
}

impl Hyperparameters for BprParams {
    fn check(&self) -> Result<(), InvalidParameter> {
        let check = ParamCheck { section: NAME };
        check.count_in("factors", self.factors, 1..=MAX_FACTORS)?;
        check.count_in("iterations", self.iterations, 1..=MAX_ITERATIONS)?;
        check.positive("learning_rate", self.learning_rate)?;
        check.non_negative("regularization", self.regularization)?;
        check.count_in("min_users_per_item", self.min_users_per_item, 1..=usize::MAX)
    }
}

/// What `fit_reporting` tells after each epoch: implicit's progress figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochReport {
    /// 1-based.
    pub epoch: usize,
    /// Share of the epoch's samples that were used and ranked correctly before their update
    /// (x_u·y_i > x_u·y_j), among the samples not skipped: implicit's "train_auc".
    pub correct: f64,
    /// Share of the epoch's samples skipped because the user has the negative item.
    pub skipped: f64,
    /// Mean BPR loss, −ln σ(x_u·y_i − x_u·y_j), of the samples used, each taken before its
    /// update: the training loss SGD lowers.
    pub loss: f64,
    /// Time of this epoch.
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bpr {
    params: BprParams,
    factors: FactorModel,
}

impl Bpr {
    /// Fits like `Recommender::fit`, handing each epoch's figures to `report`, the loss
    /// included (a few operations per sample: see `loss`).
    pub fn fit_reporting(
        params: &BprParams,
        user_items: &CsrMatrix,
        report: &mut dyn FnMut(&EpochReport),
    ) -> Result<Self, ModelError> {
        Self::fit_inner(params, user_items, true, report)
    }

    /// Fits, handing each epoch's figures to `report`; their `loss` is 0 unless `measure_loss`.
    fn fit_inner(
        params: &BprParams,
        user_items: &CsrMatrix,
        measure_loss: bool,
        report: &mut dyn FnMut(&EpochReport),
    ) -> Result<Self, ModelError> {
        params.check()?;
        let set = training_set(NAME, user_items, params.min_users_per_item)?;
        let matrix = &set.matrix;
        let dim = params.factors + 1;
        let scale = 0.5 / params.factors as f32;
        // Drawn with the bias column, as the model file holds them; the user bias column (a
        // constant 1) is not trained, the item bias column is trained apart (`SharedFactors`).
        let user_factors = initial_factors(params.seed, 0, matrix.rows, dim, -scale..scale);
        let item_factors = initial_factors(params.seed, 1, matrix.cols, dim, -scale..scale);
        // (row, column) of every nonzero (implicit's `userids` and `itemids`): a sample is one
        // random index, and one cache line holds both its ids.
        let mut user = 0;
        let nonzeros = huge_pages::filled(matrix.nnz(), |at| {
            while matrix.indptr[user + 1] as usize <= at {
                user += 1;
            }
            (user as u32, matrix.indices[at])
        });
        let shared = SharedFactors::new(&user_factors, &item_factors, params.factors);
        drop((user_factors, item_factors));
        let filter = params.verify_negative_samples.then(|| PairFilter::new(&nonzeros));
        let negatives = NegativeSampler::new(&users_per_item(matrix));
        let epoch = Epoch {
            matrix,
            nonzeros: &nonzeros,
            negatives: &negatives,
            filter: filter.as_ref(),
            factors: &shared,
            params,
            measure_loss,
        };
        for number in 1..=params.iterations {
            let started = Instant::now();
            let counts = epoch.run(number as u64);
            let samples = matrix.nnz() as f64;
            let used = samples - counts.skipped as f64;
            let per_used = |x: f64| if used > 0.0 { x / used } else { 0.0 };
            let (correct, loss) = (per_used(counts.correct as f64), per_used(counts.loss));
            let skipped = counts.skipped as f64 / samples;
            let seconds = started.elapsed().as_secs_f64();
            tracing::debug!(epoch = number, correct, skipped, loss, seconds, "bpr epoch");
            report(&EpochReport { epoch: number, correct, skipped, loss, seconds });
        }
        let (user_factors, item_factors) = shared.into_model_rows();
        let factors = FactorModel::try_new(
            user_items.rows,
            user_items.cols,
            dim,
            set.users,
            set.items,
            user_factors,
            item_factors,
        )
        .map_err(|problem| ModelError::TrainingFailed {
            model: NAME,
            reason: format!("{problem}; try a smaller learning_rate"),
        })?;
        Ok(Self { params: params.clone(), factors })
    }

    /// The factors: `params().factors + 1` values per vector, the last one the item bias
    /// (1 in every user vector).
    pub fn factors(&self) -> &FactorModel {
        &self.factors
    }
}

/// 4-byte cells (`u32`, `f32`) per cache line.
const LINE: usize = 16;
/// Half-precision values per cache line: two per cell.
const HALVES_PER_LINE: usize = 2 * LINE;

/// One cache line of shared values: rows made of whole lines start on a line and touch no
/// more lines than their length needs (a row of 200 halves would straddle 7 or 8).
#[repr(C, align(64))]
struct Line([AtomicU32; LINE]);

/// Rows of half-precision values that every thread of an epoch reads and writes without
/// locks, each padded with zeros to whole cache lines.
///
/// Why half precision: a sample reads and writes three random rows, and at a real
/// catalogue's size each of their lines is a miss; the fit is bound by those lines, not by
/// arithmetic. Halves cut a 200-factor row from 13 lines to 7, for a loss of quality measured
/// to be within noise (`docs/perf/bpr.md`): an update moves a value by far more than a half's
/// relative step (2⁻¹¹), and the regularisation, which would not, is tiny anyway.
///
/// Hogwild: two threads may update the same row at once, and one thread's update of a value
/// can then be lost or mixed with another's. For sparse SGD that is benign by design: such
/// collisions are rare (two samples on one user or item at the same moment) and amount to a
/// slightly stale gradient, which SGD converges with (Niu et al. 2011); implicit runs exactly
/// this race in C.
///
/// What must not happen is undefined behaviour, which a plain concurrent write is in Rust's
/// memory model, whatever the hardware does. So every pair of values is an `AtomicU32`
/// holding their bits, only ever accessed as by `Relaxed` loads and stores: `step` reads and
/// writes rows 8 or 16 values per instruction (see there for why that is still a relaxed
/// access), and widens them to `f32` in registers, where the arithmetic runs. No value can
/// ever be torn; the whole read-compute-write of a sample is not atomic, which is the Hogwild
/// race described above and nothing more.
struct SharedRows {
    lines: Vec<Line>,
    lines_per_row: usize,
}

impl SharedRows {
    /// The first `width` values of each `stride`-long row of `values`, rounded to the nearest
    /// half.
    fn new(values: &[f32], stride: usize, width: usize) -> Self {
        let lines_per_row = width.div_ceil(HALVES_PER_LINE);
        let rows = values.len() / stride;
        let lines = huge_pages::filled(rows * lines_per_row, |_| Line(std::array::from_fn(|_| AtomicU32::new(0))));
        let shared = Self { lines, lines_per_row };
        for (r, row) in values.chunks_exact(stride).enumerate() {
            // Rows are counted in u32 throughout (the matrix's ids).
            step::narrow_row(&row[..width], shared.row(r as u32));
        }
        shared
    }

    /// A row's cells, padding included (always zeros: see `Epoch::sample`).
    #[inline(always)]
    fn row(&self, r: u32) -> &[AtomicU32] {
        let lines = &self.lines[r as usize * self.lines_per_row..][..self.lines_per_row];
        // SAFETY: `Line` is `repr(C)` with 16 `AtomicU32` (64 bytes) and align 64, so it has
        // no padding: consecutive lines are one contiguous run of `AtomicU32`.
        unsafe { std::slice::from_raw_parts(lines.as_ptr().cast::<AtomicU32>(), lines.len() * LINE) }
    }

    /// Every row's values, widened to `f32`, padding included.
    fn rows(&self) -> impl Iterator<Item = Vec<f32>> + '_ {
        (0..self.lines.len() / self.lines_per_row).map(|r| step::widen_row(self.row(r as u32)))
    }
}

/// The trained state: user and item taste vectors (`factors` values each) as `SharedRows`,
/// and the item biases apart, in `f32`. The user's bias column is a constant 1 and needs no storage;
/// the item's, kept in its row, would make a 64-factor row 65 values long, one more cache
/// line, while all biases together are small enough to stay in cache.
struct SharedFactors {
    users: SharedRows,
    items: SharedRows,
    biases: Vec<AtomicU32>,
    factors: usize,
}

impl SharedFactors {
    /// From rows of `factors + 1` values, the last being the bias column.
    fn new(users: &[f32], items: &[f32], factors: usize) -> Self {
        let dim = factors + 1;
        Self {
            users: SharedRows::new(users, dim, factors),
            items: SharedRows::new(items, dim, factors),
            biases: items.chunks_exact(dim).map(|row| AtomicU32::new(row[factors].to_bits())).collect(),
            factors,
        }
    }

    /// Back to rows of `factors + 1` values: user rows end with 1, item rows with the bias.
    fn into_model_rows(self) -> (Vec<f32>, Vec<f32>) {
        let f = self.factors;
        let users = self.users.rows().flat_map(|row| row.into_iter().take(f).chain([1.0])).collect();
        let biases = self.biases.iter().map(|b| f32::from_bits(b.load(Ordering::Relaxed)));
        let items =
            self.items.rows().zip(biases).flat_map(|(row, bias)| row.into_iter().take(f).chain([bias])).collect();
        (users, items)
    }
}

/// Correctly ranked and skipped samples, and the summed loss (when measured).
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    correct: u64,
    skipped: u64,
    loss: f64,
}

impl std::ops::Add for Counts {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            correct: self.correct + other.correct,
            skipped: self.skipped + other.skipped,
            loss: self.loss + other.loss,
        }
    }
}

/// Samples ahead of the one being updated that each step of the prefetch pipeline works on
/// (see `Epoch::block_with`).
const AHEAD: usize = 8;
/// Slots of the ring of samples in flight: a power of two above 4 × AHEAD.
const RING: usize = 64;

/// A sample in flight: where its pair was drawn (a nonzero position) and its negative, then
/// the pair's ids, then whether the pair filter let its negative through.
#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    liked_at: usize,
    user: u32,
    liked: u32,
    disliked: u32,
    maybe_listened: bool,
}

/// A thread's samples in flight.
type Ring = [Slot; RING];

struct Epoch<'a> {
    matrix: &'a CsrMatrix,
    nonzeros: &'a [(u32, u32)],
    negatives: &'a NegativeSampler,
    /// Present when negatives are verified.
    filter: Option<&'a PairFilter>,
    factors: &'a SharedFactors,
    params: &'a BprParams,
    /// Sum each sample's loss (for `fit_reporting`).
    measure_loss: bool,
}

impl Epoch<'_> {
    /// One epoch (`number` from 1): nnz samples in blocks, blocks in parallel.
    fn run(&self, number: u64) -> Counts {
        let samples = self.matrix.nnz();
        let blocks = samples.div_ceil(SAMPLES_PER_BLOCK);
        (0..blocks)
            .into_par_iter()
            .map_init(
                || [Slot::default(); RING],
                |ring, block| {
                    let length = SAMPLES_PER_BLOCK.min(samples - block * SAMPLES_PER_BLOCK);
                    // Streams 0 and 1 initialised the factors; epochs use 2, 3, ...
                    let stream = ((number + 1) << 40) ^ block as u64;
                    let rng = Xoshiro256PlusPlus::seed_from_u64(
                        self.params.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    );
                    self.block(rng, length, ring)
                },
            )
            .reduce(Counts::default, |a, b| a + b)
    }

    /// A block with the widest update this CPU runs (`step`).
    fn block(&self, rng: Xoshiro256PlusPlus, length: usize, ring: &mut Ring) -> Counts {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = Avx2Fma::detect() {
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: the token proves AVX2, FMA and F16C, and AVX-512F was detected.
                return unsafe { self.block_avx512(simd, rng, length, ring) };
            }
            // SAFETY: the token proves AVX2, FMA and F16C are present.
            return unsafe { self.block_avx2(simd, rng, length, ring) };
        }
        // SAFETY: `Pair` needs no target feature.
        unsafe { self.block_with::<_, Pair>(Portable, rng, length, ring) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn block_avx2(&self, simd: Avx2Fma, rng: Xoshiro256PlusPlus, length: usize, ring: &mut Ring) -> Counts {
        // SAFETY: this function enables `Avx2Lanes`' features.
        unsafe { self.block_with::<_, Avx2Lanes>(simd, rng, length, ring) }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    fn block_avx512(&self, simd: Avx2Fma, rng: Xoshiro256PlusPlus, length: usize, ring: &mut Ring) -> Counts {
        // SAFETY: this function enables `Avx512Lanes`' features.
        unsafe { self.block_with::<_, Avx512Lanes>(simd, rng, length, ring) }
    }

    /// The column indices of a user's row: what a negative sample is verified against.
    #[inline(always)]
    fn items_of(&self, user: u32) -> &[u32] {
        let (indptr, u) = (&self.matrix.indptr, user as usize);
        &self.matrix.indices[indptr[u] as usize..indptr[u + 1] as usize]
    }

    /// A sample is a chain of dependent random reads, each a cache miss on a real catalogue:
    /// nonzero position → ids → the factor rows and the pair filter's block. So the samples go
    /// through a pipeline, `AHEAD` samples apart per step: drawn (the negative from a table in
    /// cache) and their pair prefetched; the pair read and the rows and filter block prefetched; the filter asked, and where it cannot rule
    /// the negative out (about a tenth of the samples), the user's row bounds prefetched; then
    /// the lines of the row that the exact test reads; verified and updated. Samples are drawn, and updated, in the order a
    /// sample-by-sample loop would: this changes timing only, not results.
    ///
    /// # Safety
    /// `L`'s target features are enabled (see `step::Lanes`).
    #[inline(always)]
    unsafe fn block_with<S: Simd, L: Lanes>(
        &self,
        simd: S,
        mut rng: Xoshiro256PlusPlus,
        length: usize,
        ring: &mut Ring,
    ) -> Counts {
        let nnz = self.nonzeros.len() as u64;
        // Uniform in 0..nnz by the high half of a 64 × 64-bit product (bias below 2⁻³²).
        let draw = |rng: &mut Xoshiro256PlusPlus| ((u128::from(rng.next_u64()) * u128::from(nnz)) >> 64) as usize;
        let indptr = &self.matrix.indptr;
        let f = self.factors;
        let mut counts = Counts::default();
        let mut loss = LossSum::default();
        for step in 0..length + 4 * AHEAD {
            if step < length {
                let slot = &mut ring[step % RING];
                slot.liked_at = draw(&mut rng);
                slot.disliked = self.negatives.draw(rng.next_u64());
                simd.prefetch(&self.nonzeros[slot.liked_at..=slot.liked_at]);
            }
            if let Some(t) = step.checked_sub(AHEAD).filter(|&t| t < length) {
                let slot = &mut ring[t % RING];
                (slot.user, slot.liked) = self.nonzeros[slot.liked_at];
                if let Some(filter) = self.filter {
                    simd.prefetch(filter.block_of(slot.user, slot.disliked));
                }
                simd.prefetch(f.users.row(slot.user));
                simd.prefetch(f.items.row(slot.liked));
                simd.prefetch(f.items.row(slot.disliked));
            }
            if let (Some(t), Some(filter)) = (step.checked_sub(2 * AHEAD).filter(|&t| t < length), self.filter) {
                let slot = &mut ring[t % RING];
                slot.maybe_listened = filter.may_contain(slot.user, slot.disliked);
                if slot.maybe_listened {
                    simd.prefetch(&indptr[slot.user as usize..=slot.user as usize + 1]);
                }
            }
            if let Some(t) = step.checked_sub(3 * AHEAD).filter(|&t| t < length && ring[t % RING].maybe_listened) {
                prefetch_search(simd, self.items_of(ring[t % RING].user));
            }
            if let Some(t) = step.checked_sub(4 * AHEAD) {
                let slot = ring[t % RING];
                if slot.maybe_listened && self.items_of(slot.user).binary_search(&slot.disliked).is_ok() {
                    counts.skipped += 1;
                    continue;
                }
                // SAFETY: as this function's contract.
                let (score, exp_score) = unsafe { self.sample::<L>(slot) };
                counts.correct += u64::from(score > 0.0);
                if self.measure_loss {
                    loss.add(score, exp_score);
                }
            }
        }
        counts.loss = loss.total();
        counts
    }

    /// One SGD update (`step`); the sample's score x_u·y_i − x_u·y_j before it, and e^score
    /// (for the loss). Padding values stay 0: their difference and user value are 0, so their
    /// updates only shrink a 0.
    ///
    /// # Safety
    /// As `block_with`.
    #[inline(always)]
    unsafe fn sample<L: Lanes>(&self, slot: Slot) -> (f32, f32) {
        let (lr, reg) = (self.params.learning_rate, self.params.regularization);
        let f = self.factors;
        let rows = SampleRows {
            user: f.users.row(slot.user),
            liked: f.items.row(slot.liked),
            disliked: f.items.row(slot.disliked),
        };
        let (liked_bias, disliked_bias) = (&f.biases[slot.liked as usize], &f.biases[slot.disliked as usize]);
        let liked_b = f32::from_bits(liked_bias.load(Ordering::Relaxed));
        let mut disliked_b = f32::from_bits(disliked_bias.load(Ordering::Relaxed));
        // Plus the bias column, where the user's value is 1.
        // SAFETY: as this function's contract; the rows are of one length, whole lines.
        let score = unsafe { step::taste_score::<L>(rows) } + (liked_b - disliked_b);
        let exp_score = score.exp();
        let z = 1.0 / (1.0 + exp_score);
        // SAFETY: as above.
        unsafe { step::update::<L>(rows, z, lr, reg) };
        let liked_b = liked_b + lr * (z - reg * liked_b);
        if slot.disliked == slot.liked {
            // Only without verify_negative_samples: as the rows (`step::update`), the second
            // update reads the first's result.
            disliked_b = liked_b;
        }
        disliked_b += lr * (-z - reg * disliked_b);
        liked_bias.store(liked_b.to_bits(), Ordering::Relaxed);
        disliked_bias.store(disliked_b.to_bits(), Ordering::Relaxed);
        (score, exp_score)
    }
}

/// Prefetches what a binary search in `items` reads: all of a short row; of a long one
/// (users with thousands of tracks are sampled the most), the lines of the first probes.
#[inline(always)]
fn prefetch_search<S: Simd>(simd: S, items: &[u32]) {
    const PROBES: usize = 8;
    if items.len() <= PROBES * LINE {
        simd.prefetch(items);
    } else {
        for k in 1..PROBES {
            let at = k * items.len() / PROBES;
            simd.prefetch(&items[at..=at]);
        }
    }
}

impl Recommender for Bpr {
    const NAME: &'static str = NAME;
    type Params = BprParams;

    fn fit<'a>(params: &BprParams, data: impl Into<TrainingData<'a>>) -> Result<Self, ModelError> {
        Self::fit_inner(params, data.into().user_items, false, &mut |_| {})
    }

    /// The loss is the mean loss of each epoch's samples (`EpochReport::loss`).
    fn fit_observed<'a>(
        params: &BprParams,
        data: impl Into<TrainingData<'a>>,
        with_loss: bool,
        step: &mut dyn FnMut(&FitStep),
    ) -> Result<Self, ModelError> {
        let total = params.iterations;
        Self::fit_inner(params, data.into().user_items, with_loss, &mut |r| {
            step(&FitStep { done: r.epoch, total, loss: with_loss.then_some(r.loss), seconds: r.seconds })
        })
    }

    fn params(&self) -> &BprParams {
        &self.params
    }

    /// Scores are full BPR scores: taste plus item bias.
    fn recommend(&self, users: &[u32], user_items: &CsrMatrix, n: usize) -> Result<Recommendations, ModelError> {
        self.factors.recommend(NAME, users, user_items, n)
    }

    fn similar(&self) -> Option<&dyn SimilarItems> {
        Some(self)
    }

    fn save(&self, path: &Path) -> Result<u64, ModelError> {
        let p = &self.params;
        let mut out = ModelWriter::create(path, "BPR")?;
        out.u64(p.factors as u64)?;
        out.u64(p.iterations as u64)?;
        out.f32(p.learning_rate)?;
        out.f32(p.regularization)?;
        out.u64(p.min_users_per_item as u64)?;
        out.u64(p.seed)?;
        out.u64(u64::from(p.verify_negative_samples))?;
        self.factors.write(&mut out)?;
        out.commit()
    }

    fn load(path: &Path) -> Result<Self, ModelError> {
        let mut input = ModelReader::open(path, "BPR")?;
        let factors = input.count("factors")?;
        let iterations = input.count("iterations")?;
        let learning_rate = input.f32("learning_rate")?;
        let regularization = input.f32("regularization")?;
        let min_users_per_item = input.count("min_users_per_item")?;
        let seed = input.u64("seed")?;
        let verify_negative_samples = match input.u64("verify_negative_samples")? {
            0 => false,
            1 => true,
            other => return Err(input.corrupt(format!("verify_negative_samples = {other}, expected 0 or 1"))),
        };
        let params = BprParams {
            factors,
            iterations,
            learning_rate,
            regularization,
            min_users_per_item,
            seed,
            verify_negative_samples,
        };
        params.check().map_err(|e| input.corrupt(format!("stored hyperparameters are invalid: {e}")))?;
        let model = FactorModel::read(&mut input)?;
        if model.dim() != params.factors + 1 {
            return Err(input.corrupt(format!(
                "{} values per vector, the hyperparameters say {} factors + 1 bias",
                model.dim(),
                params.factors
            )));
        }
        input.finish()?;
        Ok(Self { params, factors: model })
    }
}

impl SimilarItems for Bpr {
    /// By cosine of the taste columns, the bias left out (see the module doc).
    fn similar_items(&self, items: &[u32], n: usize) -> Recommendations {
        self.factors.similar_items_on(items, n, self.params.factors)
    }
}

#[cfg(test)]
mod tests;
