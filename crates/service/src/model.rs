//! One pipeline run's artifacts, loaded for serving (their names: `musicrec_artifacts::layout`):
//! the matrices encoders, the ranking stage's offline recommendations, each similarity
//! source's similar tracks, the popular list (the top_items model's ranked item indices,
//! which are matrix columns, so they need no id mapping) and, for the fold-in source, the
//! ALS item factors with the train listen counts of old users; and the catalogue's names of
//! the tracks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use musicrec_artifacts::layout::candidates::{MODEL_FILE, SIMILAR_FILE};
use musicrec_artifacts::layout::matrices::{ITEMS_FILE, USER_ITEM_FILE, USERS_FILE};
use musicrec_artifacts::layout::preprocess::Window;
use musicrec_artifacts::layout::ranking::RECOMMENDATIONS_FILE;
use musicrec_artifacts::{Artifacts, Manifest, Stage};
use musicrec_config::ServiceConfig;
use musicrec_data::parquet_io::{for_each_batch, read_i64_column};
use musicrec_data::{CsrMatrix, IdEncoder};
use musicrec_models::{Als, Recommender, TopItems};

use crate::blend::{List, Pick, Source, blend, per_source, round_robin, tagged};
use crate::catalogue::{About, Catalogue, Fields, Track};
use crate::error::ServiceError;
use crate::fold_in::FoldIn;
use crate::fold_in_cache::FoldInCache;
use crate::lists::{RankedLists, read_ranked};

pub struct ServingModel {
    /// The ranking stage's run id: the version of the offline model being served.
    pub version: String,
    /// When the ranking stage finished, Unix seconds (its manifest's `finished_at`).
    pub trained_at_unix: Option<f64>,
    /// Run id of every stage read.
    pub stages: BTreeMap<String, String>,
    pub users: IdEncoder,
    pub items: IdEncoder,
    pub offline: RankedLists,
    pub similar: Vec<(Source, RankedLists)>,
    pub popular: Vec<u32>,
    /// The popular tracks' shares of train users, the popular source's scores.
    pub popular_shares: Vec<f32>,
    pub catalogue: Catalogue,
    pub fold_in: Option<FoldIn>,
    /// Train listen counts (users × items) for old users' fold-in history.
    pub history: Option<CsrMatrix>,
    pub fold_in_cache: FoldInCache,
}

/// The artifacts and the stages read so far.
struct Reader<'a> {
    artifacts: &'a Artifacts,
    stages: BTreeMap<String, String>,
}

impl Reader<'_> {
    fn fail(&self, reason: impl Into<String>) -> ServiceError {
        ServiceError::Artifacts { dir: self.artifacts.location(), reason: reason.into() }
    }

    fn manifest(&mut self, stage: impl AsRef<str>) -> Result<Manifest, ServiceError> {
        let stage = stage.as_ref();
        let manifest = self
            .artifacts
            .manifest(stage)
            .map_err(|e| self.fail(format!("stage `{stage}` has no complete outputs ({})", e.reason())))?;
        self.stages.insert(stage.to_string(), manifest.run_id.clone());
        Ok(manifest)
    }

    /// The path of `file` if the stage's manifest lists it: only listed outputs are trusted.
    fn listed(&self, manifest: &Manifest, file: &str) -> Result<PathBuf, ServiceError> {
        if manifest.outputs.iter().any(|o| o.file == file) {
            Ok(self.artifacts.dir(&manifest.stage).join(file))
        } else {
            Err(self.fail(format!("stage `{}` (run {}) lists no {file}", manifest.stage, manifest.run_id)))
        }
    }

    fn encoder(&self, path: &Path, column: &str) -> Result<IdEncoder, ServiceError> {
        let ids = read_i64_column(path, column)?;
        if !ids.windows(2).all(|w| w[0] < w[1]) {
            return Err(self.fail(format!("{}: `{column}` is not strictly ascending", path.display())));
        }
        if ids.len() >= u32::MAX as usize {
            return Err(self.fail(format!("{}: too many ids", path.display())));
        }
        Ok(IdEncoder::from_sorted_unique(ids))
    }
}

