//! The service's Prometheus metrics, on `prometheus-client` and written in the Prometheus text
//! format (0.0.4), whose series names the dashboard queries. Each server instance has its own
//! registry (tests read exact values). Counted events are the library's counters and
//! histograms, held as handles in fixed arrays: the label sets are known in advance
//! (endpoints, statuses, sources), so recording is an atomic add (a short uncontended lock for
//! a histogram) with no map lookup. What is a reading of state (the process, the served set,
//! the fold-in cache, the events store, the Redis circuit) is a collector read at each scrape.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::encoding::{DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::blend::Source;
use crate::limits::{Endpoint, Scope};

/// The `Content-Type` of `/metrics`.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

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

/// The labels of the request series.
type RequestLabels = [(&'static str, &'static str); 2];
/// A one-label series' label.
type Label = [(&'static str, &'static str); 1];

/// A status' label value: its code, or `other` for the last slot.
fn status_label(slot: usize) -> &'static str {
    const LABELS: [&str; STATUS_SLOTS] = [
        "200", "201", "202", "400", "401", "403", "404", "405", "408", "413", "414", "415", "422", "429", "431", "500",
        "503", "other",
    ];
    LABELS[slot]
}

fn status_slot(status: u16) -> usize {
    STATUSES.iter().position(|&s| s == status).unwrap_or(STATUSES.len())
}

/// One endpoint and status pair's two series.
struct RequestSeries {
    count: Counter,
    latency: Histogram,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    /// Per endpoint × status slot, taken from the families at the pair's first request: later
    /// requests record without a map lookup, and a pair never answered is no series.
    request_series: Box<[OnceLock<RequestSeries>]>,
    by_source: [Counter; Source::ALL.len()],
    pub events_stored: Counter,
    /// Per `Endpoint::ALL`, per `Scope` (global, client).
    rate_limited: [[Counter; 2]; Endpoint::ALL.len()],
    /// Failed Redis operations of the events store.
    pub redis_errors: Counter,
    /// Failed Redis operations of the rate limiter (served from in-memory budgets).
    pub redis_errors_rate_limits: Counter,
    pub reloads_ok: Counter,
    pub reloads_refused: Counter,
}

/// A family of counters by one label, its series created at once so that each is served
/// from the start (0 rather than absent), and their handles.
fn counters_by<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<Label, Counter>::default();
    registry.register(name, help, family.clone());
    values.map(|value| family.get_or_create_owned(&[(label, value)]))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::default();
        registry.register("musicrec_http_requests", "Requests served, by endpoint and status", requests.clone());
        let latency: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(BUCKETS));
        registry.register(
            "musicrec_http_request_duration_seconds",
            "Request latency, by endpoint and status",
            latency.clone(),
        );
        let by_source = counters_by(
            &mut registry,
            "musicrec_recommendations",
            "Recommended items, by source",
            "source",
            Source::ALL.map(Source::as_str),
        );
        let rate_limited_family = Family::<RequestLabels, Counter>::default();
        registry.register(
            "musicrec_rate_limited",
            "Requests refused with 429, by endpoint and budget",
            rate_limited_family.clone(),
        );
        let rate_limited = Endpoint::ALL.map(|endpoint| {
            ["global", "client"].map(|scope| {
                rate_limited_family.get_or_create_owned(&[("endpoint", endpoint.path()), ("scope", scope)])
            })
        });
        let events_stored = Counter::default();
        registry.register("musicrec_events_stored", "Listening events stored", events_stored.clone());
        let [redis_errors, redis_errors_rate_limits] = counters_by(
            &mut registry,
            "musicrec_redis_errors",
            "Failed Redis operations, by store (events: served without the online part; rate_limits: \
             served from this instance's budgets)",
            "store",
            ["events", "rate_limits"],
        );
        let [reloads_ok, reloads_refused] =
            counters_by(&mut registry, "musicrec_reloads", "Artifact reloads", "result", ["ok", "refused"]);
        let commit = BUILD_COMMIT.get().map_or("unknown", String::as_str);
        registry.register(
            "musicrec_build",
            "The running build: version and commit",
            Info::new([("version", env!("CARGO_PKG_VERSION").to_string()), ("commit", commit.to_string())]),
        );
        registry.register_collector(Box::new(ProcessCollector));
        Self {
            registry,
            requests,
            latency,
            request_series: (0..ENDPOINTS.len() * STATUS_SLOTS).map(|_| OnceLock::new()).collect(),
            by_source,
            events_stored,
            rate_limited,
            redis_errors,
            redis_errors_rate_limits,
            reloads_ok,
            reloads_refused,
        }
    }
}

impl Metrics {
    pub fn endpoint_index(path: &str) -> usize {
        ENDPOINTS.iter().position(|&e| e == path).unwrap_or(ENDPOINTS.len() - 1)
    }

