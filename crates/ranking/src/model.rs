//! The gradient-boosted ranker: `forust-ml` trees on binary log-loss with balanced classes
//! (each class carries half the total weight, as CatBoost's `auto_class_weights=Balanced` in
//! the original). The model file is forust's JSON with our feature names in its metadata.

use std::path::Path;

use forust_ml::gradientbooster::ImportanceMethod;
use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};

use crate::error::RankingError;
use crate::features::FeatureMatrix;

const FEATURES_KEY: &str = "musicrec_features";

#[derive(Debug, Clone, PartialEq)]
pub struct RankerParams {
    /// Boosting iterations (trees).
    pub iterations: usize,
    pub learning_rate: f32,
    /// Maximum depth of each tree.
    pub depth: usize,
    pub seed: u64,
}

impl RankerParams {
    pub fn check(&self) -> Result<(), RankingError> {
        let bad =
            |parameter, value: String, expected| Err(RankingError::InvalidParameter { parameter, value, expected });
        if !(1..=100_000).contains(&self.iterations) {
            return bad("iterations", self.iterations.to_string(), "must be in 1..=100000");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("learning_rate", self.learning_rate.to_string(), "must be a finite number > 0");
        }
        if !(1..=16).contains(&self.depth) {
            return bad("depth", self.depth.to_string(), "must be in 1..=16");
        }
        Ok(())
    }
}

pub struct Ranker {
    booster: GradientBooster,
    features: Vec<String>,
}

/// Sample weights that give each class half the total weight (mean weight 1).
pub fn balanced_weights(labels: &[bool]) -> Vec<f64> {
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    let n = labels.len() as f64;
    labels.iter().map(|&l| if l { n / (2.0 * positives) } else { n / (2.0 * negatives) }).collect()
}

impl Ranker {
    /// Trains on `features` (one row per labelled pair) on the caller's rayon pool.
    pub fn fit(params: &RankerParams, features: &FeatureMatrix, labels: &[bool]) -> Result<Self, RankingError> {
        params.check()?;
        assert_eq!(features.rows, labels.len(), "one label per feature row");
        let positives = labels.iter().filter(|&&l| l).count();
        if positives == 0 || positives == labels.len() {
            return Err(RankingError::NothingToTrain {
                reason: format!(
                    "the {} training rows are all {}; the target window must hold listens of candidates and \
                     candidates that were not listened to",
                    labels.len(),
                    if positives == 0 { "negative" } else { "positive" }
                ),
            });
        }
        let y: Vec<f64> = labels.iter().map(|&l| f64::from(u8::from(l))).collect();
        let mut booster = GradientBooster::default()
            .set_objective_type(ObjectiveType::LogLoss)
            .set_iterations(params.iterations)
            .set_learning_rate(params.learning_rate)
            .set_max_depth(params.depth)
            .set_seed(params.seed)
            .set_parallel(true);
        let matrix = Matrix::new(&features.data, features.rows, features.names.len());
        booster.fit(&matrix, &y, &balanced_weights(labels), None).map_err(|e| RankingError::Gbdt(e.to_string()))?;
        booster.insert_metadata(
            FEATURES_KEY.into(),
            serde_json::to_string(&features.names).expect("feature names serialize"),
        );
        Ok(Self { booster, features: features.names.clone() })
    }

    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// Log-odds of relevance per row; only their order matters for ranking. Runs on the calling
    /// thread (callers parallelise across batches of a few thousand rows). Row by row through
    /// every tree: forust's own `predict` walks one tree over all rows, jumping between
    /// columns of a matrix that rarely fits in cache; the same sums, in the same order.
    pub fn predict(&self, features: &FeatureMatrix) -> Result<Vec<f64>, RankingError> {
        if features.names != self.features {
            return Err(RankingError::FeatureMismatch { model: self.features.clone(), data: features.names.clone() });
        }
        let width = features.names.len();
        let mut row = vec![0.0; width];
        Ok((0..features.rows)
            .map(|r| {
                row.iter_mut().enumerate().for_each(|(c, v)| *v = features.data[c * features.rows + r]);
                let mut score = self.booster.base_score;
                for tree in &self.booster.trees {
                    score += tree.predict_row_from_row_slice(&row, &self.booster.missing);
                }
                score
            })
            .collect())
    }

