//! Item2Item, the content model of the original system (docs/pipeline.md#candidate-models): items are the rows of a
//! truncated SVD of the item × feature matrix (album, artist, genre one-hot), a user is the
//! mean vector of the items they listened to, and the recommendations are the items nearest
//! to that profile, scored 1 / (1 + distance).
//!
//! - Items: those with at least `min_users_per_item` distinct listeners (the item filter of
//!   ALS and BPR); the SVD sees only them and the feature columns they use.
//! - SVD: randomized (see `svd`), seeded; at most `min(items, features)` components.
//! - Profile: the mean of the vectors of the user's eligible items, each item once whatever
//!   its listen count (the original fitted on a binary matrix). Users with none get nothing.
//! - Search: exact, over every eligible item the user has not listened to, through the batched
//!   top-K: euclidean as a dot product of augmented vectors ([2p, −1]·[x, |x|²] = |p|² − d²),
//!   cosine as a dot product of unit vectors (d = 1 − cos), manhattan by a SIMD scan.
//! - `n_neighbors` bounds the list: a user gets the min(n, n_neighbors) nearest unlistened
//!   items. The original asked a ball tree for its n_neighbors nearest items and then dropped
//!   the listened ones, so its lists are these lists cut short whenever a user had listened to
//!   more than n_neighbors − n of them; here listened items are skipped inside the search.
//! - Similar items: none; similar tracks come from the factor models.
//!
//! Model file: the `MRMODEL` container (see `format`) of kind `I2I`, whose payload is the
//! hyperparameters (`u64` n_components, `u64` n_neighbors, `u64` metric: 0 manhattan,
//! 1 euclidean, 2 cosine, `u64` min_users_per_item, `u64` seed), then `u64` users, `u64`
//! items (the training matrix's shape), `u64` components d, `f32` explained variance ratio,
//! d × `f32` singular values, `u64` I, I × `u32` eligible items (strictly ascending), and the
//! I × d item vectors (`f32`, row-major).

mod svd;

use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use musicrec_data::CsrMatrix;

use crate::error::ModelError;
use crate::format::{ModelReader, ModelWriter};
use crate::params::{Hyperparameters, InvalidParameter, ParamCheck};
use crate::recommendations::Recommendations;
use crate::topk::{Candidates, Kernel, top_k_by};
use crate::training::eligible_items;
use crate::{Recommender, TrainingData};

const NAME: &str = "item2item";
/// Above this the Jacobi eigensolver of the SVD's small matrix takes minutes.
const MAX_COMPONENTS: usize = 1000;
/// Catches a misplaced digit: the ranker takes tens of candidates per model.
const MAX_NEIGHBORS: usize = 10_000;
/// Users whose profiles are built and searched together: bounds the profile memory whatever
/// the number of users.
const USERS_PER_BATCH: usize = 1 << 16;

/// The distance between an item vector and a user profile; in the configuration
/// (`item2item.metric`) by its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Manhattan,
    Euclidean,
    Cosine,
}

impl Metric {
    const ALL: [Metric; 3] = [Metric::Manhattan, Metric::Euclidean, Metric::Cosine];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Manhattan => "manhattan",
            Metric::Euclidean => "euclidean",
            Metric::Cosine => "cosine",
        }
    }

    /// The search's dimension: euclidean carries |x|² as one more column.
    fn search_dim(self, dim: usize) -> usize {
        if self == Metric::Euclidean { dim + 1 } else { dim }
    }

    /// The vector an item is searched by.
    fn candidate(self, vector: &[f32], out: &mut [f32]) {
        match self {
            Metric::Manhattan => out.copy_from_slice(vector),
            Metric::Euclidean => {
                out[..vector.len()].copy_from_slice(vector);
                out[vector.len()] = vector.iter().map(|v| v * v).sum();
            }
            Metric::Cosine => unit(vector, out),
        }
    }

    /// The vector a profile searches with; the search's score is turned into a distance by
    /// `distance`.
    fn query(self, profile: &[f32], out: &mut [f32]) {
        match self {
            Metric::Manhattan => out.copy_from_slice(profile),
            Metric::Euclidean => {
                out[..profile.len()].iter_mut().zip(profile).for_each(|(o, &p)| *o = 2.0 * p);
                out[profile.len()] = -1.0;
            }
            Metric::Cosine => unit(profile, out),
        }
    }

    /// The distance behind a search score of the profile `profile`.
    fn distance(self, score: f32, profile: &[f32]) -> f32 {
        match self {
            Metric::Manhattan => -score,
            // |p|² − score = d², which rounding can take slightly below 0.
            Metric::Euclidean => (profile.iter().map(|p| p * p).sum::<f32>() - score).max(0.0).sqrt(),
            Metric::Cosine => 1.0 - score,
        }
    }
}

