//! The service's Prometheus metrics, kept in fixed arrays of atomics: the label sets are
//! known in advance (endpoints, status codes, sources), so recording is a few relaxed atomic
//! adds with no lock or map lookup, and each server instance has its own registry (tests
//! read exact values).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::blend::Source;
use crate::limits::{Endpoint, Scope};

/// Endpoints with their own series; anything else is `other`.
pub const ENDPOINTS: [&str; 10] = [
    "/recommendations",
    "/events",
    "/similar",
    "/popular",
    "/health",
    "/metrics",
    "/openapi.json",
    "/admin/reload",
    "/",
    "other",
];
/// Status codes with their own series; anything else is counted under `other`.
const STATUSES: [u16; 17] = [200, 201, 202, 400, 401, 403, 404, 405, 408, 413, 414, 415, 422, 429, 431, 500, 503];
/// Latency histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0];

const STATUS_SLOTS: usize = STATUSES.len() + 1;

#[derive(Default)]
struct Histogram {
    /// Per bucket (not cumulative), the last slot is +Inf.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

pub struct Metrics {
    requests: Vec<Histogram>,
    by_source: [AtomicU64; Source::ALL.len()],
    pub events_stored: AtomicU64,
    /// Per `Endpoint::ALL`, (global, client).
    rate_limited: [[AtomicU64; 2]; Endpoint::ALL.len()],
    /// Failed Redis operations of the events store.
    pub redis_errors: AtomicU64,
    /// Failed Redis operations of the rate limiter (served from in-memory budgets).
    pub redis_errors_rate_limits: AtomicU64,
    pub reloads_ok: AtomicU64,
    pub reloads_refused: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: (0..ENDPOINTS.len() * STATUS_SLOTS).map(|_| Histogram::default()).collect(),
            by_source: Default::default(),
            events_stored: AtomicU64::new(0),
            rate_limited: Default::default(),
            redis_errors: AtomicU64::new(0),
            redis_errors_rate_limits: AtomicU64::new(0),
            reloads_ok: AtomicU64::new(0),
            reloads_refused: AtomicU64::new(0),
        }
    }
}

fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    pub fn endpoint_index(path: &str) -> usize {
        ENDPOINTS.iter().position(|&e| e == path).unwrap_or(ENDPOINTS.len() - 1)
    }

    pub fn record_request(&self, endpoint: usize, status: u16, elapsed: Duration) {
        let slot = STATUSES.iter().position(|&s| s == status).unwrap_or(STATUSES.len());
        let h = &self.requests[endpoint * STATUS_SLOTS + slot];
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS.iter().position(|&b| seconds <= b).unwrap_or(BUCKETS.len());
        inc(&h.buckets[bucket]);
        h.sum_ns.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }

    pub fn recommended(&self, source: Source) {
        inc(&self.by_source[source as usize]);
    }

    pub fn count(counter: &AtomicU64) {
        inc(counter);
    }

    fn rate_limited_counter(&self, endpoint: Endpoint, scope: Scope) -> &AtomicU64 {
        &self.rate_limited[endpoint as usize][scope as usize]
    }

    pub fn rate_limited(&self, endpoint: Endpoint, scope: Scope) {
        inc(self.rate_limited_counter(endpoint, scope));
    }

    /// Requests of `endpoint` refused by the `scope` budget.
    pub fn rate_limited_count(&self, endpoint: Endpoint, scope: Scope) -> u64 {
        self.rate_limited_counter(endpoint, scope).load(Ordering::Relaxed)
    }

    /// Requests counted for `endpoint` with `status` (for tests and the load tester).
    pub fn requests(&self, endpoint: &str, status: u16) -> u64 {
        let e = Self::endpoint_index(endpoint);
        let slot = STATUSES.iter().position(|&s| s == status).unwrap_or(STATUSES.len());
        self.requests[e * STATUS_SLOTS + slot].buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 << 10);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# HELP musicrec_http_requests_total Requests served, by endpoint and status.\n");
        out.push_str("# TYPE musicrec_http_requests_total counter\n");
        let status_label = |slot: usize| STATUSES.get(slot).map_or("other".to_string(), |s| s.to_string());
        let mut series = Vec::new();
        for (e, endpoint) in ENDPOINTS.iter().enumerate() {
            for slot in 0..STATUS_SLOTS {
                let h = &self.requests[e * STATUS_SLOTS + slot];
                let counts: Vec<u64> = h.buckets.iter().map(load).collect();
                let total: u64 = counts.iter().sum();
                if total > 0 {
                    series.push((endpoint, status_label(slot), counts, total, load(&h.sum_ns)));
                }
            }
        }
        for (endpoint, status, _, total, _) in &series {
            let _ =
                writeln!(out, "musicrec_http_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {total}");
        }
        out.push_str("# HELP musicrec_http_request_duration_seconds Request latency, by endpoint and status.\n");
        out.push_str("# TYPE musicrec_http_request_duration_seconds histogram\n");
        for (endpoint, status, counts, total, sum_ns) in &series {
            let labels = format!("endpoint=\"{endpoint}\",status=\"{status}\"");
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(counts) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "musicrec_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(out, "musicrec_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {total}");
            let _ = writeln!(out, "musicrec_http_request_duration_seconds_sum{{{labels}}} {}", *sum_ns as f64 / 1e9);
            let _ = writeln!(out, "musicrec_http_request_duration_seconds_count{{{labels}}} {total}");
        }
        out.push_str("# HELP musicrec_recommendations_total Recommended items, by source.\n");
        out.push_str("# TYPE musicrec_recommendations_total counter\n");
        for source in Source::ALL {
            let _ = writeln!(
                out,
                "musicrec_recommendations_total{{source=\"{}\"}} {}",
                source.as_str(),
                load(&self.by_source[source as usize])
            );
        }
        out.push_str("# HELP musicrec_rate_limited_total Requests refused with 429, by endpoint and budget.\n");
        out.push_str("# TYPE musicrec_rate_limited_total counter\n");
        for endpoint in Endpoint::ALL {
            for (scope, name) in [(Scope::Global, "global"), (Scope::Client, "client")] {
                let _ = writeln!(
                    out,
                    "musicrec_rate_limited_total{{endpoint=\"{}\",scope=\"{name}\"}} {}",
                    endpoint.path(),
                    self.rate_limited_count(endpoint, scope)
                );
            }
        }
        let counters = [
            ("musicrec_events_stored_total", "Listening events stored.", "", &self.events_stored),
            (
                "musicrec_redis_errors_total",
                "Failed Redis operations, by store (events: served without the online part; rate_limits: \
                 served from this instance's budgets).",
                "store=\"events\"",
                &self.redis_errors,
            ),
            ("musicrec_redis_errors_total", "", "store=\"rate_limits\"", &self.redis_errors_rate_limits),
            ("musicrec_reloads_total", "Artifact reloads.", "result=\"ok\"", &self.reloads_ok),
            ("musicrec_reloads_total", "", "result=\"refused\"", &self.reloads_refused),
        ];
        for (name, help, labels, value) in counters {
            if !help.is_empty() {
                let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            }
            let labels = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
            let _ = writeln!(out, "{name}{labels} {}", load(value));
        }
        out
    }
}

/// Appends the fold-in cache's counters (they belong to the loaded artifact set, so they
/// restart at a reload, which Prometheus' rate() treats as a counter reset).
pub fn render_fold_in_cache(out: &mut String, hits: u64, misses: u64) {
    out.push_str("# HELP musicrec_fold_in_cache_total Fold-in answers reused (hit) or computed (miss).\n");
    out.push_str("# TYPE musicrec_fold_in_cache_total counter\n");
    let _ = writeln!(out, "musicrec_fold_in_cache_total{{result=\"hit\"}} {hits}");
    let _ = writeln!(out, "musicrec_fold_in_cache_total{{result=\"miss\"}} {misses}");
}

