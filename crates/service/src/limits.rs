//! Request-rate limits per API endpoint: a global budget and one per client address, each
//! GCRA (a minute's budget may be spent at once, then it refills evenly). Two
//! implementations of one trait: in this process's memory (`governor`), or in Redis so that
//! every instance of the service draws from the same budgets.
//!
//! A Redis that fails does not take the service down, nor does it lift the limits: each
//! instance falls back to its own in-memory budgets until Redis answers again (counted in
//! `musicrec_redis_errors_total{store="rate_limits"}`). Failing open would leave the service
//! unprotected exactly when something is already wrong; failing closed would turn a Redis
//! outage into a service outage. The price of the fallback is that N instances admit up to N
//! times the global budget while Redis is down.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter as Gcra};
use musicrec_config::{RateLimit, RateLimitsConfig};

use crate::metrics::Metrics;
use crate::redis_link::RedisLink;

const PERIOD: Duration = Duration::from_secs(60);

/// The rate-limited endpoints (GET and POST of a path share its budgets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Recommendations,
    Events,
    Similar,
    Popular,
}

impl Endpoint {
    pub const ALL: [Endpoint; 4] = [Endpoint::Recommendations, Endpoint::Events, Endpoint::Similar, Endpoint::Popular];

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Recommendations => "/recommendations",
            Endpoint::Events => "/events",
            Endpoint::Similar => "/similar",
            Endpoint::Popular => "/popular",
        }
    }

    pub fn of_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.path() == path)
    }

    fn budgets(self, config: &RateLimitsConfig) -> RateLimit {
        match self {
            Endpoint::Recommendations => config.recommendations,
            Endpoint::Events => config.events,
            Endpoint::Similar => config.similar,
            Endpoint::Popular => config.popular,
        }
    }
}

/// Which budget refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Client,
}

/// A refused request: the budget that refused it and when the next one would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub scope: Scope,
    pub retry_after: Duration,
}

pub trait RateLimiter: Send + Sync {
    /// Admits one request to `endpoint` from `client` (charging both budgets) or refuses it.
    /// The client budget is checked first, and a request it refuses costs the global budget
    /// nothing: one client over its limit cannot spend everyone's budget.
    fn check(&self, endpoint: Endpoint, client: IpAddr) -> impl Future<Output = Result<(), Refusal>> + Send;
}

/// The limiter a server runs with.
pub enum Limits {
    Memory(MemoryLimiter),
    Redis(RedisLimiter),
}

impl Limits {
    /// Forgets clients idle long enough to be back at a full budget, so the in-memory
    /// per-client tables do not grow with every address ever seen.
    pub fn forget_idle_clients(&self) {
        let memory = match self {
            Limits::Memory(m) => m,
            Limits::Redis(r) => &r.fallback,
        };
        memory.budgets.iter().filter_map(|b| b.per_client.as_ref()).for_each(|c| c.retain_recent());
    }
}

impl RateLimiter for Limits {
    async fn check(&self, endpoint: Endpoint, client: IpAddr) -> Result<(), Refusal> {
        match self {
            Limits::Memory(m) => m.check(endpoint, client).await,
            Limits::Redis(r) => r.check(endpoint, client).await,
        }
    }
}

struct Budgets {
    global: Option<DefaultDirectRateLimiter>,
    per_client: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

pub struct MemoryLimiter {
    /// In `Endpoint::ALL` order.
    budgets: Vec<Budgets>,
    clock: DefaultClock,
}

impl MemoryLimiter {
    pub fn new(config: &RateLimitsConfig) -> Self {
        let quota = |n: u32| NonZeroU32::new(n).map(Quota::per_minute);
        let budgets = Endpoint::ALL
            .iter()
            .map(|e| {
                let b = e.budgets(config);
                Budgets {
                    global: quota(b.global_per_minute).map(Gcra::direct),
                    per_client: quota(b.per_client_per_minute).map(Gcra::keyed),
                }
            })
            .collect();
        Self { budgets, clock: DefaultClock::default() }
    }

    fn admit(&self, endpoint: Endpoint, client: IpAddr) -> Result<(), Refusal> {
        let b = &self.budgets[endpoint as usize];
        let refused = |scope, not_until: governor::NotUntil<_>| Refusal {
            scope,
            retry_after: not_until.wait_time_from(self.clock.now()),
        };
        if let Some(per_client) = &b.per_client {
            per_client.check_key(&client).map_err(|n| refused(Scope::Client, n))?;
        }
        if let Some(global) = &b.global {
            global.check().map_err(|n| refused(Scope::Global, n))?;
        }
        Ok(())
    }
}

impl RateLimiter for MemoryLimiter {
    async fn check(&self, endpoint: Endpoint, client: IpAddr) -> Result<(), Refusal> {
        self.admit(endpoint, client)
    }
}

/// GCRA over the client budget (KEYS[1]) and the global one (KEYS[2]), on Redis's clock so
/// that instances agree: a budget's state is its theoretical arrival time (µs). ARGV holds
/// (emission interval µs, period µs) per key, interval 0 = unlimited. Nothing is charged
/// unless both admit. Answers {0, 0} or {refusing key index, µs until a request would pass}.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tats = {}
for i = 1, 2 do
  local interval = tonumber(ARGV[2 * i - 1])
  if interval > 0 then
    local period = tonumber(ARGV[2 * i])
    local tat = math.max(tonumber(redis.call('GET', KEYS[i]) or '0'), now) + interval
    if tat - now > period then
      return {i, tat - now - period}
    end
    tats[i] = tat
  end
end
for i, tat in pairs(tats) do
  redis.call('SET', KEYS[i], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000))
