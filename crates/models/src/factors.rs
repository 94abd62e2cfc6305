//! Latent-factor models: users and items as vectors, a user's score for an item is their dot
//! product. ALS learns one and BPR another (its item bias rides as one more factor column,
//! against a constant 1 in the user vectors);
//! both recommend, find similar items and persist through this one type.
//!
//! Payload in a model file (see `format`), after the model's hyperparameters:
//!
//! | bytes         | content                                                         |
//! |---------------|-----------------------------------------------------------------|
//! | 8 × 3         | training matrix rows (users), columns (items), factors per vector (`u64`) |
//! | 8, 4 × U      | U, then the users that have factors (`u32`, strictly ascending)  |
//! | 8, 4 × I      | I, then the items that have factors (`u32`, strictly ascending)  |
//! | 4 × U × dim   | user factors (`f32`), row-major, in the order of the users      |
//! | 4 × I × dim   | item factors (`f32`), row-major, in the order of the items      |

use crate::error::ModelError;
use crate::format::{ModelReader, ModelWriter};
use crate::recommendations::Recommendations;
use crate::topk::{Candidates, top_k};
use musicrec_data::CsrMatrix;

#[derive(Debug, Clone, PartialEq)]
pub struct FactorModel {
    /// Shape of the training matrix: the index spaces of users and items.
    n_users: usize,
    n_items: usize,
    dim: usize,
    /// Users and items that were trained; all others have no vector.
    users: Vec<u32>,
    items: Vec<u32>,
    user_factors: Vec<f32>,
    item_factors: Vec<f32>,
}

impl FactorModel {
    /// Checks that ids are strictly ascending inside the shape, that the factor matrices match
    /// them and that every factor is a finite number; says what is wrong otherwise.
    pub(crate) fn try_new(
        n_users: usize,
        n_items: usize,
        dim: usize,
        users: Vec<u32>,
        items: Vec<u32>,
        user_factors: Vec<f32>,
        item_factors: Vec<f32>,
    ) -> Result<Self, String> {
        let model = Self { n_users, n_items, dim, users, items, user_factors, item_factors };
        model.invariant_violation()?;
        Ok(model)
    }

    fn invariant_violation(&self) -> Result<(), String> {
        let ascending_below = |ids: &[u32], bound: usize| {
            ids.windows(2).all(|w| w[0] < w[1]) && ids.last().is_none_or(|&last| (last as usize) < bound)
        };
        if self.dim == 0 {
            return Err("no factors per vector".into());
        }
        if !ascending_below(&self.users, self.n_users) {
            return Err(format!("user ids not strictly ascending below {}", self.n_users));
        }
        if !ascending_below(&self.items, self.n_items) {
            return Err(format!("item ids not strictly ascending below {}", self.n_items));
        }
        if self.user_factors.len() != self.users.len() * self.dim
            || self.item_factors.len() != self.items.len() * self.dim
        {
            return Err("factor matrices do not match the ids".into());
        }
        if !self.user_factors.iter().chain(&self.item_factors).all(|v| v.is_finite()) {
            return Err("factors that are not finite numbers".into());
        }
        Ok(())
    }

    /// Factors per vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Users of the training matrix (trained or not).
    pub fn n_users(&self) -> usize {
        self.n_users
    }

    /// Items of the training matrix (trained or not).
    pub fn n_items(&self) -> usize {
        self.n_items
    }

    /// Users that have a vector, ascending.
    pub fn users(&self) -> &[u32] {
        &self.users
    }

    /// Items that have a vector (those that passed the item filter), ascending.
    pub fn items(&self) -> &[u32] {
        &self.items
    }

    pub fn user_vector(&self, user: u32) -> Option<&[f32]> {
        let row = self.users.binary_search(&user).ok()?;
        Some(&self.user_factors[row * self.dim..(row + 1) * self.dim])
    }

    pub fn item_vector(&self, item: u32) -> Option<&[f32]> {
        let row = self.items.binary_search(&item).ok()?;
        Some(&self.item_factors[row * self.dim..(row + 1) * self.dim])
    }

    /// The `n` best items per user by dot product, never one of the user's items in
    /// `user_items` nor an item without a vector. Users without a vector get an empty list.
    /// `user_items` must have the training matrix's shape: another shape means another index
    /// space, whose rows would exclude the wrong items.
    pub fn recommend(
        &self,
        model: &'static str,
        users: &[u32],
        user_items: &CsrMatrix,
        n: usize,
    ) -> Result<Recommendations, ModelError> {
        if (user_items.rows, user_items.cols) != (self.n_users, self.n_items) {
            return Err(ModelError::ShapeMismatch {
                model,
                what: "the listening-history matrix",
                rows: self.n_users,
                cols: self.n_items,
                found_rows: user_items.rows,
                found_cols: user_items.cols,
            });
        }
        let candidates = Candidates { vectors: &self.item_factors, ids: &self.items, dim: self.dim };
        Ok(top_k(
            users,
            |q| self.user_vector(users[q]),
            // Asked only for users with a vector: all below n_users, the checked row count.
            |q| user_items.row(users[q] as usize).0,
            candidates,
            n,
        ))
    }

    /// The `n` most similar items per item by cosine of item vectors, the item itself
    /// excluded. Items without a vector get an empty list.
    pub fn similar_items(&self, items: &[u32], n: usize) -> Recommendations {
        self.similar_items_on(items, n, self.dim)
    }

