//! Alternating least squares for implicit feedback (Hu, Koren, Volinsky 2008) with the
//! conjugate-gradient solver of Takács, Pilászy, Tikk (2011): the model and objective of
//! `implicit.cpu.als.AlternatingLeastSquares(use_cg=True)`, so that results at equal
//! parameters are comparable.
//!
//! Objective, over all users u and items i of the training set:
//!
//! ```text
//! Σ_u Σ_i c_ui (p_ui − x_u·y_i)² + λ (Σ_u |x_u|² + Σ_i |y_i|²)
//! p_ui = 1 if u listened to i, else 0
//! c_ui = alpha · r_ui for observed pairs (r = listen count), 1 otherwise
//! ```
//!
//! This is exactly how `implicit` (0.7) applies its parameters, read from its source:
//! `fit` multiplies the matrix by `alpha` (so the confidence of an observed pair is
//! `alpha · r`, not `1 + alpha · r`), its solvers use `c − 1` as the extra weight of observed
//! pairs over the implicit 1 of every pair, and the regularization is a plain `λI`, not scaled
//! by the number of interactions. Its reported loss is the objective above divided by
//! `Σ c_observed + users × items − nnz`; ours is the same number.
//!
//! Each half-iteration solves every user (then every item) from the other side with a few CG
//! steps warm-started from the previous factors, `YᵀY + λI` computed once by a GEMM, rows in
//! parallel on the current rayon pool. Factors start uniform in [0, 0.01) from a seeded,
//! thread-count-independent random stream.
//!
//! Model file: the `MRMODEL` container (see `format`) of kind `ALS`, whose payload is the
//! hyperparameters (`u64` factors, `u64` iterations, `f32` regularization, `f32` alpha,
//! `u64` min_users_per_item, `u64` cg_steps, `u64` seed) followed by the factor model
//! (see `factors`).

mod cg;

use std::path::Path;
use std::time::Instant;

use half::f16;
use rayon::prelude::*;

use musicrec_data::CsrMatrix;

use crate::dense::gram;
use crate::error::ModelError;
use crate::factors::FactorModel;
use crate::format::{ModelReader, ModelWriter};
use crate::huge_pages;
use crate::params::{Hyperparameters, InvalidParameter, ParamCheck};
use crate::recommendations::Recommendations;
use crate::simd::narrow;
use crate::training::{initial_factors, training_set};
use crate::{FitStep, Recommender, SimilarItems, TrainingData};

const NAME: &str = "als";
/// Above this the factor matrices of a real catalogue no longer fit in memory.
const MAX_FACTORS: usize = 4096;
/// Catches a misplaced digit: a run needs tens of iterations.
const MAX_ITERATIONS: usize = 10_000;
const MAX_CG_STEPS: usize = 1000;
/// Values rounded to halves per parallel task: big enough to amortise the task.
const NARROWED_PER_TASK: usize = 1 << 16;

#[derive(Debug, Clone, PartialEq)]
pub struct AlsParams {
    /// Latent factors per user and item.
    pub factors: usize,
    /// Alternating sweeps (users then items).
    pub iterations: usize,
    /// λ of the L2 penalty on all factors.
    pub regularization: f32,
    /// Confidence of an observed pair per listen (c = alpha · listens).
    pub alpha: f32,
    /// Items with fewer distinct users are left out of training and recommendations.
    pub min_users_per_item: usize,
    /// CG steps per row and half-iteration (implicit's default: 3).
    pub cg_steps: usize,
    /// Seed of the initial factors.
    pub seed: u64,
}

impl Default for AlsParams {
    /// The configuration's documented defaults (the original system's values, but for
    /// `min_users_per_item`, sized for the small data set) and implicit's CG default.
    fn default() -> Self {
        Self {
            factors: 200,
            iterations: 15,
            regularization: 0.05,
            alpha: 1.0,
            min_users_per_item: 5,
            cg_steps: 3,
            seed: 42,
        }
    }
}

