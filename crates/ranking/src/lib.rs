//! The second stage of the recommender (docs/pipeline.md#ranking): the candidates of every source merged per
//! user (`candidates`), labelled by a window and sampled, described by features (`features`),
//! scored by a gradient-boosted ranker (`model`) and cut to the final top-N per user (`top_n`).
//!
//! Users and items are the dense indices of the matrices stage.

pub mod candidates;
pub mod error;
pub mod features;
pub mod model;

use musicrec_data::CsrMatrix;
use musicrec_models::Recommendations;

pub use candidates::{CandidateSet, SourceCandidates};
pub use error::RankingError;
pub use features::{EntityColumns, FeatureBuilder, FeatureInputs, FeatureMatrix, ItemEmbedding, ItemGroups};
pub use model::{Ranker, RankerParams};

/// The best `n` candidates of every user by `scores` (one per pair), best first; ties go to the
/// lower item index. A track of the user's row in `history` is never kept, and each pair of
/// the set is unique, so no list holds a duplicate.
pub fn top_n(set: &CandidateSet, scores: &[f64], history: &CsrMatrix, n: usize) -> Recommendations {
    assert_eq!(scores.len(), set.len(), "one score per pair");
    let mut recs = Recommendations::new();
    let mut order: Vec<usize> = Vec::new();
    for (g, &user) in set.users().iter().enumerate() {
        let heard: &[u32] = if (user as usize) < history.rows { history.row(user as usize).0 } else { &[] };
        order.clear();
        order.extend(set.group(g).filter(|&p| heard.binary_search(&set.items()[p]).is_err()));
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(set.items()[a].cmp(&set.items()[b])));
        order.truncate(n);
        let items: Vec<u32> = order.iter().map(|&p| set.items()[p]).collect();
        let best: Vec<f32> = order.iter().map(|&p| scores[p] as f32).collect();
        recs.push(user, &items, &best);
    }
    recs
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn final_lists_hold_no_listened_track_and_no_duplicate(
            a in prop::collection::vec((0u32..6, 0u32..30), 0..120),
            b in prop::collection::vec((0u32..6, 0u32..30), 0..120),
            heard in prop::collection::vec((0u32..4, 0u32..30), 0..40),
            n in 1usize..15,
        ) {
            let source = |name: &str, pairs: &[(u32, u32)]| SourceCandidates {
                name: name.into(),
                users: pairs.iter().map(|p| p.0).collect(),
                items: pairs.iter().map(|p| p.1).collect(),
                scores: (0..pairs.len()).map(|i| i as f32).collect(),
                ranks: vec![1; pairs.len()],
            };
            let set = CandidateSet::merge(&[source("a", &a), source("b", &b)]);
            let history = CsrMatrix::from_coo(
                4, 30, &heard.iter().map(|h| h.0).collect::<Vec<_>>(), &heard.iter().map(|h| h.1).collect::<Vec<_>>(),
                &vec![1.0; heard.len()]);
            let scores: Vec<f64> = (0..set.len()).map(|p| ((p * 37) % 11) as f64).collect();
            let recs = top_n(&set, &scores, &history, n);
            for (user, items, s) in recs.iter() {
                prop_assert!(items.len() <= n);
                let mut distinct = items.to_vec();
                distinct.sort_unstable();
                distinct.dedup();
                prop_assert_eq!(distinct.len(), items.len(), "no duplicate");
                prop_assert!(s.windows(2).all(|w| w[0] >= w[1]), "best first");
                if (user as usize) < history.rows {
                    let row = history.row(user as usize).0;
                    prop_assert!(items.iter().all(|i| row.binary_search(i).is_err()), "no listened track");
                }
            }
        }
    }
}
