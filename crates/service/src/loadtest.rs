//! `musicrec loadtest`: an open-loop load generator for the service with the original's five
//! request groups (old users, old users with a fresh listen, new users, new users with a
//! fresh listen, invalid requests) in fixed proportions. Plain HTTP/1.1 over keep-alive
//! connections, so the generator itself costs little of the machine it shares with the
//! service: every request's bytes are prepared before the clock starts, each connection is
//! one task that sends its share of a fixed schedule (nothing is spawned per request), and an
//! answer is read into a reused buffer. Every 200 answer is checked to be well-formed JSON of
//! the documented shape (a typed parse: track ids, known sources, no repeated track).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::blend::Source;
use crate::error::ServiceError;

/// Request groups and their share of requests (percent).
pub const GROUPS: [(&str, u32); 5] =
    [("old", 40), ("old+events", 20), ("new", 20), ("new+events", 10), ("invalid", 10)];

/// Prepared requests, cycled through by the schedule: enough distinct users that the new
/// users' event lists stay short, small enough to build in a few milliseconds.
const SCRIPTS: usize = 1 << 16;

/// First id of the new users that never post an event ("new": the popular path) and of those
/// that do ("new+events"), apart so the first group stays without listens.
const NEW_USERS: i64 = 1_000_000_000_000;
const NEW_USERS_WITH_EVENTS: i64 = 2_000_000_000_000;

pub struct Options {
    /// host:port of the service.
    pub addr: String,
    pub rps: u32,
    pub duration: Duration,
    pub connections: usize,
    /// Runtime threads of the generator (`run_blocking`); 1 leaves the other cores to the
    /// service it shares the machine with.
    pub threads: usize,
    /// Users with offline recommendations and tracks of the catalogue, to draw from.
    pub old_users: Vec<i64>,
    pub tracks: Vec<i64>,
}

/// Latencies and statuses of one kind of request (the recommendations GET or the event POST)
/// of one group, each request timed on its own.
#[derive(Default)]
struct Timings {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    /// Requests without an answer (connection lost or refused).
    failed: u64,
}

impl Timings {
    fn record(&mut self, sent: Instant, status: u16) {
        self.latencies_us.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
        *self.statuses.entry(status).or_default() += 1;
    }

    fn merge(&mut self, part: Timings) {
        self.latencies_us.extend(part.latencies_us);
        for (status, count) in part.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.failed += part.failed;
    }

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

impl GroupStats {
    fn merge(&mut self, part: GroupStats) {
        self.events.merge(part.events);
        self.recommendations.merge(part.recommendations);
        self.sources.iter_mut().zip(part.sources).for_each(|(t, p)| *t += p);
        self.malformed += part.malformed;
    }
}

/// What the service says it serves (`GET /health`), so a report tells whether the "+events"
/// requests were fold-in requests.
#[derive(Deserialize)]
struct Health {
    model_version: String,
    fold_in: bool,
}

pub struct Report {
    seconds: f64,
    rps: u32,
    service: Health,
    groups: Vec<(&'static str, GroupStats)>,
}

fn group_of(n: u64) -> usize {
    let mut at = (n % 100) as u32;
    for (g, (_, share)) in GROUPS.iter().enumerate() {
        if at < *share {
            return g;
        }
        at -= share;
    }
    GROUPS.len() - 1
}

/// One request of the schedule: its group, the event it posts first (the "+events" groups)
/// and the recommendations request, as the bytes sent.
struct Script {
    group: usize,
    event: Option<Box<[u8]>>,
    get: Box<[u8]>,
}

fn scripts(options: &Options) -> Vec<Script> {
    let mut random = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    let host = &options.addr;
    (0..SCRIPTS as u64)
        .map(|n| {
            let group = group_of(n);
            let name = GROUPS[group].0;
            let user = match name {
                "old" | "old+events" => options.old_users[next() as usize % options.old_users.len()],
                "new" => NEW_USERS + (next() % 1_000_000) as i64,
                _ => NEW_USERS_WITH_EVENTS + (next() % 1_000_000) as i64,
            };
            let event = name.ends_with("+events").then(|| {
                let track = options.tracks[next() as usize % options.tracks.len()];
                let body = format!("{{\"user_id\":{user},\"track_id\":{track}}}");
                format!(
                    "POST /events HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
                .into_boxed_slice()
            });
            let query = if name == "invalid" { "user_id=x&k=0".to_string() } else { format!("user_id={user}&k=10") };
            let get = format!("GET /recommendations?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes();
            Script { group, event, get: get.into_boxed_slice() }
        })
        .collect()
}

struct Connection {
    stream: TcpStream,
    /// The last answer, head and body; reused so a request allocates nothing.
    answer: Vec<u8>,
}

fn invalid(reason: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, reason)
}

/// Status and body length of a complete response head (without its blank line).
fn parse_head(head: &[u8]) -> std::io::Result<(u16, usize)> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("response head is not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .ok_or_else(|| invalid("response without a Content-Length".into()))?;
    Ok((status, length))
}

impl Connection {
    async fn open(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, answer: Vec::with_capacity(16 << 10) })
    }

