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
//! (user u, item i) pair, uniform over the nonzeros, and a negative item j, **also drawn from
//! the nonzeros' items**, i.e. in proportion to its number of users: that is what implicit's
//! CPU code does (`disliked_id = itemids[rng.generate()]`), not uniform over the catalogue.
//! With `verify_negative_samples`, a sample whose j the user has is skipped (counted as
//! skipped, not redrawn), as implicit does. Then, with `z = x_u·(y_i − y_j)` and
//! `σ = sigmoid(−z)`:
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
//! block the samples are drawn up front so that the ids and factor rows of later samples can
//! be prefetched while earlier ones are updated (this changes timing only, not results).
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
use crate::params::{Hyperparameters, ParamCheck};
use crate::recommendations::Recommendations;
#[cfg(target_arch = "x86_64")]
use crate::simd::Avx2Fma;
use crate::simd::{Portable, Simd};
use crate::training::{initial_factors, training_set};
use crate::{Recommender, TrainingData};

const NAME: &str = "bpr";
/// Vectors hold factors + 1 values; ALS's bound on the vector length (memory of a real
/// catalogue) applies to that.
const MAX_FACTORS: usize = 4095;
/// Samples per random stream and per parallel task: the unit that makes the samples drawn
/// independent of the thread count.
const SAMPLES_PER_BLOCK: usize = 1 << 14;
/// Samples ahead whose factor rows (and, twice as far ahead, whose ids) are prefetched.
const PREFETCH_AHEAD: usize = 8;

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
    /// The original system's values (experiments/config/components.yaml).
    fn default() -> Self {
        Self {
            factors: 200,
            iterations: 50,
            learning_rate: 0.05,
            regularization: 0.0001,
            min_users_per_item: 300,
            seed: 42,
            verify_negative_samples: true,
        }
    }
}

