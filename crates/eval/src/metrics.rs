//! The metrics of docs/metrics.md and the inputs they compare: ranked recommendations, the
//! window's relevant items, the training history and the items' artists and genres.

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

    /// Every `(user, ranked items)` list, in the order given.
    pub fn lists(&self) -> impl Iterator<Item = (u32, &[u32])> {
        self.users.iter().enumerate().map(|(row, &user)| (user, self.list(row)))
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
    /// The users with at least one relevant item, ascending.
    users: Vec<u32>,
}

impl Relevance {
    /// Builds from the window's `(user, item)` events; repeated listens are one relevant item.
    pub fn from_events(events: impl IntoIterator<Item = (u32, u32)>) -> Self {
        let (offsets, items) = group_distinct(events);
        let users = (0..offsets.len().saturating_sub(1) as u32)
            .filter(|&user| offsets[user as usize] < offsets[user as usize + 1])
            .collect();
        Self { item_bound: item_bound(&items), offsets, items, users }
    }

    fn n_users(&self) -> usize {
        self.offsets.len() - 1
    }

    fn items_of(&self, user: usize) -> &[u32] {
        &self.items[self.offsets[user]..self.offsets[user + 1]]
    }

    /// The window's users: those with at least one relevant item, ascending.
    pub fn users(&self) -> &[u32] {
        &self.users
    }

    /// The relevant items of `user`, ascending; empty for a user outside the window.
    pub fn relevant(&self, user: u32) -> &[u32] {
        if (user as usize) < self.n_users() { self.items_of(user as usize) } else { &[] }
    }
}

/// What the list metrics need from training: each user's train items, and for each catalogue
/// item its number of distinct train users, the self-information of that share and its
/// popularity percentile.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainHistory {
    /// Dense over users: row `u` is user `u`'s train items, strictly ascending. Users past the
    /// last row (new users) have no history.
    offsets: Vec<usize>,
    items: Vec<u32>,
    /// Distinct train users of each item; its length is the catalogue size.
    listeners: Vec<u32>,
    /// −log2 of each item's share of train users. Computed once per item here rather than once
    /// per recommended item in `evaluate`.
    self_information: Vec<f64>,
    /// Share of the catalogue with fewer train listeners than each item.
    percentile: Vec<f64>,
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
        let percentile = popularity_percentiles(&listeners);
        Ok(Self { offsets, items, listeners, self_information, percentile })
    }

    /// Builds from the train `(user, item)` events; repeated listens count once.
    pub fn from_events(events: impl IntoIterator<Item = (u32, u32)>, n_items: usize) -> Result<Self, EvalError> {
        let (offsets, items) = group_distinct(events);
        Self::from_csr(offsets, items, n_items)
    }

    pub fn n_items(&self) -> usize {
        self.self_information.len()
    }

    /// Distinct train users of each catalogue item.
    pub fn listeners(&self) -> &[u32] {
        &self.listeners
    }

    /// The number of distinct train items of `user` (0 for a new user).
    pub fn activity(&self, user: u32) -> usize {
        self.items_of(user as usize).len()
    }

    fn items_of(&self, user: usize) -> &[u32] {
        match self.offsets.get(user..=user + 1) {
            Some(row) => &self.items[row[0]..row[1]],
            None => &[],
        }
    }
}

/// For each item, the share of the catalogue with strictly fewer listeners.
fn popularity_percentiles(listeners: &[u32]) -> Vec<f64> {
    let mut sorted = listeners.to_vec();
    sorted.par_sort_unstable();
    let n = sorted.len() as f64;
    listeners.par_iter().map(|count| sorted.partition_point(|other| other < count) as f64 / n).collect()
}

/// Groups of each catalogue item (its artists, or its genres), for intra-list diversity. An item
/// may have several groups or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemGroups {
    /// Dense over items `0..n_items`: row `i` is item `i`'s groups, ascending and distinct.
    offsets: Vec<usize>,
    groups: Vec<u32>,
}

