//! The ranker's rows: every (user, track) pair some candidate source proposed, with each
//! source's score and rank side by side (an outer join), then labels from a window and the
//! seeded sample of a training set.

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rayon::prelude::*;

/// One source's candidates: parallel columns, one entry per (user, item) pair it proposed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceCandidates {
    pub name: String,
    pub users: Vec<u32>,
    pub items: Vec<u32>,
    pub scores: Vec<f32>,
    /// 1 = the source's best for that user.
    pub ranks: Vec<u32>,
}

impl SourceCandidates {
    /// Whether the entries come user by user (ascending), as every candidate model writes them:
    /// what `users_in` needs.
    pub fn is_grouped_by_user(&self) -> bool {
        self.users.is_sorted()
    }

    /// The entries of the users in `users`, for an entry list grouped by user.
    pub fn users_in(&self, users: std::ops::Range<u32>) -> SourceCandidates {
        debug_assert!(self.is_grouped_by_user(), "users_in needs entries grouped by user");
        let from = self.users.partition_point(|&u| u < users.start);
        let to = self.users.partition_point(|&u| u < users.end);
        SourceCandidates {
            name: self.name.clone(),
            users: self.users[from..to].to_vec(),
            items: self.items[from..to].to_vec(),
            scores: self.scores[from..to].to_vec(),
            ranks: self.ranks[from..to].to_vec(),
        }
    }
}

/// The merged candidates: pairs grouped by user (ascending), items ascending within a user.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateSet {
    sources: Vec<String>,
    users: Vec<u32>,
    /// The pairs of `users[g]` are `offsets[g]..offsets[g + 1]`.
    offsets: Vec<usize>,
    items: Vec<u32>,
    /// Pair-major, one value per source: NaN where that source did not propose the pair. A
    /// missing score is unknown, not zero, and the trees learn where to send it.
    scores: Vec<f32>,
    ranks: Vec<f32>,
}

impl CandidateSet {
    /// The outer join of `sources` on (user, item). A pair a source lists twice keeps its best
    /// rank there.
    pub fn merge(sources: &[SourceCandidates]) -> Self {
        let n_sources = sources.len();
        // (user, item, source, rank, position in the source): sorting brings each pair's
        // entries together, best rank first within a source.
        let mut entries: Vec<(u32, u32, u32, u32, u32)> = sources
            .iter()
            .enumerate()
            .flat_map(|(s, src)| {
                (0..src.users.len()).map(move |j| (src.users[j], src.items[j], s as u32, src.ranks[j], j as u32))
            })
            .collect();
        entries.par_sort_unstable();
        let mut set = Self {
            sources: sources.iter().map(|s| s.name.clone()).collect(),
            users: Vec::new(),
            offsets: vec![0],
            items: Vec::new(),
            scores: Vec::new(),
            ranks: Vec::new(),
        };
        for (i, &(user, item, s, rank, j)) in entries.iter().enumerate() {
            let same_pair = i > 0 && entries[i - 1].0 == user && entries[i - 1].1 == item;
            if !same_pair {
                if set.users.last() != Some(&user) {
                    if !set.users.is_empty() {
                        set.offsets.push(set.items.len());
                    }
                    set.users.push(user);
                }
                set.items.push(item);
                set.scores.extend(std::iter::repeat_n(f32::NAN, n_sources));
                set.ranks.extend(std::iter::repeat_n(f32::NAN, n_sources));
            } else if entries[i - 1].2 == s {
                continue;
            }
            let slot = (set.items.len() - 1) * n_sources + s as usize;
            set.scores[slot] = sources[s as usize].scores[j as usize];
            set.ranks[slot] = rank as f32;
        }
        if !set.users.is_empty() {
            set.offsets.push(set.items.len());
        }
        set
    }

    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// Number of (user, item) pairs.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Users with at least one candidate, ascending.
    pub fn users(&self) -> &[u32] {
        &self.users
    }

    /// The pair range of the `g`-th user.
    pub fn group(&self, g: usize) -> std::ops::Range<usize> {
        self.offsets[g]..self.offsets[g + 1]
    }

    /// The index of the user group that pair `pair` belongs to.
    pub fn group_of(&self, pair: usize) -> usize {
        self.offsets.partition_point(|&o| o <= pair) - 1
    }

