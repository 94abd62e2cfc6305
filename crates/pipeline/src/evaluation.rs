//! Judging recommendations against the target and test windows (docs/metrics.md), the same way for
//! every model, the ranker, the report and the `evaluate` command: every user of a window with
//! at least one listen is judged, a user without a list scores 0.
//!
//! Users are indexed like the matrices stage (old users `0..n_old`); users of a window with no
//! train events ("new") get indices after them, so a model that serves new users (popularity)
//! is judged on them too and one that cannot scores 0 for them.

use std::ops::{Index, IndexMut};
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use musicrec_artifacts::layout::matrices::USER_ITEM_FILE;
use musicrec_artifacts::layout::preprocess::{Window, track_entities_file};
use musicrec_artifacts::{Artifacts, Stage};
use musicrec_data::layout::RankedLists;
use musicrec_data::parquet_io::for_each_batch;
use musicrec_data::schema::EntityType;
use musicrec_data::{CsrMatrix, IdEncoder};
use musicrec_eval::{Evaluation, ItemGroups, Recommendations, Relevance, TrainHistory, Truth};
use serde::{Deserialize, Serialize};

use crate::error::PipelineError;
use crate::matrices::Encoders;
use crate::stage::require;

/// The windows recommendations are judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalWindow {
    Target,
    Test,
}

impl EvalWindow {
    pub const ALL: [EvalWindow; 2] = [EvalWindow::Target, EvalWindow::Test];

    pub fn window(self) -> Window {
        match self {
            EvalWindow::Target => Window::Target,
            EvalWindow::Test => Window::Test,
        }
    }
}

/// One value per judged window, indexed by `EvalWindow`; serialized as an object keyed by window
/// name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PerEvalWindow<T> {
    pub target: T,
    pub test: T,
}

impl<T> PerEvalWindow<T> {
    pub fn from_fn(mut value: impl FnMut(EvalWindow) -> T) -> Self {
        Self { target: value(EvalWindow::Target), test: value(EvalWindow::Test) }
    }

    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> PerEvalWindow<U> {
        PerEvalWindow { target: f(self.target), test: f(self.test) }
    }
}

impl<T, E> PerEvalWindow<Result<T, E>> {
    /// The first error in time order, or every value.
    pub fn transpose(self) -> Result<PerEvalWindow<T>, E> {
        Ok(PerEvalWindow { target: self.target?, test: self.test? })
    }
}

impl<T> Index<EvalWindow> for PerEvalWindow<T> {
    type Output = T;

    fn index(&self, window: EvalWindow) -> &T {
        match window {
            EvalWindow::Target => &self.target,
            EvalWindow::Test => &self.test,
        }
    }
}

impl<T> IndexMut<EvalWindow> for PerEvalWindow<T> {
    fn index_mut(&mut self, window: EvalWindow) -> &mut T {
        match window {
            EvalWindow::Target => &mut self.target,
            EvalWindow::Test => &mut self.test,
        }
    }
}

pub struct Evaluator {
    pub encoders: Encoders,
    /// The train user × item matrix of listen counts (old users × catalogue).
    pub user_item: CsrMatrix,
    new_users: IdEncoder,
    history: TrainHistory,
    artists: ItemGroups,
    genres: ItemGroups,
    relevance: PerEvalWindow<Relevance>,
}

fn read_pairs(path: &Path, columns: [&str; 2]) -> Result<Vec<(i64, i64)>, PipelineError> {
    let mut pairs = Vec::new();
    for_each_batch(path, &columns, |batch| {
        let u = batch.column(0).as_primitive::<Int64Type>().values();
        let t = batch.column(1).as_primitive::<Int64Type>().values();
        pairs.extend(u.iter().copied().zip(t.iter().copied()));
        Ok(())
    })?;
    Ok(pairs)
}

/// Old users keep their matrix index; new users follow them.
fn evaluation_index(old_users: &IdEncoder, new_users: &IdEncoder, id: i64) -> Option<u32> {
    old_users.encode(id).or_else(|| new_users.encode(id).map(|j| old_users.len() as u32 + j))
}

/// The artists or genres of every catalogue track, from the preprocess tables.
fn item_groups(pre: &Path, items: &IdEncoder, kind: EntityType) -> Result<ItemGroups, PipelineError> {
    let column = format!("{}_id", kind.as_str());
    let pairs = read_pairs(&pre.join(track_entities_file(kind)), ["track_id", &column])?;
    let groups = IdEncoder::new(pairs.iter().map(|p| p.1).collect());
    let encoded = pairs.iter().filter_map(|&(track, group)| Some((items.encode(track)?, groups.encode(group)?)));
    Ok(ItemGroups::from_pairs(encoded, items.len())?)
}

