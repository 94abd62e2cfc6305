//! The ranker's feature matrix, one row per candidate pair:
//!
//! - each source's score and rank (missing stays NaN) and how many sources proposed the pair;
//! - the user's and the item's activity columns of the `features` stage;
//! - per item-feature group (album, artist, genre): the share of the user's train listens that
//!   went to tracks sharing a value of that group with the candidate (the best one);
//! - the cosine of the candidate's factor vector to the user's most recent tracks (max and
//!   mean): what the user is into now, which a user vector averaged over all of train blurs.
//!
//! Missing values are NaN, which the trees route on their own.

use musicrec_data::CsrMatrix;
use musicrec_models::FactorModel;
use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::candidates::CandidateSet;

/// Numeric columns of one entity (users or items), indexed by the dense index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityColumns {
    pub names: Vec<String>,
    pub columns: Vec<Vec<f64>>,
}

/// The item × feature one-hot matrix and which group (album, artist, ...) each column is in.
pub struct ItemGroups<'a> {
    pub names: Vec<String>,
    pub matrix: &'a CsrMatrix,
    /// Group index of each column of `matrix`.
    pub group_of_column: Vec<usize>,
}

/// Unit-length item vectors for cosine similarity.
pub struct ItemEmbedding {
    dim: usize,
    /// Row of each item in `vectors`, `u32::MAX` for items without a vector.
    row: Vec<u32>,
    vectors: Vec<f32>,
}

impl ItemEmbedding {
    pub fn from_factors(model: &FactorModel) -> Self {
        let vectors = model.items().iter().map(|&i| (i, model.item_vector(i).expect("listed items have vectors")));
        Self::new(model.n_items(), model.dim(), vectors)
    }

    /// From `(item, vector)` pairs over items `0..n_items`; a zero vector stays zero.
    pub fn new<'v>(n_items: usize, dim: usize, items: impl Iterator<Item = (u32, &'v [f32])>) -> Self {
        let mut row = vec![u32::MAX; n_items];
        let mut vectors = Vec::new();
        for (r, (item, v)) in items.enumerate() {
            row[item as usize] = r as u32;
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            vectors.extend(v.iter().map(|x| if norm > 0.0 { x / norm } else { 0.0 }));
        }
        Self { dim, row, vectors }
    }

    fn vector(&self, item: u32) -> Option<&[f32]> {
        let r = *self.row.get(item as usize)?;
        (r != u32::MAX).then(|| &self.vectors[r as usize * self.dim..(r as usize + 1) * self.dim])
    }
}

/// Vectors stored dimension by dimension, so a query's dot products with all of them advance
/// together: independent sums the CPU overlaps, each still added in dimension order, so every
/// value equals `a.iter().zip(b).map(|(a, b)| a * b).sum()` bit for bit. Each dimension's row
/// is padded with zeros to whole groups of `LANES`, whose sums stay in registers for the whole
/// query.
struct DimensionMajor {
    n: usize,
    /// `n` rounded up to whole groups: the length of a dimension's row.
    row: usize,
    values: Vec<f32>,
}

/// Sums of one group: an AVX-512 register, two AVX2 ones.
const LANES: usize = 16;

impl DimensionMajor {
    fn new(vectors: &[&[f32]], dim: usize) -> Self {
        let n = vectors.len();
        let row = n.next_multiple_of(LANES);
        let mut values = vec![0f32; row * dim];
        for (j, v) in vectors.iter().enumerate() {
            for (k, &x) in v.iter().enumerate() {
                values[k * row + j] = x;
            }
        }
        Self { n, row, values }
    }