impl Hyperparameters for AlsParams {
    fn check(&self) -> Result<(), InvalidParameter> {
        let check = ParamCheck { section: NAME };
        check.count_in("factors", self.factors, 1..=MAX_FACTORS)?;
        check.count_in("iterations", self.iterations, 1..=MAX_ITERATIONS)?;
        check.non_negative("regularization", self.regularization)?;
        check.positive("alpha", self.alpha)?;
        check.count_in("min_users_per_item", self.min_users_per_item, 1..=usize::MAX)?;
        check.count_in("cg_steps", self.cg_steps, 1..=MAX_CG_STEPS)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Als {
    params: AlsParams,
    factors: FactorModel,
}

impl Als {
    fn fit_inner(
        params: &AlsParams,
        user_items: &CsrMatrix,
        with_loss: bool,
        step: &mut dyn FnMut(&FitStep),
    ) -> Result<Self, ModelError> {
        params.check()?;
        let mut set = training_set(NAME, user_items, params.min_users_per_item)?;
        let k = params.factors;
        if params.alpha != 1.0 {
            set.matrix.values.par_iter_mut().for_each(|v| *v *= params.alpha);
            if set.matrix.values.iter().any(|v| !v.is_finite()) {
                let rule = "times the largest listen count must be a finite f32";
                return Err(ParamCheck { section: NAME }.invalid("alpha", params.alpha, rule).into());
            }
        }
        let user_side = set.matrix;
        let item_side = user_side.transpose();
        // Uniform in [0, 0.01) like implicit.
        let mut user_factors = initial_factors(params.seed, 0, user_side.rows, k, 0.0..0.01);
        let mut item_factors = initial_factors(params.seed, 1, item_side.rows, k, 0.0..0.01);
        let loss_denominator = user_side.values.iter().map(|&c| f64::from(c)).sum::<f64>()
            + (user_side.rows as f64) * (user_side.cols as f64)
            - user_side.nnz() as f64;
        let mut item_gram = gram(&item_factors, k);
        let mut halves = huge_pages::filled(user_factors.len().max(item_factors.len()), |_| f16::ZERO);
        for iteration in 1..=params.iterations {
            let started = Instant::now();
            solve_side(&user_side, &mut user_factors, &item_factors, &item_gram, &mut halves, params, false);
            let user_gram = gram(&user_factors, k);
            // The item solve is the iteration's last step: the loss is taken there, from the
            // item side, while each item's user rows are in cache.
            let observed =
                solve_side(&item_side, &mut item_factors, &user_factors, &user_gram, &mut halves, params, with_loss);
            item_gram = gram(&item_factors, k);
            let loss = with_loss.then(|| training_loss(observed, &user_gram, &item_gram, params) / loss_denominator);
            let seconds = started.elapsed().as_secs_f64();
            tracing::debug!(iteration, loss, seconds, "als iteration");
            step(&FitStep { done: iteration, total: params.iterations, loss, seconds });
        }
        let factors =
            FactorModel::try_new(user_items.rows, user_items.cols, k, set.users, set.items, user_factors, item_factors)
                .map_err(|problem| ModelError::TrainingFailed {
                    model: NAME,
                    reason: format!("{problem}; try a larger regularization"),
                })?;
        Ok(Self { params: params.clone(), factors })
    }

    pub fn factors(&self) -> &FactorModel {
        &self.factors
    }
}

/// Recomputes every row of `targets` from the `fixed` side (`fixed_gram` = its Gram matrix).
/// With `observed_loss`, returns the observed pairs' part of the training loss at the new
/// factors (see `cg::solve_rows`), else 0.
///
/// `halves` holds at least `fixed.len()` values: the solve reads `fixed` rounded to halves.
fn solve_side(
    confidence: &CsrMatrix,
    targets: &mut [f32],
    fixed: &[f32],
    fixed_gram: &[f32],
    halves: &mut [f16],
    params: &AlsParams,
    observed_loss: bool,
) -> f64 {
    let k = params.factors;
    let mut gram_reg = fixed_gram.to_vec();
    for j in 0..k {
        gram_reg[j * k + j] += params.regularization;
    }
    let fixed_halves = &mut halves[..fixed.len()];
    fixed_halves
        .par_chunks_mut(NARROWED_PER_TASK)
        .zip(fixed.par_chunks(NARROWED_PER_TASK))
        .for_each(|(out, values)| narrow(values, out));
    let side = cg::Side { confidence, fixed: fixed_halves, gram_reg: &gram_reg, k, cg_steps: params.cg_steps };
    targets
        .par_chunks_mut(cg::ROWS_PER_TASK * k)
        .enumerate()
        .map_init(
            || cg::Scratch::new(k),
            |scratch, (task, xs)| cg::solve_rows(&side, task * cg::ROWS_PER_TASK, xs, scratch, observed_loss),
        )
        .sum()
}

/// The un-normalised objective, from the observed pairs' part and the two Gram matrices the
/// iteration has anyway: the sum over every (user, item) pair of (x_u·y_i)² is
/// `Σ_u x_uᵀ(YᵀY)x_u = ⟨XᵀX, YᵀY⟩`, and the penalty needs only their traces.
fn training_loss(observed: f64, user_gram: &[f32], item_gram: &[f32], params: &AlsParams) -> f64 {
    let k = params.factors;
    let everywhere: f64 = user_gram.iter().zip(item_gram).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
    let trace = |g: &[f32]| (0..k).map(|j| f64::from(g[j * k + j])).sum::<f64>();
    let penalty = f64::from(params.regularization) * (trace(user_gram) + trace(item_gram));
    everywhere + observed + penalty
}

impl Recommender for Als {
    const NAME: &'static str = NAME;
    type Params = AlsParams;

    fn fit<'a>(params: &AlsParams, data: impl Into<TrainingData<'a>>) -> Result<Self, ModelError> {
        Self::fit_inner(params, data.into().user_items, false, &mut |_| {})
    }

    /// The loss is the normalised objective of the module doc, as implicit reports it. It
    /// costs one more dot product per nonzero and iteration, taken while the factor rows it
    /// needs are still in cache from the item solve.
    fn fit_observed<'a>(
        params: &AlsParams,
        data: impl Into<TrainingData<'a>>,
        with_loss: bool,
        step: &mut dyn FnMut(&FitStep),
    ) -> Result<Self, ModelError> {
        Self::fit_inner(params, data.into().user_items, with_loss, step)
    }