impl ItemGroups {
    /// Builds from `(item, group)` pairs over a catalogue of `n_items`; repeats count once.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (u32, u32)>, n_items: usize) -> Result<Self, EvalError> {
        let (mut offsets, groups) = group_distinct(pairs);
        check_items("item groups", offsets.len() - 1, n_items)?;
        offsets.resize(n_items + 1, groups.len());
        Ok(Self { offsets, groups })
    }

    fn of(&self, item: u32) -> &[u32] {
        &self.groups[self.offsets[item as usize]..self.offsets[item as usize + 1]]
    }
}

/// What recommendations are judged against: the window's relevant items, the train history and
/// the items' artists and genres.
#[derive(Debug, Clone, Copy)]
pub struct Truth<'a> {
    pub relevance: &'a Relevance,
    pub history: &'a TrainHistory,
    pub artists: &'a ItemGroups,
    pub genres: &'a ItemGroups,
}

/// The per-user metrics: defined for every evaluated user, 0 for a user without a list, so
/// their means are the headline figures and their resamples give intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserMetric {
    Precision,
    Recall,
    Ndcg,
    Map,
    Mrr,
    HitRate,
}

impl UserMetric {
    pub const ALL: [UserMetric; 6] = [Self::Precision, Self::Recall, Self::Ndcg, Self::Map, Self::Mrr, Self::HitRate];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Precision => "precision",
            Self::Recall => "recall",
            Self::Ndcg => "ndcg",
            Self::Map => "map",
            Self::Mrr => "mrr",
            Self::HitRate => "hit_rate",
        }
    }
}

/// The metrics of one evaluation at cut-off `k` (docs/metrics.md). The per-user metrics are
/// means over every evaluated user; the list metrics (novelty, diversity, popularity) means
/// over the evaluated users with a list; coverages are shares. Means over no users are 0, so a
/// degenerate window still yields finite, serialisable numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    pub k: usize,
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub map: f64,
    pub mrr: f64,
    pub hit_rate: f64,
    /// The original system's CoverageUser: share of evaluated users with a list.
    pub coverage_user: f64,
    /// The original system's CoverageItem: share of the window's relevant items recommended.
    pub coverage_item: f64,
    pub catalog_coverage: f64,
    /// Mean self-information of the recommended items' popularity, in bits.
    pub novelty: f64,
    /// The original system's Novelty: share of a list outside the user's train items.
    pub original_novelty: f64,
    /// Mean distinct artists in a list.
    pub artists: f64,
    /// Mean distinct genres in a list.
    pub genres: f64,
    /// Mean popularity percentile of the recommended items (popularity bias).
    pub popularity_percentile: f64,
    pub evaluated_users: usize,
    pub users_with_recs: usize,
}

impl Metrics {
    /// Every metric by its report name, in report order.
    pub fn values(&self) -> [(&'static str, f64); 14] {
        [
            ("precision", self.precision),
            ("recall", self.recall),
            ("ndcg", self.ndcg),
            ("map", self.map),
            ("mrr", self.mrr),
            ("hit_rate", self.hit_rate),
            ("coverage_user", self.coverage_user),
            ("coverage_item", self.coverage_item),
            ("catalog_coverage", self.catalog_coverage),
            ("novelty", self.novelty),
            ("original_novelty", self.original_novelty),
            ("artists", self.artists),
            ("genres", self.genres),
            ("popularity_percentile", self.popularity_percentile),
        ]
    }

    pub fn user_metric(&self, metric: UserMetric) -> f64 {
        match metric {
            UserMetric::Precision => self.precision,
            UserMetric::Recall => self.recall,
            UserMetric::Ndcg => self.ndcg,
            UserMetric::Map => self.map,
            UserMetric::Mrr => self.mrr,
            UserMetric::HitRate => self.hit_rate,
        }
    }
}

/// Per-user values of one K, aligned with `Evaluation::users`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PerUser {
    values: [Vec<f64>; 6],
}

