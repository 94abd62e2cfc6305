//! Invariants of the metrics on random small scenarios, and agreement with a direct,
//! set-based transcription of docs/metrics.md.

use std::collections::BTreeSet;

use musicrec_eval::{
    Evaluation, ItemGroups, Metrics, Recommendations, Relevance, TrainHistory, Truth, UserMetric, bootstrap_means,
    evaluate, interval,
};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

/// A random evaluation: lists may repeat items, be empty or longer than K, and belong to users
/// outside the window; items have zero or more artists and genres.
#[derive(Debug, Clone)]
struct Scenario {
    n_items: usize,
    window: Vec<(u32, u32)>,
    train: Vec<(u32, u32)>,
    artists: Vec<(u32, u32)>,
    genres: Vec<(u32, u32)>,
    lists: Vec<(u32, Vec<u32>)>,
    k: usize,
}

impl Scenario {
    fn relevant_of(&self, user: u32) -> BTreeSet<u32> {
        self.window.iter().filter(|event| event.0 == user).map(|event| event.1).collect()
    }

    fn evaluate_lists(&self, lists: &[(u32, Vec<u32>)], ks: &[usize]) -> Evaluation {
        let recs = Recommendations::from_lists(lists.iter().cloned()).unwrap();
        let relevance = Relevance::from_events(self.window.iter().copied());
        let history = TrainHistory::from_events(self.train.iter().copied(), self.n_items).unwrap();
        let artists = ItemGroups::from_pairs(self.artists.iter().copied(), self.n_items).unwrap();
        let genres = ItemGroups::from_pairs(self.genres.iter().copied(), self.n_items).unwrap();
        evaluate(&recs, &Truth { relevance: &relevance, history: &history, artists: &artists, genres: &genres }, ks)
            .unwrap()
    }