end
return {0, 0}
";

pub struct RedisLimiter {
    link: Arc<RedisLink>,
    prefix: String,
    /// (client, global) emission intervals in µs per endpoint, `Endpoint::ALL` order; 0 = unlimited.
    intervals: Vec<[u64; 2]>,
    fallback: MemoryLimiter,
    metrics: Arc<Metrics>,
}

impl RedisLimiter {
    pub fn new(link: Arc<RedisLink>, prefix: &str, config: &RateLimitsConfig, metrics: Arc<Metrics>) -> Self {
        let interval = |n: u32| if n == 0 { 0 } else { (PERIOD.as_micros() as u64 / u64::from(n)).max(1) };
        let intervals = Endpoint::ALL
            .iter()
            .map(|e| {
                let b = e.budgets(config);
                [interval(b.per_client_per_minute), interval(b.global_per_minute)]
            })
            .collect();
        Self { link, prefix: format!("{prefix}limits:"), intervals, fallback: MemoryLimiter::new(config), metrics }
    }
}

impl RateLimiter for RedisLimiter {
    async fn check(&self, endpoint: Endpoint, client: IpAddr) -> Result<(), Refusal> {
        let [client_interval, global_interval] = self.intervals[endpoint as usize];
        if client_interval == 0 && global_interval == 0 {
            return Ok(());
        }
        let name = &endpoint.path()[1..];
        let keys = [format!("{}{name}:client:{client}", self.prefix), format!("{}{name}:global", self.prefix)];
        let period = PERIOD.as_micros() as u64;
        let answer: Result<(u8, u64), _> = self
            .link
            .run("EVAL (rate limit)", async move |mut c| {
                redis::cmd("EVAL")
                    .arg(GCRA)
                    .arg(2)
                    .arg(&keys)
                    .arg(&[client_interval, period, global_interval, period][..])
                    .query_async(&mut c)
                    .await
            })
            .await;
        match answer {
            Ok((0, _)) => Ok(()),
            Ok((key, wait_us)) => Err(Refusal {
                scope: if key == 1 { Scope::Client } else { Scope::Global },
                retry_after: Duration::from_micros(wait_us),
            }),
            Err(e) => {
                self.metrics.redis_errors_rate_limits.inc();
                tracing::warn!(error = e.0, "rate limits: Redis unavailable, using this instance's budgets");
                self.fallback.admit(endpoint, client)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(global: u32, per_client: u32) -> RateLimitsConfig {
        let limit = RateLimit { global_per_minute: global, per_client_per_minute: per_client };
        let unlimited = RateLimit { global_per_minute: 0, per_client_per_minute: 0 };
        RateLimitsConfig {
            store: musicrec_config::RateLimitStore::Memory,
            recommendations: limit,
            events: unlimited,
            similar: limit,
            popular: unlimited,
        }
    }

    #[tokio::test]
    async fn memory_budgets_are_per_endpoint_and_per_client_and_a_refusal_charges_nothing() {
        let limiter = MemoryLimiter::new(&config(5, 3));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            limiter.check(Endpoint::Recommendations, a).await.unwrap();
        }
        let refusal = limiter.check(Endpoint::Recommendations, a).await.unwrap_err();
        assert_eq!(refusal.scope, Scope::Client);
        // 3 per minute: the next one passes 20 s after the first.
        assert!(refusal.retry_after > Duration::from_secs(15) && refusal.retry_after <= Duration::from_secs(20));
        assert!(limiter.check(Endpoint::Similar, a).await.is_ok(), "each endpoint has its own budgets");
        for _ in 0..100 {
            limiter.check(Endpoint::Popular, a).await.expect("0 = unlimited");
        }
        // The global budget of 5: 3 by a, 2 by b (a's refused request charged nothing).
        limiter.check(Endpoint::Recommendations, b).await.unwrap();
        limiter.check(Endpoint::Recommendations, b).await.unwrap();
        assert_eq!(limiter.check(Endpoint::Recommendations, b).await.unwrap_err().scope, Scope::Global);
    }
}