    /// The dot product of `query` with each vector, into `out` (one slot per vector), with the
    /// widest vectors this CPU has.
    fn dots(&self, query: &[f32], out: &mut [f32]) {
        assert_eq!(out.len(), self.n, "one slot per vector");
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                // SAFETY: detected just above.
                return unsafe { self.dots_avx512(query, out) };
            }
            if is_x86_feature_detected!("avx2") {
                // SAFETY: detected just above.
                return unsafe { self.dots_avx2(query, out) };
            }
        }
        self.dots_with(query, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn dots_avx512(&self, query: &[f32], out: &mut [f32]) {
        self.dots_with(query, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn dots_avx2(&self, query: &[f32], out: &mut [f32]) {
        self.dots_with(query, out);
    }

    /// `dots` for the target features of its caller.
    #[inline(always)]
    fn dots_with(&self, query: &[f32], out: &mut [f32]) {
        for (group, out) in out.chunks_mut(LANES).enumerate() {
            // -0.0: where `Iterator::sum` of f32 starts.
            let mut sums = [-0.0f32; LANES];
            for (&x, row) in query.iter().zip(self.values.chunks_exact(self.row)) {
                let values = &row[group * LANES..(group + 1) * LANES];
                sums.iter_mut().zip(values).for_each(|(s, &a)| *s += a * x);
            }
            out.copy_from_slice(&sums[..out.len()]);
        }
    }
}

/// Each user's most recent distinct tracks of train, newest first: the `n` tracks with the
/// latest last-listen day (ties: the later event in the file wins).
pub fn recent_items(n_users: usize, users: &[u32], items: &[u32], days: &[i32], n: usize) -> Vec<Vec<u32>> {
    let mut per_user: Vec<Vec<(i32, usize, u32)>> = vec![Vec::new(); n_users];
    for (e, ((&u, &i), &d)) in users.iter().zip(items).zip(days).enumerate() {
        per_user[u as usize].push((d, e, i));
    }
    per_user
        .into_par_iter()
        .map(|mut events| {
            events.sort_unstable_by(|a, b| b.cmp(a));
            let mut out: Vec<u32> = Vec::with_capacity(n);
            for (_, _, item) in events {
                if out.len() == n {
                    break;
                }
                if !out.contains(&item) {
                    out.push(item);
                }
            }
            out
        })
        .collect()
}

/// Everything the features are computed from, indexed by dense user and item indices.
pub struct FeatureInputs<'a> {
    pub users: &'a EntityColumns,
    pub items: &'a EntityColumns,
    /// Train user × item listen counts.
    pub history: &'a CsrMatrix,
    pub groups: ItemGroups<'a>,
    pub recent: &'a [Vec<u32>],
    pub embedding: &'a ItemEmbedding,
}

/// A column-major matrix of features, as the booster reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMatrix {
    pub names: Vec<String>,
    pub rows: usize,
    pub data: Vec<f64>,
}

impl FeatureMatrix {
    pub fn column(&self, c: usize) -> &[f64] {
        &self.data[c * self.rows..(c + 1) * self.rows]
    }

    /// The rows of `parts` one after the other: the features of consecutive chunks of pairs
    /// as one matrix.
    ///
    /// # Panics
    /// If the parts do not have the same features.
    pub fn concat(names: Vec<String>, parts: &[FeatureMatrix]) -> Self {
        assert!(parts.iter().all(|p| p.names == names), "feature matrices with other features");
        let rows = parts.iter().map(|p| p.rows).sum();
        let mut data = Vec::with_capacity(rows * names.len());
        for c in 0..names.len() {
            for part in parts {
                data.extend_from_slice(part.column(c));
            }
        }
        Self { names, rows, data }
    }
}

/// Builds the features of candidate pairs of any `CandidateSet` merged from the same sources,
/// so the ranking stage can merge and describe its users a chunk at a time.
pub struct FeatureBuilder<'a> {
    inputs: FeatureInputs<'a>,
    sources: Vec<String>,
    /// Computed once: every user's block needs the width.
    names: Vec<String>,
}

