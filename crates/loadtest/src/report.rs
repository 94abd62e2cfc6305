//! What a load test measured, and its printed table.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use musicrec_service::blend::Source;
use serde::Deserialize;

use crate::GROUPS;

/// Longest latency told apart, in microseconds: a minute (a longer one counts as a minute).
const LONGEST_US: u64 = 60_000_000;

/// Latencies in microseconds, to three significant digits (exact below 2 ms).
fn latencies() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LONGEST_US, 3).expect("1 µs to a minute at three digits is a valid range")
}

pub(crate) fn posts_events(group: &str) -> bool {
    group.ends_with("+events")
}

/// The two kinds of request: the event POST of the "+events" groups, and the recommendations
/// GET every group sends.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Event,
    Recommendations,
}

/// Latencies and statuses of one kind of request of one group, each request timed on its own.
struct Timings {
    latencies_us: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    /// Requests without an answer (connection lost or refused).
    failed: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Self { latencies_us: latencies(), statuses: BTreeMap::new(), failed: 0 }
    }
}

impl Timings {
    /// Requests that failed or were answered with another status than `expected`.
    fn unexpected(&self, expected: u16) -> u64 {
        self.failed + self.statuses.iter().filter(|(st, _)| **st != expected).map(|(_, c)| c).sum::<u64>()
    }
}

#[derive(Default)]
struct GroupStats {
    /// The POST /events of the "+events" groups (empty for the others).
    events: Timings,
    recommendations: Timings,
    /// Recommended items per source, in `Source::ALL` order.
    sources: [u64; Source::ALL.len()],
    malformed: u64,
}

/// Everything the connections measured, per group and over the groups together.
pub(crate) struct Stats {
    groups: [GroupStats; GROUPS.len()],
    /// Every group's recommendations requests, every event post, and the "+events" groups'
    /// recommendations requests (each right after a new listen: the fold-in requests).
    all_recommendations: Histogram<u64>,
    all_events: Histogram<u64>,
    after_events: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            groups: Default::default(),
            all_recommendations: latencies(),
            all_events: latencies(),
            after_events: latencies(),
        }
    }
}

impl Stats {
    pub(crate) fn record(&mut self, group: usize, kind: Kind, latency: Duration, status: u16) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let s = &mut self.groups[group];
        let (timings, total) = match kind {
            Kind::Event => (&mut s.events, &mut self.all_events),
            Kind::Recommendations => {
                if posts_events(GROUPS[group].0) {
                    self.after_events.saturating_record(us);
                }
                (&mut s.recommendations, &mut self.all_recommendations)
            }
        };
        timings.latencies_us.saturating_record(us);
        *timings.statuses.entry(status).or_default() += 1;
        total.saturating_record(us);
    }

    /// A request of `group` without an answer; when it was the event post, the
    /// recommendations request that should have followed was not sent either.
    pub(crate) fn fail(&mut self, group: usize, with_event: bool) {
        let s = &mut self.groups[group];
        s.events.failed += u64::from(with_event);
        s.recommendations.failed += 1;
    }

    /// The sources of a 200 answer's items; `None` when the answer was malformed.
    pub(crate) fn count_sources(&mut self, group: usize, sources: Option<&[Source]>) {
        let s = &mut self.groups[group];
        match sources {
            Some(sources) => {
                for source in sources {
                    s.sources[Source::ALL.iter().position(|a| a == source).unwrap_or_default()] += 1;
                }
            }
            None => s.malformed += 1,
        }
    }

    fn named(&self) -> impl Iterator<Item = (&'static str, &GroupStats)> {
        GROUPS.iter().map(|(name, _)| *name).zip(&self.groups)
    }
}

/// What the service says it serves (`GET /health`), so a report tells whether the "+events"
/// requests were fold-in requests.
#[derive(Deserialize)]
pub(crate) struct Health {
    pub(crate) model_version: String,
    pub(crate) fold_in: bool,
}

pub struct Report {
    pub(crate) seconds: f64,
    pub(crate) rps: u32,
    pub(crate) service: Health,
    pub(crate) stats: Stats,
}

impl Report {
    /// Answers that were not what the request expects: malformed 200s, requests without an
    /// answer, and any status other than 200 (400 for the invalid group) for a recommendations
    /// request or 201 for an event.
    pub fn problems(&self) -> u64 {
        self.stats
            .named()
            .map(|(name, s)| {
                let expected = if name == "invalid" { 400 } else { 200 };
                s.malformed + s.recommendations.unexpected(expected) + s.events.unexpected(201)
            })
            .sum()
    }
}

