//! The events store: each user's latest listens, newest first, at most `per_user` kept. In
//! this process's memory (for at most `max_users` users: the one whose latest listen is the
//! oldest is forgotten first), or in Redis (one list per user, `LPUSH` + `LTRIM` + `EXPIRE`
//! in one transaction: a user silent for the TTL is forgotten) so that several instances
//! share it.
//!
//! Redis failures (see `redis_link`) are reported to the caller, who serves without the
//! online part and counts it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use redis::AsyncCommands;

use crate::redis_link::{RedisLink, StoreUnavailable};

/// Shards of the in-memory store: writers of different users rarely meet on one lock.
const SHARDS: usize = 64;

pub enum EventStore {
    Memory(MemoryEvents),
    Redis(RedisEvents),
}

impl EventStore {
    pub fn kind(&self) -> &'static str {
        match self {
            EventStore::Memory(_) => "memory",
            EventStore::Redis(_) => "redis",
        }
    }

    pub async fn add(&self, user: i64, track: i64) -> Result<(), StoreUnavailable> {
        match self {
            EventStore::Memory(m) => {
                m.add(user, track);
                Ok(())
            }
            EventStore::Redis(r) => r.add(user, track).await,
        }
    }

    /// The user's latest `n` listens, newest first.
    pub async fn latest(&self, user: i64, n: usize) -> Result<Vec<i64>, StoreUnavailable> {
        match self {
            EventStore::Memory(m) => Ok(m.latest(user, n)),
            EventStore::Redis(r) => r.latest(user, n).await,
        }
    }
}

/// One shard's users: their listens and when each last listened (a sequence number of the
/// shard), oldest first in `by_age`, which is what eviction takes from.
#[derive(Default)]
struct Shard {
    capacity: usize,
    users: HashMap<i64, (VecDeque<i64>, u64)>,
    by_age: BTreeMap<u64, i64>,
    next: u64,
}

pub struct MemoryEvents {
    per_user: usize,
    shards: Vec<Mutex<Shard>>,
    evicted: AtomicU64,
}

impl MemoryEvents {
    /// A store of at most `max_users` users (at least 1), split over up to `SHARDS` shards
    /// whose capacities add up to it.
    pub fn new(per_user: usize, max_users: usize) -> Self {
        let shards = SHARDS.min(max_users).max(1);
        let shards = (0..shards)
            .map(|i| {
                let capacity = max_users / shards + usize::from(i < max_users % shards);
                Mutex::new(Shard { capacity, ..Shard::default() })
            })
            .collect();
        Self { per_user, shards, evicted: AtomicU64::new(0) }
    }

    fn shard(&self, user: i64) -> std::sync::MutexGuard<'_, Shard> {
        // A panic never happens while a shard is held, so a poisoned lock still holds whole lists.
        self.shards[user.rem_euclid(self.shards.len() as i64) as usize].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, user: i64, track: i64) {
        let mut shard = self.shard(user);
        let shard = &mut *shard;
        let age = shard.next;
        shard.next += 1;
        let (list, last) = shard.users.entry(user).or_default();
        if !list.is_empty() {
            shard.by_age.remove(last);
        }
        *last = age;
        list.push_front(track);
        list.truncate(self.per_user);
        shard.by_age.insert(age, user);
        while shard.users.len() > shard.capacity {
            let Some((_, oldest)) = shard.by_age.pop_first() else { break };
            shard.users.remove(&oldest);
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn latest(&self, user: i64, n: usize) -> Vec<i64> {
        self.shard(user).users.get(&user).map_or_else(Vec::new, |(l, _)| l.iter().take(n).copied().collect())
    }

    /// Users held now.
    pub fn users(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).users.len()).sum()
    }

    /// Users forgotten to stay within the bound, since the start.
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

pub struct RedisEvents {
    link: Arc<RedisLink>,
    prefix: String,
    per_user: usize,
    /// Seconds a user's list lives after their latest listen; 0 = for ever.
    ttl_seconds: u64,
}

impl RedisEvents {
    pub fn new(link: Arc<RedisLink>, prefix: &str, per_user: usize, ttl_seconds: u64) -> Self {
        Self { link, prefix: prefix.to_string(), per_user, ttl_seconds }
    }

    fn key(&self, user: i64) -> String {
        format!("{}events:{user}", self.prefix)
    }

    async fn add(&self, user: i64, track: i64) -> Result<(), StoreUnavailable> {
        let key = self.key(user);
        let keep = self.per_user as isize - 1;
        let ttl = self.ttl_seconds;
        self.link
            .run("LPUSH", async move |mut c| {
                let mut pipe = redis::pipe();
                pipe.atomic().lpush(&key, track).ignore().ltrim(&key, 0, keep).ignore();
                if ttl > 0 {
                    pipe.expire(&key, ttl as i64).ignore();
                }
                pipe.query_async(&mut c).await
            })
            .await
    }

    async fn latest(&self, user: i64, n: usize) -> Result<Vec<i64>, StoreUnavailable> {
        let key = self.key(user);
        let last = n.min(self.per_user) as isize - 1;
        self.link.run("LRANGE", async move |mut c| c.lrange(&key, 0, last).await).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_whose_latest_listen_is_oldest_goes_first() {
        // 64 shards of 2; users 0, 64 and 128 share shard 0.
        let store = MemoryEvents::new(2, 128);
        store.add(0, 10);
        store.add(64, 20);
        store.add(0, 11);
        store.add(0, 12);
        store.add(128, 30);
        assert_eq!(store.latest(64, 5), Vec::<i64>::new(), "64 listened longest ago");
        assert_eq!((store.latest(0, 5), store.latest(128, 5)), (vec![12, 11], vec![30]), "trimmed to 2 a user");
        assert_eq!((store.users(), store.evicted()), (2, 1));

        let many = MemoryEvents::new(3, 100);
        (0..1000).for_each(|user| many.add(user, user));
        assert_eq!((many.users(), many.evicted()), (100, 900));
        assert_eq!(many.latest(999, 3), [999]);
    }
}
