//! Fold-in answers kept per user while the user's recent listens stay the same: the fold-in
//! is a pure function of (user, recent listens, k) for one loaded artifact set (the history is
//! the run's), so an answer is reused exactly, never approximately. A user who asks again
//! without listening in between (refreshing a page, paging) costs a lookup instead of a
//! solve and a catalogue scan.
//!
//! Direct-mapped by user: a fixed number of slots, each behind its own lock, so memory is
//! bounded whatever the number of users and two requests rarely wait on one slot. A colliding
//! user evicts the previous one. The cache belongs to the `ServingModel`, so a reload starts
//! with an empty one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

struct Entry {
    user: i64,
    recent: Vec<u32>,
    items: Vec<u32>,
    /// The k the answer was computed for: it holds the best `k` (fewer only when fewer
    /// items could be recommended), so any k' ≤ k is its prefix.
    k: usize,
}

pub struct FoldInCache {
    slots: Vec<Mutex<Option<Entry>>>,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl FoldInCache {
    /// `slots` = 0 disables the cache.
    pub fn new(slots: usize) -> Self {
        Self {
            slots: (0..slots).map(|_| Mutex::new(None)).collect(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn slot(&self, user: i64) -> Option<std::sync::MutexGuard<'_, Option<Entry>>> {
        if self.slots.is_empty() {
            return None;
        }
        // Fibonacci hashing spreads consecutive ids over the slots.
        let at = ((user as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16) as usize % self.slots.len();
        // A panic never happens while a slot is held, so a poisoned slot still holds a whole entry.
        Some(self.slots[at].lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The first `k` fold-in items of `user` with these `recent` listens, from the cache or
    /// from `compute(k)` (then kept).
    pub fn get_or_compute(
        &self,
        user: i64,
        recent: &[u32],
        k: usize,
        compute: impl FnOnce(usize) -> Vec<u32>,
    ) -> Vec<u32> {
        if let Some(slot) = self.slot(user)
            && let Some(e) = slot.as_ref()
            && e.user == user
            && e.k >= k
            && e.recent == recent
        {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return e.items[..k.min(e.items.len())].to_vec();
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Computed outside the slot's lock: a solve must not hold up other users of the slot.
        let items = compute(k);
        if let Some(mut slot) = self.slot(user) {
            *slot = Some(Entry { user, recent: recent.to_vec(), items: items.clone(), k });
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_an_answer_only_for_the_same_user_listens_and_a_k_it_covers() {
        let cache = FoldInCache::new(8);
        let calls = std::cell::Cell::new(0);
        let compute = |k: usize| {
            calls.set(calls.get() + 1);
            (0..k as u32).map(|i| i + 100).collect()
        };
        assert_eq!(cache.get_or_compute(1, &[5, 6], 4, compute), [100, 101, 102, 103]);
        assert_eq!(cache.get_or_compute(1, &[5, 6], 2, compute), [100, 101]);
        assert_eq!(calls.get(), 1, "a smaller k is the prefix of the kept answer");
        cache.get_or_compute(1, &[5, 6], 5, compute);
        cache.get_or_compute(1, &[7, 5, 6], 5, compute);
        cache.get_or_compute(9, &[7, 5, 6], 5, compute);
        assert_eq!(calls.get(), 4, "a larger k, a new listen, another user: computed again");
        assert_eq!((cache.hits.load(Ordering::Relaxed), cache.misses.load(Ordering::Relaxed)), (1, 4));
        let off = FoldInCache::new(0);
        off.get_or_compute(1, &[5], 1, compute);
        off.get_or_compute(1, &[5], 1, compute);
        assert_eq!(calls.get(), 6, "0 slots: nothing kept");
    }
}