    fn request_series(&self, endpoint: usize, slot: usize) -> &RequestSeries {
        self.request_series[endpoint * STATUS_SLOTS + slot].get_or_init(|| {
            let labels = [("endpoint", ENDPOINTS[endpoint]), ("status", status_label(slot))];
            RequestSeries {
                count: self.requests.get_or_create_owned(&labels),
                latency: self.latency.get_or_create_owned(&labels),
            }
        })
    }

    pub fn record_request(&self, endpoint: usize, status: u16, elapsed: Duration) {
        let series = self.request_series(endpoint, status_slot(status));
        series.count.inc();
        series.latency.observe(elapsed.as_secs_f64());
    }

    pub fn recommended(&self, source: Source) {
        self.by_source[source as usize].inc();
    }

    fn rate_limited_counter(&self, endpoint: Endpoint, scope: Scope) -> &Counter {
        &self.rate_limited[endpoint as usize][scope as usize]
    }

    pub fn rate_limited(&self, endpoint: Endpoint, scope: Scope) {
        self.rate_limited_counter(endpoint, scope).inc();
    }

    /// Requests of `endpoint` refused by the `scope` budget.
    pub fn rate_limited_count(&self, endpoint: Endpoint, scope: Scope) -> u64 {
        self.rate_limited_counter(endpoint, scope).get()
    }

    /// Requests counted for `endpoint` with `status` (for tests and the load tester).
    pub fn requests(&self, endpoint: &str, status: u16) -> u64 {
        let slot = &self.request_series[Self::endpoint_index(endpoint) * STATUS_SLOTS + status_slot(status)];
        slot.get().map_or(0, |series| series.count.get())
    }

    /// The Prometheus text exposition of every series: this instance's, the process' and
    /// `served`'s.
    pub fn render(&self, served: Served) -> String {
        let mut scrape = Registry::default();
        scrape.register_collector(Box::new(served));
        let mut out = String::with_capacity(16 << 10);
        // Writing to a String cannot fail.
        let _ =
            prometheus_text::encode(&mut out, &self.registry).and_then(|()| prometheus_text::encode(&mut out, &scrape));
        out
    }
}

/// The commit the serving binary was built from (`musicrec_build_info`); set once by the
/// binary before the server starts, "unknown" otherwise.
static BUILD_COMMIT: OnceLock<String> = OnceLock::new();

pub fn set_build_commit(commit: &str) {
    let _ = BUILD_COMMIT.set(commit.to_string());
}

/// What `/metrics` reads from the server's state at a scrape.
#[derive(Debug)]
pub struct Served {
    /// The served set's version: the ranking stage's run id.
    pub run_id: String,
    /// When its ranking stage finished, Unix seconds, when the manifest says.
    pub trained_at_unix: Option<f64>,
    pub loaded_at_unix: f64,
    pub load_seconds: f64,
    /// The fold-in cache's answers reused and computed. They belong to the loaded set, so
    /// they restart at a reload, which Prometheus' rate() treats as a counter reset.
    pub fold_in_cache: FoldInCacheCounts,
    /// The in-memory events store's users and the users it forgot to stay within
    /// `service.events_max_users`; none with Redis.
    pub events_store: Option<(usize, u64)>,
    /// The Redis circuit's openings and the commands it kept from Redis; none without Redis.
    pub redis_circuit: Option<(u64, u64)>,
}

#[derive(Debug)]
pub struct FoldInCacheCounts {
    pub hits: u64,
    pub misses: u64,
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: impl EncodeGaugeValue) -> fmt::Result {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// `name` is without `_total`, which the encoder appends.
fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: impl EncodeCounterValue) -> fmt::Result {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

impl Collector for Served {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let e = &mut encoder;
        // `_info` is appended by the encoder.
        let model = Info::new([("run_id", self.run_id.clone())]);
        let help = "The served artifact set: the ranking stage's run id";
        model.encode(e.encode_descriptor("musicrec_model", help, None, model.metric_type())?)?;
        if let Some(trained) = self.trained_at_unix {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            let help = "Seconds since the served set's ranking stage finished";
            gauge(e, "musicrec_model_age_seconds", help, (now - trained).max(0.0))?;
        }
        let help = "When the served set was loaded, Unix seconds";
        gauge(e, "musicrec_model_loaded_timestamp_seconds", help, self.loaded_at_unix)?;
        gauge(e, "musicrec_model_load_seconds", "Seconds the served set took to load", self.load_seconds)?;
        let help = "Fold-in answers reused (hit) or computed (miss)";
        let mut family = e.encode_descriptor("musicrec_fold_in_cache", help, None, MetricType::Counter)?;
        for (result, count) in [("hit", self.fold_in_cache.hits), ("miss", self.fold_in_cache.misses)] {
            ConstCounter::new(count).encode(family.encode_family(&[("result", result)])?)?;
        }
        if let Some((users, evicted)) = self.events_store {
            gauge(e, "musicrec_events_users", "Users the in-memory events store holds", users)?;
            let help = "Users the in-memory events store forgot (oldest listen first)";
            counter(e, "musicrec_events_evicted", help, evicted)?;
        }
        if let Some((opened, skipped)) = self.redis_circuit {
            counter(e, "musicrec_redis_circuit_opened", "Times a Redis failure opened the circuit", opened)?;
            let help = "Redis commands not sent because the circuit was open";
            counter(e, "musicrec_redis_skipped", help, skipped)?;
        }
        Ok(())
    }
}