impl PerUser {
    pub fn get(&self, metric: UserMetric) -> &[f64] {
        &self.values[metric as usize]
    }
}

/// One K's result: the metrics and the per-user values behind the per-user ones.
#[derive(Debug, Clone, PartialEq)]
pub struct AtK {
    pub metrics: Metrics,
    pub per_user: PerUser,
}

/// An evaluation at several K: the evaluated users (ascending) and each K's result, in the
/// order the Ks were given.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub users: Vec<u32>,
    pub at: Vec<AtK>,
}

impl Evaluation {
    /// The result at `k`, if it was evaluated.
    pub fn at_k(&self, k: usize) -> Option<&AtK> {
        self.at.iter().find(|at| at.metrics.k == k)
    }

    /// The report form: `"precision@10"` and so on for every K, plus `"evaluated_users"` and
    /// `"users_with_recs"`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for at in &self.at {
            let k = at.metrics.k;
            for (name, value) in at.metrics.values() {
                map.insert(format!("{name}@{k}"), value.into());
            }
        }
        let first = self.at.first().map(|at| &at.metrics);
        map.insert("evaluated_users".into(), first.map_or(self.users.len(), |m| m.evaluated_users).into());
        map.insert("users_with_recs".into(), first.map_or(0, |m| m.users_with_recs).into());
        map.into()
    }
}

