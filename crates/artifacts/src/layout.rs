//! The names of everything a run publishes: each stage's directory (`artifacts/<stage>/`) and
//! its output files. This is the contract between the offline pipeline, which writes them, and
//! the service and tools that read them; no other code spells these names.

use crate::error::ArtifactsError;

/// The last file a stage writes, listing the others (see `Manifest`).
pub const MANIFEST_FILE: &str = "manifest.json";

/// Where run records are kept (`runs/<run id>-<stage>.json`), beside the stages.
pub const RUNS_PREFIX: &str = "runs/";

/// Window metrics of every model stage (`Stage::is_model`), and the report's gathered metrics.
pub const METRICS_FILE: &str = "metrics.json";

/// A stage of the offline pipeline, in execution order; its name is its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Preprocess,
    Eda,
    Matrices,
    Features,
    Als,
    Bpr,
    Item2Item,
    TopItems,
    Ranking,
    Report,
}

impl Stage {
    pub const ALL: [Stage; 10] = [
        Stage::Preprocess,
        Stage::Eda,
        Stage::Matrices,
        Stage::Features,
        Stage::Als,
        Stage::Bpr,
        Stage::Item2Item,
        Stage::TopItems,
        Stage::Ranking,
        Stage::Report,
    ];

    /// The candidate models whose candidates the ranker merges (popularity, `TopItems`, joins
    /// them separately: it proposes the same tracks to everyone).
    pub const CANDIDATE_MODELS: [Stage; 3] = [Stage::Als, Stage::Bpr, Stage::Item2Item];

    /// The stages that fit a model and score every user with it, so their scoring can be
    /// split over processes (`shards`).
    pub const SHARDABLE: [Stage; 4] = [Stage::Als, Stage::Bpr, Stage::Item2Item, Stage::TopItems];

    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Preprocess => "preprocess",
            Stage::Eda => "eda",
            Stage::Matrices => "matrices",
            Stage::Features => "features",
            Stage::Als => "als",
            Stage::Bpr => "bpr",
            Stage::Item2Item => "item2item",
            Stage::TopItems => "top_items",
            Stage::Ranking => "ranking",
            Stage::Report => "report",
        }
    }

    /// Whether the stage recommends and judges itself in `metrics.json`: a row of the report.
    pub fn is_model(self) -> bool {
        match self {
            Stage::Als | Stage::Bpr | Stage::Item2Item | Stage::TopItems | Stage::Ranking => true,
            Stage::Preprocess | Stage::Eda | Stage::Matrices | Stage::Features | Stage::Report => false,
        }
    }

    /// The stages whose outputs this stage reads: the pipeline's dependency graph, stated once.
    /// Each stage records the run id of every one of them in its manifest's `inputs`, which
    /// is how `lineage` finds outputs built on another run's outputs than the ones now there.
    pub const fn inputs(self) -> &'static [Stage] {
        match self {
            Stage::Preprocess => &[],
            Stage::Eda | Stage::Matrices => &[Stage::Preprocess],
            // Model stages judge themselves on the preprocess windows.
            Stage::Features | Stage::Als | Stage::Bpr | Stage::Item2Item | Stage::TopItems => {
                &[Stage::Preprocess, Stage::Matrices]
            }
            Stage::Ranking => &[
                Stage::Preprocess,
                Stage::Matrices,
                Stage::Features,
                Stage::Als,
                Stage::Bpr,
                Stage::Item2Item,
                Stage::TopItems,
            ],
            Stage::Report => &[Stage::Als, Stage::Bpr, Stage::Item2Item, Stage::TopItems, Stage::Ranking],
        }
    }

    /// Every stage whose outputs this stage's outputs depend on, directly or through others,
    /// in pipeline order.
    pub fn all_inputs(self) -> Vec<Stage> {
        let mut all: Vec<Stage> = Vec::new();
        let mut todo = self.inputs().to_vec();
        while let Some(stage) = todo.pop() {
            if !all.contains(&stage) {
                all.push(stage);
                todo.extend_from_slice(stage.inputs());
            }
        }
        all.sort();
        all
    }

    pub fn parse(name: &str) -> Result<Self, ArtifactsError> {
        Self::ALL.into_iter().find(|s| s.as_str() == name.trim()).ok_or_else(|| ArtifactsError::UnknownStage {
            name: name.trim().to_string(),
            valid: Self::ALL.map(Stage::as_str).join(", "),
        })
    }

    /// Parses a comma-separated list into stages in execution order, without repeats.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, ArtifactsError> {
        let mut stages =
            list.split(',').filter(|s| !s.trim().is_empty()).map(Self::parse).collect::<Result<Vec<_>, _>>()?;
        if stages.is_empty() {
            return Err(ArtifactsError::UnknownStage {
                name: list.to_string(),
                valid: Self::ALL.map(Stage::as_str).join(", "),
            });
        }
        stages.sort();
        stages.dedup();
        Ok(stages)
    }
}