    /// `similar_items` by the cosine of the first `columns` values of the item vectors only:
    /// for a model whose last columns are not taste (BPR's item bias).
    ///
    /// # Panics
    /// If `columns` is 0 or more than `dim`.
    pub(crate) fn similar_items_on(&self, items: &[u32], n: usize, columns: usize) -> Recommendations {
        assert!((1..=self.dim).contains(&columns), "similarity columns out of range");
        let normalised = self.normalised_item_factors(columns);
        // Only items with a vector are queried, packed together: with a filtered catalogue
        // (the original keeps tracks with >= 300 listeners, 1 in 10) the vectored items lie
        // sparse among all, and blocks of a few queries would each stream the whole candidate
        // matrix through the GEMM for a handful of rows.
        let (queried, rows): (Vec<u32>, Vec<usize>) =
            items.iter().filter_map(|&item| Some((item, self.items.binary_search(&item).ok()?))).unzip();
        let candidates = Candidates { vectors: &normalised, ids: &self.items, dim: columns };
        let found = top_k(
            &queried,
            |q| Some(&normalised[rows[q] * columns..(rows[q] + 1) * columns]),
            |q| std::slice::from_ref(&queried[q]),
            candidates,
            n,
        );
        let mut found = found.iter().peekable();
        let mut out = Recommendations::new();
        for &item in items {
            match found.next_if(|&(query, _, _)| query == item) {
                Some((_, similar, scores)) => out.push(item, similar, scores),
                None => out.push(item, &[], &[]),
            }
        }
        out
    }

    /// The first `columns` values of each item vector, scaled to unit length; a zero vector
    /// stays zero (cosine 0 with anything).
    fn normalised_item_factors(&self, columns: usize) -> Vec<f32> {
        let mut out: Vec<f32> = if columns == self.dim {
            self.item_factors.clone()
        } else {
            self.item_factors.chunks_exact(self.dim).flat_map(|row| &row[..columns]).copied().collect()
        };
        for row in out.chunks_exact_mut(columns) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            if norm > 0.0 {
                row.iter_mut().for_each(|v| *v /= norm);
            }
        }
        out
    }

    pub(crate) fn write(&self, out: &mut ModelWriter) -> Result<(), ModelError> {
        out.u64(self.n_users as u64)?;
        out.u64(self.n_items as u64)?;
        out.u64(self.dim as u64)?;
        out.u64(self.users.len() as u64)?;
        out.u32s(&self.users)?;
        out.u64(self.items.len() as u64)?;
        out.u32s(&self.items)?;
        out.f32s(&self.user_factors)?;
        out.f32s(&self.item_factors)
    }

    pub(crate) fn read(input: &mut ModelReader) -> Result<Self, ModelError> {
        let n_users = input.count("number of users")?;
        let n_items = input.count("number of items")?;
        let dim = input.count("factors per vector")?;
        let user_count = input.count("number of trained users")?;
        let users = input.u32s(user_count, "trained user ids")?;
        let item_count = input.count("number of trained items")?;
        let items = input.u32s(item_count, "trained item ids")?;
        let too_big = || input.corrupt("factor matrix sizes overflow");
        let user_values = user_count.checked_mul(dim).ok_or_else(too_big)?;
        let item_values = item_count.checked_mul(dim).ok_or_else(too_big)?;
        let user_factors = input.f32s(user_values, "user factors")?;
        let item_factors = input.f32s(item_values, "item factors")?;
        Self::try_new(n_users, n_items, dim, users, items, user_factors, item_factors)
            .map_err(|problem| input.corrupt(problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> FactorModel {
        // Items 1, 3, 4 have vectors; item 0 and 2 were filtered out.
        FactorModel::try_new(
            3,
            5,
            2,
            vec![0, 2],
            vec![1, 3, 4],
            vec![1.0, 0.0, 0.0, 1.0],
            vec![3.0, 0.0, 2.0, 1.0, 0.0, 5.0],
        )
        .unwrap()
    }

    #[test]
    fn recommend_skips_history_unknown_users_and_unvectored_items() {
        let m = model();
        let history = CsrMatrix::from_coo(3, 5, &[0, 2], &[1, 4], &[1.0, 2.0]);
        let recs = m.recommend("test", &[0, 1, 2, 7], &history, 10).unwrap();
        assert_eq!(recs.get(0), (0, &[3u32, 4][..], &[2.0f32, 0.0][..]));
        assert_eq!(recs.get(1), (1, &[][..], &[][..]));
        assert_eq!(recs.get(2), (2, &[3u32, 1][..], &[1.0f32, 0.0][..]));
        assert_eq!(recs.get(3), (7, &[][..], &[][..]));
        let wrong = CsrMatrix::from_coo(3, 4, &[], &[], &[]);
        assert!(matches!(m.recommend("test", &[0], &wrong, 10), Err(ModelError::ShapeMismatch { .. })));
    }

    #[test]
    fn similar_items_are_by_cosine_without_the_item_itself() {
        let m = model();
        let similar = m.similar_items(&[1, 0], 5);
        let (item, items, scores) = similar.get(0);
        assert_eq!((item, items), (1, &[3u32, 4][..]));
        assert!((scores[0] - 2.0 / 5f32.sqrt()).abs() < 1e-6 && scores[1] == 0.0);
        assert_eq!(similar.get(1).1, &[] as &[u32]);
    }
}