impl Evaluator {
    /// Loads encoders, the train history, the tracks' artists and genres and both windows from
    /// the artifacts.
    pub fn load(artifacts: &Artifacts, needed_by: &'static str) -> Result<Self, PipelineError> {
        require(artifacts, Stage::Preprocess, needed_by)?;
        let (encoders, _) = Encoders::load(artifacts, needed_by)?;
        let user_item = CsrMatrix::load(&artifacts.dir(Stage::Matrices).join(USER_ITEM_FILE))?;
        let history = TrainHistory::from_csr(
            user_item.indptr.iter().map(|&o| o as usize).collect(),
            user_item.indices.clone(),
            user_item.cols,
        )?;
        let pre = artifacts.dir(Stage::Preprocess);
        let artists = item_groups(&pre, &encoders.items, EntityType::Artist)?;
        let genres = item_groups(&pre, &encoders.items, EntityType::Genre)?;
        let windows = PerEvalWindow::from_fn(|w| read_pairs(&pre.join(w.window().file()), ["user_id", "track_id"]))
            .transpose()?;
        let new_users = IdEncoder::new(
            (windows.target.iter().chain(&windows.test))
                .map(|p| p.0)
                .filter(|&u| encoders.users.encode(u).is_none())
                .collect(),
        );
        let user_index = |id: i64| evaluation_index(&encoders.users, &new_users, id);
        let relevance = windows.map(|pairs| {
            Relevance::from_events(
                pairs
                    .iter()
                    .filter_map(|&(u, t)| Some((user_index(u)?, encoders.items.encode(t)?)))
                    .collect::<Vec<_>>(),
            )
        });
        Ok(Self { encoders, user_item, new_users, history, artists, genres, relevance })
    }

    /// The evaluation index of a user id: old users as in the matrices, then new ones.
    pub fn user_index(&self, id: i64) -> Option<u32> {
        evaluation_index(&self.encoders.users, &self.new_users, id)
    }

    /// External ids of every user in evaluation-index order: old users, then new ones.
    pub fn user_ids(&self) -> Vec<i64> {
        self.encoders.users.ids().iter().chain(self.new_users.ids()).copied().collect()
    }

    /// Whether the user of an evaluation index has train history.
    pub fn is_old(&self, index: u32) -> bool {
        (index as usize) < self.encoders.users.len()
    }

    /// The relevance (distinct listened tracks per evaluation user) of `window`.
    pub fn relevance(&self, window: EvalWindow) -> &Relevance {
        &self.relevance[window]
    }

    pub fn history(&self) -> &TrainHistory {
        &self.history
    }

    pub fn evaluate(
        &self,
        recs: &Recommendations,
        window: EvalWindow,
        ks: &[usize],
    ) -> Result<Evaluation, PipelineError> {
        let truth = Truth {
            relevance: &self.relevance[window],
            history: &self.history,
            artists: &self.artists,
            genres: &self.genres,
        };
        Ok(musicrec_eval::evaluate(recs, &truth, ks)?)
    }

    /// A recommendation file's lists on evaluation indices. Users the artifacts do not know are
    /// left out (they are in no window); tracks outside the catalogue are an error naming how
    /// many.
    pub fn encode_lists(&self, file: &str, lists: &RankedLists) -> Result<Recommendations, PipelineError> {
        let mut users = Vec::with_capacity(lists.users.len());
        let mut offsets = vec![0];
        let mut items = Vec::with_capacity(lists.tracks.len());
        let mut unknown_tracks = 0usize;
        for (i, &user) in lists.users.iter().enumerate() {
            let Some(index) = self.user_index(user) else { continue };
            for &track in &lists.tracks[lists.offsets[i]..lists.offsets[i + 1]] {
                match self.encoders.items.encode(track) {
                    Some(item) => items.push(item),
                    None => unknown_tracks += 1,
                }
            }
            users.push(index);
            offsets.push(items.len());
        }
        if unknown_tracks > 0 {
            return Err(musicrec_data::DataError::BadValues {
                file: file.to_string(),
                column: "track_id".into(),
                rows: unknown_tracks,
                problem: "name tracks that are not in the catalogue of these artifacts".into(),
            }
            .into());
        }
        Ok(Recommendations::new(users, offsets, items)?)
    }

    /// Metrics of a user's recommendation file at every K of `ks`.
    pub fn evaluate_lists(
        &self,
        file: &str,
        lists: &RankedLists,
        window: EvalWindow,
        ks: &[usize],
    ) -> Result<Evaluation, PipelineError> {
        self.evaluate(&self.encode_lists(file, lists)?, window, ks)
    }
}