/// Scores the first `k` recommendations of each window user for every `k` of `ks`
/// (docs/metrics.md). Lists of users outside the window are ignored; a window user without a
/// list scores 0. An item repeated within one list (a caller bug) counts as a hit once, at its
/// first position, so no metric exceeds 1. Fails if `ks` is empty or holds 0, or an item lies
/// outside the catalogue of the history.
pub fn evaluate(recs: &Recommendations, truth: &Truth<'_>, ks: &[usize]) -> Result<Evaluation, EvalError> {
    if ks.is_empty() || ks.contains(&0) {
        return Err(EvalError::ZeroK);
    }
    let (relevant, history) = (truth.relevance, truth.history);
    let n_items = history.n_items();
    check_items("recommendations", recs.item_bound, n_items)?;
    check_items("relevance", relevant.item_bound, n_items)?;
    for groups in [truth.artists, truth.genres] {
        let items = groups.offsets.len() - 1;
        if items != n_items {
            return Err(EvalError::CatalogueMismatch { what: "item groups", items, n_items });
        }
    }

    let n_users = relevant.n_users();
    // Looking lists up by user makes the result independent of the order of `recs`.
    let mut row_of = vec![None; n_users];
    for (row, &user) in recs.users.iter().enumerate() {
        if let Some(slot) = row_of.get_mut(user as usize) {
            *slot = Some(row);
        }
    }
    let k_max = *ks.iter().max().expect("not empty");
    let discounts: Vec<f64> = (1..=k_max).map(|position| 1.0 / ((position + 1) as f64).log2()).collect();
    // ideal_dcg[m - 1]: the DCG of m hits at the top, the best a user with m relevant items can get.
    let ideal_dcg: Vec<f64> = discounts
        .iter()
        .scan(0.0, |sum, discount| {
            *sum += discount;
            Some(*sum)
        })
        .collect();
    let scorer = Scorer { truth, discounts: &discounts, ideal_dcg: &ideal_dcg };

    let relevant_items = BitSet::new(n_items);
    relevant.items.par_iter().for_each(|&item| relevant_items.insert(item));
    let recommended: Vec<BitSet> = ks.iter().map(|_| BitSet::new(n_items)).collect();

    let users = &relevant.users;
    let partial: Vec<(Vec<Totals>, Vec<PerUser>)> = users
        .par_chunks(USERS_PER_TASK)
        .map(|chunk| {
            let mut totals = vec![Totals::default(); ks.len()];
            let mut per_user: Vec<PerUser> = ks.iter().map(|_| PerUser::default()).collect();
            for &user in chunk {
                let list = row_of[user as usize].map_or(&[][..], |row| recs.list(row));
                for (j, &k) in ks.iter().enumerate() {
                    let top = &list[..list.len().min(k)];
                    let scores = scorer.score(user, top, k);
                    for (values, value) in per_user[j].values.iter_mut().zip(scores.user) {
                        values.push(value);
                    }
                    if !top.is_empty() {
                        for &item in top {
                            recommended[j].insert(item);
                        }
                        totals[j].add(&scores);
                    }
                }
            }
            (totals, per_user)
        })
        .collect();

    let mut totals = vec![Totals::default(); ks.len()];
    let mut per_user: Vec<PerUser> = ks.iter().map(|_| PerUser::default()).collect();
    for (chunk_totals, chunk_values) in partial {
        for j in 0..ks.len() {
            totals[j] = totals[j].merge(&chunk_totals[j]);
            for (all, part) in per_user[j].values.iter_mut().zip(&chunk_values[j].values) {
                all.extend_from_slice(part);
            }
        }
    }
    let evaluated = users.len();
    let at = ks
        .iter()
        .zip(totals)
        .zip(per_user)
        .zip(&recommended)
        .map(|(((&k, totals), per_user), recommended)| {
            let over_lists = |sum: f64| share(sum, totals.users);
            let over_users = |sum: f64| share(sum, evaluated);
            let metrics = Metrics {
                k,
                precision: over_users(totals.user[UserMetric::Precision as usize]),
                recall: over_users(totals.user[UserMetric::Recall as usize]),
                ndcg: over_users(totals.user[UserMetric::Ndcg as usize]),
                map: over_users(totals.user[UserMetric::Map as usize]),
                mrr: over_users(totals.user[UserMetric::Mrr as usize]),
                hit_rate: over_users(totals.user[UserMetric::HitRate as usize]),
                coverage_user: share(totals.users as f64, evaluated),
                coverage_item: share(recommended.common(&relevant_items) as f64, relevant_items.len()),
                catalog_coverage: share(recommended.len() as f64, n_items),
                novelty: over_lists(totals.list[0]),
                original_novelty: over_lists(totals.list[1]),
                artists: over_lists(totals.list[2]),
                genres: over_lists(totals.list[3]),
                popularity_percentile: over_lists(totals.list[4]),
                evaluated_users: evaluated,
                users_with_recs: totals.users,
            };
            AtK { metrics, per_user }
        })
        .collect();
    Ok(Evaluation { users: users.clone(), at })
}

/// What one user's list scores at one K.
struct Scores {
    user: [f64; 6],
    /// Self-information, unseen share, distinct artists, distinct genres, popularity percentile.
    list: [f64; 5],
}

struct Scorer<'a> {
    truth: &'a Truth<'a>,
    discounts: &'a [f64],
    ideal_dcg: &'a [f64],
}

impl Scorer<'_> {
    fn score(&self, user: u32, top: &[u32], k: usize) -> Scores {
        let mut scores = Scores { user: [0.0; 6], list: [0.0; 5] };
        if top.is_empty() {
            return scores;
        }
        let rel = self.truth.relevance.items_of(user as usize);
        let (mut hits, mut dcg, mut precision_sum, mut first_hit) = (0usize, 0.0, 0.0, None);
        for (position, &item) in top.iter().enumerate() {
            // A repeated item (a caller bug) is a hit once, at its first position.
            if rel.binary_search(&item).is_ok() && !top[..position].contains(&item) {
                hits += 1;
                dcg += self.discounts[position];
                precision_sum += hits as f64 / (position + 1) as f64;
                if first_hit.is_none() {
                    first_hit = Some(position + 1);
                }
            }
        }
        let ideal = rel.len().min(k);
        scores.user = [
            hits as f64 / k as f64,
            hits as f64 / rel.len() as f64,
            dcg / self.ideal_dcg[ideal - 1],
            precision_sum / ideal as f64,
            first_hit.map_or(0.0, |rank| 1.0 / rank as f64),
            if hits > 0 { 1.0 } else { 0.0 },
        ];
        let history = self.truth.history;
        let length = top.len() as f64;
        let seen = history.items_of(user as usize);
        let distinct = |groups: &ItemGroups| {
            let mut all: Vec<u32> = top.iter().flat_map(|&item| groups.of(item)).copied().collect();
            all.sort_unstable();
            all.dedup();
            all.len() as f64
        };
        scores.list = [
            top.iter().map(|&item| history.self_information[item as usize]).sum::<f64>() / length,
            top.iter().filter(|item| seen.binary_search(item).is_err()).count() as f64 / length,
            distinct(self.truth.artists),
            distinct(self.truth.genres),
            top.iter().map(|&item| history.percentile[item as usize]).sum::<f64>() / length,
        ];
        scores
    }
}

