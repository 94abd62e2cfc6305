//! Top items: the most popular tracks by distinct listeners in train (docs/pipeline.md#candidate-models), recommended
//! to any user, old or new, minus what the user already played. The fallback for new users
//! and a candidate source for the ranker.
//!
//! Model file: the `MRMODEL` container (see `format`) of kind `TOP`, whose payload is `u64`
//! top_n, `u64` users, `u64` items (the training matrix's shape), `u64` list length, the
//! ranked item ids (`u32`) and their scores (`f32`, share of train users).

use std::path::Path;

use musicrec_data::CsrMatrix;

use crate::error::ModelError;
use crate::format::{ModelReader, ModelWriter};
use crate::params::{Hyperparameters, InvalidParameter, ParamCheck};
use crate::recommendations::Recommendations;
use crate::{Recommender, TrainingData};

const NAME: &str = "top_items";

#[derive(Debug, Clone, PartialEq)]
pub struct TopItemsParams {
    /// Most popular tracks kept (original: 100).
    pub top_n: usize,
}

impl Default for TopItemsParams {
    fn default() -> Self {
        Self { top_n: 100 }
    }
}

impl Hyperparameters for TopItemsParams {
    fn check(&self) -> Result<(), InvalidParameter> {
        ParamCheck { section: NAME }.count_in("top_n", self.top_n, 1..=100_000)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TopItems {
    params: TopItemsParams,
    shape: (usize, usize),
    /// Most popular first; ties broken by the lower item index so the list is deterministic.
    items: Vec<u32>,
    scores: Vec<f32>,
}

impl TopItems {
    /// The ranked popular items with their share of train users.
    pub fn ranked(&self) -> (&[u32], &[f32]) {
        (&self.items, &self.scores)
    }
}

impl Recommender for TopItems {
    const NAME: &'static str = NAME;
    type Params = TopItemsParams;

    fn fit<'a>(params: &TopItemsParams, data: impl Into<TrainingData<'a>>) -> Result<Self, ModelError> {
        params.check()?;
        let user_items = data.into().user_items;
        if user_items.rows == 0 || user_items.nnz() == 0 {
            return Err(ModelError::NothingToTrain {
                model: NAME,
                reason: "the training matrix has no listens".into(),
            });
        }
        let mut listeners = vec![0u32; user_items.cols];
        user_items.indices.iter().for_each(|&i| listeners[i as usize] += 1);
        let mut order: Vec<u32> = (0..user_items.cols as u32).filter(|&i| listeners[i as usize] > 0).collect();
        order.sort_unstable_by_key(|&i| (std::cmp::Reverse(listeners[i as usize]), i));
        order.truncate(params.top_n);
        let users = user_items.rows as f32;
        let scores = order.iter().map(|&i| listeners[i as usize] as f32 / users).collect();
        Ok(Self { params: params.clone(), shape: (user_items.rows, user_items.cols), items: order, scores })
    }

    fn params(&self) -> &TopItemsParams {
        &self.params
    }

    /// Users beyond the history matrix's rows (new users) have no history: they get the top
    /// list itself.
    fn recommend(&self, users: &[u32], user_items: &CsrMatrix, n: usize) -> Result<Recommendations, ModelError> {
        if user_items.cols != self.shape.1 {
            return Err(ModelError::ShapeMismatch {
                model: NAME,
                what: "the listening-history matrix",
                rows: self.shape.0,
                cols: self.shape.1,
                found_rows: user_items.rows,
                found_cols: user_items.cols,
            });
        }
        let mut recs = Recommendations::new();
        let (mut items, mut scores) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for &user in users {
            let heard: &[u32] = if (user as usize) < user_items.rows { user_items.row(user as usize).0 } else { &[] };
            items.clear();
            scores.clear();
            for (&item, &score) in self.items.iter().zip(&self.scores) {
                if items.len() == n {
                    break;
                }
                if heard.binary_search(&item).is_err() {
                    items.push(item);
                    scores.push(score);
                }
            }
            recs.push(user, &items, &scores);
        }
        Ok(recs)
    }

    fn save(&self, path: &Path) -> Result<u64, ModelError> {
        let mut out = ModelWriter::create(path, "TOP")?;
        out.u64(self.params.top_n as u64)?;
        out.u64(self.shape.0 as u64)?;
        out.u64(self.shape.1 as u64)?;
        out.u64(self.items.len() as u64)?;
        out.u32s(&self.items)?;
        out.f32s(&self.scores)?;
        out.commit()
    }

    fn load(path: &Path) -> Result<Self, ModelError> {
        let mut input = ModelReader::open(path, "TOP")?;
        let params = TopItemsParams { top_n: input.count("top_n")? };
        let shape = (input.count("users")?, input.count("items")?);
        let len = input.count("list length")?;
        let items = input.u32s(len, "items")?;
        let scores = input.f32s(len, "scores")?;
        input.finish()?;
        if items.iter().any(|&i| i as usize >= shape.1) {
            return Err(ModelError::corrupt(path, "an item index is outside the catalogue"));
        }
        Ok(Self { params, shape, items, scores })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Items by listeners: 2 has 3 users, 0 has 2, 1 and 3 have 1, 4 none.
    fn history() -> CsrMatrix {
        CsrMatrix::from_coo(3, 5, &[0, 0, 1, 1, 2, 2, 2], &[2, 0, 2, 1, 2, 0, 3], &[1.0, 4.0, 1.0, 1.0, 2.0, 1.0, 1.0])
    }

    #[test]
    fn ranks_by_distinct_listeners_and_skips_what_the_user_heard() {
        let m = TopItems::fit(&TopItemsParams { top_n: 4 }, &history()).unwrap();
        assert_eq!(m.ranked().0, &[2, 0, 1, 3], "ties by lower index; a heavy listener counts once");
        assert_eq!(m.ranked().1, &[1.0, 2.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]);
        let recs = m.recommend(&[0, 1, 2, 9], &history(), 2).unwrap();
        assert_eq!(recs.get(0).1, &[1, 3]);
        assert_eq!(recs.get(1).1, &[0, 3]);
        assert_eq!(recs.get(2).1, &[1]);
        assert_eq!(recs.get(3).1, &[2, 0], "a new user gets the top list");
        assert!(m.similar().is_none(), "popularity says nothing about which tracks resemble each other");
    }

    #[test]
    fn save_load_round_trip_and_bad_params() {
        let m = TopItems::fit(&TopItemsParams { top_n: 3 }, &history()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("top.bin");
        m.save(&path).unwrap();
        assert_eq!(TopItems::load(&path).unwrap(), m);
        let err = TopItems::fit(&TopItemsParams { top_n: 0 }, &history()).unwrap_err().to_string();
        assert!(err.contains("top_items.top_n: must be between 1 and 100000, got 0"), "{err}");
        let empty = CsrMatrix::from_coo(2, 3, &[], &[], &[]);
        assert!(matches!(TopItems::fit(&TopItemsParams::default(), &empty), Err(ModelError::NothingToTrain { .. })));
    }
}