    fn metrics(&self) -> Metrics {
        self.evaluate_lists(&self.lists, &[self.k]).at.remove(0).metrics
    }
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (1u32..12, 1u32..25).prop_flat_map(|(n_users, n_items)| {
        let event = (0..n_users, 0..n_items);
        let group = (0..n_items, 0u32..5);
        let list = vec(0..n_items, 0..14);
        (
            vec(event.clone(), 0..40),
            vec(event, 0..80),
            vec(group.clone(), 0..30),
            vec(group, 0..30),
            vec(option::of(list), n_users as usize + 3),
            1usize..12,
        )
            .prop_map(move |(window, train, artists, genres, lists, k)| Scenario {
                n_items: n_items as usize,
                window,
                train,
                artists,
                genres,
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
    let percentile = |item: u32| {
        (0..s.n_items as u32).filter(|&other| listeners(other) < listeners(item)).count() as f64 / s.n_items as f64
    };
    let distinct = |pairs: &[(u32, u32)], top: &[u32]| {
        pairs.iter().filter(|pair| top.contains(&pair.0)).map(|pair| pair.1).collect::<BTreeSet<_>>().len() as f64
    };
    let mut users = 0;
    let (mut precision, mut recall, mut ndcg, mut map, mut mrr, mut hit_rate) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut novelty, mut original_novelty, mut artists, mut genres, mut popularity) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let mut recommended = BTreeSet::new();
    for (user, list) in &s.lists {
        let top = &list[..list.len().min(s.k)];
        if !window_users.contains(user) || top.is_empty() {
            continue;
        }
        let relevant = s.relevant_of(*user);
        let seen: BTreeSet<u32> = s.train.iter().filter(|event| event.0 == *user).map(|event| event.1).collect();
        let mut hit = BTreeSet::new();
        let (mut dcg, mut precisions, mut first) = (0.0, 0.0, None);
        for (i, item) in (1..).zip(top) {
            if relevant.contains(item) && hit.insert(*item) {
                dcg += 1.0 / f64::log2(i as f64 + 1.0);
                precisions += hit.len() as f64 / i as f64;
                first = first.or(Some(i));
            }
        }
        let ideal: f64 = (1..=relevant.len().min(s.k)).map(|i| 1.0 / f64::log2(i as f64 + 1.0)).sum();
        let information: f64 =
            top.iter().map(|&item| -f64::log2(listeners(item).max(1) as f64 / train_users.len().max(1) as f64)).sum();
        let length = top.len() as f64;
        users += 1;
        precision += hit.len() as f64 / s.k as f64;
        recall += hit.len() as f64 / relevant.len() as f64;
        ndcg += dcg / ideal;
        map += precisions / relevant.len().min(s.k) as f64;
        mrr += first.map_or(0.0, |rank| 1.0 / f64::from(rank));
        hit_rate += if hit.is_empty() { 0.0 } else { 1.0 };
        novelty += information / length;
        original_novelty += top.iter().filter(|item| !seen.contains(item)).count() as f64 / length;
        artists += distinct(&s.artists, top);
        genres += distinct(&s.genres, top);
        popularity += top.iter().map(|&item| percentile(item)).sum::<f64>() / length;
        recommended.extend(top.iter().copied());
    }
    let ratio = |a: f64, b: usize| if b == 0 { 0.0 } else { a / b as f64 };
    let all = window_users.len();
    Metrics {
        k: s.k,
        precision: ratio(precision, all),
        recall: ratio(recall, all),
        ndcg: ratio(ndcg, all),
        map: ratio(map, all),
        mrr: ratio(mrr, all),
        hit_rate: ratio(hit_rate, all),
        coverage_user: ratio(users as f64, all),
        coverage_item: ratio(recommended.intersection(&window_items).count() as f64, window_items.len()),
        catalog_coverage: ratio(recommended.len() as f64, s.n_items),
        novelty: ratio(novelty, users),
        original_novelty: ratio(original_novelty, users),
        artists: ratio(artists, users),
        genres: ratio(genres, users),
        popularity_percentile: ratio(popularity, users),
        evaluated_users: all,
        users_with_recs: users,
    }
}

/// The metrics that are shares, in [0, 1].
fn rates(m: &Metrics) -> [f64; 11] {
    [
        m.precision,
        m.recall,
        m.ndcg,
        m.map,
        m.mrr,
        m.hit_rate,
        m.coverage_user,
        m.coverage_item,
        m.catalog_coverage,
        m.original_novelty,
        m.popularity_percentile,
    ]
}

fn assert_close(actual: &Metrics, expected: &Metrics) {
    let counts = |m: &Metrics| (m.k, m.evaluated_users, m.users_with_recs);
    let values = |m: &Metrics| m.values().map(|(_, value)| value);
    assert!(
        counts(actual) == counts(expected)
            && values(actual).into_iter().zip(values(expected)).all(|(a, e)| (a - e).abs() < 1e-9),
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
        prop_assert!((0.0..=f64::log2(train_users.max(1) as f64) + 1e-12).contains(&m.novelty), "{m:?}");
        prop_assert!(m.artists <= s.k as f64 * 5.0 && m.genres <= 5.0, "{m:?}");
        // A list that hits has its first hit within K: MRR and MAP at most the hit rate.
        prop_assert!(m.mrr <= m.hit_rate + 1e-12 && m.map <= m.hit_rate + 1e-12, "{m:?}");
    }

    #[test]
    fn the_means_are_the_means_of_the_per_user_values(s in scenario()) {
        let at = s.evaluate_lists(&s.lists, &[s.k]).at.remove(0);
        for metric in UserMetric::ALL {
            let values = at.per_user.get(metric);
            prop_assert_eq!(values.len(), at.metrics.evaluated_users);
            let mean = if values.is_empty() { 0.0 } else { values.iter().sum::<f64>() / values.len() as f64 };
            prop_assert!((mean - at.metrics.user_metric(metric)).abs() < 1e-12, "{metric:?}");
        }
    }

    #[test]
    fn several_ks_at_once_equal_one_at_a_time(s in scenario()) {
        let ks = [s.k, 1, s.k + 3];
        let together = s.evaluate_lists(&s.lists, &ks);
        for (at, k) in together.at.iter().zip(ks) {
            prop_assert_eq!(at, &s.evaluate_lists(&s.lists, &[k]).at[0]);
        }
    }

    #[test]
    fn recall_and_hit_rate_do_not_fall_as_k_grows(s in scenario()) {
        let ks: Vec<usize> = (1..=15).collect();
        let evaluation = s.evaluate_lists(&s.lists, &ks);
        let series = |pick: fn(&Metrics) -> f64| evaluation.at.iter().map(|at| pick(&at.metrics)).collect::<Vec<_>>();
        for values in [series(|m| m.recall), series(|m| m.hit_rate), series(|m| m.mrr), series(|m| m.catalog_coverage)] {
            prop_assert!(values.windows(2).all(|pair| pair[0] <= pair[1] + 1e-12), "{values:?}");
        }
    }

    #[test]
    fn relevant_items_first_give_ndcg_map_and_mrr_one(s in scenario(), seed in any::<u64>()) {
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
        let m = s.evaluate_lists(&lists, &[s.k]).at.remove(0).metrics;
        prop_assert!((m.ndcg - 1.0).abs() < 1e-12 && (m.map - 1.0).abs() < 1e-12, "{m:?}");
        prop_assert!((m.mrr - 1.0).abs() < 1e-12 && (m.hit_rate - 1.0).abs() < 1e-12, "{m:?}");
        prop_assert_eq!(m.users_with_recs, window_users.len());
    }

    #[test]
    fn the_order_of_users_does_not_matter(
        (s, shuffled) in scenario().prop_flat_map(|s| { let lists = s.lists.clone(); (Just(s), Just(lists).prop_shuffle()) })
    ) {
        prop_assert_eq!(s.evaluate_lists(&shuffled, &[s.k]), s.evaluate_lists(&s.lists, &[s.k]));
    }

    #[test]
    fn users_outside_the_window_do_not_matter(s in scenario()) {
        let window_users: BTreeSet<u32> = s.window.iter().map(|event| event.0).collect();
        let inside: Vec<(u32, Vec<u32>)> = s.lists.iter().filter(|entry| window_users.contains(&entry.0)).cloned().collect();
        prop_assert_eq!(s.evaluate_lists(&inside, &[s.k]), s.evaluate_lists(&s.lists, &[s.k]));
    }

    #[test]
    fn bootstrap_intervals_lie_within_the_values(values in vec(0.0f64..1.0, 1..60), seed in any::<u64>()) {
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let means = bootstrap_means(&[&values], 200, seed).unwrap();
        let ci = interval(mean, &means[0]);
        let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        prop_assert!(lo - 1e-12 <= ci.low && ci.low <= ci.high && ci.high <= hi + 1e-12, "{ci:?}");
        // The interval of a series minus itself (paired) is exactly zero.
        let paired = bootstrap_means(&[&values, &values], 50, seed).unwrap();
        prop_assert!(paired[0].iter().zip(&paired[1]).all(|(a, b)| a == b));
    }
}