    /// Sends one request and reads its whole answer; returns the status and the body.
    async fn exchange(&mut self, request: &[u8]) -> std::io::Result<(u16, &[u8])> {
        self.stream.write_all(request).await?;
        self.answer.clear();
        let mut head: Option<(usize, u16, usize)> = None;
        loop {
            if self.stream.read_buf(&mut self.answer).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if head.is_none()
                && let Some(end) = self.answer.windows(4).position(|w| w == b"\r\n\r\n")
            {
                let (status, length) = parse_head(&self.answer[..end])?;
                head = Some((end + 4, status, length));
            }
            if let Some((start, status, length)) = head
                && self.answer.len() >= start + length
            {
                return Ok((status, &self.answer[start..start + length]));
            }
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    recommendations: Vec<Recommended>,
}

#[derive(Deserialize)]
struct Recommended {
    track_id: i64,
    source: Source,
}

/// The sources of a 200 recommendations answer's items when it has the documented shape: at
/// most k items, each a track id and a known source, no track twice.
fn well_formed(body: &[u8], k: usize) -> Option<Vec<Source>> {
    let answer: Answer = serde_json::from_slice(body).ok()?;
    let recs = &answer.recommendations;
    let unique = recs.iter().enumerate().all(|(i, r)| recs[..i].iter().all(|o| o.track_id != r.track_id));
    (recs.len() <= k && unique).then(|| recs.iter().map(|r| r.source).collect())
}

async fn worker(options: &Options, scripts: &[Script], id: usize, started: Instant) -> Vec<GroupStats> {
    let mut stats: Vec<GroupStats> = GROUPS.iter().map(|_| GroupStats::default()).collect();
    let spacing = 1.0 / f64::from(options.rps);
    let mut connection = Connection::open(&options.addr).await.ok();
    // This connection's share of the schedule: requests id, id + connections, ...; a late one
    // goes out at once, so the rate holds as long as the service keeps up.
    for n in (id..).step_by(options.connections) {
        let due = Duration::from_secs_f64(n as f64 * spacing);
        if due >= options.duration {
            break;
        }
        tokio::time::sleep_until((started + due).into()).await;
        let script = &scripts[n % scripts.len()];
        let s = &mut stats[script.group];
        let Some(c) = connection.as_mut() else {
            s.events.failed += u64::from(script.event.is_some());
            s.recommendations.failed += 1;
            connection = Connection::open(&options.addr).await.ok();
            continue;
        };
        if let Some(event) = &script.event {
            let sent = Instant::now();
            match c.exchange(event).await {
                Ok((status, _)) => s.events.record(sent, status),
                Err(_) => {
                    s.events.failed += 1;
                    s.recommendations.failed += 1;
                    connection = Connection::open(&options.addr).await.ok();
                    continue;
                }
            }
        }
        let sent = Instant::now();
        match c.exchange(&script.get).await {
            Ok((status, body)) => {
                s.recommendations.record(sent, status);
                if status == 200 {
                    match well_formed(body, 10) {
                        Some(sources) => {
                            for source in sources {
                                s.sources[Source::ALL.iter().position(|&a| a == source).unwrap_or_default()] += 1;
                            }
                        }
                        None => s.malformed += 1,
                    }
                }
            }
            Err(_) => {
                s.recommendations.failed += 1;
                connection = Connection::open(&options.addr).await.ok();
            }
        }
    }
    stats
}

/// `run` on a runtime of its own, for the CLI.
pub fn run_blocking(options: Options) -> Result<Report, ServiceError> {
    let runtime = match options.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    }
    .map_err(ServiceError::Serve)?;
    runtime.block_on(run(options))
}

/// The service's `GET /health`, before the clock starts.
async fn health(addr: &str) -> Result<Health, ServiceError> {
    let failed = |reason: String| ServiceError::LoadTarget { addr: addr.to_string(), reason };
    let mut c = Connection::open(addr).await.map_err(|e| failed(format!("cannot connect: {e}")))?;
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let (status, body) = c.exchange(request.as_bytes()).await.map_err(|e| failed(format!("GET /health: {e}")))?;
    if status != 200 {
        return Err(failed(format!("GET /health answered {status}")));
    }
    serde_json::from_slice(body).map_err(|e| failed(format!("GET /health answered an unexpected body: {e}")))
}

pub async fn run(options: Options) -> Result<Report, ServiceError> {
    if options.old_users.is_empty() || options.tracks.is_empty() {
        return Err(ServiceError::LoadTarget { addr: options.addr, reason: "no users or tracks to draw from".into() });
    }
    let service = health(&options.addr).await?;
    let scripts = std::sync::Arc::new(scripts(&options));
    let options = std::sync::Arc::new(options);
    let started = Instant::now();
    let workers: Vec<_> = (0..options.connections)
        .map(|id| {
            let (options, scripts) = (options.clone(), scripts.clone());
            tokio::spawn(async move { worker(&options, &scripts, id, started).await })
        })
        .collect();
    let mut groups: Vec<(&'static str, GroupStats)> = GROUPS.iter().map(|(n, _)| (*n, GroupStats::default())).collect();
    for w in workers {
        let stats = w.await.map_err(|e| ServiceError::Serve(std::io::Error::other(e)))?;
        for ((_, total), part) in groups.iter_mut().zip(stats) {
            total.merge(part);
        }
    }
    Ok(Report { seconds: started.elapsed().as_secs_f64(), rps: options.rps, service, groups })
}

fn posts_events(group: &str) -> bool {
    group.ends_with("+events")
}

impl Report {
    /// Answers that were not what the request expects: malformed 200s, requests without an
    /// answer, and any status other than 200 (400 for the invalid group) for a recommendations
    /// request or 201 for an event.
    pub fn problems(&self) -> u64 {
        self.groups
            .iter()
            .map(|(name, s)| {
                let expected = if *name == "invalid" { 400 } else { 200 };
                s.malformed + s.recommendations.unexpected(expected) + s.events.unexpected(201)
            })
            .sum()
    }

    /// The latencies of one kind of request over the groups `which` selects, sorted.
    fn sorted(&self, which: impl Fn(&str) -> bool, kind: impl Fn(&GroupStats) -> &Timings) -> Vec<u32> {
        let mut all: Vec<u32> = self
            .groups
            .iter()
            .filter(|(n, _)| which(n))
            .flat_map(|(_, s)| kind(s).latencies_us.iter().copied())
            .collect();
        all.sort_unstable();
        all
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[at]) / 1000.0
}

const GET: &str = "GET /recommendations";
const POST: &str = "POST /events";

/// One line of the latency table: count and percentiles of `sorted`, then `notes`.
fn row(f: &mut fmt::Formatter<'_>, group: &str, request: &str, sorted: &[u32], notes: &str) -> fmt::Result {
    writeln!(
        f,
        "{group:<11} {request:<20} {:>8} {:>7.2} {:>7.2} {:>7.2} {:>7.2}  {notes}",
        sorted.len(),
        percentile(sorted, 0.5),
        percentile(sorted, 0.9),
        percentile(sorted, 0.99),
        percentile(sorted, 1.0),
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
        let gets = self.sorted(|_| true, |s| &s.recommendations);
        let posts = self.sorted(|_| true, |s| &s.events);
        let per_second = |n: usize| n as f64 / self.seconds;
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
            "{} recommendations requests in {:.1} s: {:.0}/s (scheduled {}/s); {} events posted: {:.0}/s",
            gets.len(),
            self.seconds,
            per_second(gets.len()),
            self.rps,
            posts.len(),
            per_second(posts.len()),
        )?;
        writeln!(
            f,
            "{:<11} {:<20} {:>8} {:>7} {:>7} {:>7} {:>7}  statuses",
            "group", "request", "count", "p50 ms", "p90 ms", "p99 ms", "max ms"
        )?;
        for (name, s) in &self.groups {
            if posts_events(name) {
                row(f, name, POST, &self.sorted(|n| n == *name, |s| &s.events), &statuses(&s.events, 0))?;
            }
            let notes = statuses(&s.recommendations, s.malformed);
            row(f, name, GET, &self.sorted(|n| n == *name, |s| &s.recommendations), &notes)?;
        }
        row(f, "all", GET, &gets, &format!("problems: {}", self.problems()))?;
        row(f, "all", POST, &posts, "")?;
        row(f, "+events", GET, &self.sorted(posts_events, |s| &s.recommendations), "")?;
        write!(f, "recommended items by source:")?;
        for (name, s) in &self.groups {
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

    fn timings(latencies_us: &[u32], status: u16) -> Timings {
        Timings {
            latencies_us: latencies_us.to_vec(),
            statuses: BTreeMap::from([(status, latencies_us.len() as u64)]),
            failed: 0,
        }
    }

    /// 100 latencies 1..=100 µs scaled by `scale`: p50 = 50·scale, p99 = 99·scale.
    fn ramp(scale: u32) -> Vec<u32> {
        (1..=100).map(|i| i * scale).collect()
    }

    /// Every group answered as expected; each +events group's event posts take 1..=100 µs and
    /// its recommendations 10..=1000 µs ("old+events") or 20..=2000 µs ("new+events").
    fn report() -> Report {
        let groups = GROUPS
            .iter()
            .map(|&(name, _)| {
                let mut s = GroupStats::default();
                match name {
                    "old" | "new" => s.recommendations = timings(&ramp(5), 200),
                    "old+events" => (s.events, s.recommendations) = (timings(&ramp(1), 201), timings(&ramp(10), 200)),
                    "new+events" => (s.events, s.recommendations) = (timings(&ramp(1), 201), timings(&ramp(20), 200)),
                    _ => s.recommendations = timings(&ramp(2), 400),
                }
                s.sources[0] = 3;
                (name, s)
            })
            .collect();
        Report { seconds: 2.0, rps: 250, service: Health { model_version: "run-1".into(), fold_in: true }, groups }
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
        let [old, old_events, _, new_events, invalid] = &mut report.groups[..] else { panic!("five groups") };
        old.1.malformed += 1;
        old.1.recommendations.failed += 1;
        old_events.1.events.statuses.insert(429, 2);
        new_events.1.events.failed += 1;
        invalid.1.recommendations.statuses.insert(200, 3);
        assert_eq!(report.problems(), 8);
        let text = report.to_string();
        assert!(line(&text, "old", GET).ends_with(&["200:", "100,", "MALFORMED:", "1,", "FAILED:", "1"]), "{text}");
        assert!(line(&text, "new+events", POST).ends_with(&["FAILED:", "1"]), "{text}");
        assert!(line(&text, "all", GET).ends_with(&["problems:", "8"]), "{text}");
    }

    #[test]
    fn a_recommendations_answer_is_checked_for_its_shape() {
        let ok =
            br#"{"user_id":1,"recommendations":[{"track_id":7,"source":"fold_in"},{"track_id":8,"source":"popular"}]}"#;
        assert_eq!(well_formed(ok, 10), Some(vec![Source::FoldIn, Source::Popular]));
        assert_eq!(well_formed(ok, 1), None, "more than k");
        let twice = br#"{"recommendations":[{"track_id":7,"source":"als"},{"track_id":7,"source":"bpr"}]}"#;
        assert_eq!(well_formed(twice, 10), None);
        assert_eq!(well_formed(br#"{"recommendations":[{"track_id":7,"source":"magic"}]}"#, 10), None);
        assert_eq!(well_formed(b"not json", 10), None);
    }
}