    /// Each feature's share of the total split gain, every feature listed, largest first.
    pub fn importances(&self) -> Vec<(String, f64)> {
        let gain = self.booster.calculate_feature_importance(ImportanceMethod::TotalGain, true);
        let mut out: Vec<(String, f64)> = self
            .features
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), gain.get(&i).map_or(0.0, |&g| f64::from(g))))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Writes the model atomically; returns the file's size in bytes.
    pub fn save(&self, path: &Path) -> Result<u64, RankingError> {
        let json = self.booster.json_dump().map_err(|e| RankingError::Gbdt(e.to_string()))?;
        Ok(musicrec_data::atomic::write_atomic(path, json.as_bytes())?)
    }

    pub fn load(path: &Path) -> Result<Self, RankingError> {
        let corrupt = |reason: String| RankingError::Corrupt { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| corrupt(e.to_string()))?;
        let booster = GradientBooster::from_json(&text).map_err(|e| corrupt(e.to_string()))?;
        let names =
            booster.get_metadata(&FEATURES_KEY.to_string()).ok_or_else(|| corrupt("no feature names".into()))?;
        let features = serde_json::from_str(&names).map_err(|e| corrupt(format!("feature names: {e}")))?;
        Ok(Self { booster, features })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relevant when x > 0.5; y is noise; a third of x is missing and those rows are negative.
    fn data(rows: usize) -> (FeatureMatrix, Vec<bool>) {
        let mut x = Vec::with_capacity(rows);
        let mut noise = Vec::with_capacity(rows);
        let mut labels = Vec::with_capacity(rows);
        for i in 0..rows {
            let v = ((i * 7919) % 1000) as f64 / 1000.0;
            let missing = i % 3 == 0;
            x.push(if missing { f64::NAN } else { v });
            noise.push(((i * 104_729) % 997) as f64);
            labels.push(!missing && v > 0.5 && i % 4 != 1);
        }
        x.extend(noise);
        (FeatureMatrix { names: vec!["x".into(), "noise".into()], rows, data: x }, labels)
    }

    #[test]
    fn learns_a_threshold_with_missing_values_and_round_trips() {
        let (m, labels) = data(3000);
        let params = RankerParams { iterations: 30, learning_rate: 0.3, depth: 3, seed: 1 };
        let ranker = Ranker::fit(&params, &m, &labels).unwrap();
        let p = ranker.predict(&m).unwrap();
        let mean = |pick: bool| {
            let v: Vec<f64> = p.iter().zip(&labels).filter(|&(_, &l)| l == pick).map(|(s, _)| *s).collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        assert!(mean(true) > mean(false) + 1.0, "positives score higher");
        let imp = ranker.importances();
        assert_eq!(imp[0].0, "x");
        assert!((imp.iter().map(|i| i.1).sum::<f64>() - 1.0).abs() < 1e-4);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ranker.json");
        ranker.save(&path).unwrap();
        let loaded = Ranker::load(&path).unwrap();
        assert_eq!(loaded.features(), ranker.features());
        assert_eq!(loaded.predict(&m).unwrap(), p);
        let matrix = Matrix::new(&m.data, m.rows, m.names.len());
        assert_eq!(ranker.booster.predict(&matrix, true), p, "the library's own prediction");
        std::fs::write(&path, b"{").unwrap();
        assert!(matches!(Ranker::load(&path), Err(RankingError::Corrupt { .. })));
    }

    #[test]
    fn single_class_and_bad_params_are_refused() {
        let (m, _) = data(10);
        let params = RankerParams { iterations: 5, learning_rate: 0.1, depth: 3, seed: 1 };
        assert!(matches!(Ranker::fit(&params, &m, &[false; 10]), Err(RankingError::NothingToTrain { .. })));
        let bad = RankerParams { depth: 0, ..params };
        let err = Ranker::fit(&bad, &m, &[true; 10]).err().expect("depth 0 is refused");
        assert!(err.to_string().contains("ranking.depth"), "{err}");
    }

    #[test]
    fn balanced_weights_give_each_class_half() {
        let w = balanced_weights(&[true, false, false, false]);
        assert_eq!(w, vec![2.0, 2.0 / 3.0, 2.0 / 3.0, 2.0 / 3.0]);
    }
}