/// This process's standard `process_*` metrics, read from Linux's /proc at each scrape
/// (elsewhere absent).
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        let Some(p) = ProcessStats::read() else { return Ok(()) };
        let e = &mut encoder;
        counter(e, "process_cpu_seconds", "Total user and system CPU time spent in seconds", p.cpu_seconds)?;
        gauge(e, "process_resident_memory_bytes", "Resident memory size in bytes", p.resident_bytes)?;
        gauge(e, "process_virtual_memory_bytes", "Virtual memory size in bytes", p.virtual_bytes)?;
        gauge(e, "process_open_fds", "Number of open file descriptors", p.open_fds)?;
        if let Some(max) = p.max_fds {
            gauge(e, "process_max_fds", "Maximum number of open file descriptors", max)?;
        }
        gauge(e, "process_start_time_seconds", "Start time of the process since unix epoch in seconds", p.start_time)
    }
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

    fn served(run_id: &str) -> Served {
        Served {
            run_id: run_id.to_string(),
            trained_at_unix: Some(0.0),
            loaded_at_unix: 5.0,
            load_seconds: 1.5,
            fold_in_cache: FoldInCacheCounts { hits: 3, misses: 4 },
            events_store: Some((2, 1)),
            redis_circuit: None,
        }
    }

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
        let text = m.render(served("run"));
        assert!(
            text.contains("musicrec_http_requests_total{endpoint=\"/recommendations\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("endpoint=\"/recommendations\",status=\"200\",le=\"0.0001\"} 1"), "{text}");
        assert!(text.contains("endpoint=\"/recommendations\",status=\"200\",le=\"0.005\"} 2"), "{text}");
        assert!(text.contains("endpoint=\"/recommendations\",status=\"400\",le=\"1\"} 0"), "{text}");
        assert!(text.contains("endpoint=\"/recommendations\",status=\"400\",le=\"+Inf\"} 1"), "{text}");
        assert!(text.contains("musicrec_http_requests_total{endpoint=\"other\",status=\"other\"} 1"), "{text}");
        assert!(!text.contains("status=\"201\""), "a pair never answered is no series: {text}");
        assert!(text.contains("musicrec_recommendations_total{source=\"fold_in\"} 1"), "{text}");
        assert!(text.contains("musicrec_recommendations_total{source=\"als\"} 0"), "{text}");
        assert_eq!(m.requests("/recommendations", 200), 2);
        assert_eq!(m.requests("/recommendations", 201), 0);
        assert!(text.contains("musicrec_rate_limited_total{endpoint=\"/similar\",scope=\"client\"} 1"), "{text}");
        assert!(text.contains("musicrec_rate_limited_total{endpoint=\"/similar\",scope=\"global\"} 0"), "{text}");
        assert!(text.contains("# TYPE musicrec_http_request_duration_seconds histogram\n"), "{text}");
        assert!(text.contains("# TYPE musicrec_http_requests_total counter\n"), "{text}");
        assert!(text.contains("musicrec_fold_in_cache_total{result=\"miss\"} 4\n"), "{text}");
        assert!(
            text.contains("musicrec_events_users 2\n") && text.contains("musicrec_events_evicted_total 1\n"),
            "{text}"
        );
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
        let text = Metrics::default().render(served("run"));
        for name in [
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(name), "{name} missing: {text}");
        }
    }

    #[test]
    fn model_and_build_info_escape_their_labels() {
        let text = Metrics::default().render(served("run\"1\\\n"));
        assert!(text.contains("musicrec_model_info{run_id=\"run\\\"1\\\\\\n\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE musicrec_model_info gauge\n"), "{text}");
        assert!(
            text.contains(&format!("musicrec_build_info{{version=\"{}\",commit=\"", env!("CARGO_PKG_VERSION"))),
            "{text}"
        );
        assert!(text.contains("musicrec_model_load_seconds 1.5\n"), "{text}");
        assert!(text.contains("musicrec_model_age_seconds 1"), "{text}");
    }
}
