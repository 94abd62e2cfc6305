//! The metrics of docs/metrics.md and the three inputs they compare: ranked recommendations, the
//! window's relevant items and the training history.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use crate::EvalError;

/// Users per parallel task. Tasks are fixed and their partial sums are added in task order, so
/// the floating-point results do not depend on thread count or scheduling.
const USERS_PER_TASK: usize = 4096;

/// Ranked recommendations, best first, in CSR form: `users[r]` received
/// `items[offsets[r]..offsets[r + 1]]`.
///
/// A list may be longer than the K of an evaluation (only its first K items count) or shorter.
/// A user has at most one list: the constructors reject a repeated user, since two lists for one
/// user have no single ranking to score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recommendations {
    users: Vec<u32>,
    offsets: Vec<usize>,
    items: Vec<u32>,
    /// One past the largest item, so `evaluate` checks the catalogue size without a pass.
    item_bound: usize,
}

impl Recommendations {
    /// Checks the CSR shape and that no user has two lists.
    pub fn new(users: Vec<u32>, offsets: Vec<usize>, items: Vec<u32>) -> Result<Self, EvalError> {
        check_offsets("recommendations", users.len(), &offsets, items.len())?;
        let mut sorted = users.clone();
        sorted.par_sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(EvalError::DuplicateUser { user: pair[0] });
        }
        Ok(Self { item_bound: item_bound(&items), users, offsets, items })
    }

    /// Builds from `(user, ranked items)` lists, in any user order.
    pub fn from_lists<L: IntoIterator<Item = u32>>(
        lists: impl IntoIterator<Item = (u32, L)>,
    ) -> Result<Self, EvalError> {
        let mut users = Vec::new();
        let mut offsets = vec![0];
        let mut items = Vec::new();
        for (user, list) in lists {
            users.push(user);
            items.extend(list);
            offsets.push(items.len());
        }
        Self::new(users, offsets, items)
    }

    fn list(&self, row: usize) -> &[u32] {
        &self.items[self.offsets[row]..self.offsets[row + 1]]
    }
}

/// The relevant items of an evaluation window: the distinct tracks each user listened to in it.
/// Users with at least one are the window's users, the ones an evaluation scores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relevance {
    /// Dense over users `0..=max window user`: row `u` is user `u`'s items, strictly ascending.
    offsets: Vec<usize>,
    items: Vec<u32>,
    item_bound: usize,
    evaluated_users: usize,
}

impl Relevance {
    /// Builds from the window's `(user, item)` events; repeated listens are one relevant item.
    pub fn from_events(events: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let (offsets, items) = group_distinct(events);
        let evaluated_users = offsets.windows(2).filter(|row| row[0] < row[1]).count();
        Self { item_bound: item_bound(&items), offsets, items, evaluated_users }
    }

    fn n_users(&self) -> usize {
        self.offsets.len() - 1
    }

    fn items_of(&self, user: usize) -> &[u32] {
        &self.items[self.offsets[user]..self.offsets[user + 1]]
    }

    /// The relevant items of `user`, ascending; empty for a user outside the window.
    pub fn relevant(&self, user: u32) -> &[u32] {
        if (user as usize) < self.n_users() { self.items_of(user as usize) } else { &[] }
    }
}

/// What novelty needs from training: each user's train items and how many distinct train users
/// each item of the catalogue had.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainHistory {
    /// Dense over users: row `u` is user `u`'s train items, strictly ascending. Users past the
    /// last row (new users) have no history.
    offsets: Vec<usize>,
    items: Vec<u32>,
    /// −log2 of each item's share of train users; its length is the catalogue size. Computed
    /// once per item here rather than once per recommended item in `evaluate`.
    self_information: Vec<f64>,
}