/// Metrics summed over users: per-user ones over all, list ones over users with a list.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    users: usize,
    user: [f64; 6],
    list: [f64; 5],
}

impl Totals {
    fn add(&mut self, scores: &Scores) {
        self.users += 1;
        self.user.iter_mut().zip(scores.user).for_each(|(sum, value)| *sum += value);
        self.list.iter_mut().zip(scores.list).for_each(|(sum, value)| *sum += value);
    }

    fn merge(&self, other: &Self) -> Self {
        let mut merged = *self;
        merged.users += other.users;
        merged.user.iter_mut().zip(other.user).for_each(|(sum, value)| *sum += value);
        merged.list.iter_mut().zip(other.list).for_each(|(sum, value)| *sum += value);
        merged
    }
}

/// The popularity class of catalogue items: tracks by train listeners, most first; the head
/// holds the first half of all (user, track) train pairs, the torso the next 30%, the tail the
/// rest (and every track nobody played).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PopularityClass {
    Head,
    Torso,
    Tail,
}

impl PopularityClass {
    pub const ALL: [PopularityClass; 3] = [Self::Head, Self::Torso, Self::Tail];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Head => "head",
            Self::Torso => "torso",
            Self::Tail => "tail",
        }
    }

    /// Every item's class from its listener count. Ties are broken by item index, so the
    /// classes are a function of the counts alone.
    pub fn of_items(listeners: &[u32]) -> Vec<PopularityClass> {
        let total: u64 = listeners.iter().map(|&c| u64::from(c)).sum();
        let mut order: Vec<u32> = (0..listeners.len() as u32).collect();
        order.sort_by_key(|&item| (std::cmp::Reverse(listeners[item as usize]), item));
        let mut classes = vec![Self::Tail; listeners.len()];
        let mut before = 0u64;
        for item in order {
            // A track's class is where its first pair falls, so the top track is always head.
            let class = if before * 2 < total {
                Self::Head
            } else if before * 10 < total * 8 {
                Self::Torso
            } else {
                Self::Tail
            };
            if listeners[item as usize] == 0 {
                break;
            }
            classes[item as usize] = class;
            before += u64::from(listeners[item as usize]);
        }
        classes
    }
}

/// Hits and recommendations at `k` per popularity class, over the window's users: which part
/// of the catalogue a model's hits come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassCounts {
    pub hits: [usize; 3],
    pub recommended: [usize; 3],
}