impl Hyperparameters for BprParams {
    fn check(&self) -> Result<(), ModelError> {
        let check = ParamCheck { model: NAME };
        check.count_in("factors", self.factors, 1..=MAX_FACTORS, "must be between 1 and 4095")?;
        check.count_in("iterations", self.iterations, 1..=usize::MAX, "must be at least 1")?;
        check.positive("learning_rate", self.learning_rate)?;
        check.non_negative("regularization", self.regularization)?;
        check.count_in("min_users_per_item", self.min_users_per_item, 1..=usize::MAX, "must be at least 1")
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
    /// Time of this epoch.
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bpr {
    params: BprParams,
    factors: FactorModel,
}

impl Bpr {
    /// Fits like `Recommender::fit`, handing each epoch's figures to `report` (they are
    /// counted anyway: reporting costs nothing).
    pub fn fit_reporting(
        params: &BprParams,
        user_items: &CsrMatrix,
        report: &mut dyn FnMut(&EpochReport),
    ) -> Result<Self, ModelError> {
        Self::fit_inner(params, user_items, Some(report))
    }

    fn fit_inner(
        params: &BprParams,
        user_items: &CsrMatrix,
        mut report: Option<&mut dyn FnMut(&EpochReport)>,
    ) -> Result<Self, ModelError> {
        params.check()?;
        let set = training_set(NAME, user_items, params.min_users_per_item)?;
        let matrix = &set.matrix;
        let dim = params.factors + 1;
        let scale = 0.5 / params.factors as f32;
        let mut user_factors = initial_factors(params.seed, 0, matrix.rows, dim, -scale..scale);
        user_factors.par_chunks_mut(dim).for_each(|x| x[params.factors] = 1.0);
        let item_factors = initial_factors(params.seed, 1, matrix.cols, dim, -scale..scale);
        // The row of every nonzero (implicit's `userids`): a sample is one random index.
        let mut user_of = Vec::with_capacity(matrix.nnz());
        for u in 0..matrix.rows {
            let length = (matrix.indptr[u + 1] - matrix.indptr[u]) as usize;
            user_of.extend(std::iter::repeat_n(u as u32, length));
        }
        let shared = SharedFactors::new(user_factors, item_factors, dim);
        let epoch = Epoch { matrix, user_of: &user_of, factors: &shared, params };
        for number in 1..=params.iterations {
            let started = Instant::now();
            let counts = epoch.run(number as u64);
            if let Some(report) = report.as_deref_mut() {
                let samples = matrix.nnz() as f64;
                let used = samples - counts.skipped as f64;
                let correct = if used > 0.0 { counts.correct as f64 / used } else { 0.0 };
                let skipped = counts.skipped as f64 / samples;
                let seconds = started.elapsed().as_secs_f64();
                tracing::debug!(epoch = number, correct, skipped, seconds, "bpr epoch");
                report(&EpochReport { epoch: number, correct, skipped, seconds });
            }
        }
        let (user_factors, item_factors) = shared.into_inner();
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

/// User and item factors that every thread of an epoch reads and writes without locks.
///
/// Hogwild: two threads may update the same row at once, and one thread's update of a value
/// can then be lost or mixed with another's. For sparse SGD that is benign by design: such
/// collisions are rare (two samples on one user or item at the same moment) and amount to a
/// slightly stale gradient, which SGD converges with (Niu et al. 2011); implicit runs exactly
/// this race in C.
///
/// What must not happen is undefined behaviour, which a plain concurrent `f32` write is in
/// Rust's memory model, whatever the hardware does. So every value is an `AtomicU32` holding
/// the `f32`'s bits, read and written with `Relaxed` loads and stores: defined behaviour, no
/// `unsafe` anywhere, and on x86-64 (as on ARM64) such a load or store is the same single
/// `mov` a plain one is, so this costs nothing. No value can ever be torn: each 32-bit store
/// is atomic. The arithmetic runs on thread-local copies of the three rows of a sample
/// (`Scratch`), where it vectorises; the whole read-compute-write of a sample is not atomic,
/// which is the Hogwild race described above and nothing more.
struct SharedFactors {
    users: Vec<AtomicU32>,
    items: Vec<AtomicU32>,
    dim: usize,
}

impl SharedFactors {
    fn new(users: Vec<f32>, items: Vec<f32>, dim: usize) -> Self {
        let atomic = |v: Vec<f32>| v.into_iter().map(|x| AtomicU32::new(x.to_bits())).collect();
        Self { users: atomic(users), items: atomic(items), dim }
    }

    fn into_inner(self) -> (Vec<f32>, Vec<f32>) {
        let plain = |v: Vec<AtomicU32>| v.into_iter().map(|x| f32::from_bits(x.into_inner())).collect();
        (plain(self.users), plain(self.items))
    }

    fn user(&self, row: u32) -> &[AtomicU32] {
        &self.users[row as usize * self.dim..(row as usize + 1) * self.dim]
    }

    fn item(&self, row: u32) -> &[AtomicU32] {
        &self.items[row as usize * self.dim..(row as usize + 1) * self.dim]
    }

    #[inline(always)]
    fn load(from: &[AtomicU32], to: &mut [f32]) {
        for (value, cell) in to.iter_mut().zip(from) {
            *value = f32::from_bits(cell.load(Ordering::Relaxed));
        }
    }

    #[inline(always)]
    fn store(from: &[f32], to: &[AtomicU32]) {
        for (&value, cell) in from.iter().zip(to) {
            cell.store(value.to_bits(), Ordering::Relaxed);
        }
    }
}

/// Correctly ranked and skipped samples.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    correct: u64,
    skipped: u64,
}

impl std::ops::Add for Counts {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self { correct: self.correct + other.correct, skipped: self.skipped + other.skipped }
    }
}

/// A thread's samples of a block (nonzero positions of the liked and the disliked item), and
/// its copies of one sample's user, liked and disliked rows, and y_i − y_j.
struct Scratch {
    samples: Vec<(usize, usize)>,
    user: Vec<f32>,
    liked: Vec<f32>,
    disliked: Vec<f32>,
    difference: Vec<f32>,
}

impl Scratch {
    fn new(dim: usize) -> Self {
        Self {
            samples: Vec::with_capacity(SAMPLES_PER_BLOCK),
            user: vec![0.0; dim],
            liked: vec![0.0; dim],
            disliked: vec![0.0; dim],
            difference: vec![0.0; dim],
        }
    }
}

struct Epoch<'a> {
    matrix: &'a CsrMatrix,
    user_of: &'a [u32],
    factors: &'a SharedFactors,
    params: &'a BprParams,
}

impl Epoch<'_> {
    /// One epoch (`number` from 1): nnz samples in blocks, blocks in parallel.
    fn run(&self, number: u64) -> Counts {
        let samples = self.matrix.nnz();
        let blocks = samples.div_ceil(SAMPLES_PER_BLOCK);
        (0..blocks)
            .into_par_iter()
            .map_init(
                || Scratch::new(self.factors.dim),
                |scratch, block| {
                    let length = SAMPLES_PER_BLOCK.min(samples - block * SAMPLES_PER_BLOCK);
                    // Streams 0 and 1 initialised the factors; epochs use 2, 3, ...
                    let stream = ((number + 1) << 40) ^ block as u64;
                    let rng = Xoshiro256PlusPlus::seed_from_u64(
                        self.params.seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                    );
                    self.block(rng, length, scratch)
                },
            )
            .reduce(Counts::default, |a, b| a + b)
    }