/// `v` scaled to unit length; a zero vector stays zero (cosine 0 with anything, as
/// scikit-learn's cosine distance has it).
fn unit(v: &[f32], out: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    out.iter_mut().zip(v).for_each(|(o, &x)| *o = x * scale);
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item2ItemParams {
    /// SVD components (fewer when the feature matrix has a lower rank).
    pub n_components: usize,
    /// Most items recommended per user (see the module doc).
    pub n_neighbors: usize,
    pub metric: Metric,
    /// Items with fewer distinct users are neither in the SVD nor recommended.
    pub min_users_per_item: usize,
    /// Seed of the SVD's random projection.
    pub seed: u64,
}

impl Default for Item2ItemParams {
    /// The configuration's documented defaults: the original system's values, but for
    /// `n_neighbors` and `min_users_per_item`, sized for the small data set.
    fn default() -> Self {
        Self { n_components: 100, n_neighbors: 50, metric: Metric::Manhattan, min_users_per_item: 20, seed: 42 }
    }
}

impl Hyperparameters for Item2ItemParams {
    fn check(&self) -> Result<(), InvalidParameter> {
        let check = ParamCheck { section: NAME };
        check.count_in("n_components", self.n_components, 1..=MAX_COMPONENTS)?;
        check.count_in("n_neighbors", self.n_neighbors, 1..=MAX_NEIGHBORS)?;
        check.count_in("min_users_per_item", self.min_users_per_item, 1..=usize::MAX)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Item2Item {
    params: Item2ItemParams,
    /// Shape of the training matrix: the index spaces of users and items.
    n_users: usize,
    n_items: usize,
    /// Components per item vector.
    dim: usize,
    /// Share of the feature matrix's variance the components keep (scikit-learn's
    /// `explained_variance_ratio_.sum()`).
    explained_variance: f32,
    singular_values: Vec<f32>,
    /// Eligible items, ascending; row r of `vectors` is item `items[r]`.
    items: Vec<u32>,
    vectors: Vec<f32>,
}

impl Item2Item {
    /// Components per item vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn explained_variance(&self) -> f32 {
        self.explained_variance
    }

    /// Descending.
    pub fn singular_values(&self) -> &[f32] {
        &self.singular_values
    }

    /// Items that have a vector (those that passed the item filter), ascending.
    pub fn items(&self) -> &[u32] {
        &self.items
    }

    pub fn item_vector(&self, item: u32) -> Option<&[f32]> {
        let row = self.items.binary_search(&item).ok()?;
        Some(&self.vectors[row * self.dim..(row + 1) * self.dim])
    }

    /// The items × features matrix restricted to `items` and to the feature columns they use,
    /// re-indexed densely.
    fn eligible_features(features: &CsrMatrix, items: &[u32]) -> CsrMatrix {
        const UNUSED: u32 = u32::MAX;
        let mut column_of = vec![UNUSED; features.cols];
        for &item in items {
            features.row(item as usize).0.iter().for_each(|&c| column_of[c as usize] = 0);
        }
        let mut used = 0u32;
        for c in column_of.iter_mut().filter(|c| **c != UNUSED) {
            *c = used;
            used += 1;
        }
        let mut indptr = Vec::with_capacity(items.len() + 1);
        indptr.push(0u64);
        let (mut indices, mut values) = (Vec::new(), Vec::new());
        for &item in items {
            let (cols, vals) = features.row(item as usize);
            // The re-indexing keeps the column order, so rows stay sorted.
            indices.extend(cols.iter().map(|&c| column_of[c as usize]));
            values.extend_from_slice(vals);
            indptr.push(indices.len() as u64);
        }
        CsrMatrix { rows: items.len(), cols: used as usize, indptr, indices, values }
    }

    /// Σ over columns of the column variances (uncentred data, variance about the mean, as
    /// numpy's `var`) of the sparse `a` and of the dense rows × dim `scores`.
    fn variances(a: &CsrMatrix, scores: &[f64], dim: usize) -> (f64, f64) {
        let rows = a.rows as f64;
        let (mut column_sum, mut column_squares) = (vec![0.0f64; a.cols], vec![0.0f64; a.cols]);
        for (&c, &v) in a.indices.iter().zip(&a.values) {
            column_sum[c as usize] += f64::from(v);
            column_squares[c as usize] += f64::from(v).powi(2);
        }
        let total: f64 = column_sum.iter().zip(&column_squares).map(|(s, q)| q / rows - (s / rows).powi(2)).sum();
        // One pass over the rows, every column's sums at once.
        let (mut sum, mut squares) = (vec![0.0f64; dim], vec![0.0f64; dim]);
        for row in scores.chunks_exact(dim) {
            for ((s, q), &x) in sum.iter_mut().zip(&mut squares).zip(row) {
                *s += x;
                *q += x * x;
            }
        }
        let kept: f64 = sum.iter().zip(&squares).map(|(s, q)| q / rows - (s / rows).powi(2)).sum();
        (total, kept)
    }

    /// Each user's mean of the vectors of their eligible items, as the metric's query vectors
    /// (row q for `users[q]`), and whether the user has one.
    fn queries(&self, users: &[u32], user_items: &CsrMatrix, row_of: &[u32]) -> (Vec<f32>, Vec<f32>, Vec<bool>) {
        let (dim, search_dim) = (self.dim, self.params.metric.search_dim(self.dim));
        let mut profiles = vec![0.0f32; users.len() * dim];
        let mut queries = vec![0.0f32; users.len() * search_dim];
        let has: Vec<bool> = profiles
            .par_chunks_mut(dim)
            .zip(queries.par_chunks_mut(search_dim))
            .zip(users.par_iter())
            .map(|((profile, query), &user)| {
                if user as usize >= user_items.rows {
                    return false;
                }
                let mut count = 0usize;
                for &item in user_items.row(user as usize).0 {
                    let row = row_of[item as usize];
                    if row != u32::MAX {
                        let v = &self.vectors[row as usize * dim..(row as usize + 1) * dim];
                        profile.iter_mut().zip(v).for_each(|(p, &x)| *p += x);
                        count += 1;
                    }
                }
                if count == 0 {
                    return false;
                }
                profile.iter_mut().for_each(|p| *p /= count as f32);
                self.params.metric.query(profile, query);
                true
            })
            .collect();
        (profiles, queries, has)
    }
}

impl Recommender for Item2Item {
    const NAME: &'static str = NAME;
    type Params = Item2ItemParams;
    const USES_ITEM_FEATURES: bool = true;

    fn fit<'a>(params: &Item2ItemParams, data: impl Into<TrainingData<'a>>) -> Result<Self, ModelError> {
        params.check()?;
        let data = data.into();
        let user_items = data.user_items;
        let Some(features) = data.item_features else {
            return Err(ModelError::NothingToTrain {
                model: NAME,
                reason: "the item × feature matrix is needed and was not given".into(),
            });
        };
        if features.rows != user_items.cols {
            return Err(ModelError::NothingToTrain {
                model: NAME,
                reason: format!(
                    "the item × feature matrix has {} rows, the listening matrix {} item columns",
                    features.rows, user_items.cols
                ),
            });
        }
        let items = eligible_items(NAME, user_items, params.min_users_per_item)?;
        let a = Self::eligible_features(features, &items);
        if a.nnz() == 0 {
            return Err(ModelError::NothingToTrain {
                model: NAME,
                reason: format!("none of the {} eligible items has a feature (album, artist, genre)", items.len()),
            });
        }
        let k = params.n_components.min(a.rows).min(a.cols);
        let svd = svd::truncated_svd(&a, k, params.seed);
        let (total, kept) = Self::variances(&a, &svd.scores, svd.dim);
        let model = Self {
            params: params.clone(),
            n_users: user_items.rows,
            n_items: user_items.cols,
            dim: svd.dim,
            explained_variance: if total > 0.0 { (kept / total) as f32 } else { 0.0 },
            singular_values: svd.singular_values.iter().map(|&s| s as f32).collect(),
            items,
            vectors: svd.scores.iter().map(|&s| s as f32).collect(),
        };
        tracing::debug!(
            components = model.dim,
            items = model.items.len(),
            features = a.cols,
            explained_variance = model.explained_variance,
            "item2item svd"
        );
        Ok(model)
    }

    fn params(&self) -> &Item2ItemParams {
        &self.params
    }

    /// Scores are 1 / (1 + distance) to the user's profile.
    fn recommend(&self, users: &[u32], user_items: &CsrMatrix, n: usize) -> Result<Recommendations, ModelError> {
        if (user_items.rows, user_items.cols) != (self.n_users, self.n_items) {
            return Err(ModelError::ShapeMismatch {
                model: NAME,
                what: "the listening-history matrix",
                rows: self.n_users,
                cols: self.n_items,
                found_rows: user_items.rows,
                found_cols: user_items.cols,
            });
        }
        let metric = self.params.metric;
        let search_dim = metric.search_dim(self.dim);
        let mut searched = vec![0.0f32; self.items.len() * search_dim];
        searched
            .par_chunks_mut(search_dim)
            .zip(self.vectors.par_chunks(self.dim))
            .for_each(|(out, vector)| metric.candidate(vector, out));
        let candidates = Candidates { vectors: &searched, ids: &self.items, dim: search_dim };
        let kernel = if metric == Metric::Manhattan { Kernel::NegManhattan } else { Kernel::Dot };
        let mut row_of = vec![u32::MAX; self.n_items];
        self.items.iter().enumerate().for_each(|(row, &item)| row_of[item as usize] = row as u32);
        let n = n.min(self.params.n_neighbors);

        let mut out = Recommendations::new();
        let mut scores = Vec::with_capacity(n);
        for batch in users.chunks(USERS_PER_BATCH) {
            let (profiles, queries, has) = self.queries(batch, user_items, &row_of);
            let nearest = top_k_by(
                kernel,
                batch,
                |q| has[q].then(|| &queries[q * search_dim..(q + 1) * search_dim]),
                // Asked only for users with a profile: all inside the checked row count.
                |q| user_items.row(batch[q] as usize).0,
                candidates,
                n,
            );
            for (q, (user, items, search_scores)) in nearest.iter().enumerate() {
                let profile = &profiles[q * self.dim..(q + 1) * self.dim];
                scores.clear();
                scores.extend(search_scores.iter().map(|&s| 1.0 / (1.0 + metric.distance(s, profile))));
                out.push(user, items, &scores);
            }
        }
        Ok(out)
    }

    fn summary(&self) -> Vec<(&'static str, f64)> {
        vec![
            ("components", self.dim as f64),
            ("explained_variance", f64::from(self.explained_variance)),
            ("items", self.items.len() as f64),
        ]
    }

    fn save(&self, path: &Path) -> Result<u64, ModelError> {
        let p = &self.params;
        let mut out = ModelWriter::create(path, "I2I")?;
        out.u64(p.n_components as u64)?;
        out.u64(p.n_neighbors as u64)?;
        out.u64(Metric::ALL.iter().position(|&m| m == p.metric).expect("every metric is listed") as u64)?;
        out.u64(p.min_users_per_item as u64)?;
        out.u64(p.seed)?;
        out.u64(self.n_users as u64)?;
        out.u64(self.n_items as u64)?;
        out.u64(self.dim as u64)?;
        out.f32(self.explained_variance)?;
        out.f32s(&self.singular_values)?;
        out.u64(self.items.len() as u64)?;
        out.u32s(&self.items)?;
        out.f32s(&self.vectors)?;
        out.commit()
    }

    fn load(path: &Path) -> Result<Self, ModelError> {
        let mut input = ModelReader::open(path, "I2I")?;
        let n_components = input.count("n_components")?;
        let n_neighbors = input.count("n_neighbors")?;
        let metric_code = input.u64("metric")?;
        let metric = *Metric::ALL
            .get(usize::try_from(metric_code).unwrap_or(usize::MAX))
            .ok_or_else(|| input.corrupt(format!("unknown metric code {metric_code}")))?;
        let params = Item2ItemParams {
            n_components,
            n_neighbors,
            metric,
            min_users_per_item: input.count("min_users_per_item")?,
            seed: input.u64("seed")?,
        };
        params.check().map_err(|e| input.corrupt(format!("stored hyperparameters are invalid: {e}")))?;
        let n_users = input.count("number of users")?;
        let n_items = input.count("number of items")?;
        let dim = input.count("components")?;
        if dim == 0 || dim > params.n_components {
            return Err(input.corrupt(format!("{dim} components, n_components is {}", params.n_components)));
        }
        let explained_variance = input.f32("explained variance")?;
        let singular_values = input.f32s(dim, "singular values")?;
        let count = input.count("number of items with vectors")?;
        let items = input.u32s(count, "item ids")?;
        if !(items.windows(2).all(|w| w[0] < w[1]) && items.last().is_none_or(|&last| (last as usize) < n_items)) {
            return Err(input.corrupt(format!("item ids not strictly ascending below {n_items}")));
        }
        let values = count.checked_mul(dim).ok_or_else(|| input.corrupt("item vector sizes overflow"))?;
        let vectors = input.f32s(values, "item vectors")?;
        if !vectors.iter().all(|v| v.is_finite()) {
            return Err(input.corrupt("item vectors that are not finite numbers"));
        }
        input.finish()?;
        Ok(Self { params, n_users, n_items, dim, explained_variance, singular_values, items, vectors })
    }
}

#[cfg(test)]
mod tests;