impl TrainHistory {
    /// Builds from a user × item CSR structure (e.g. the train listen-count matrix without its
    /// values): `offsets` has one entry per user plus one, each row strictly ascending.
    pub fn from_csr(offsets: Vec<usize>, items: Vec<u32>, n_items: usize) -> Result<Self, EvalError> {
        check_offsets("train history", offsets.len().saturating_sub(1), &offsets, items.len())?;
        let unsorted = (0..offsets.len() - 1)
            .into_par_iter()
            .find_first(|&user| items[offsets[user]..offsets[user + 1]].windows(2).any(|pair| pair[0] >= pair[1]));
        if let Some(user) = unsorted {
            return Err(EvalError::UnsortedHistory { user });
        }
        check_items("train history", item_bound(&items), n_items)?;
        // Rows hold distinct items, so an item's occurrences are its distinct users.
        let mut listeners = vec![0u32; n_items];
        for &item in &items {
            listeners[item as usize] += 1;
        }
        // An item without train listeners gets the share 1/n_train_users, as if one user had
        // listened: the largest finite value, where its true share 0 would make the mean
        // infinite. With no train users at all every item scores 0.
        let n_train_users = offsets.windows(2).filter(|row| row[0] < row[1]).count().max(1) as f64;
        let self_information =
            listeners.par_iter().map(|&count| (n_train_users / f64::from(count.max(1))).log2()).collect();
        Ok(Self { offsets, items, self_information })
    }

    /// Builds from the train `(user, item)` events; repeated listens count once.
    pub fn from_events(events: impl IntoIterator<Item = (u32, u32)>, n_items: usize) -> Result<Self, EvalError> {
        let (offsets, items) = group_distinct(events);
        Self::from_csr(offsets, items, n_items)
    }

    fn n_items(&self) -> usize {
        self.self_information.len()
    }

    fn items_of(&self, user: usize) -> &[u32] {
        match self.offsets.get(user..=user + 1) {
            Some(row) => &self.items[row[0]..row[1]],
            None => &[],
        }
    }
}

/// The metrics of one evaluation at cut-off `k`. Rates are in [0, 1]; `popularity_novelty` is in
/// bits (0 for a track every train user played). Means over no users are 0, so a degenerate
/// window still yields finite, serialisable numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub k: usize,
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub coverage_user: f64,
    pub coverage_item: f64,
    pub novelty: f64,
    pub catalog_coverage: f64,
    pub popularity_novelty: f64,
    pub evaluated_users: usize,
    pub users_with_recs: usize,
}

impl Metrics {
    /// The report form: `"precision@10"` and so on with the actual K, plus `"evaluated_users"`
    /// and `"users_with_recs"`.
    pub fn to_json(&self) -> serde_json::Value {
        let k = self.k;
        let mut map = serde_json::Map::new();
        for (name, value) in [
            ("precision", self.precision),
            ("recall", self.recall),
            ("ndcg", self.ndcg),
            ("coverage_user", self.coverage_user),
            ("coverage_item", self.coverage_item),
            ("novelty", self.novelty),
            ("catalog_coverage", self.catalog_coverage),
            ("popularity_novelty", self.popularity_novelty),
        ] {
            map.insert(format!("{name}@{k}"), value.into());
        }
        map.insert("evaluated_users".into(), self.evaluated_users.into());
        map.insert("users_with_recs".into(), self.users_with_recs.into());
        map.into()
    }
}