const GET: &str = "GET /recommendations";
const POST: &str = "POST /events";

/// One line of the latency table: count and percentiles (ms) of `latencies_us`, then `notes`.
fn row(
    f: &mut fmt::Formatter<'_>,
    group: &str,
    request: &str,
    latencies_us: &Histogram<u64>,
    notes: &str,
) -> fmt::Result {
    let ms = |us: u64| us as f64 / 1000.0;
    let at = |quantile: f64| ms(latencies_us.value_at_quantile(quantile));
    writeln!(
        f,
        "{group:<11} {request:<20} {:>8} {:>7.2} {:>7.2} {:>7.2} {:>7.2}  {notes}",
        latencies_us.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        ms(latencies_us.max()),
    )
}

fn statuses(t: &Timings, malformed: u64) -> String {
    let mut parts: Vec<String> = t.statuses.iter().map(|(st, c)| format!("{st}: {c}")).collect();
    if malformed > 0 {
        parts.push(format!("MALFORMED: {malformed}"));
    }
    if t.failed > 0 {
        parts.push(format!("FAILED: {}", t.failed));
    }
    parts.join(", ")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stats = &self.stats;
        let (gets, posts) = (stats.all_recommendations.len(), stats.all_events.len());
        let per_second = |n: u64| n as f64 / self.seconds;
        writeln!(
            f,
            "service: model {}, fold-in {}",
            self.service.model_version,
            if self.service.fold_in {
                "on (a +events group's recommendations request follows a new listen: a fold-in request)"
            } else {
                "off"
            }
        )?;
        writeln!(
            f,
            "{gets} recommendations requests in {:.1} s: {:.0}/s (scheduled {}/s); {posts} events posted: {:.0}/s",
            self.seconds,
            per_second(gets),
            self.rps,
            per_second(posts),
        )?;
        writeln!(
            f,
            "{:<11} {:<20} {:>8} {:>7} {:>7} {:>7} {:>7}  statuses",
            "group", "request", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
        )?;
        for (name, s) in stats.named() {
            if posts_events(name) {
                row(f, name, POST, &s.events.latencies_us, &statuses(&s.events, 0))?;
            }
            let notes = statuses(&s.recommendations, s.malformed);
            row(f, name, GET, &s.recommendations.latencies_us, &notes)?;
        }
        row(f, "all", GET, &stats.all_recommendations, &format!("problems: {}", self.problems()))?;
        row(f, "all", POST, &stats.all_events, "")?;
        row(f, "+events", GET, &stats.after_events, "")?;
        write!(f, "recommended items by source:")?;
        for (name, s) in stats.named() {
            let total: u64 = s.sources.iter().sum();
            if total == 0 {
                continue;
            }
            let shares: Vec<String> = Source::ALL
                .iter()
                .zip(s.sources)
                .filter(|(_, c)| *c > 0)
                .map(|(source, c)| format!("{} {:.0}%", source.as_str(), 100.0 * c as f64 / total as f64))
                .collect();
            write!(f, "\n  {name:<11} {}", shares.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str) -> usize {
        GROUPS.iter().position(|(n, _)| *n == name).unwrap()
    }

    /// 100 requests taking 1..=100 µs scaled by `scale`: p50 = 50·scale, p99 = 99·scale.
    fn ramp(stats: &mut Stats, group: usize, kind: Kind, scale: u64, status: u16) {
        for i in 1..=100 {
            stats.record(group, kind, Duration::from_micros(i * scale), status);
        }
    }

    /// Every group answered as expected; each +events group's event posts take 1..=100 µs and
    /// its recommendations 10..=1000 µs ("old+events") or 20..=2000 µs ("new+events").
    fn report() -> Report {
        let mut stats = Stats::default();
        for (g, &(name, _)) in GROUPS.iter().enumerate() {
            let (scale, status) = match name {
                "old" | "new" => (5, 200),
                "old+events" => (10, 200),
                "new+events" => (20, 200),
                _ => (2, 400),
            };
            if posts_events(name) {
                ramp(&mut stats, g, Kind::Event, 1, 201);
            }
            ramp(&mut stats, g, Kind::Recommendations, scale, status);
            stats.count_sources(g, Some(&[Source::Als; 3]));
        }
        Report { seconds: 2.0, rps: 250, service: Health { model_version: "run-1".into(), fold_in: true }, stats }
    }

    fn line<'a>(text: &'a str, group: &str, request: &str) -> Vec<&'a str> {
        let found = text.lines().find(|l| l.split_whitespace().next() == Some(group) && l[12..].starts_with(request));
        found.unwrap_or_else(|| panic!("no {group} {request} line in\n{text}")).split_whitespace().collect()
    }

    #[test]
    fn each_request_kind_has_its_own_latency_line() {
        let text = report().to_string();
        assert!(text.contains("fold-in on"), "{text}");
        assert!(
            text.contains("500 recommendations requests in 2.0 s: 250/s (scheduled 250/s); 200 events posted: 100/s")
        );
        // group, method, path, count, p50, p90, p99, max, statuses...
        assert_eq!(line(&text, "old+events", POST)[3..8], ["100", "0.05", "0.09", "0.10", "0.10"]);
        assert_eq!(line(&text, "old+events", POST)[8..], ["201:", "100"]);
        assert_eq!(line(&text, "old+events", GET)[3..8], ["100", "0.50", "0.90", "0.99", "1.00"]);
        assert_eq!(line(&text, "new+events", GET)[3..8], ["100", "1.00", "1.80", "1.98", "2.00"]);
        assert_eq!(line(&text, "invalid", GET)[8..], ["400:", "100"]);
        assert!(!text.lines().any(|l| l.starts_with("old ") && l.contains(POST)), "no events, no POST line: {text}");
        // The fold-in requests: both +events groups' recommendations, without their posts.
        assert_eq!(line(&text, "+events", GET)[3..8], ["200", "0.67", "1.60", "1.96", "2.00"]);
        assert_eq!(line(&text, "all", GET)[3..], ["500", "0.28", "1.00", "1.90", "2.00", "problems:", "0"]);
        assert_eq!(line(&text, "all", POST)[3..], ["200", "0.05", "0.09", "0.10", "0.10"]);
        assert!(text.ends_with("\n  invalid     als 100%"), "{text}");
    }

    #[test]
    fn long_latencies_keep_three_digits() {
        let mut stats = Stats::default();
        for ms in 1..=100 {
            stats.record(group("old"), Kind::Recommendations, Duration::from_millis(ms), 200);
        }
        stats.record(group("old"), Kind::Recommendations, Duration::from_secs(3600), 200);
        let report = Report { stats, ..report() };
        let text = report.to_string();
        let columns = line(&text, "old", GET);
        let [p50, p90, p99, max] = [4, 5, 6, 7].map(|c| columns[c].parse::<f64>().unwrap());
        let near = |value: f64, expected: f64| (value - expected).abs() <= expected * 1e-3;
        assert!(near(p50, 51.0) && near(p90, 91.0) && near(p99, 100.0), "{text}");
        assert!(near(max, 60_000.0), "an hour counts as a minute: {text}");
    }

    #[test]
    fn fold_in_off_is_said() {
        let mut report = report();
        report.service.fold_in = false;
        assert!(report.to_string().starts_with("service: model run-1, fold-in off\n"));
    }

    #[test]
    fn every_unexpected_answer_is_a_problem() {
        let mut report = report();
        assert_eq!(report.problems(), 0);
        let stats = &mut report.stats;
        let tick = Duration::from_micros(1);
        stats.count_sources(group("old"), None);
        stats.fail(group("old"), false);
        stats.record(group("old+events"), Kind::Event, tick, 429);
        stats.record(group("old+events"), Kind::Event, tick, 429);
        stats.fail(group("new+events"), true);
        (0..3).for_each(|_| stats.record(group("invalid"), Kind::Recommendations, tick, 200));
        // The failed event post also stopped its recommendations request: 9 in all.
        assert_eq!(report.problems(), 9);
        let text = report.to_string();
        assert!(line(&text, "old", GET).ends_with(&["200:", "100,", "MALFORMED:", "1,", "FAILED:", "1"]), "{text}");
        assert!(line(&text, "old+events", POST).ends_with(&["201:", "100,", "429:", "2"]), "{text}");
        assert!(line(&text, "new+events", POST).ends_with(&["FAILED:", "1"]), "{text}");
        assert!(line(&text, "all", GET).ends_with(&["problems:", "9"]), "{text}");
    }
}