    pub fn items(&self) -> &[u32] {
        &self.items
    }

    /// Each source's score of `pair` (NaN where it did not propose it), in source order.
    pub fn scores(&self, pair: usize) -> &[f32] {
        let n = self.sources.len();
        &self.scores[pair * n..(pair + 1) * n]
    }

    /// Each source's rank of `pair` (NaN where it did not propose it), in source order.
    pub fn ranks(&self, pair: usize) -> &[f32] {
        let n = self.sources.len();
        &self.ranks[pair * n..(pair + 1) * n]
    }

    /// Whether each pair is relevant: `relevant(user)` gives the user's window items, ascending.
    pub fn labels<'r>(&self, relevant: impl Fn(u32) -> &'r [u32] + Sync) -> Vec<bool> {
        (0..self.users.len())
            .into_par_iter()
            .flat_map_iter(|g| {
                let rel = relevant(self.users[g]);
                self.items[self.group(g)].iter().map(move |item| rel.binary_search(item).is_ok())
            })
            .collect()
    }

    /// The training rows: for every user with at least one positive, all positives and
    /// `negatives_per_user` negatives drawn without replacement (all of them if fewer). Each
    /// user's draw has its own stream from (seed, user), so the sample does not depend on the
    /// other users. Ascending pair indices.
    pub fn sample(&self, labels: &[bool], negatives_per_user: usize, seed: u64) -> Vec<usize> {
        assert_eq!(labels.len(), self.len(), "one label per pair");
        (0..self.users.len())
            .into_par_iter()
            .flat_map_iter(|g| {
                let range = self.group(g);
                let (mut positives, mut negatives): (Vec<usize>, Vec<usize>) = range.partition(|&p| labels[p]);
                if positives.is_empty() {
                    return Vec::new();
                }
                let take = negatives_per_user.min(negatives.len());
                let mut rng = Xoshiro256PlusPlus::seed_from_u64(
                    seed ^ u64::from(self.users[g]).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                );
                for i in 0..take {
                    let j = i + ((u128::from(rng.next_u64()) * (negatives.len() - i) as u128) >> 64) as usize;
                    negatives.swap(i, j);
                }
                positives.extend_from_slice(&negatives[..take]);
                positives.sort_unstable();
                positives
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn source(name: &str, rows: &[(u32, u32, f32)]) -> SourceCandidates {
        let mut rank = 0;
        let mut last_user = None;
        let mut src = SourceCandidates { name: name.into(), ..Default::default() };
        for &(u, i, s) in rows {
            rank = if last_user == Some(u) { rank + 1 } else { 1 };
            last_user = Some(u);
            src.users.push(u);
            src.items.push(i);
            src.scores.push(s);
            src.ranks.push(rank);
        }
        src
    }

    #[test]
    fn users_in_cuts_a_user_range_and_merging_the_cuts_gives_the_whole() {
        let a = source("a", &[(1, 10, 0.9), (1, 11, 0.5), (3, 10, 0.7), (4, 12, 0.1)]);
        let b = source("b", &[(0, 11, 2.0), (1, 12, 1.0), (2, 10, 3.0), (4, 12, 0.3)]);
        assert!(a.is_grouped_by_user() && b.is_grouped_by_user());
        assert!(!source("c", &[(2, 1, 0.0), (1, 1, 0.0)]).is_grouped_by_user());
        let cut = a.users_in(1..4);
        assert_eq!((cut.users, cut.items, cut.ranks), (vec![1, 1, 3], vec![10, 11, 10], vec![1, 2, 1]));
        assert!(a.users_in(5..9).users.is_empty());
        let whole = CandidateSet::merge(&[a.clone(), b.clone()]);
        let mut parts = Vec::new();
        for users in [0..2, 2..3, 3..5] {
            let part = CandidateSet::merge(&[a.users_in(users.clone()), b.users_in(users)]);
            parts.extend((0..part.len()).map(|p| {
                let user = part.users()[part.group_of(p)];
                (user, part.items()[p], part.scores(p).to_vec(), part.ranks(p).to_vec())
            }));
        }
        let expected: Vec<_> = (0..whole.len())
            .map(|p| {
                let user = whole.users()[whole.group_of(p)];
                (user, whole.items()[p], whole.scores(p).to_vec(), whole.ranks(p).to_vec())
            })
            .collect();
        // NaN != NaN: compare the bits.
        let bits = |rows: &[(u32, u32, Vec<f32>, Vec<f32>)]| -> Vec<(u32, u32, Vec<u32>, Vec<u32>)> {
            rows.iter()
                .map(|(u, i, s, r)| {
                    (*u, *i, s.iter().map(|x| x.to_bits()).collect(), r.iter().map(|x| x.to_bits()).collect())
                })
                .collect()
        };
        assert_eq!(bits(&parts), bits(&expected));
    }

    #[test]
    fn merge_is_an_outer_join_that_keeps_missing_as_missing() {
        let a = source("a", &[(1, 10, 0.9), (1, 11, 0.5), (3, 10, 0.7)]);
        let b = source("b", &[(1, 11, 2.0), (1, 12, 1.0), (2, 10, 3.0)]);
        let set = CandidateSet::merge(&[a, b]);
        assert_eq!(set.sources(), &["a", "b"]);
        assert_eq!(set.users(), &[1, 2, 3]);
        assert_eq!(set.items(), &[10, 11, 12, 10, 10]);
        assert_eq!(set.group(0), 0..3);
        let (s0, r0) = (set.scores(0), set.ranks(0));
        assert_eq!((s0[0], r0[0]), (0.9, 1.0));
        assert!(s0[1].is_nan() && r0[1].is_nan(), "b did not propose (1, 10): missing, not 0");
        assert_eq!((set.scores(1), set.ranks(1)), (&[0.5, 2.0][..], &[2.0, 1.0][..]));
        assert!(set.scores(2)[0].is_nan() && set.scores(2)[1] == 1.0);
        assert!(set.scores(3)[0].is_nan() && set.scores(4)[1].is_nan());
        assert_eq!(set.group_of(4), 2);
    }

    #[test]
    fn labels_match_the_window() {
        let set = CandidateSet::merge(&[source("a", &[(0, 5, 1.0), (0, 6, 0.5), (2, 5, 1.0), (2, 7, 0.1)])]);
        let window: Vec<Vec<u32>> = vec![vec![6, 9], vec![5], vec![]];
        assert_eq!(set.labels(|u| &window[u as usize]), vec![false, true, false, false]);
    }

    fn random_set(pairs: &[(u32, u32)]) -> CandidateSet {
        let mut src = SourceCandidates { name: "m".into(), ..Default::default() };
        for &(u, i) in pairs {
            src.users.push(u);
            src.items.push(i);
            src.scores.push(1.0);
            src.ranks.push(1);
        }
        CandidateSet::merge(&[src])
    }

    proptest! {
        #[test]
        fn sampling_is_seeded_and_keeps_every_positive(
            pairs in prop::collection::vec((0u32..20, 0u32..50), 1..400),
            label_bits in prop::collection::vec(prop::bool::weighted(0.2), 400),
            per_user in 1usize..8,
            seed in any::<u64>(),
        ) {
            let set = random_set(&pairs);
            let labels: Vec<bool> = label_bits[..set.len()].to_vec();
            let rows = set.sample(&labels, per_user, seed);
            prop_assert_eq!(&rows, &set.sample(&labels, per_user, seed));
            prop_assert!(rows.windows(2).all(|w| w[0] < w[1]));
            for g in 0..set.users().len() {
                let range = set.group(g);
                let positives = range.clone().filter(|&p| labels[p]).count();
                let negatives = range.len() - positives;
                let chosen: Vec<usize> = rows.iter().copied().filter(|p| range.contains(p)).collect();
                if positives == 0 {
                    prop_assert!(chosen.is_empty(), "users without a positive are dropped");
                } else {
                    prop_assert_eq!(chosen.iter().filter(|&&p| labels[p]).count(), positives);
                    prop_assert_eq!(chosen.iter().filter(|&&p| !labels[p]).count(), negatives.min(per_user));
                }
            }
        }
    }

    #[test]
    fn another_seed_draws_other_negatives() {
        let pairs: Vec<(u32, u32)> = (0..200).map(|i| (0, i)).collect();
        let set = random_set(&pairs);
        let mut labels = vec![false; set.len()];
        labels[0] = true;
        assert_ne!(set.sample(&labels, 5, 1), set.sample(&labels, 5, 2));
    }
}