impl<'a> FeatureBuilder<'a> {
    /// For sets merged from sources named `sources`, in that order.
    pub fn new(sources: &[String], inputs: FeatureInputs<'a>) -> Self {
        let names = Self::feature_names(sources, &inputs);
        Self { inputs, sources: sources.to_vec(), names }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    fn feature_names(sources: &[String], inputs: &FeatureInputs<'_>) -> Vec<String> {
        let mut names = Vec::new();
        for s in sources {
            names.push(format!("{s}_score"));
            names.push(format!("{s}_rank"));
        }
        names.push("n_sources".into());
        names.extend(inputs.users.names.iter().map(|n| format!("user_{n}")));
        names.extend(inputs.items.names.iter().map(|n| format!("item_{n}")));
        names.extend(inputs.groups.names.iter().map(|n| format!("{n}_share")));
        names.push("recent_similarity_max".into());
        names.push("recent_similarity_mean".into());
        names
    }

    /// The features of candidate pairs `rows` (ascending pair indices of `set`), in that order.
    ///
    /// # Panics
    /// If `set` was not merged from the sources the builder was made for.
    pub fn build(&self, set: &CandidateSet, rows: &[usize]) -> FeatureMatrix {
        assert_eq!(set.sources(), self.sources, "candidate set from other sources than the feature builder's");
        let names = self.names.clone();
        let width = names.len();
        // Runs of rows of one user: the user's history is summarised once per run.
        let mut runs = Vec::new();
        let mut start = 0;
        while start < rows.len() {
            let g = set.group_of(rows[start]);
            let end = set.group(g).end;
            let stop = start + rows[start..].partition_point(|&p| p < end);
            runs.push((g, start..stop));
            start = stop;
        }
        let blocks: Vec<Vec<f64>> = runs.par_iter().map(|(g, r)| self.user_block(set, *g, &rows[r.clone()])).collect();
        let mut data = vec![0.0; rows.len() * width];
        let mut row = 0;
        for block in &blocks {
            for values in block.chunks_exact(width) {
                for (c, &v) in values.iter().enumerate() {
                    data[c * rows.len() + row] = v;
                }
                row += 1;
            }
        }
        FeatureMatrix { names, rows: rows.len(), data }
    }

    /// Row-major features of `pairs`, all of user group `g` of `set`.
    fn user_block(&self, set: &CandidateSet, g: usize, pairs: &[usize]) -> Vec<f64> {
        let inputs = &self.inputs;
        let user = set.users()[g] as usize;
        let groups = &inputs.groups;
        // Listens per item-feature value (e.g. per artist) in the user's train history.
        let (mut per_value, mut total) = (FxHashMap::<u32, f32>::default(), 0f32);
        if user < inputs.history.rows {
            let (items, counts) = inputs.history.row(user);
            for (&item, &count) in items.iter().zip(counts) {
                total += count;
                for &value in groups.matrix.row(item as usize).0 {
                    *per_value.entry(value).or_default() += count;
                }
            }
        }
        let recent: Vec<&[f32]> = inputs
            .recent
            .get(user)
            .map(|items| items.iter().filter_map(|&i| inputs.embedding.vector(i)).collect())
            .unwrap_or_default();
        let n_recent = recent.len();
        let recent = DimensionMajor::new(&recent, inputs.embedding.dim);
        let mut sims = vec![0f32; n_recent];

        let mut out = Vec::with_capacity(pairs.len() * self.names.len());
        let mut shares = vec![f64::NAN; groups.names.len()];
        for &p in pairs {
            let item = set.items()[p] as usize;
            for (s, r) in set.scores(p).iter().zip(set.ranks(p)) {
                out.push(f64::from(*s));
                out.push(f64::from(*r));
            }
            out.push(set.scores(p).iter().filter(|s| !s.is_nan()).count() as f64);
            out.extend(inputs.users.columns.iter().map(|c| c.get(user).copied().unwrap_or(f64::NAN)));
            out.extend(inputs.items.columns.iter().map(|c| c.get(item).copied().unwrap_or(f64::NAN)));
            // NaN where the track has no value in a group or the user no history.
            shares.iter_mut().for_each(|s| *s = f64::NAN);
            if total > 0.0 && item < groups.matrix.rows {
                for &value in groups.matrix.row(item).0 {
                    let share = f64::from(per_value.get(&value).copied().unwrap_or(0.0) / total);
                    let slot = &mut shares[groups.group_of_column[value as usize]];
                    *slot = if slot.is_nan() { share } else { slot.max(share) };
                }
            }
            out.extend_from_slice(&shares);
            let (max, mean) = match inputs.embedding.vector(item as u32) {
                Some(v) if n_recent > 0 => {
                    recent.dots(v, &mut sims);
                    let (max, sum) = sims.iter().fold((f32::MIN, 0.0), |(m, s), &x| (m.max(x), s + x));
                    (f64::from(max), f64::from(sum) / n_recent as f64)
                }
                _ => (f64::NAN, f64::NAN),
            };
            out.push(max);
            out.push(mean);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn dimension_major_dots_equal_plain_sums(
            vectors in prop::collection::vec(prop::collection::vec(-1e3f32..1e3, 17), 0..40),
            query in prop::collection::vec(-1e3f32..1e3, 17),
        ) {
            let refs: Vec<&[f32]> = vectors.iter().map(Vec::as_slice).collect();
            let mut out = vec![f32::NAN; refs.len()];
            DimensionMajor::new(&refs, 17).dots(&query, &mut out);
            let plain: Vec<u32> =
                refs.iter().map(|v| v.iter().zip(&query).map(|(a, b)| a * b).sum::<f32>().to_bits()).collect();
            prop_assert_eq!(out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), plain);
        }
    }
    use crate::candidates::SourceCandidates;

    #[test]
    fn recent_items_are_the_latest_distinct_tracks() {
        let users = [0, 0, 0, 0, 1];
        let items = [5, 6, 5, 7, 9];
        let days = [1, 2, 3, 3, 1];
        // User 0: day 3 has 5 and 7 (7 later in the file), then 6 on day 2.
        assert_eq!(recent_items(3, &users, &items, &days, 2), vec![vec![7, 5], vec![9], vec![]]);
    }

    #[test]
    fn features_by_hand() {
        // User 0 listened to item 0 (3 times, artist col 0) and item 1 (once, artist col 1).
        let history = CsrMatrix::from_coo(1, 3, &[0, 0], &[0, 1], &[3.0, 1.0]);
        // Item 2 shares artist col 0 with item 0; genre col 2 belongs to item 1 only.
        let item_features = CsrMatrix::from_coo(3, 3, &[0, 1, 1, 2], &[0, 1, 2, 0], &[1.0; 4]);
        let src = |name: &str, items: Vec<u32>| SourceCandidates {
            name: name.into(),
            users: vec![0; items.len()],
            scores: vec![0.5; items.len()],
            ranks: (1..=items.len() as u32).collect(),
            items,
        };
        let set = CandidateSet::merge(&[src("a", vec![2]), src("b", vec![2])]);
        let users = EntityColumns { names: vec!["listens".into()], columns: vec![vec![4.0]] };
        let items = EntityColumns { names: vec!["listens".into()], columns: vec![vec![3.0, 1.0, f64::NAN]] };
        let embedding = ItemEmbedding::new(3, 2, [(0, &[2.0f32, 0.0][..]), (2, &[0.0, 1.0][..])].into_iter());
        let recent = vec![vec![0, 1]];
        let inputs = FeatureInputs {
            users: &users,
            items: &items,
            history: &history,
            groups: ItemGroups {
                names: vec!["artist".into(), "genre".into()],
                matrix: &item_features,
                group_of_column: vec![0, 0, 1],
            },
            recent: &recent,
            embedding: &embedding,
        };
        let builder = FeatureBuilder::new(set.sources(), inputs);
        let m = builder.build(&set, &[0]);
        let value = |name: &str| m.column(m.names.iter().position(|n| n == name).unwrap())[0];
        assert_eq!(value("a_rank"), 1.0);
        assert_eq!(value("n_sources"), 2.0);
        assert_eq!(value("user_listens"), 4.0);
        assert!(value("item_listens").is_nan());
        assert_eq!(value("artist_share"), 0.75);
        assert!(value("genre_share").is_nan(), "the candidate has no genre");
        // Item 2 is orthogonal to item 0; item 1 has no vector and is skipped.
        assert_eq!(value("recent_similarity_max"), 0.0);
    }
}
