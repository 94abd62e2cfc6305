//! Invariants of the metrics on random small scenarios, and agreement with a direct,
//! set-based transcription of docs/metrics.md.

use std::collections::BTreeSet;

use musicrec_eval::{Metrics, Recommendations, Relevance, TrainHistory, evaluate};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// A random evaluation: lists may repeat items, be empty or longer than K, and belong to users
/// outside the window.
#[derive(Debug, Clone)]
struct Scenario {
    n_items: usize,
    window: Vec<(u32, u32)>,
    train: Vec<(u32, u32)>,
    lists: Vec<(u32, Vec<u32>)>,
    k: usize,
}

impl Scenario {
    fn relevance(&self) -> Relevance {
        Relevance::from_events(self.window.iter().copied())
    }

    fn history(&self) -> TrainHistory {
        TrainHistory::from_events(self.train.iter().copied(), self.n_items).unwrap()
    }

    fn relevant_of(&self, user: u32) -> BTreeSet<u32> {
        self.window.iter().filter(|event| event.0 == user).map(|event| event.1).collect()
    }

    fn evaluate_lists(&self, lists: &[(u32, Vec<u32>)], k: usize) -> Metrics {
        let recs = Recommendations::from_lists(lists.iter().cloned()).unwrap();
        evaluate(&recs, &self.relevance(), &self.history(), k).unwrap()
    }

    fn metrics(&self) -> Metrics {
        self.evaluate_lists(&self.lists, self.k)
    }
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1u32..12, 1u32..25).prop_flat_map(|(n_users, n_items)| {
        let event = (0..n_users, 0..n_items);
        let list = vec(0..n_items, 0..14);
        (vec(event.clone(), 0..40), vec(event, 0..80), vec(option::of(list), n_users as usize + 3), 1usize..12)
            .prop_map(move |(window, train, lists, k)| Scenario {
                n_items: n_items as usize,
                window,
                train,
                lists: (0..).zip(lists).filter_map(|(user, list)| Some((user, list?))).collect(),
                k,
            })
    })
}