/// Scores the first `k` recommendations of each window user (docs/metrics.md).
///
/// Precision, recall, NDCG, novelty and popularity novelty are means over the window users with
/// a non-empty list; lists of users outside the window are ignored. An item repeated within one
/// list (a caller bug) counts as a hit once, at its first position, so no metric exceeds 1.
/// Fails if `k` is 0 or an item lies outside the catalogue of `history`.
pub fn evaluate(
    recs: &Recommendations,
    relevant: &Relevance,
    history: &TrainHistory,
    k: usize,
) -> Result<Metrics, EvalError> {
    if k == 0 {
        return Err(EvalError::ZeroK);
    }
    let n_items = history.n_items();
    check_items("recommendations", recs.item_bound, n_items)?;
    check_items("relevance", relevant.item_bound, n_items)?;

    let n_users = relevant.n_users();
    // Looking lists up by user makes the result independent of the order of `recs`.
    let mut row_of = vec![None; n_users];
    for (row, &user) in recs.users.iter().enumerate() {
        if let Some(slot) = row_of.get_mut(user as usize) {
            *slot = Some(row);
        }
    }
    let discounts: Vec<f64> = (1..=k).map(|position| 1.0 / ((position + 1) as f64).log2()).collect();
    // ideal_dcg[m - 1]: the DCG of m hits at the top, the best a user with m relevant items can get.
    let ideal_dcg: Vec<f64> = discounts
        .iter()
        .scan(0.0, |sum, discount| {
            *sum += discount;
            Some(*sum)
        })
        .collect();

    let relevant_items = BitSet::new(n_items);
    relevant.items.par_iter().for_each(|&item| relevant_items.insert(item));
    let recommended = BitSet::new(n_items);

    let partial: Vec<Totals> = (0..n_users.div_ceil(USERS_PER_TASK))
        .into_par_iter()
        .map(|task| {
            let mut totals = Totals::default();
            let users = task * USERS_PER_TASK..n_users.min((task + 1) * USERS_PER_TASK);
            for (user, &row) in users.clone().zip(&row_of[users]) {
                let Some(row) = row else { continue };
                let rel = relevant.items_of(user);
                let list = recs.list(row);
                let top = &list[..list.len().min(k)];
                if rel.is_empty() || top.is_empty() {
                    continue;
                }
                // Separate passes over the few items keep each loop's loads independent, so the
                // catalogue-sized lookups of different items overlap instead of waiting in turn.
                let information: f64 = top.iter().map(|&item| history.self_information[item as usize]).sum();
                let seen = history.items_of(user);
                let novel = top.iter().filter(|item| seen.binary_search(item).is_err()).count();
                let (mut hits, mut dcg) = (0usize, 0.0);
                for (position, &item) in top.iter().enumerate() {
                    // A repeated item (a caller bug) is a hit once, at its first position.
                    if rel.binary_search(&item).is_ok() && !top[..position].contains(&item) {
                        hits += 1;
                        dcg += discounts[position];
                    }
                }
                for &item in top {
                    recommended.insert(item);
                }
                totals.users += 1;
                totals.precision += hits as f64 / k as f64;
                totals.recall += hits as f64 / rel.len() as f64;
                totals.ndcg += dcg / ideal_dcg[rel.len().min(k) - 1];
                totals.novelty += novel as f64 / top.len() as f64;
                totals.popularity_novelty += information / top.len() as f64;
            }
            totals
        })
        .collect();
    let totals = partial.into_iter().fold(Totals::default(), Totals::merge);

    let mean = |sum: f64| share(sum, totals.users);
    Ok(Metrics {
        k,
        precision: mean(totals.precision),
        recall: mean(totals.recall),
        ndcg: mean(totals.ndcg),
        coverage_user: share(totals.users as f64, relevant.evaluated_users),
        coverage_item: share(recommended.common(&relevant_items) as f64, relevant_items.len()),
        novelty: mean(totals.novelty),
        catalog_coverage: share(recommended.len() as f64, n_items),
        popularity_novelty: mean(totals.popularity_novelty),
        evaluated_users: relevant.evaluated_users,
        users_with_recs: totals.users,
    })
}

/// Per-user metrics summed over the users with recommendations.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    users: usize,
    precision: f64,
    recall: f64,
    ndcg: f64,
    novelty: f64,
    popularity_novelty: f64,
}

impl Totals {
    fn merge(self, other: Self) -> Self {
        Self {
            users: self.users + other.users,
            precision: self.precision + other.precision,
            recall: self.recall + other.recall,
            ndcg: self.ndcg + other.ndcg,
            novelty: self.novelty + other.novelty,
            popularity_novelty: self.popularity_novelty + other.popularity_novelty,
        }
    }
}

