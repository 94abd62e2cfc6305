//! Candidate models of musicrec and the machinery they share.
//!
//! Every model has one shape (the `Recommender` trait): hyperparameters with defaults and a
//! `check` (`params`), `fit` on the training data (the train user × item matrix of listen
//! counts, and the item × feature matrix for content models), optionally with the training
//! loss per iteration, `recommend` (never an item the user has, never an item the model
//! filtered out), similar items for the models that have them (`SimilarItems`), and
//! `save`/`load` in the versioned, checksummed `MRMODEL` format (`format`). Factor models
//! (ALS, BPR) share `FactorModel`, Item2Item (`item2item`) works on item-feature vectors, and
//! everything that ranks items goes through one batched top-K (`topk`).
//!
//! Users and items are the dense `u32` indices of the train matrix's rows and columns.
//! Parallel work runs on the caller's rayon pool: install a pool to bound the threads.

pub mod als;
pub mod bpr;
mod dense;
pub mod error;
pub mod factors;
mod format;
mod huge_pages;
pub mod item2item;
pub mod params;
pub mod popular;
pub mod recommendations;
#[cfg(target_arch = "x86_64")]
mod score_panels;
mod simd;
#[cfg(test)]
mod test_fixture;
pub mod topk;
mod training;

use std::path::Path;

use musicrec_data::CsrMatrix;

pub use als::{Als, AlsParams};
pub use bpr::{Bpr, BprParams, EpochReport};
pub use error::ModelError;
pub use factors::FactorModel;
pub use item2item::{Item2Item, Item2ItemParams, Metric};
pub use params::{Hyperparameters, InvalidParameter, ParamCheck};
pub use popular::{TopItems, TopItemsParams};
pub use recommendations::Recommendations;
pub use simd::symmetric_mat_vec;

/// What a model trains on. Models that learn from listens alone read `user_items`; content
/// models also need `item_features`, whose rows are the items of `user_items`' columns.
///
/// A `&CsrMatrix` converts into listens-only training data, so `Model::fit(&params, &matrix)`
/// keeps working for the models that need nothing more.
#[derive(Debug, Clone, Copy)]
pub struct TrainingData<'a> {
    /// Users × items, listen counts.
    pub user_items: &'a CsrMatrix,
    /// Items × features (album, artist, genre one-hot), when the caller has it.
    pub item_features: Option<&'a CsrMatrix>,
}

impl<'a> From<&'a CsrMatrix> for TrainingData<'a> {
    fn from(user_items: &'a CsrMatrix) -> Self {
        Self { user_items, item_features: None }
    }
}

/// What a fit tells after each of its iterations (an ALS sweep, a BPR epoch): enough for a
/// progress bar or a log line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitStep {
    /// Iterations done, from 1.
    pub done: usize,
    pub total: usize,
    /// The training loss after this iteration, when the fit was asked to compute it.
    pub loss: Option<f64>,
    /// Time of this iteration, loss included.
    pub seconds: f64,
}

/// The models whose `Recommender::similar` is `Some`, by name (their stage and configuration
/// section): the stages whose similar tracks the service can serve.
pub const SIMILAR_ITEM_MODELS: [&str; 2] = [Als::NAME, Bpr::NAME];

/// The shape every model has, so that one generic stage (fit, write candidates for the
/// window users, write similar items, save, evaluate) serves all of them.
pub trait Recommender: Sized + Send + Sync {
    /// The model's name: its configuration section, and the prefix of its errors.
    const NAME: &'static str;
    type Params: Hyperparameters;
    /// Whether `fit` needs `TrainingData::item_features`: callers load that matrix only then.
    const USES_ITEM_FEATURES: bool = false;

    /// Checks `params`, then trains on `data`.
    fn fit<'a>(params: &Self::Params, data: impl Into<TrainingData<'a>>) -> Result<Self, ModelError>;

    /// Fits like `fit`, calling `step` after every iteration of a model that trains by
    /// iterations (others never call it). With `with_loss` each step carries the training loss,
    /// at a cost each model states; without, a step is one call per iteration and costs
    /// nothing measurable.
    fn fit_observed<'a>(
        params: &Self::Params,
        data: impl Into<TrainingData<'a>>,
        with_loss: bool,
        step: &mut dyn FnMut(&FitStep),
    ) -> Result<Self, ModelError> {
        let _ = (with_loss, step);
        Self::fit(params, data)
    }

    /// Fits like `fit`, also computing the training loss after every iteration (see
    /// `fit_observed`); the losses in order. A model that does not train by iterations has none.
    fn fit_with_loss<'a>(
        params: &Self::Params,
        data: impl Into<TrainingData<'a>>,
    ) -> Result<(Self, Vec<f64>), ModelError> {
        let mut losses = Vec::new();
        let model = Self::fit_observed(params, data, true, &mut |s| losses.extend(s.loss))?;
        Ok((model, losses))
    }

    fn params(&self) -> &Self::Params;

    /// The `n` best items for each of `users`, best first with scores. Never an item of the
    /// user's row in `user_items` (which must have the training matrix's shape) nor one the
    /// model left out; users the model cannot score (e.g. not in the training matrix) get an
    /// empty list.
    fn recommend(&self, users: &[u32], user_items: &CsrMatrix, n: usize) -> Result<Recommendations, ModelError>;

    /// The model's similar items, for the models that have them (`SIMILAR_ITEM_MODELS`).
    fn similar(&self) -> Option<&dyn SimilarItems> {
        None
    }

    /// Facts about the fitted model for a stage's manifest (e.g. Item2Item's SVD components
    /// and explained variance); none by default.
    fn summary(&self) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    /// Writes the model atomically; returns the file's size in bytes.
    fn save(&self, path: &Path) -> Result<u64, ModelError>;

    /// Reads a model written by `save`; a damaged or foreign file is `ModelError::Corrupt`.
    fn load(path: &Path) -> Result<Self, ModelError>;
}

/// What a model that knows which items resemble each other answers (see
/// `Recommender::similar`).
pub trait SimilarItems: Send + Sync {
    /// The `n` items most similar to each of `items`, the item itself excluded; an item the
    /// model has no representation of gets an empty list.
    fn similar_items(&self, items: &[u32], n: usize) -> Recommendations;
}
