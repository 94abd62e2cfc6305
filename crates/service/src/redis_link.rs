//! The service's one connection to Redis, shared by the stores that use it (events, rate
//! limits).
//!
//! Redis may be down: every command has a timeout, failures are reported to the caller (who
//! degrades and counts it), and the connection manager reconnects. A circuit breaker keeps an
//! outage from costing every request a timeout: after a failure, nothing is sent to Redis for
//! a cool-down, then a single command goes through as a probe, and its outcome closes the
//! circuit or starts another cool-down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::ServiceError;

/// A failed Redis operation (unreachable, timed out, refusing, or skipped while the circuit
/// is open).
#[derive(Debug)]
pub struct StoreUnavailable(pub String);

/// Open after a failure until a cool-down has passed, then one caller at a time probes.
struct Breaker {
    cooldown: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` until which nothing is sent; 0 = closed.
    open_until_ms: AtomicU64,
    probing: AtomicBool,
    opened: AtomicU64,
    skipped: AtomicU64,
}

impl Breaker {
    fn closed(cooldown: Duration) -> Self {
        Self {
            cooldown,
            epoch: Instant::now(),
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            opened: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }

    /// Never 0, which stands for a closed circuit.
    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Whether a command may be sent now; true for the one probe after a cool-down.
    fn admit(&self) -> Result<(), StoreUnavailable> {
        let open_until = self.open_until_ms.load(Ordering::Acquire);
        if open_until == 0 {
            return Ok(());
        }
        let now = self.now_ms();
        if now >= open_until && self.probing.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_ok()
        {
            return Ok(());
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        Err(StoreUnavailable(format!(
            "Redis failed recently; not asked again for {} ms",
            open_until.saturating_sub(now).max(1)
        )))
    }

    fn succeeded(&self) {
        self.open_until_ms.store(0, Ordering::Release);
        self.probing.store(false, Ordering::Release);
    }

    fn failed(&self) {
        let until = self.now_ms() + self.cooldown.as_millis() as u64;
        if self.open_until_ms.swap(until, Ordering::AcqRel) == 0 {
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
        self.probing.store(false, Ordering::Release);
    }
}

pub struct RedisLink {
    client: redis::Client,
    timeout: Duration,
    connection: ArcSwapOption<ConnectionManager>,
    connecting: tokio::sync::Mutex<()>,
    breaker: Breaker,
}

impl RedisLink {
    /// A link to `url`; a Redis that is down now is not an error (the service starts and
    /// connects later), a malformed URL is.
    pub async fn connect(url: &str, timeout: Duration, cooldown: Duration) -> Result<Arc<Self>, ServiceError> {
        let client = redis::Client::open(url)
            .map_err(|e| ServiceError::Redis { url: url.to_string(), reason: e.to_string() })?;
        let link = Self {
            client,
            timeout,
            connection: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(()),
            breaker: Breaker::closed(cooldown),
        };
        if let Err(e) = link.connection().await {
            link.breaker.failed();
            tracing::warn!(url, error = e.0, "Redis is unreachable; degraded until it is back");
        }
        Ok(Arc::new(link))
    }

    async fn connection(&self) -> Result<ConnectionManager, StoreUnavailable> {
        if let Some(c) = self.connection.load_full() {
            return Ok((*c).clone());
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(c) = self.connection.load_full() {
            return Ok((*c).clone());
        }
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

    /// Runs `command` on the shared connection within the timeout, unless the circuit is open.
    pub async fn run<T>(
        &self,
        what: &str,
        command: impl AsyncFnOnce(ConnectionManager) -> redis::RedisResult<T>,
    ) -> Result<T, StoreUnavailable> {
        self.breaker.admit()?;
        let outcome = match self.connection().await {
            Err(e) => Err(e),
            Ok(connection) => match tokio::time::timeout(self.timeout, command(connection)).await {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(e)) => Err(StoreUnavailable(format!("Redis {what}: {e}"))),
                Err(_) => Err(StoreUnavailable(format!("Redis {what}: no answer within {:?}", self.timeout))),
            },
        };
        match &outcome {
            Ok(_) => self.breaker.succeeded(),
            Err(_) => self.breaker.failed(),
        }
        outcome
    }

    /// Times the circuit opened (a failure after Redis had answered).
    pub fn breaker_opened(&self) -> u64 {
        self.breaker.opened.load(Ordering::Relaxed)
    }

    /// Commands not sent because the circuit was open.
    pub fn skipped(&self) -> u64 {
        self.breaker.skipped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_opens_the_circuit_and_only_one_probe_passes_after_the_cool_down() {
        let b = Breaker::closed(Duration::ZERO);
        b.admit().unwrap();
        b.failed();
        // Cool-down of 0: the next caller probes, the others are skipped until it is done.
        b.admit().unwrap();
        assert!(b.admit().is_err());
        b.failed();
        b.admit().unwrap();
        b.succeeded();
        b.admit().unwrap();
        b.admit().unwrap();
        assert_eq!((b.opened.load(Ordering::Relaxed), b.skipped.load(Ordering::Relaxed)), (1, 1));

        let b = Breaker::closed(Duration::from_secs(3600));
        b.failed();
        assert!(b.admit().unwrap_err().0.contains("not asked again"));
    }
}