/// Appends the in-memory events store's size and the users it forgot to stay within
/// `service.events_max_users`.
pub fn render_events_store(out: &mut String, users: usize, evicted: u64) {
    out.push_str("# HELP musicrec_events_users Users the in-memory events store holds.\n");
    out.push_str("# TYPE musicrec_events_users gauge\n");
    let _ = writeln!(out, "musicrec_events_users {users}");
    out.push_str(
        "# HELP musicrec_events_evicted_total Users the in-memory events store forgot (oldest listen first).\n",
    );
    out.push_str("# TYPE musicrec_events_evicted_total counter\n");
    let _ = writeln!(out, "musicrec_events_evicted_total {evicted}");
}

/// Appends the Redis circuit breaker's counters.
pub fn render_redis_breaker(out: &mut String, opened: u64, skipped: u64) {
    out.push_str("# HELP musicrec_redis_circuit_opened_total Times a Redis failure opened the circuit.\n");
    out.push_str("# TYPE musicrec_redis_circuit_opened_total counter\n");
    let _ = writeln!(out, "musicrec_redis_circuit_opened_total {opened}");
    out.push_str("# HELP musicrec_redis_skipped_total Redis commands not sent because the circuit was open.\n");
    out.push_str("# TYPE musicrec_redis_skipped_total counter\n");
    let _ = writeln!(out, "musicrec_redis_skipped_total {skipped}");
}

/// The commit the serving binary was built from (`musicrec_build_info`); set once by the
/// binary, "unknown" otherwise.
static BUILD_COMMIT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub fn set_build_commit(commit: &str) {
    let _ = BUILD_COMMIT.set(commit.to_string());
}

/// A label value with `\`, `"` and newlines escaped, as the exposition format requires.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn gauge(out: &mut String, name: &str, help: &str, labels: &str, value: impl std::fmt::Display) {
    let labels = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{labels} {value}");
}

/// Appends the build and the served artifact set: `musicrec_build_info`, `musicrec_model_info`,
/// when the set was trained (the ranking stage finished) and loaded, and how long loading took.
pub fn render_model(
    out: &mut String,
    run_id: &str,
    trained_at_unix: Option<f64>,
    loaded_at_unix: f64,
    load_seconds: f64,
) {
    let commit = BUILD_COMMIT.get().map_or("unknown", String::as_str);
    let labels = format!("version=\"{}\",commit=\"{}\"", label(env!("CARGO_PKG_VERSION")), label(commit));
    gauge(out, "musicrec_build_info", "The running build: version and commit.", &labels, 1);
    let labels = format!("run_id=\"{}\"", label(run_id));
    gauge(out, "musicrec_model_info", "The served artifact set: the ranking stage's run id.", &labels, 1);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    if let Some(trained) = trained_at_unix {
        let help = "Seconds since the served set's ranking stage finished.";
        gauge(out, "musicrec_model_age_seconds", help, "", (now - trained).max(0.0));
    }
    let help = "When the served set was loaded, Unix seconds.";
    gauge(out, "musicrec_model_loaded_timestamp_seconds", help, "", loaded_at_unix);
    gauge(out, "musicrec_model_load_seconds", "Seconds the served set took to load.", "", load_seconds);
}

/// This process's standard `process_*` metrics, read from Linux's /proc (elsewhere absent).
pub fn render_process(out: &mut String) {
    let Some(p) = ProcessStats::read() else { return };
    let _ = writeln!(
        out,
        "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
         # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}",
        p.cpu_seconds
    );
    gauge(out, "process_resident_memory_bytes", "Resident memory size in bytes.", "", p.resident_bytes);
    gauge(out, "process_virtual_memory_bytes", "Virtual memory size in bytes.", "", p.virtual_bytes);
    gauge(out, "process_open_fds", "Number of open file descriptors.", "", p.open_fds);
    if let Some(max) = p.max_fds {
        gauge(out, "process_max_fds", "Maximum number of open file descriptors.", "", max);
    }
    gauge(
        out,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        "",
        p.start_time,
    );
}

/// /proc/self's numbers, in the units the `process_*` metrics use.
#[derive(Debug, PartialEq)]
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    open_fds: usize,
    max_fds: Option<u64>,
    start_time: f64,
}