impl ServingModel {
    /// Loads and checks the artifact set (on S3: mirrored first, so a newer run is picked up);
    /// any missing or inconsistent part is an
    /// error naming it.
    pub fn load(artifacts: &Artifacts, config: &ServiceConfig) -> Result<Self, ServiceError> {
        let mut r = Reader { artifacts, stages: BTreeMap::new() };
        let matrices = r.manifest(Stage::Matrices)?;
        let users = r.encoder(&r.listed(&matrices, USERS_FILE)?, "user_id")?;
        let items = r.encoder(&r.listed(&matrices, ITEMS_FILE)?, "track_id")?;
        let preprocess = r.manifest(Stage::Preprocess)?;
        let catalogue = Catalogue::load(|file| r.listed(&preprocess, file), &items)?;

        let ranking = r.manifest(Stage::Ranking)?;
        let offline = read_ranked(&r.listed(&ranking, RECOMMENDATIONS_FILE)?, "user_id", "track_id", &users, &items)?;

        let mut similar = Vec::new();
        for stage in &config.similar_sources {
            let source =
                Source::similarity(stage).ok_or_else(|| r.fail(format!("`{stage}` is no similarity source")))?;
            let manifest = r.manifest(stage)?;
            let path = r.listed(&manifest, SIMILAR_FILE)?;
            similar.push((source, read_ranked(&path, "track_id", "similar_track_id", &items, &items)?));
        }

        let top = r.manifest(Stage::TopItems)?;
        let top_model = TopItems::load(&r.listed(&top, MODEL_FILE)?)?;
        let (popular, popular_shares) = (top_model.ranked().0.to_vec(), top_model.ranked().1.to_vec());
        if popular.iter().any(|&i| i as usize >= items.len()) {
            return Err(r.fail(format!(
                "{}/{MODEL_FILE} ranks items outside the matrices item encoder: another run",
                Stage::TopItems.as_str()
            )));
        }

        let (fold_in, history) = if config.fold_in {
            let als = r.manifest(Stage::Als)?;
            let model = Als::load(&r.listed(&als, MODEL_FILE)?)?;
            let history = CsrMatrix::load(&r.listed(&matrices, USER_ITEM_FILE)?)?;
            let shape = (model.factors().n_users(), model.factors().n_items());
            if shape != (users.len(), items.len()) || (history.rows, history.cols) != shape {
                return Err(r.fail(format!(
                    "{als}/{MODEL_FILE} is for {} users x {} items, {USER_ITEM_FILE} is {} x {}, the encoders hold \
                     {} x {}: stages of different runs",
                    shape.0,
                    shape.1,
                    history.rows,
                    history.cols,
                    users.len(),
                    items.len(),
                    als = Stage::Als.as_str()
                )));
            }
            let fold_in = FoldIn::new(&model).ok_or_else(|| {
                r.fail(format!(
                    "{}/{MODEL_FILE}: YᵀY + λI of its item factors is not positive definite, so no user can be \
                     folded in (service.fold_in: false serves without it)",
                    Stage::Als.as_str()
                ))
            })?;
            (Some(fold_in), Some(history))
        } else {
            (None, None)
        };
        let trained_at_unix =
            chrono::DateTime::parse_from_rfc3339(&ranking.finished_at).ok().map(|t| t.timestamp_millis() as f64 / 1e3);
        Ok(Self {
            version: ranking.run_id,
            trained_at_unix,
            stages: r.stages,
            users,
            items,
            offline,
            similar,
            popular,
            popular_shares,
            catalogue,
            fold_in,
            history,
            fold_in_cache: FoldInCache::new(if config.fold_in { config.fold_in_cache_users } else { 0 }),
        })
    }

    /// The blended recommendations (see `blend`) for `user_id`, whose recent listens are
    /// `recent` (dense items, newest first).
    pub fn recommend(&self, user_id: i64, recent: &[u32], k: usize) -> Vec<Pick> {
        let mut online = Vec::with_capacity(self.similar.len() + 1);
        if !recent.is_empty() {
            for (source, lists) in &self.similar {
                let per_listen: Vec<List<'_>> = recent.iter().map(|&item| lists.get(item)).collect();
                online.push(per_source(&per_listen, *source, recent, k));
            }
            if let Some(fold_in) = &self.fold_in {
                let items = self
                    .fold_in_cache
                    .get_or_compute(user_id, recent, k, |k| fold_in.recommend(&self.listens(user_id, recent), k));
                online.push(tagged(List::unscored(&items), Source::FoldIn).collect());
            }
        }
        let offline = self.offline_of(user_id);
        let (base, base_source) =
            if offline.is_empty() { (self.popular_list(), Source::Popular) } else { (offline, Source::Offline) };
        blend(&online, base, base_source, recent, k)
    }