    fn params(&self) -> &AlsParams {
        &self.params
    }

    fn recommend(&self, users: &[u32], user_items: &CsrMatrix, n: usize) -> Result<Recommendations, ModelError> {
        self.factors.recommend(NAME, users, user_items, n)
    }

    fn similar(&self) -> Option<&dyn SimilarItems> {
        Some(self)
    }

    fn save(&self, path: &Path) -> Result<u64, ModelError> {
        let p = &self.params;
        let mut out = ModelWriter::create(path, "ALS")?;
        out.u64(p.factors as u64)?;
        out.u64(p.iterations as u64)?;
        out.f32(p.regularization)?;
        out.f32(p.alpha)?;
        out.u64(p.min_users_per_item as u64)?;
        out.u64(p.cg_steps as u64)?;
        out.u64(p.seed)?;
        self.factors.write(&mut out)?;
        out.commit()
    }

    fn load(path: &Path) -> Result<Self, ModelError> {
        let mut input = ModelReader::open(path, "ALS")?;
        let params = AlsParams {
            factors: input.count("factors")?,
            iterations: input.count("iterations")?,
            regularization: input.f32("regularization")?,
            alpha: input.f32("alpha")?,
            min_users_per_item: input.count("min_users_per_item")?,
            cg_steps: input.count("cg_steps")?,
            seed: input.u64("seed")?,
        };
        params.check().map_err(|e| input.corrupt(format!("stored hyperparameters are invalid: {e}")))?;
        let factors = FactorModel::read(&mut input)?;
        if factors.dim() != params.factors {
            return Err(input.corrupt(format!(
                "{} factors per vector, the hyperparameters say {}",
                factors.dim(),
                params.factors
            )));
        }
        input.finish()?;
        Ok(Self { params, factors })
    }
}

impl SimilarItems for Als {
    /// By the cosine of the item factors.
    fn similar_items(&self, items: &[u32], n: usize) -> Recommendations {
        self.factors.similar_items(items, n)
    }
}

#[cfg(test)]
mod tests;