/// A stage is addressed in the artifact store by its name.
impl AsRef<str> for Stage {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

pub mod preprocess {
    use musicrec_data::schema::EntityType;

    /// The three evaluation windows, in time order.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Window {
        Train,
        Target,
        Test,
    }

    impl Window {
        pub const ALL: [Window; 3] = [Window::Train, Window::Target, Window::Test];

        pub fn as_str(self) -> &'static str {
            match self {
                Window::Train => "train",
                Window::Target => "target",
                Window::Test => "test",
            }
        }

        /// The events file of this window.
        pub fn file(self) -> &'static str {
            match self {
                Window::Train => "train.parquet",
                Window::Target => "target.parquet",
                Window::Test => "test.parquet",
            }
        }
    }

    /// Every user of any window and the windows they appear in (`old`: in train).
    pub const USERS_FILE: &str = "users.parquet";
    /// Every catalogue track id.
    pub const TRACKS_FILE: &str = "tracks.parquet";

    /// `track_<kind>s.parquet`: one row per (track, entity) pair.
    pub fn track_entities_file(kind: EntityType) -> String {
        format!("track_{}s.parquet", kind.as_str())
    }

    /// `names_<kind>.parquet`: id and name of every entity of one type.
    pub fn names_file(kind: EntityType) -> String {
        format!("names_{}.parquet", kind.as_str())
    }
}

pub mod eda {
    pub const STATS_FILE: &str = "stats.json";
    pub const REPORT_FILE: &str = "report.md";
    pub const EVENTS_PER_USER_PLOT: &str = "events_per_user.png";
    pub const EVENTS_PER_TRACK_PLOT: &str = "events_per_track.png";
    pub const POPULARITY_PLOT: &str = "popularity.png";
    pub const GENRES_PLOT: &str = "genres.png";
    pub const ACTIVITY_PLOT: &str = "activity.png";
    pub const ACTIVITY_SPLIT_PLOT: &str = "activity_split.png";
    pub const USERS_PLOT: &str = "users.png";
}

pub mod matrices {
    /// The user encoder: old users' ids, ascending (row `i` of the matrices is user `i`).
    pub const USERS_FILE: &str = "users.parquet";
    /// The item encoder: catalogue track ids, ascending (column `j` is track `j`).
    pub const ITEMS_FILE: &str = "items.parquet";
    /// The entity type and id of each item-feature column.
    pub const FEATURES_FILE: &str = "features.parquet";
    /// Train listen counts, users × items.
    pub const USER_ITEM_FILE: &str = "user_item.csr";
    /// Items × features (albums, artists, genres).
    pub const ITEM_FEATURE_FILE: &str = "item_feature.csr";
}

pub mod features {
    pub const USER_FEATURES_FILE: &str = "user_features.parquet";
    pub const ITEM_FEATURES_FILE: &str = "item_features.parquet";
}

/// The files of each candidate model stage (als, bpr, item2item, top_items).
pub mod candidates {
    pub const CANDIDATES_FILE: &str = "candidates.parquet";
    /// Similar tracks of every track, from the models that have them.
    pub const SIMILAR_FILE: &str = "similar.parquet";
    pub const MODEL_FILE: &str = "model.bin";
}

pub mod ranking {
    /// The offline recommendations the service serves to old users.
    pub const RECOMMENDATIONS_FILE: &str = "recommendations.parquet";
    pub const FEATURE_IMPORTANCES_FILE: &str = "feature_importances.json";
    pub const RANKER_FILE: &str = "model.json";
}