/// docs/metrics.md written out with sets, user by user.
fn reference(s: &Scenario) -> Metrics {
    let window_users: BTreeSet<u32> = s.window.iter().map(|event| event.0).collect();
    let window_items: BTreeSet<u32> = s.window.iter().map(|event| event.1).collect();
    let train_users: BTreeSet<u32> = s.train.iter().map(|event| event.0).collect();
    let listeners =
        |item: u32| s.train.iter().filter(|event| event.1 == item).map(|event| event.0).collect::<BTreeSet<_>>().len();
    let (mut users, mut precision, mut recall, mut ndcg, mut novelty, mut popularity_novelty) =
        (0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let mut recommended = BTreeSet::new();
    for (user, list) in &s.lists {
        let top = &list[..list.len().min(s.k)];
        if !window_users.contains(user) || top.is_empty() {
            continue;
        }
        let relevant = s.relevant_of(*user);
        let seen: BTreeSet<u32> = s.train.iter().filter(|event| event.0 == *user).map(|event| event.1).collect();
        let mut hit = BTreeSet::new();
        let mut dcg = 0.0;
        for (i, item) in (1..).zip(top) {
            if relevant.contains(item) && hit.insert(*item) {
                dcg += 1.0 / f64::log2(i as f64 + 1.0);
            }
        }
        let ideal: f64 = (1..=relevant.len().min(s.k)).map(|i| 1.0 / f64::log2(i as f64 + 1.0)).sum();
        let information: f64 =
            top.iter().map(|&item| -f64::log2(listeners(item).max(1) as f64 / train_users.len().max(1) as f64)).sum();
        users += 1;
        precision += hit.len() as f64 / s.k as f64;
        recall += hit.len() as f64 / relevant.len() as f64;
        ndcg += dcg / ideal;
        novelty += top.iter().filter(|item| !seen.contains(item)).count() as f64 / top.len() as f64;
        popularity_novelty += information / top.len() as f64;
        recommended.extend(top.iter().copied());
    }
    let ratio = |a: f64, b: usize| if b == 0 { 0.0 } else { a / b as f64 };
    Metrics {
        k: s.k,
        precision: ratio(precision, users),
        recall: ratio(recall, users),
        ndcg: ratio(ndcg, users),
        coverage_user: ratio(users as f64, window_users.len()),
        coverage_item: ratio(recommended.intersection(&window_items).count() as f64, window_items.len()),
        novelty: ratio(novelty, users),
        catalog_coverage: ratio(recommended.len() as f64, s.n_items),
        popularity_novelty: ratio(popularity_novelty, users),
        evaluated_users: window_users.len(),
        users_with_recs: users,
    }
}

fn rates(m: &Metrics) -> [f64; 7] {
    [m.precision, m.recall, m.ndcg, m.coverage_user, m.coverage_item, m.novelty, m.catalog_coverage]
}

fn assert_close(actual: &Metrics, expected: &Metrics) {
    let close = |a: f64, e: f64| (a - e).abs() < 1e-9;
    let counts = |m: &Metrics| (m.k, m.evaluated_users, m.users_with_recs);
    assert!(
        counts(actual) == counts(expected)
            && rates(actual).into_iter().zip(rates(expected)).all(|(a, e)| close(a, e))
            && close(actual.popularity_novelty, expected.popularity_novelty),
        "{actual:?}\n!=\n{expected:?}"
    );
}

proptest! {
    #[test]
    fn agrees_with_the_definitions(s in scenario()) {
        assert_close(&s.metrics(), &reference(&s));
    }

    #[test]
    fn rates_lie_in_the_unit_interval(s in scenario()) {
        let m = s.metrics();
        prop_assert!(rates(&m).iter().all(|rate| (0.0..=1.0).contains(rate)), "{m:?}");
        let train_users = s.train.iter().map(|event| event.0).collect::<BTreeSet<_>>().len();
        prop_assert!((0.0..=f64::log2(train_users.max(1) as f64) + 1e-12).contains(&m.popularity_novelty), "{m:?}");
    }

    #[test]
    fn precision_times_k_counts_hits(s in scenario()) {
        let m = s.metrics();
        let hits: usize = s
            .lists
            .iter()
            .map(|(user, list)| {
                let top: BTreeSet<u32> = list.iter().take(s.k).copied().collect();
                top.intersection(&s.relevant_of(*user)).count()
            })
            .sum();
        prop_assert!((m.precision * s.k as f64 * m.users_with_recs as f64 - hits as f64).abs() < 1e-9);
    }

    #[test]
    fn recall_does_not_fall_as_k_grows(s in scenario()) {
        let recalls: Vec<f64> = (1..=15).map(|k| s.evaluate_lists(&s.lists, k).recall).collect();
        prop_assert!(recalls.windows(2).all(|pair| pair[0] <= pair[1]), "{recalls:?}");
    }

    #[test]
    fn relevant_items_first_give_ndcg_one(s in scenario(), seed in any::<u64>()) {
        // Each window user's relevant items in a seeded order, then (when K leaves room) the
        // scenario's list: every relevant item comes before any other.
        let window_users: BTreeSet<u32> = s.window.iter().map(|event| event.0).collect();
        prop_assume!(!window_users.is_empty(), "NDCG averages over no users in an empty window");
        let lists: Vec<(u32, Vec<u32>)> = window_users
            .iter()
            .map(|&user| {
                let mut list: Vec<u32> = s.relevant_of(user).into_iter().collect();
                list.sort_by_key(|&item| (u64::from(item) ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let tail = s.lists.iter().find(|entry| entry.0 == user).map_or(&[][..], |entry| &entry.1[..]);
                list.extend(tail);
                (user, list)
            })
            .collect();
        let m = s.evaluate_lists(&lists, s.k);
        prop_assert!((m.ndcg - 1.0).abs() < 1e-12, "{m:?}");
        prop_assert_eq!(m.users_with_recs, window_users.len());
    }

    #[test]
    fn the_order_of_users_does_not_matter(
        (s, shuffled) in scenario().prop_flat_map(|s| { let lists = s.lists.clone(); (Just(s), Just(lists).prop_shuffle()) })
    ) {
        prop_assert_eq!(s.evaluate_lists(&shuffled, s.k), s.metrics());
    }

    #[test]
    fn users_outside_the_window_do_not_matter(s in scenario()) {
        let window_users: BTreeSet<u32> = s.window.iter().map(|event| event.0).collect();
        let inside: Vec<(u32, Vec<u32>)> = s.lists.iter().filter(|entry| window_users.contains(&entry.0)).cloned().collect();
        prop_assert_eq!(s.evaluate_lists(&inside, s.k), s.metrics());
    }
}
