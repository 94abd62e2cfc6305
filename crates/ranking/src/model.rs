//! The gradient-boosted ranker: `forust-ml` trees on binary log-loss with balanced classes
//! (each class carries half the total weight, as CatBoost's `auto_class_weights=Balanced` in
//! the original). The model file is forust's JSON with our feature names in its metadata.

use std::ops::Range;
use std::path::Path;

use forust_ml::gradientbooster::ImportanceMethod;
use forust_ml::objective::ObjectiveType;
use forust_ml::{GradientBooster, Matrix};
use musicrec_models::{Hyperparameters, InvalidParameter, ParamCheck};
use rayon::prelude::*;

use crate::error::RankingError;
use crate::features::FeatureMatrix;

const FEATURES_KEY: &str = "musicrec_features";
/// The ranker's configuration section, which its parameter errors name.
const SECTION: &str = "ranking";

#[derive(Debug, Clone, PartialEq)]
pub struct RankerParams {
    /// Boosting iterations (trees).
    pub iterations: usize,
    pub learning_rate: f32,
    /// Maximum depth of each tree.
    pub depth: usize,
    pub seed: u64,
}

impl Default for RankerParams {
    /// The configuration's documented defaults (`ranking` in `musicrec config`).
    fn default() -> Self {
        Self { iterations: 200, learning_rate: 0.1, depth: 4, seed: 42 }
    }
}

impl Hyperparameters for RankerParams {
    fn check(&self) -> Result<(), InvalidParameter> {
        let check = ParamCheck { section: SECTION };
        check.count_in("iterations", self.iterations, 1..=100_000)?;
        check.positive("learning_rate", self.learning_rate)?;
        check.count_in("depth", self.depth, 1..=16)
    }
}

pub struct Ranker {
    booster: GradientBooster,
    features: Vec<String>,
    forest: Forest,
}

/// Rows run through one tree before the next: their feature columns (a few KB each) stay
/// in cache for all the trees, and the rows' steps, independent of each other, overlap in the
/// CPU (or share a vector instruction).
const BLOCK_ROWS: usize = 256;
/// Blocks a rayon task scores.
const BLOCKS_PER_TASK: usize = 16;
/// Leaves a tree may have to be scored by its leaf masks (one bit a leaf in a `u64`). The
/// ranker's trees are binary (forust makes a missing branch only when asked), so any of
/// `ranking.depth` 6 or less qualifies.
const MASK_LEAVES: usize = 64;

/// A split in leaf-mask form (QuickScorer, Lucchese et al. 2015, made exact for every
/// split): the leaves of its tree that a row can still reach once the split has sent it one
/// way, i.e. all leaves but those under the children it was not sent to. A value below
/// `value` goes left, at or above it right, NaN (forust's default `missing`) to the missing
/// child. ANDing every split's mask for a row, on its path or not, leaves exactly one bit: the
/// leaf the row's walk reaches, since each split on that path clears every other branch.
#[derive(Debug, Clone, Copy)]
struct MaskSplit {
    value: f64,
    feature: u32,
    below: u64,
    at_or_above: u64,
    missing: u64,
}

/// One tree node of a walked tree, 24 bytes against forust's ~100, for trees too large for
/// leaf masks: a split sends a row as `MaskSplit` says; a leaf holds its weight in `value` and
/// all three children point to itself, so a walk of the tree's depth needs no leaf test.
/// Children are absolute indices into `Forest::nodes`.
#[derive(Debug, Clone, Copy)]
struct Node {
    value: f64,
    feature: u32,
    left: u32,
    right: u32,
    missing: u32,
}

#[derive(Debug, Clone)]
enum Tree {
    /// Every split evaluated for every row, branch-free and contiguous in each feature
    /// column, so that a vector instruction takes several rows: `splits` and `leaves` index
    /// `Forest::splits` and `Forest::leaves`, leaves in the order of their mask bits.
    Masks { splits: Range<usize>, leaves: Range<usize> },
    /// Walked level by level from `root` (an index into `Forest::nodes`), `depth` steps.
    Walk { root: u32, depth: u32 },
}

