//! The blending rules of docs/service.md#blending, as pure functions over dense item indices.
//!
//! Online part: for each similarity source, the similar-track lists of the user's recent
//! listens (newest first) taken round-robin by rank (the best of each listen, then the second
//! of each, ...); then the sources round-robin in their configured order (the ALS fold-in, a
//! source of one list, last). Base part: the offline recommendations of an old user, the
//! popular tracks for anyone else. The answer takes the online and base parts round-robin,
//! online first. At every level an item is taken once, at its first position, and never one
//! of the recent listens.

use serde::{Deserialize, Serialize};

/// Where a recommended item came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Als,
    Bpr,
    FoldIn,
    Offline,
    Popular,
}

impl Source {
    pub const ALL: [Source; 5] = [Source::Als, Source::Bpr, Source::FoldIn, Source::Offline, Source::Popular];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Als => "als",
            Source::Bpr => "bpr",
            Source::FoldIn => "fold_in",
            Source::Offline => "offline",
            Source::Popular => "popular",
        }
    }

    /// The similarity source of a stage's similar.parquet.
    pub fn similarity(stage: &str) -> Option<Source> {
        match stage {
            "als" => Some(Source::Als),
            "bpr" => Some(Source::Bpr),
            _ => None,
        }
    }
}

/// One recommended item, its source and the score its source's producer gave it (none for
/// a producer that ranks without published scores: the fold-in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    pub item: u32,
    pub source: Source,
    pub score: Option<f32>,
}

/// A ranked list, best first, with its producer's scores: `scores` is as long as `items`, or
/// empty when the producer gave none.
#[derive(Debug, Clone, Copy, Default)]
pub struct List<'a> {
    pub items: &'a [u32],
    pub scores: &'a [f32],
}

impl<'a> List<'a> {
    pub fn unscored(items: &'a [u32]) -> Self {
        Self { items, scores: &[] }
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Takes items from `lists` round-robin by position, skipping `excluded` items and repeats,
/// until `limit` items are taken or every list is exhausted.
pub fn round_robin<I: Iterator<Item = Pick>>(mut lists: Vec<I>, excluded: &[u32], limit: usize) -> Vec<Pick> {
    let mut out: Vec<Pick> = Vec::with_capacity(limit);
    let mut live = vec![true; lists.len()];
    while out.len() < limit && live.iter().any(|&l| l) {
        for (list, live) in lists.iter_mut().zip(&mut live) {
            if out.len() == limit {
                break;
            }
            if !*live {
                continue;
            }
            // A list's turn yields its next item not yet taken, so a repeat does not cost
            // the list its turn.
            loop {
                match list.next() {
                    None => {
                        *live = false;
                        break;
                    }
                    Some(pick) if excluded.contains(&pick.item) || out.iter().any(|p| p.item == pick.item) => {}
                    Some(pick) => {
                        out.push(pick);
                        break;
                    }
                }
            }
        }
    }
    out
}

/// `list` as picks of `source`.
pub fn tagged(list: List<'_>, source: Source) -> impl Iterator<Item = Pick> + '_ {
    list.items.iter().enumerate().map(move |(i, &item)| Pick { item, source, score: list.scores.get(i).copied() })
}

/// One similarity source's online list: the similar lists of the recent listens (newest
/// first) round-robin.
pub fn per_source(similar_lists: &[List<'_>], source: Source, recent: &[u32], limit: usize) -> Vec<Pick> {
    round_robin(similar_lists.iter().map(|&list| tagged(list, source)).collect(), recent, limit)
}

/// The answer: online (already one list per source) and base merged, online first.
pub fn blend(online_sources: &[Vec<Pick>], base: List<'_>, base_source: Source, recent: &[u32], k: usize) -> Vec<Pick> {
    let online = round_robin(online_sources.iter().map(|l| l.iter().copied()).collect(), recent, k);
    let base = tagged(base, base_source);
    // Two lists of different iterator types: box them into one shape.
    let lists: Vec<Box<dyn Iterator<Item = Pick>>> = vec![Box::new(online.into_iter()), Box::new(base)];
    round_robin(lists, recent, k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn items(picks: &[Pick]) -> Vec<u32> {
        picks.iter().map(|p| p.item).collect()
    }

    #[test]
    fn round_robin_alternates_and_skips_repeats_without_losing_the_turn() {
        let a = [1, 2, 3];
        let b = [1, 4, 5, 6, 7];
        let got = round_robin(
            vec![tagged(List::unscored(&a), Source::Als), tagged(List::unscored(&b), Source::Bpr)],
            &[3],
            10,
        );
        assert_eq!(items(&got), [1, 4, 2, 5, 6, 7]);
        assert_eq!(got[1].source, Source::Bpr);
        assert_eq!(
            items(&round_robin(
                vec![tagged(List::unscored(&a), Source::Als), tagged(List::unscored(&b), Source::Bpr)],
                &[],
                3
            )),
            [1, 4, 2]
        );
    }

    #[test]
    fn per_source_takes_each_listen_by_rank() {
        let newest = List { items: &[10, 11, 12], scores: &[0.9, 0.8, 0.7] };
        let older = List::unscored(&[20, 10, 21]);
        let got = per_source(&[newest, older], Source::Als, &[], 10);
        assert_eq!(items(&got), [10, 20, 11, 21, 12]);
        let scores: Vec<Option<f32>> = got.iter().map(|p| p.score).collect();
        assert_eq!(scores, [Some(0.9), None, Some(0.8), None, Some(0.7)], "each item keeps its own list's score");
    }

    #[test]
    fn blend_puts_online_first_and_keeps_sources() {
        let online = vec![vec![
            Pick { item: 5, source: Source::Als, score: None },
            Pick { item: 6, source: Source::Als, score: None },
        ]];
        let got = blend(&online, List::unscored(&[7, 5, 8, 9]), Source::Offline, &[9], 10);
        assert_eq!(items(&got), [5, 7, 6, 8]);
        assert_eq!(
            got.iter().map(|p| p.source).collect::<Vec<_>>(),
            [Source::Als, Source::Offline, Source::Als, Source::Offline]
        );
    }

    proptest! {
        #[test]
        fn blend_never_repeats_never_recent_never_over_k(
            sources in proptest::collection::vec(proptest::collection::vec(0u32..40, 0..15), 0..3),
            base in proptest::collection::vec(0u32..40, 0..30),
            recent in proptest::collection::vec(0u32..40, 0..10),
            k in 1usize..20,
        ) {
            let online: Vec<Vec<Pick>> = sources.iter().map(|s| per_source(&[List::unscored(s)], Source::Als, &recent, k)).collect();
            let got = blend(&online, List::unscored(&base), Source::Popular, &recent, k);
            prop_assert!(got.len() <= k);
            let mut seen = items(&got);
            prop_assert!(seen.iter().all(|i| !recent.contains(i)));
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len(), got.len());
            // Nothing eligible is left out when there is room.
            let eligible: std::collections::BTreeSet<u32> =
                sources.iter().flatten().chain(&base).copied().filter(|i| !recent.contains(i)).collect();
            prop_assert_eq!(got.len(), eligible.len().min(k));
        }
    }
}