/// `part / whole`, or 0 when there is nothing to divide by.
fn share(part: f64, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { part / whole as f64 }
}

/// Items below a bound, filled concurrently by rayon tasks without locks.
struct BitSet {
    words: Vec<AtomicU64>,
}

impl BitSet {
    fn new(bound: usize) -> Self {
        Self { words: (0..bound.div_ceil(64)).map(|_| AtomicU64::new(0)).collect() }
    }

    fn insert(&self, item: u32) {
        let word = &self.words[item as usize / 64];
        let bit = 1 << (item % 64);
        // Popular items are inserted over and over: reading first keeps their cache line shared
        // between cores instead of bouncing it with a write each time.
        if word.load(Ordering::Relaxed) & bit == 0 {
            word.fetch_or(bit, Ordering::Relaxed);
        }
    }

    fn len(&self) -> usize {
        self.words.iter().map(|word| word.load(Ordering::Relaxed).count_ones() as usize).sum()
    }

    fn common(&self, other: &Self) -> usize {
        self.words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| (a.load(Ordering::Relaxed) & b.load(Ordering::Relaxed)).count_ones() as usize)
            .sum()
    }
}

/// Groups `(user, item)` events into dense CSR rows of distinct, ascending items.
fn group_distinct(events: impl IntoIterator<Item = (u32, u32)>) -> (Vec<usize>, Vec<u32>) {
    // User-major keys: one sort orders by user then item, and dedup drops repeated listens.
    let mut keys: Vec<u64> = events.into_iter().map(|(user, item)| (u64::from(user) << 32) | u64::from(item)).collect();
    keys.par_sort_unstable();
    keys.dedup();
    let n_users = keys.last().map_or(0, |&key| (key >> 32) as usize + 1);
    let mut offsets = vec![0; n_users + 1];
    for &key in &keys {
        offsets[(key >> 32) as usize + 1] += 1;
    }
    for user in 0..n_users {
        offsets[user + 1] += offsets[user];
    }
    (offsets, keys.iter().map(|&key| key as u32).collect())
}

fn check_offsets(what: &'static str, rows: usize, offsets: &[usize], items: usize) -> Result<(), EvalError> {
    if offsets.len() != rows + 1 {
        return Err(EvalError::OffsetsLength { what, rows, offsets: offsets.len() });
    }
    let (first, last) = (offsets[0], offsets[rows]);
    if first != 0 || last != items {
        return Err(EvalError::OffsetsBounds { what, first, last, items });
    }
    match offsets.windows(2).position(|row| row[0] > row[1]) {
        Some(row) => Err(EvalError::OffsetsDecrease { what, row }),
        None => Ok(()),
    }
}

/// One past the largest item, 0 for none.
fn item_bound(items: &[u32]) -> usize {
    items.par_iter().max().map_or(0, |&item| item as usize + 1)
}