    fn block(&self, rng: Xoshiro256PlusPlus, length: usize, scratch: &mut Scratch) -> Counts {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = Avx2Fma::detect() {
            // SAFETY: the token proves AVX2 and FMA are present.
            return unsafe { self.block_avx2(simd, rng, length, scratch) };
        }
        self.block_with(Portable, rng, length, scratch)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn block_avx2(&self, simd: Avx2Fma, rng: Xoshiro256PlusPlus, length: usize, scratch: &mut Scratch) -> Counts {
        self.block_with(simd, rng, length, scratch)
    }

    #[inline(always)]
    fn block_with<S: Simd>(&self, simd: S, mut rng: Xoshiro256PlusPlus, length: usize, s: &mut Scratch) -> Counts {
        let nnz = self.matrix.nnz() as u64;
        // Uniform in 0..nnz by the high half of a 64 × 64-bit product (bias below 2⁻³²).
        let mut draw = || ((u128::from(rng.next_u64()) * u128::from(nnz)) >> 64) as usize;
        // The block's samples are drawn first (in the order a sample-by-sample loop would
        // draw them), so that the loop can prefetch ahead: a sample is a chain of dependent
        // random reads (nonzero → user and items → the user's row → factor rows), each a
        // cache miss on a real catalogue.
        s.samples.clear();
        s.samples.extend((0..length).map(|_| (draw(), draw())));
        let (lr, reg) = (self.params.learning_rate, self.params.regularization);
        let factors = self.params.factors;
        let (indices, user_of) = (&self.matrix.indices, self.user_of);
        let mut counts = Counts::default();
        for t in 0..length {
            if let Some(&(liked_at, disliked_at)) = s.samples.get(t + 2 * PREFETCH_AHEAD) {
                simd.prefetch(&user_of[liked_at..=liked_at]);
                simd.prefetch(&indices[liked_at..=liked_at]);
                simd.prefetch(&indices[disliked_at..=disliked_at]);
            }
            if let Some(&(liked_at, disliked_at)) = s.samples.get(t + PREFETCH_AHEAD) {
                let user = user_of[liked_at];
                simd.prefetch(self.matrix.row(user as usize).0);
                simd.prefetch(self.factors.user(user));
                simd.prefetch(self.factors.item(indices[liked_at]));
                simd.prefetch(self.factors.item(indices[disliked_at]));
            }
            let (liked_at, disliked_at) = s.samples[t];
            let user = user_of[liked_at];
            let liked = indices[liked_at];
            let disliked = indices[disliked_at];
            if self.params.verify_negative_samples && self.matrix.row(user as usize).0.binary_search(&disliked).is_ok()
            {
                counts.skipped += 1;
                continue;
            }
            let (user_row, liked_row, disliked_row) =
                (self.factors.user(user), self.factors.item(liked), self.factors.item(disliked));
            SharedFactors::load(user_row, &mut s.user);
            SharedFactors::load(liked_row, &mut s.liked);
            SharedFactors::load(disliked_row, &mut s.disliked);
            for ((d, &a), &b) in s.difference.iter_mut().zip(&s.liked).zip(&s.disliked) {
                *d = a - b;
            }
            let score = simd.dot(&s.user, &s.difference);
            let z = 1.0 / (1.0 + score.exp());
            if z < 0.5 {
                counts.correct += 1;
            }
            // The item updates use the user's values from before this sample, as implicit's.
            for (y, &x) in s.liked.iter_mut().zip(&s.user) {
                *y += lr * (z * x - reg * *y);
            }
            if disliked == liked {
                // Only without verify_negative_samples. implicit updates one row twice, the
                // second update reading the first's result: so do we.
                s.disliked.copy_from_slice(&s.liked);
            }
            for (y, &x) in s.disliked.iter_mut().zip(&s.user) {
                *y += lr * (-z * x - reg * *y);
            }
            // The user's bias column stays 1.
            for (x, &d) in s.user[..factors].iter_mut().zip(&s.difference) {
                *x += lr * (z * d - reg * *x);
            }
            SharedFactors::store(&s.user[..factors], &user_row[..factors]);
            SharedFactors::store(&s.liked, liked_row);
            SharedFactors::store(&s.disliked, disliked_row);
        }
        counts
    }
}

impl Recommender for Bpr {
    const NAME: &'static str = NAME;
    type Params = BprParams;

    fn fit<'a>(params: &BprParams, data: impl Into<TrainingData<'a>>) -> Result<Self, ModelError> {
        Self::fit_inner(params, data.into().user_items, None)
    }

    fn params(&self) -> &BprParams {
        &self.params
    }

    /// Scores are full BPR scores: taste plus item bias.
    fn recommend(&self, users: &[u32], user_items: &CsrMatrix, n: usize) -> Result<Recommendations, ModelError> {
        self.factors.recommend(NAME, users, user_items, n)
    }

    /// By cosine of the taste columns, the bias left out (see the module doc).
    fn similar_items(&self, items: &[u32], n: usize) -> Recommendations {
        self.factors.similar_items_on(items, n, self.params.factors)
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

#[cfg(test)]
mod tests;
