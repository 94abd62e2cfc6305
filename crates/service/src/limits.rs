//! Request-rate limits: one global budget and one per client address, both GCRA
//! (`governor`), in this process's memory. Over either budget a request is refused with 429
//! and a Retry-After telling when the next one would pass.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Which budget refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Client,
}

pub struct Limits {
    global: Option<DefaultDirectRateLimiter>,
    per_client: Option<DefaultKeyedRateLimiter<IpAddr>>,
    clock: DefaultClock,
}

impl Limits {
    /// Budgets per second (bursts of one second's worth); 0 = unlimited.
    pub fn new(global_per_second: u32, per_client_per_second: u32) -> Self {
        let quota = |n: u32| NonZeroU32::new(n).map(Quota::per_second);
        Self {
            global: quota(global_per_second).map(RateLimiter::direct),
            per_client: quota(per_client_per_second).map(RateLimiter::keyed),
            clock: DefaultClock::default(),
        }
    }

    /// `Err((scope, wait))` when the request is over a budget.
    pub fn check(&self, client: IpAddr) -> Result<(), (Scope, Duration)> {
        if let Some(client_limit) = &self.per_client
            && let Err(not_until) = client_limit.check_key(&client)
        {
            return Err((Scope::Client, not_until.wait_time_from(self.clock.now())));
        }
        if let Some(global) = &self.global
            && let Err(not_until) = global.check()
        {
            return Err((Scope::Global, not_until.wait_time_from(self.clock.now())));
        }
        Ok(())
    }

    /// Forgets clients idle long enough to be back at a full budget, so the per-client table
    /// does not grow with every address ever seen.
    pub fn forget_idle_clients(&self) {
        if let Some(per_client) = &self.per_client {
            per_client.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_budget_refuses_past_its_burst_and_zero_means_unlimited() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let limits = Limits::new(0, 3);
        assert!((0..3).all(|_| limits.check(a).is_ok()));
        let (scope, wait) = limits.check(a).unwrap_err();
        assert_eq!(scope, Scope::Client);
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        assert!(limits.check(b).is_ok(), "another client has its own budget");

        let limits = Limits::new(2, 0);
        assert!(limits.check(a).is_ok() && limits.check(b).is_ok());
        assert_eq!(limits.check(a).unwrap_err().0, Scope::Global);
        let unlimited = Limits::new(0, 0);
        assert!((0..10_000).all(|_| unlimited.check(a).is_ok()));
    }
}