fn check_items(what: &'static str, bound: usize, n_items: usize) -> Result<(), EvalError> {
    if bound > n_items {
        return Err(EvalError::ItemOutOfRange { what, item: (bound - 1) as u32, n_items });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CATALOGUE: usize = 10;

    fn no_history() -> TrainHistory {
        TrainHistory::from_events([], CATALOGUE).unwrap()
    }

    fn run(recs: &[(u32, &[u32])], window: &[(u32, u32)], history: &TrainHistory, k: usize) -> Metrics {
        let recs = Recommendations::from_lists(recs.iter().map(|&(user, list)| (user, list.iter().copied()))).unwrap();
        evaluate(&recs, &Relevance::from_events(window.iter().copied()), history, k).unwrap()
    }

    fn assert_close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-12, "{actual} != {expected}");
    }

    #[test]
    fn perfect_lists_have_ndcg_one() {
        let window = [(0, 2), (0, 5), (0, 7), (1, 3)];
        let m = run(&[(0, &[5, 7, 2, 9, 1]), (1, &[3, 4])], &window, &no_history(), 5);
        assert_close(m.ndcg, 1.0);
    }

    #[test]
    fn hits_at_first_and_third_position() {
        let m = run(&[(0, &[1, 7, 2])], &[(0, 1), (0, 2)], &no_history(), 3);
        // DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal DCG = 1/log2(2) + 1/log2(3) = 1.6309297535714575.
        assert_close(m.ndcg, 0.919_720_789_148_187_6);
        assert_close(m.precision, 2.0 / 3.0);
        assert_close(m.recall, 1.0);
    }

    #[test]
    fn precision_and_recall_average_over_users_with_recs() {
        let window = [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 6), (1, 6), (2, 7)];
        // User 0: 2 hits of 5 relevant; user 1: a short list, still divided by K; user 2: no list.
        let m = run(&[(0, &[1, 9, 3, 8, 2]), (1, &[0, 6])], &window, &no_history(), 4);
        assert_close(m.precision, (2.0 / 4.0 + 1.0 / 4.0) / 2.0);
        assert_close(m.recall, (2.0 / 5.0 + 1.0) / 2.0);
        assert_close(m.coverage_user, 2.0 / 3.0);
        assert_eq!((m.evaluated_users, m.users_with_recs), (3, 2));
    }

    #[test]
    fn an_empty_list_is_no_recommendation() {
        let m = run(&[(0, &[]), (1, &[1])], &[(0, 1), (1, 1)], &no_history(), 3);
        assert_close(m.coverage_user, 0.5);
        assert_close(m.precision, 1.0 / 3.0);
    }

    #[test]
    fn item_coverage_counts_window_tracks_in_window_users_top_k() {
        let window = [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 6), (2, 7)];
        // Item 3 is below the cut-off and user 9 is outside the window: neither counts.
        let m = run(&[(0, &[1, 9, 3]), (1, &[0, 6]), (9, &[2, 3])], &window, &no_history(), 2);
        assert_close(m.coverage_item, 2.0 / 7.0);
        assert_close(m.catalog_coverage, 4.0 / CATALOGUE as f64);
    }

    #[test]
    fn novelty_is_the_share_outside_the_users_train_items() {
        let history = TrainHistory::from_events([(0, 1), (0, 9), (0, 1), (1, 3), (1, 8)], CATALOGUE).unwrap();
        // User 0 saw 1 and 9 of its four; user 2 is new, all of its items are novel.
        let m = run(&[(0, &[1, 9, 3, 8]), (2, &[0, 6])], &[(0, 1), (2, 6)], &history, 4);
        assert_close(m.novelty, (2.0 / 4.0 + 1.0) / 2.0);
    }

    #[test]
    fn popularity_novelty_is_mean_self_information() {
        // 4 train users: item 0 played by all (0 bits), item 1 by two (1 bit), item 2 by one
        // (2 bits), item 3 by none (counted as one listener: 2 bits).
        let train = [(0, 0), (1, 0), (2, 0), (3, 0), (0, 1), (1, 1), (2, 2)];
        let history = TrainHistory::from_events(train, CATALOGUE).unwrap();
        let m = run(&[(0, &[0, 1, 2, 3]), (5, &[1])], &[(0, 0), (5, 1)], &history, 4);
        assert_close(m.popularity_novelty, ((0.0 + 1.0 + 2.0 + 2.0) / 4.0 + 1.0) / 2.0);
    }

    #[test]
    fn a_repeated_item_is_one_hit() {
        let m = run(&[(0, &[4, 4, 4])], &[(0, 4)], &no_history(), 3);
        assert_close(m.precision, 1.0 / 3.0);
        assert_close(m.recall, 1.0);
        assert_close(m.ndcg, 1.0);
    }

    #[test]
    fn an_empty_window_gives_zeros() {
        let m = run(&[(0, &[1])], &[], &no_history(), 10);
        let json = m.to_json();
        assert!(json.as_object().unwrap().values().all(|value| value.as_f64() == Some(0.0)), "{json}");
    }

    #[test]
    fn json_keys_carry_k() {
        let json = run(&[(0, &[1])], &[(0, 1)], &no_history(), 5).to_json();
        let mut keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let expected = [
            "catalog_coverage@5",
            "coverage_item@5",
            "coverage_user@5",
            "evaluated_users",
            "ndcg@5",
            "novelty@5",
            "popularity_novelty@5",
            "precision@5",
            "recall@5",
            "users_with_recs",
        ];
        assert_eq!(keys, expected);
        assert_eq!(json["precision@5"], 0.2);
        assert_eq!(json["users_with_recs"], 1);
    }

    #[test]
    fn malformed_offsets_are_rejected() {
        let offsets_error = |offsets: Vec<usize>| Recommendations::new(vec![0, 1], offsets, vec![1, 2, 3]).unwrap_err();
        let what = "recommendations";
        assert_eq!(offsets_error(vec![0, 3]), EvalError::OffsetsLength { what, rows: 2, offsets: 2 });
        assert_eq!(offsets_error(vec![1, 2, 3]), EvalError::OffsetsBounds { what, first: 1, last: 3, items: 3 });
        assert_eq!(offsets_error(vec![0, 1, 2]), EvalError::OffsetsBounds { what, first: 0, last: 2, items: 3 });
        assert_eq!(offsets_error(vec![0, 4, 3]), EvalError::OffsetsDecrease { what, row: 1 });
        let empty = TrainHistory::from_csr(vec![], vec![], CATALOGUE).unwrap_err();
        assert_eq!(empty, EvalError::OffsetsLength { what: "train history", rows: 0, offsets: 0 });
    }

    #[test]
    fn a_user_with_two_lists_is_rejected() {
        let error = Recommendations::from_lists([(3, vec![1]), (1, vec![2]), (3, vec![4])]).unwrap_err();
        assert_eq!(error, EvalError::DuplicateUser { user: 3 });
    }

    #[test]
    fn unsorted_or_repeated_train_items_are_rejected() {
        let unsorted = TrainHistory::from_csr(vec![0, 1, 3], vec![5, 2, 1], CATALOGUE).unwrap_err();
        assert_eq!(unsorted, EvalError::UnsortedHistory { user: 1 });
        let repeated = TrainHistory::from_csr(vec![0, 2], vec![4, 4], CATALOGUE).unwrap_err();
        assert_eq!(repeated, EvalError::UnsortedHistory { user: 0 });
    }

    #[test]
    fn items_outside_the_catalogue_are_rejected() {
        let outside = CATALOGUE as u32;
        let history = TrainHistory::from_csr(vec![0, 1], vec![outside], CATALOGUE).unwrap_err();
        assert_eq!(history, EvalError::ItemOutOfRange { what: "train history", item: outside, n_items: CATALOGUE });

        let in_range = Recommendations::from_lists([(0, [1])]).unwrap();
        let too_far = Recommendations::from_lists([(0, [1, outside])]).unwrap();
        let window = Relevance::from_events([(0, 1)]);
        let recs = evaluate(&too_far, &window, &no_history(), 3).unwrap_err();
        assert_eq!(recs, EvalError::ItemOutOfRange { what: "recommendations", item: outside, n_items: CATALOGUE });
        let relevance = evaluate(&in_range, &Relevance::from_events([(0, outside)]), &no_history(), 3).unwrap_err();
        assert_eq!(relevance, EvalError::ItemOutOfRange { what: "relevance", item: outside, n_items: CATALOGUE });
        assert_eq!(evaluate(&in_range, &window, &no_history(), 0).unwrap_err(), EvalError::ZeroK);
    }
}
