//! The events store: each user's latest listens, newest first, at most `per_user` kept. In
//! this process's memory, or in Redis (one list per user, `LPUSH` + `LTRIM` in one
//! transaction) so that several instances share it.
//!
//! Redis failures (see `redis_link`) are reported to the caller, who serves without the
//! online part and counts it.

use std::collections::{HashMap, VecDeque};
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

pub struct MemoryEvents {
    per_user: usize,
    shards: Vec<Mutex<HashMap<i64, VecDeque<i64>>>>,
}

impl MemoryEvents {
    pub fn new(per_user: usize) -> Self {
        Self { per_user, shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }

    fn shard(&self, user: i64) -> std::sync::MutexGuard<'_, HashMap<i64, VecDeque<i64>>> {
        // A panic never happens while a shard is held, so a poisoned lock still holds whole lists.
        self.shards[user.rem_euclid(SHARDS as i64) as usize].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, user: i64, track: i64) {
        let mut shard = self.shard(user);
        let list = shard.entry(user).or_default();
        list.push_front(track);
        list.truncate(self.per_user);
    }

    fn latest(&self, user: i64, n: usize) -> Vec<i64> {
        self.shard(user).get(&user).map_or_else(Vec::new, |l| l.iter().take(n).copied().collect())
    }
}

pub struct RedisEvents {
    link: Arc<RedisLink>,
    prefix: String,
    per_user: usize,
}

impl RedisEvents {
    pub fn new(link: Arc<RedisLink>, prefix: &str, per_user: usize) -> Self {
        Self { link, prefix: prefix.to_string(), per_user }
    }

    fn key(&self, user: i64) -> String {
        format!("{}events:{user}", self.prefix)
    }

    async fn add(&self, user: i64, track: i64) -> Result<(), StoreUnavailable> {
        let key = self.key(user);
        let keep = self.per_user as isize - 1;
        self.link
            .run("LPUSH", async move |mut c| {
                redis::pipe()
                    .atomic()
                    .lpush(&key, track)
                    .ignore()
                    .ltrim(&key, 0, keep)
                    .ignore()
                    .query_async(&mut c)
                    .await
            })
            .await
    }

    async fn latest(&self, user: i64, n: usize) -> Result<Vec<i64>, StoreUnavailable> {
        let key = self.key(user);
        let last = n.min(self.per_user) as isize - 1;
        self.link.run("LRANGE", async move |mut c| c.lrange(&key, 0, last).await).await
    }
}
