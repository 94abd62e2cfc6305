//! The service's one connection to Redis, shared by the stores that use it (events, rate
//! limits).
//!
//! Redis may be down: every command has a timeout, failures are reported to the caller (who
//! degrades and counts it), and the connection manager reconnects; while no connection exists
//! at all, a new one is tried at most once per second, so an outage costs a request one failed
//! check, not a connection timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::ServiceError;

const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// A failed Redis operation (unreachable, timed out or refusing).
#[derive(Debug)]
pub struct StoreUnavailable(pub String);

pub struct RedisLink {
    client: redis::Client,
    timeout: Duration,
    connection: ArcSwapOption<ConnectionManager>,
    /// Milliseconds since `epoch` of the last connection attempt.
    last_attempt_ms: AtomicU64,
    epoch: Instant,
    connecting: tokio::sync::Mutex<()>,
}

impl RedisLink {
    /// A link to `url`; a Redis that is down now is not an error (the service starts and
    /// connects later), a malformed URL is.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Arc<Self>, ServiceError> {
        let client = redis::Client::open(url)
            .map_err(|e| ServiceError::Redis { url: url.to_string(), reason: e.to_string() })?;
        let link = Self {
            client,
            timeout,
            connection: ArcSwapOption::empty(),
            last_attempt_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            connecting: tokio::sync::Mutex::new(()),
        };
        if let Err(e) = link.connection(true).await {
            tracing::warn!(url, error = e.0, "Redis is unreachable; degraded until it is back");
        }
        Ok(Arc::new(link))
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
        self.connection.store(Some(Arc::new(manager.clone())));
        tracing::info!("connected to Redis");
        Ok(manager)
    }

    /// Runs `command` on the shared connection within the timeout.
    pub async fn run<T>(
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
}