    /// The similar tracks of `item`, the sources round-robin.
    pub fn similar_to(&self, item: u32, k: usize) -> Vec<Pick> {
        let lists = self.similar.iter().map(|(source, lists)| tagged(lists.get(item), *source)).collect();
        round_robin(lists, &[item], k)
    }

    /// The offline list of an external user id; empty for a user without one (a new user).
    fn offline_of(&self, user_id: i64) -> List<'_> {
        self.users.encode(user_id).map_or(List::default(), |u| self.offline.get(u))
    }

    /// The popular tracks, most listened first, scored by the share of train users who played them.
    pub fn popular_list(&self) -> List<'_> {
        List { items: &self.popular, scores: &self.popular_shares }
    }

    /// A dense item as an answer's track.
    pub fn track(&self, item: u32, source: Option<Source>, score: Option<f32>, fields: Fields) -> Track<'_> {
        let about = match fields {
            Fields::Ids => None,
            Fields::All => Some(About { score, details: self.catalogue.details(item) }),
        };
        Track { track_id: self.items.decode(item), source, about }
    }

    /// Picks as an answer's tracks.
    pub fn tracks(&self, picks: &[Pick], fields: Fields) -> Vec<Track<'_>> {
        picks.iter().map(|p| self.track(p.item, Some(p.source), p.score, fields)).collect()
    }

    /// An old user's train listen counts plus one per recent listen: (item, count), items
    /// ascending.
    fn listens(&self, user_id: i64, recent: &[u32]) -> Vec<(u32, f32)> {
        let (items, counts) = match (&self.history, self.users.encode(user_id)) {
            (Some(h), Some(u)) => h.row(u as usize),
            _ => (&[][..], &[][..]),
        };
        let mut listens: Vec<(u32, f32)> = items.iter().copied().zip(counts.iter().copied()).collect();
        listens.extend(recent.iter().map(|&i| (i, 1.0)));
        listens.sort_unstable_by_key(|&(i, _)| i);
        listens.dedup_by(|later, first| {
            let same = later.0 == first.0;
            if same {
                first.1 += later.1;
            }
            same
        });
        listens
    }
}

/// The `n` most recent train listens of `user_id` in the set's preprocess stage, newest first
/// (by day, then by the order of the day's listens); empty for a user without any.
pub fn recent_train_listens(artifacts: &Artifacts, user_id: i64, n: usize) -> Result<Vec<i64>, ServiceError> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    let mut r = Reader { artifacts, stages: BTreeMap::new() };
    let manifest = r.manifest(Stage::Preprocess)?;
    let path = r.listed(&manifest, Window::Train.file())?;
    let columns = ["user_id", "track_id", "started_at", "track_seq"];
    let mut listens = Vec::new();
    for_each_batch(&path, &columns, |batch| {
        let mut cast = Vec::with_capacity(columns.len());
        for (c, name) in columns.iter().enumerate() {
            let column = arrow_cast::cast(batch.column(c), &arrow_schema::DataType::Int64).map_err(|e| {
                musicrec_data::DataError::corrupt(
                    &path,
                    format!("column `{name}` is not an integer or date column: {e}"),
                )
            })?;
            cast.push(column);
        }
        let [user, track, day, seq] = [0, 1, 2, 3].map(|c| cast[c].as_primitive::<Int64Type>());
        for row in 0..batch.num_rows() {
            if user.is_valid(row) && user.value(row) == user_id && track.is_valid(row) {
                listens.push((day.value(row), seq.value(row), track.value(row)));
            }
        }
        Ok(())
    })?;
    listens.sort_unstable_by(|a, b| b.cmp(a));
    Ok(listens.into_iter().take(n).map(|(_, _, track)| track).collect())
}