/// /proc counts CPU and start times in USER_HZ ticks, which Linux fixes at 100 for user space.
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot_time = std::fs::read_to_string("/proc/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
        Self::parse(&stat, &boot_time, &status, &limits, open_fds)
    }

    fn parse(stat: &str, proc_stat: &str, status: &str, limits: &str, open_fds: usize) -> Option<Self> {
        // The command name may hold spaces and parentheses: fields start after the last `)`.
        let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        let number = |i: usize| fields.get(i)?.parse::<u64>().ok();
        let (utime, stime, start_ticks, vsize) = (number(11)?, number(12)?, number(19)?, number(20)?);
        let boot: u64 = proc_stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()?;
        let rss_kb: u64 =
            status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
        let max_fds = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok());
        Some(Self {
            cpu_seconds: (utime + stime) as f64 / USER_HZ,
            resident_bytes: rss_kb * 1024,
            virtual_bytes: vsize,
            open_fds,
            max_fds,
            start_time: boot as f64 + start_ticks as f64 / USER_HZ,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_counts_add_up() {
        let m = Metrics::default();
        let e = Metrics::endpoint_index("/recommendations");
        m.record_request(e, 200, Duration::from_micros(50));
        m.record_request(e, 200, Duration::from_millis(3));
        m.record_request(e, 400, Duration::from_secs(5));
        m.record_request(Metrics::endpoint_index("/nope"), 599, Duration::from_millis(1));
        m.recommended(Source::FoldIn);
        m.rate_limited(Endpoint::Similar, Scope::Client);
        let text = m.render();
        assert!(
            text.contains("musicrec_http_requests_total{endpoint=\"/recommendations\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("endpoint=\"/recommendations\",status=\"200\",le=\"0.0001\"} 1"), "{text}");
        assert!(text.contains("endpoint=\"/recommendations\",status=\"200\",le=\"0.005\"} 2"), "{text}");
        assert!(text.contains("endpoint=\"/recommendations\",status=\"400\",le=\"1\"} 0"), "{text}");
        assert!(text.contains("endpoint=\"/recommendations\",status=\"400\",le=\"+Inf\"} 1"), "{text}");
        assert!(text.contains("musicrec_http_requests_total{endpoint=\"other\",status=\"other\"} 1"), "{text}");
        assert!(text.contains("musicrec_recommendations_total{source=\"fold_in\"} 1"), "{text}");
        assert_eq!(m.requests("/recommendations", 200), 2);
        assert!(text.contains("musicrec_rate_limited_total{endpoint=\"/similar\",scope=\"client\"} 1"), "{text}");
        assert!(text.contains("musicrec_rate_limited_total{endpoint=\"/similar\",scope=\"global\"} 0"), "{text}");
    }

    #[test]
    fn process_stats_parse_from_proc_files() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 8 0 12350 104857600 2560 18446744073709551615";
        let status = "Name:\tmusicrec\nVmPeak:\t  200 kB\nVmRSS:\t   10240 kB\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        let got = ProcessStats::parse(stat, "cpu  1 2 3\nbtime 1700000000\n", status, limits, 7).unwrap();
        let want = ProcessStats {
            cpu_seconds: 3.0,
            resident_bytes: 10 << 20,
            virtual_bytes: 104_857_600,
            open_fds: 7,
            max_fds: Some(1024),
            start_time: 1_700_000_123.5,
        };
        assert_eq!(got, want);
        assert_eq!(ProcessStats::parse("garbage", "", "", "", 0), None);
        let mut text = String::new();
        render_process(&mut text);
        for name in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "{name} missing: {text}");
        }
    }

    #[test]
    fn model_and_build_info_escape_their_labels() {
        let mut text = String::new();
        render_model(&mut text, "run\"1", Some(0.0), 5.0, 1.5);
        assert!(text.contains("musicrec_model_info{run_id=\"run\\\"1\"} 1"), "{text}");
        assert!(
            text.contains(&format!("musicrec_build_info{{version=\"{}\",commit=\"", env!("CARGO_PKG_VERSION"))),
            "{text}"
        );
        assert!(text.contains("musicrec_model_load_seconds 1.5\n"), "{text}");
        assert!(text.contains("musicrec_model_age_seconds 1"), "{text}");
    }
}