pub mod report {
    pub const REPORT_FILE: &str = "report.md";
    pub const METRICS_PLOT: &str = "metrics_test.png";
    pub const NDCG_PLOT: &str = "ndcg_test.png";
    pub const FEATURE_IMPORTANCES_PLOT: &str = "feature_importances.png";
    pub const STAGE_SECONDS_PLOT: &str = "stage_seconds.png";
    pub const STAGE_MEMORY_PLOT: &str = "stage_memory.png";

    /// The training loss curve of model stage `model` (named as its stage).
    pub fn loss_plot(model: &str) -> String {
        format!("loss_{model}.png")
    }
    /// The distribution of per-user NDCG of every model and the system.
    pub const NDCG_DISTRIBUTION_PLOT: &str = "ndcg_distribution.png";
    /// Per-user metric values of the system and every model on the test window
    /// (`user_id`, `model`, then `<metric>@<k>` for each per-user metric and K): what a later
    /// report on the same data pairs with.
    pub const PER_USER_FILE: &str = "per_user.parquet";
}

/// A sharded run of a candidate model stage publishes its fitted model and every scored part as
/// units of their own, under `shards/<stage>/`.
pub mod shards {
    use super::Stage;

    /// The unit of the model fitted for a sharded run of `stage`.
    pub fn model(stage: Stage) -> String {
        format!("shards/{}/model", stage.as_str())
    }

    /// The unit of part `index` of `count` of `stage`.
    pub fn part(stage: Stage, index: u32, count: u32) -> String {
        format!("shards/{}/part-{index:04}-of-{count:04}", stage.as_str())
    }

    /// The model unit a part's unit belongs to (`shards/als/part-0001-of-0004` →
    /// `shards/als/model`); `None` for any other unit.
    pub fn model_of_part(unit: &str) -> Option<String> {
        let (stage_dir, part) = unit.rsplit_once('/')?;
        (stage_dir.starts_with("shards/") && part.starts_with("part-")).then(|| format!("{stage_dir}/model"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_read_only_earlier_stages_and_the_ranker_every_candidate_source() {
        for stage in Stage::ALL {
            assert!(stage.inputs().iter().all(|&up| up < stage), "{stage:?} reads a later stage");
            let mut sorted = stage.inputs().to_vec();
            sorted.dedup();
            assert_eq!(sorted, stage.inputs(), "{stage:?}: in order, no repeats");
        }
        for model in Stage::CANDIDATE_MODELS.into_iter().chain([Stage::TopItems, Stage::Features]) {
            assert!(Stage::Ranking.inputs().contains(&model), "{model:?}");
        }
        let models: Vec<Stage> = Stage::ALL.into_iter().filter(|s| s.is_model()).collect();
        assert_eq!(Stage::Report.inputs(), models);
        // The report's numbers depend on every stage but the EDA.
        let upstream: Vec<Stage> =
            Stage::ALL.into_iter().filter(|s| ![Stage::Eda, Stage::Report].contains(s)).collect();
        assert_eq!(Stage::Report.all_inputs(), upstream);
        assert_eq!(Stage::Als.all_inputs(), [Stage::Preprocess, Stage::Matrices]);
        assert!(Stage::Preprocess.all_inputs().is_empty());
        assert!(
            Stage::ALL
                .iter()
                .filter(|s| s.is_model() && **s != Stage::Ranking)
                .all(|s| s.inputs() == [Stage::Preprocess, Stage::Matrices])
        );
    }

    #[test]
    fn stage_lists_parse_in_execution_order() {
        assert_eq!(
            Stage::parse_list("features, preprocess,features").unwrap(),
            vec![Stage::Preprocess, Stage::Features]
        );
        let err = Stage::parse_list("preprocess,als2").unwrap_err().to_string();
        assert!(
            err.contains("als2")
                && err.contains("preprocess, eda, matrices, features, als, bpr, item2item, top_items, ranking, report"),
            "{err}"
        );
        assert!(Stage::parse_list(" , ").is_err());
    }
}
