//! The events store: each user's latest listens, newest first, at most `per_user` kept. In
//! this process's memory, or in Redis (one list per user, `LPUSH` + `LTRIM` in one
//! transaction) so that several instances share it.
//!
//! Redis may be down: every command has a timeout, failures are reported to the caller (who
//! serves without the online part and counts it), and the connection manager reconnects;
//! while no connection exists at all, a new one is tried at most once per second.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::ServiceError;

/// Shards of the in-memory store: writers of different users rarely meet on one lock.
const SHARDS: usize = 64;
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// A failed store operation (Redis unreachable, timed out or refusing).
#[derive(Debug)]
pub struct StoreUnavailable(pub String);

pub enum EventStore {
    Memory(MemoryEvents),
    Redis(Box<RedisEvents>),
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
    client: redis::Client,
    prefix: String,
    per_user: usize,
    timeout: Duration,
    connection: ArcSwapOption<ConnectionManager>,
    /// Milliseconds since `epoch` of the last connection attempt.
    last_attempt_ms: AtomicU64,
    epoch: Instant,
    connecting: tokio::sync::Mutex<()>,
}

impl RedisEvents {
    /// A store on `url`; a Redis that is down now is not an error (the service starts and
    /// connects later), a malformed URL is.
    pub async fn connect(url: &str, prefix: &str, per_user: usize, timeout: Duration) -> Result<Self, ServiceError> {
        let client = redis::Client::open(url)
            .map_err(|e| ServiceError::Redis { url: url.to_string(), reason: e.to_string() })?;
        let store = Self {
            client,
            prefix: prefix.to_string(),
            per_user,
            timeout,
            connection: ArcSwapOption::empty(),
            last_attempt_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            connecting: tokio::sync::Mutex::new(()),
        };
        if let Err(e) = store.connection(true).await {
            tracing::warn!(url, error = e.0, "Redis is unreachable; serving without the online part until it is back");
        }
        Ok(store)
    }

    fn key(&self, user: i64) -> String {
        format!("{}events:{user}", self.prefix)
    }

    async fn connection(&self, force: bool) -> Result<ConnectionManager, StoreUnavailable> {
        if let Some(c) = self.connection.load_full() {
            return Ok((*c).clone());
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last_attempt_ms.load(Ordering::Relaxed);
        if !force && last != 0 && now.saturating_sub(last) < RECONNECT_EVERY.as_millis() as u64 {
            return Err(StoreUnavailable("Redis is down; next connection attempt within a second".into()));
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(c) = self.connection.load_full() {
            return Ok((*c).clone());
        }
        self.last_attempt_ms.store(now.max(1), Ordering::Relaxed);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_with_config(self.client.clone(), config)
            .await
            .map_err(|e| StoreUnavailable(format!("connecting to Redis: {e}")))?;
        self.connection.store(Some(std::sync::Arc::new(manager.clone())));
        tracing::info!("connected to Redis");
        Ok(manager)
    }

    async fn run<T>(
        &self,
        what: &str,
        command: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, StoreUnavailable> {
        let connection = self.connection(false).await?;
        match tokio::time::timeout(self.timeout, command(connection)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreUnavailable(format!("Redis {what}: {e}"))),
            Err(_) => Err(StoreUnavailable(format!("Redis {what}: no answer within {:?}", self.timeout))),
        }
    }

    async fn add(&self, user: i64, track: i64) -> Result<(), StoreUnavailable> {
        let key = self.key(user);
        let keep = self.per_user as isize - 1;
        self.run("LPUSH", async move |mut c| {
            redis::pipe().atomic().lpush(&key, track).ignore().ltrim(&key, 0, keep).ignore().query_async(&mut c).await
        })
        .await
    }

    async fn latest(&self, user: i64, n: usize) -> Result<Vec<i64>, StoreUnavailable> {
        let key = self.key(user);
        let last = n.min(self.per_user) as isize - 1;
        self.run("LRANGE", async move |mut c| c.lrange(&key, 0, last).await).await
    }
}