pub fn hits_by_class(
    recs: &Recommendations,
    relevance: &Relevance,
    classes: &[PopularityClass],
    k: usize,
) -> ClassCounts {
    let mut counts = ClassCounts::default();
    for (row, &user) in recs.users.iter().enumerate() {
        let rel = relevance.relevant(user);
        if rel.is_empty() {
            continue;
        }
        let list = recs.list(row);
        let top = &list[..list.len().min(k)];
        for (position, &item) in top.iter().enumerate() {
            let class = classes[item as usize] as usize;
            counts.recommended[class] += 1;
            if rel.binary_search(&item).is_ok() && !top[..position].contains(&item) {
                counts.hits[class] += 1;
            }
        }
    }
    counts
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

    /// The hand-worked fixture of docs/metrics.md: six tracks, four train users, four window
    /// users (user 4 new, user 5 without a list) and a list of user 9 outside the window.
    struct Fixture {
        relevance: Relevance,
        history: TrainHistory,
        artists: ItemGroups,
        genres: ItemGroups,
        recs: Recommendations,
    }

    impl Fixture {
        fn new() -> Self {
            let train = [(0, 0), (0, 1), (1, 0), (1, 2), (2, 0), (3, 0), (3, 1), (3, 1)];
            let window = [(0, 2), (0, 3), (1, 4), (4, 0), (5, 1), (0, 3)];
            let artists = [(0, 0), (1, 0), (2, 1), (3, 1), (3, 2), (5, 3)];
            let genres = [(0, 0), (1, 0), (2, 0), (3, 1), (5, 1)];
            let lists: [(u32, &[u32]); 4] = [(0, &[3, 1, 2, 5]), (1, &[0, 5]), (4, &[0, 1, 2]), (9, &[1])];
            Self {
                relevance: Relevance::from_events(window),
                history: TrainHistory::from_events(train, 6).unwrap(),
                artists: ItemGroups::from_pairs(artists, 6).unwrap(),
                genres: ItemGroups::from_pairs(genres, 6).unwrap(),
                recs: Recommendations::from_lists(lists.map(|(user, list)| (user, list.iter().copied()))).unwrap(),
            }
        }

        fn evaluate(&self, ks: &[usize]) -> Evaluation {
            let truth = Truth {
                relevance: &self.relevance,
                history: &self.history,
                artists: &self.artists,
                genres: &self.genres,
            };
            evaluate(&self.recs, &truth, ks).unwrap()
        }
    }

    fn assert_close(actual: f64, expected: f64) {
        assert!((actual - expected).abs() < 1e-12, "{actual} != {expected}");
    }

    fn assert_metrics(actual: &Metrics, expected: [f64; 14]) {
        for ((name, value), expected) in actual.values().iter().zip(expected) {
            assert!((value - expected).abs() < 1e-12, "{name}@{}: {value} != {expected}", actual.k);
        }
        assert_eq!((actual.evaluated_users, actual.users_with_recs), (4, 3));
    }

    /// 1 + 1/log2(3): the ideal DCG of two relevant items.
    const IDEAL_2: f64 = 1.630_929_753_571_457_5;

    #[test]
    fn hand_computed_values_at_k_2() {
        let evaluation = Fixture::new().evaluate(&[2, 3]);
        assert_eq!(evaluation.users, vec![0, 1, 4, 5]);
        // User 0 hits at 1 of {2, 3}; user 1 misses; user 4 hits at 1 of {0}; user 5 has no list.
        let ndcg_0 = 1.0 / IDEAL_2;
        assert_metrics(
            &evaluation.at[0].metrics,
            [
                (0.5 + 0.5) / 4.0,
                (0.5 + 1.0) / 4.0,
                (ndcg_0 + 1.0) / 4.0,
                (0.5 + 1.0) / 4.0,
                (1.0 + 1.0) / 4.0,
                2.0 / 4.0,
                3.0 / 4.0,
                // Recommended {0, 1, 3, 5} ∩ window tracks {0, 1, 2, 3, 4}; user 9's list is ignored.
                3.0 / 5.0,
                4.0 / 6.0,
                // Bits: track 0 (4 of 4 train users) 0, track 1 (2 of 4) 1, tracks 2, 3, 5 2 each.
                ((2.0 + 1.0) / 2.0 + (0.0 + 2.0) / 2.0 + (0.0 + 1.0) / 2.0) / 3.0,
                (0.5 + 0.5 + 1.0) / 3.0,
                (3.0 + 2.0 + 1.0) / 3.0,
                (2.0 + 2.0 + 1.0) / 3.0,
                // Percentiles (share of the six tracks with fewer listeners): 5/6, 4/6, 3/6, 0, 0, 0.
                ((0.0 + 4.0 / 6.0) / 2.0 + (5.0 / 6.0 + 0.0) / 2.0 + (5.0 / 6.0 + 4.0 / 6.0) / 2.0) / 3.0,
            ],
        );
        let ndcg = evaluation.at[0].per_user.get(UserMetric::Ndcg);
        assert_eq!(ndcg.len(), 4);
        assert_close(ndcg[0], ndcg_0);
        assert_eq!(&ndcg[1..], &[0.0, 1.0, 0.0]);
    }

    #[test]
    fn hand_computed_values_at_k_3() {
        let at = &Fixture::new().evaluate(&[2, 3]).at[1];
        // User 0 now hits at 1 and 3: DCG 1 + 1/2, AP (1/1 + 2/3) / 2.
        assert_metrics(
            &at.metrics,
            [
                (2.0 / 3.0 + 1.0 / 3.0) / 4.0,
                (1.0 + 1.0) / 4.0,
                (1.5 / IDEAL_2 + 1.0) / 4.0,
                ((1.0 + 2.0 / 3.0) / 2.0 + 1.0) / 4.0,
                0.5,
                0.5,
                0.75,
                4.0 / 5.0,
                5.0 / 6.0,
                (5.0 / 3.0 + 1.0 + 1.0) / 3.0,
                (2.0 / 3.0 + 0.5 + 1.0) / 3.0,
                (3.0 + 2.0 + 2.0) / 3.0,
                (2.0 + 2.0 + 1.0) / 3.0,
                (7.0 / 18.0 + 5.0 / 12.0 + 2.0 / 3.0) / 3.0,
            ],
        );
        assert_eq!(at.per_user.get(UserMetric::HitRate), &[1.0, 0.0, 1.0, 0.0]);
        assert_eq!(at.per_user.get(UserMetric::Mrr), &[1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn popularity_classes_split_train_pairs_at_half_and_four_fifths() {
        let f = Fixture::new();
        // Listeners 4, 2, 1, 0, 0, 0 of 7 pairs: track 0 starts at 0 (head), track 1 at 4 of 7
        // (past half: torso), track 2 at 6 of 7 (past 4/5: tail), unplayed ones tail.
        let classes = PopularityClass::of_items(f.history.listeners());
        use PopularityClass::{Head, Tail, Torso};
        assert_eq!(classes, vec![Head, Torso, Tail, Tail, Tail, Tail]);
        let counts = hits_by_class(&f.recs, &f.relevance, &classes, 3);
        assert_eq!(counts, ClassCounts { hits: [1, 0, 2], recommended: [2, 2, 4] });
    }

    #[test]
    fn json_keys_carry_every_k() {
        let json = Fixture::new().evaluate(&[2, 3]).to_json();
        let object = json.as_object().unwrap();
        assert_eq!(object.len(), 2 * 14 + 2);
        for key in ["precision@2", "hit_rate@3", "original_novelty@2", "popularity_percentile@3", "artists@2"] {
            assert!(object.contains_key(key), "{key} missing in {json}");
        }
        assert_eq!(json["evaluated_users"], 4);
        assert_eq!(json["users_with_recs"], 3);
        assert_eq!(json["mrr@2"], 0.5);
    }

    fn no_history() -> TrainHistory {
        TrainHistory::from_events([], CATALOGUE).unwrap()
    }

    fn no_groups() -> ItemGroups {
        ItemGroups::from_pairs([], CATALOGUE).unwrap()
    }

    fn run(recs: &[(u32, &[u32])], window: &[(u32, u32)], history: &TrainHistory, k: usize) -> Metrics {
        let recs = Recommendations::from_lists(recs.iter().map(|&(user, list)| (user, list.iter().copied()))).unwrap();
        let relevance = Relevance::from_events(window.iter().copied());
        let groups = no_groups();
        let truth = Truth { relevance: &relevance, history, artists: &groups, genres: &groups };
        evaluate(&recs, &truth, &[k]).unwrap().at.remove(0).metrics
    }

    #[test]
    fn a_user_without_a_list_scores_zero() {
        let window = [(0, 1), (0, 2), (0, 3), (0, 4), (0, 5), (1, 6), (1, 6), (2, 7)];
        // User 0: 2 hits of 5 relevant; user 1: a short list, still divided by K; user 2: no list.
        let m = run(&[(0, &[1, 9, 3, 8, 2]), (1, &[0, 6])], &window, &no_history(), 4);
        assert_close(m.precision, (2.0 / 4.0 + 1.0 / 4.0) / 3.0);
        assert_close(m.recall, (2.0 / 5.0 + 1.0) / 3.0);
        assert_close(m.coverage_user, 2.0 / 3.0);
        assert_eq!((m.evaluated_users, m.users_with_recs), (3, 2));
    }

    #[test]
    fn an_empty_list_is_no_recommendation() {
        let m = run(&[(0, &[]), (1, &[1])], &[(0, 1), (1, 1)], &no_history(), 3);
        assert_close(m.coverage_user, 0.5);
        assert_close(m.precision, 1.0 / 3.0 / 2.0);
    }

    #[test]
    fn a_repeated_item_is_one_hit() {
        let m = run(&[(0, &[4, 4, 4])], &[(0, 4)], &no_history(), 3);
        assert_close(m.precision, 1.0 / 3.0);
        assert_close(m.recall, 1.0);
        assert_close(m.ndcg, 1.0);
        assert_close(m.map, 1.0);
    }

    #[test]
    fn an_empty_window_gives_zeros() {
        let m = run(&[(0, &[1])], &[], &no_history(), 10);
        assert!(m.values().iter().all(|(_, value)| *value == 0.0), "{m:?}");
        assert_eq!((m.evaluated_users, m.users_with_recs), (0, 0));
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
        let groups = ItemGroups::from_pairs([(outside, 0)], CATALOGUE).unwrap_err();
        assert_eq!(groups, EvalError::ItemOutOfRange { what: "item groups", item: outside, n_items: CATALOGUE });

        let (history, groups) = (no_history(), no_groups());
        let judge = |recs: &Recommendations, relevance: &Relevance, ks: &[usize]| {
            evaluate(recs, &Truth { relevance, history: &history, artists: &groups, genres: &groups }, ks)
        };
        let in_range = Recommendations::from_lists([(0, [1])]).unwrap();
        let too_far = Recommendations::from_lists([(0, [1, outside])]).unwrap();
        let window = Relevance::from_events([(0, 1)]);
        let recs = judge(&too_far, &window, &[3]).unwrap_err();
        assert_eq!(recs, EvalError::ItemOutOfRange { what: "recommendations", item: outside, n_items: CATALOGUE });
        let relevance = judge(&in_range, &Relevance::from_events([(0, outside)]), &[3]).unwrap_err();
        assert_eq!(relevance, EvalError::ItemOutOfRange { what: "relevance", item: outside, n_items: CATALOGUE });
        assert_eq!(judge(&in_range, &window, &[0]).unwrap_err(), EvalError::ZeroK);
        assert_eq!(judge(&in_range, &window, &[]).unwrap_err(), EvalError::ZeroK);
        let small = ItemGroups::from_pairs([], 3).unwrap();
        let mismatch = evaluate(
            &in_range,
            &Truth { relevance: &window, history: &history, artists: &small, genres: &groups },
            &[3],
        )
        .unwrap_err();
        assert_eq!(mismatch, EvalError::CatalogueMismatch { what: "item groups", items: 3, n_items: CATALOGUE });
    }
}