/// The booster's trees in the forms above, built once after training or loading.
#[derive(Debug, Clone)]
struct Forest {
    base_score: f64,
    trees: Vec<Tree>,
    splits: Vec<MaskSplit>,
    leaves: Vec<f64>,
    nodes: Vec<Node>,
}

impl Forest {
    /// The booster's trees over `features` features; why not, if one of them is not a tree
    /// over those features (a model file edited by hand, say).
    fn new(booster: &GradientBooster, features: usize) -> Result<Self, String> {
        let depths = booster
            .trees
            .iter()
            .enumerate()
            .map(|(t, tree)| check_tree(tree, features).map_err(|problem| format!("tree {t}: {problem}")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut forest = Self {
            base_score: booster.base_score,
            trees: Vec::new(),
            splits: Vec::new(),
            leaves: Vec::new(),
            nodes: Vec::new(),
        };
        for (tree, depth) in booster.trees.iter().zip(depths) {
            let tree = if tree.nodes.iter().filter(|n| n.is_leaf).count() <= MASK_LEAVES {
                forest.add_masks(tree)
            } else {
                forest.add_walk(tree, depth)
            };
            forest.trees.push(tree);
        }
        Ok(forest)
    }

    /// A tree's leaves numbered as a depth-first walk from its root (node 0) meets them (any
    /// numbering would do), and each split's masks from the leaves under its children.
    fn add_masks(&mut self, tree: &forust_ml::tree::Tree) -> Tree {
        let nodes = &tree.nodes;
        let (first_split, first_leaf) = (self.splits.len(), self.leaves.len());
        // The leaves under each node, as mask bits.
        let mut under = vec![0u64; nodes.len()];
        let mut splits = Vec::new();
        let mut stack = vec![(0usize, false)];
        while let Some((n, children_done)) = stack.pop() {
            let node = &nodes[n];
            if node.is_leaf {
                under[n] = 1 << (self.leaves.len() - first_leaf);
                self.leaves.push(f64::from(node.weight_value));
            } else if children_done {
                under[n] = children(tree, n).map(|c| under[c]).fold(0, |a, b| a | b);
                splits.push(n);
            } else {
                stack.push((n, true));
                stack.extend(children(tree, n).map(|c| (c, false)));
            }
        }
        for n in splits {
            let node = &nodes[n];
            // All leaves but those of the children other than `taken`.
            let keep =
                |taken: usize| !children(tree, n).filter(|&c| c != taken).map(|c| under[c]).fold(0, |a, b| a | b);
            self.splits.push(MaskSplit {
                value: node.split_value,
                feature: u32::try_from(node.split_feature).expect("fewer than 2^32 features"),
                below: keep(node.left_child),
                at_or_above: keep(node.right_child),
                missing: keep(node.missing_node),
            });
        }
        Tree::Masks { splits: first_split..self.splits.len(), leaves: first_leaf..self.leaves.len() }
    }

    /// A tree to walk `depth` steps (its longest root-to-leaf path, from `check_tree`).
    fn add_walk(&mut self, tree: &forust_ml::tree::Tree, depth: usize) -> Tree {
        let nodes = &tree.nodes;
        let offset = self.nodes.len();
        let at = |child: usize| u32::try_from(offset + child).expect("fewer than 2^32 tree nodes");
        self.nodes.extend(nodes.iter().enumerate().map(|(i, n)| {
            if n.is_leaf {
                let me = at(i);
                Node { value: f64::from(n.weight_value), feature: 0, left: me, right: me, missing: me }
            } else {
                Node {
                    value: n.split_value,
                    feature: u32::try_from(n.split_feature).expect("fewer than 2^32 features"),
                    left: at(n.left_child),
                    right: at(n.right_child),
                    missing: at(n.missing_node),
                }
            }
        }));
        Tree::Walk { root: at(0), depth: u32::try_from(depth).expect("a shallow tree") }
    }

    /// Sets `scores` to the base score plus every tree's leaf weight, tree by tree as forust
    /// sums them, for rows `first..first + scores.len()` of the column-major `data` with
    /// `rows` rows, with the widest vectors this CPU has.
    fn score_block(&self, data: &[f64], rows: usize, first: usize, scores: &mut [f64]) {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: detected just above.
                return unsafe { self.score_block_avx512(data, rows, first, scores) };
            }
            if is_x86_feature_detected!("avx2") {
                // SAFETY: detected just above.
                return unsafe { self.score_block_avx2(data, rows, first, scores) };
            }
        }
        self.score_block_with(data, rows, first, scores);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn score_block_avx512(&self, data: &[f64], rows: usize, first: usize, scores: &mut [f64]) {
        self.score_block_with(data, rows, first, scores);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn score_block_avx2(&self, data: &[f64], rows: usize, first: usize, scores: &mut [f64]) {
        self.score_block_with(data, rows, first, scores);
    }

    /// `score_block` for the target features of its caller.
    #[inline(always)]
    fn score_block_with(&self, data: &[f64], rows: usize, first: usize, scores: &mut [f64]) {
        scores.fill(self.base_score);
        let mut reach = [0u64; BLOCK_ROWS];
        let reach = &mut reach[..scores.len()];
        let mut at = [0u32; BLOCK_ROWS];
        let at = &mut at[..scores.len()];
        for tree in &self.trees {
            match *tree {
                Tree::Masks { ref splits, ref leaves } => {
                    reach.fill(u64::MAX);
                    for split in &self.splits[splits.clone()] {
                        // Copied out, so that the loop blends values: selecting between the
                        // fields' addresses instead compiles to a gather.
                        let MaskSplit { value, feature, below, at_or_above, missing } = *split;
                        let column = &data[feature as usize * rows + first..][..reach.len()];
                        for (reach, &v) in reach.iter_mut().zip(column) {
                            let known = if v < value { below } else { at_or_above };
                            *reach &= if v.is_nan() { missing } else { known };
                        }
                    }
                    let leaves = &self.leaves[leaves.clone()];
                    for (score, reach) in scores.iter_mut().zip(reach.iter()) {
                        *score += leaves[reach.trailing_zeros() as usize];
                    }
                }
                Tree::Walk { root, depth } => {
                    at.fill(root);
                    for _ in 0..depth {
                        for (r, at) in at.iter_mut().enumerate() {
                            let node = &self.nodes[*at as usize];
                            let v = data[node.feature as usize * rows + first + r];
                            let known = if v < node.value { node.left } else { node.right };
                            *at = if v.is_nan() { node.missing } else { known };
                        }
                    }
                    for (score, &at) in scores.iter_mut().zip(at.iter()) {
                        *score += self.nodes[at as usize].value;
                    }
                }
            }
        }
    }
}

/// Whether `tree` is a tree from node 0, every node reached once and every split on one of
/// `features` features, what the forms of `Forest` rely on; if so, the splits on its longest
/// root-to-leaf path, derived here rather than read from the nodes' stored depths.
fn check_tree(tree: &forust_ml::tree::Tree, features: usize) -> Result<usize, String> {
    let nodes = tree.nodes.len();
    if nodes == 0 {
        return Err("no nodes".into());
    }
    let mut reached = vec![false; nodes];
    let mut depth = 0;
    let mut stack = vec![(0, 0)];
    while let Some((n, splits_above)) = stack.pop() {
        if std::mem::replace(&mut reached[n], true) {
            return Err(format!("node {n} is reached twice"));
        }
        let node = &tree.nodes[n];
        if node.is_leaf {
            depth = depth.max(splits_above);
            continue;
        }
        if node.split_feature >= features {
            return Err(format!("node {n} splits on feature {}, of {features}", node.split_feature));
        }
        for child in children(tree, n) {
            if child >= nodes {
                return Err(format!("node {n} has child {child}, of {nodes} nodes"));
            }
            stack.push((child, splits_above + 1));
        }
    }
    Ok(depth)
}

/// A split's distinct children: left, right, and the missing branch where forust made one.
fn children(tree: &forust_ml::tree::Tree, n: usize) -> impl Iterator<Item = usize> {
    let node = &tree.nodes[n];
    let missing =
        (node.missing_node != node.left_child && node.missing_node != node.right_child).then_some(node.missing_node);
    [node.left_child, node.right_child].into_iter().chain(missing)
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
            .set_parallel(true)
            // Histograms filled row by row from a tiled copy of the binned features: the
            // training rows are many and the features few, where this fill is the faster one
            // (docs/perf/ranking.md#training); it costs a second copy of the binned data.
            .set_tiled_histograms(true);
        let matrix = Matrix::new(&features.data, features.rows, features.names.len());
        booster.fit(&matrix, &y, &balanced_weights(labels), None).map_err(|e| RankingError::Gbdt(e.to_string()))?;
        booster.insert_metadata(
            FEATURES_KEY.into(),
            serde_json::to_string(&features.names).expect("feature names serialize"),
        );
        let forest = Forest::new(&booster, features.names.len()).map_err(RankingError::Gbdt)?;
        Ok(Self { forest, booster, features: features.names.clone() })
    }

    pub fn features(&self) -> &[String] {
        &self.features
    }

    /// Log-odds of relevance per row; only their order matters for ranking. Equal to forust's
    /// own `predict` (the same sums in the same order) on the flattened trees, blocks of rows
    /// in parallel on the caller's rayon pool.
    pub fn predict(&self, features: &FeatureMatrix) -> Result<Vec<f64>, RankingError> {
        if features.names != self.features {
            return Err(RankingError::FeatureMismatch { model: self.features.clone(), data: features.names.clone() });
        }
        let mut scores = vec![0.0; features.rows];
        scores.par_chunks_mut(BLOCK_ROWS * BLOCKS_PER_TASK).enumerate().for_each(|(t, task)| {
            for (b, block) in task.chunks_mut(BLOCK_ROWS).enumerate() {
                let first = (t * BLOCKS_PER_TASK + b) * BLOCK_ROWS;
                self.forest.score_block(&features.data, features.rows, first, block);
            }
        });
        Ok(scores)
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
        let features: Vec<String> = serde_json::from_str(&names).map_err(|e| corrupt(format!("feature names: {e}")))?;
        if !booster.missing.is_nan() {
            return Err(corrupt(format!("missing values are {}, the ranker writes NaN", booster.missing)));
        }
        let forest = Forest::new(&booster, features.len()).map_err(corrupt)?;
        Ok(Self { forest, booster, features })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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

        let mut other = ranker;
        other.booster.missing = 0.0;
        other.save(&path).unwrap();
        let err = Ranker::load(&path).err().expect("a model with another missing value is refused");
        assert!(err.to_string().contains("missing values are 0"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// The flattened forest scores exactly as forust does, NaN features included, over
        /// row counts that end blocks and tasks anywhere.
        #[test]
        fn flattened_forest_equals_the_library(
            cells in prop::collection::vec(prop::option::weighted(0.7, 0u8..20), 6..18_000),
            depth in 1usize..9,
            seed in any::<u64>(),
        ) {
            let width = 3;
            let rows = cells.len() / width;
            let data: Vec<f64> =
                cells[..rows * width].iter().map(|c| c.map_or(f64::NAN, |v| f64::from(v) / 4.0)).collect();
            // Labels depend on the values and on missingness, so splits use both.
            let labels: Vec<bool> = (0..rows)
                .map(|r| {
                    let (a, b) = (data[r], data[rows + r]);
                    (a.is_nan() && b > 2.0) || a > 3.0 || (r % 7 == 0)
                })
                .collect();
            prop_assume!(labels.iter().any(|&l| l) && !labels.iter().all(|&l| l));
            let m = FeatureMatrix { names: vec!["a".into(), "b".into(), "c".into()], rows, data };
            let params = RankerParams { iterations: 8, learning_rate: 0.3, depth, seed };
            let ranker = Ranker::fit(&params, &m, &labels).unwrap();
            let matrix = Matrix::new(&m.data, m.rows, m.names.len());
            prop_assert_eq!(ranker.predict(&m).unwrap(), ranker.booster.predict(&matrix, false));
        }
    }

    /// The forest scores `m` exactly as forust does.
    fn assert_forest_scores_as_library(booster: GradientBooster, m: &FeatureMatrix) -> Forest {
        let ranker =
            Ranker { forest: Forest::new(&booster, m.names.len()).unwrap(), booster, features: m.names.clone() };
        let matrix = Matrix::new(&m.data, m.rows, m.names.len());
        assert_eq!(ranker.predict(m).unwrap(), ranker.booster.predict(&matrix, false));
        ranker.forest
    }

    /// Features with many distinct values and missing ones, and labels that need deep trees.
    fn tangled(rows: usize) -> (FeatureMatrix, Vec<f64>) {
        let value = |r: usize, k: usize| {
            let v = (r * (7919 + 104_729 * k)) % 1009;
            if v.is_multiple_of(11) { f64::NAN } else { v as f64 }
        };
        let data: Vec<f64> = (0..3).flat_map(|k| (0..rows).map(move |r| value(r, k))).collect();
        let labels = (0..rows).map(|r| f64::from(u8::from((r * 31 + r / 7) % 5 < 2))).collect();
        (FeatureMatrix { names: vec!["a".into(), "b".into(), "c".into()], rows, data }, labels)
    }

    fn fitted(booster: GradientBooster, m: &FeatureMatrix, y: &[f64]) -> GradientBooster {
        let mut booster = booster.set_objective_type(ObjectiveType::LogLoss).set_iterations(6).set_seed(3);
        let matrix = Matrix::new(&m.data, m.rows, m.names.len());
        booster.fit(&matrix, y, &vec![1.0; y.len()], None).unwrap();
        booster
    }

    #[test]
    fn trees_with_more_leaves_than_a_mask_holds_are_walked() {
        let (m, y) = tangled(5000);
        let mut booster = fitted(GradientBooster::default().set_max_depth(9), &m, &y);
        // The walk's steps come from the tree's shape, not from the depths a file stores.
        booster.trees.iter_mut().flat_map(|t| t.nodes.iter_mut()).for_each(|n| n.depth = 0);
        let forest = assert_forest_scores_as_library(booster, &m);
        assert!(forest.trees.iter().any(|t| matches!(t, Tree::Walk { .. })), "no tree had more than 64 leaves");
    }

    #[test]
    fn splits_with_a_missing_branch_score_as_the_library() {
        let (m, y) = tangled(3000);
        let booster = GradientBooster::default().set_max_depth(4).set_create_missing_branch(true);
        let forest = assert_forest_scores_as_library(fitted(booster, &m, &y), &m);
        assert!(forest.trees.iter().all(|t| matches!(t, Tree::Masks { .. })));
        assert!(
            forest.splits.iter().any(|s| s.missing != s.below && s.missing != s.at_or_above),
            "no split had a missing branch of its own"
        );
    }

    #[test]
    fn a_model_file_whose_trees_are_not_trees_is_refused() {
        let (m, labels) = data(3000);
        let params = RankerParams { iterations: 3, learning_rate: 0.3, depth: 3, seed: 1 };
        let ranker = Ranker::fit(&params, &m, &labels).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ranker.json");
        ranker.save(&path).unwrap();
        let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let root = "/trees/0/nodes/0";
        for (field, value, problem) in [
            ("left_child", 0, "node 0 is reached twice"),
            ("right_child", 999, "node 0 has child 999"),
            ("split_feature", 7, "node 0 splits on feature 7, of 2"),
        ] {
            let mut edited = saved.clone();
            *edited.pointer_mut(&format!("{root}/{field}")).unwrap() = value.into();
            std::fs::write(&path, edited.to_string()).unwrap();
            let err = Ranker::load(&path).err().expect("refused");
            assert!(matches!(err, RankingError::Corrupt { .. }), "{err}");
            assert!(err.to_string().contains(&format!("tree 0: {problem}")), "{err}");
        }
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
