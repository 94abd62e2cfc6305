//! `musicrec loadtest`: an open-loop load generator for the service with the original's five
//! request groups (old users, old users with a fresh listen, new users, new users with a
//! fresh listen, invalid requests) in fixed proportions. Plain HTTP/1.1 over keep-alive
//! connections, so the generator itself costs little of the machine it shares with the
//! service: every request's bytes are prepared before the clock starts, each connection is
//! one task that sends its share of a fixed schedule (nothing is spawned per request), and an
//! answer is read into a reused buffer. Every 200 answer is checked to be well-formed JSON of
//! the documented shape (a typed parse: track ids, known sources, no repeated track).

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

#[derive(Default)]
struct GroupStats {
    latencies_us: Vec<u32>,
    statuses: std::collections::BTreeMap<u16, u64>,
    /// Recommended items per source, in `Source::ALL` order.
    sources: [u64; Source::ALL.len()],
    malformed: u64,
    failed: u64,
}

pub struct Report {
    seconds: f64,
    rps: u32,
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
            s.failed += 1;
            connection = Connection::open(&options.addr).await.ok();
            continue;
        };
        let sent = Instant::now();
        let result = async {
            if let Some(event) = &script.event {
                c.exchange(event).await?;
            }
            c.exchange(&script.get).await
        }
        .await;
        match result {
            Ok((status, body)) => {
                s.latencies_us.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                *s.statuses.entry(status).or_default() += 1;
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
                s.failed += 1;
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

pub async fn run(options: Options) -> Result<Report, ServiceError> {
    if options.old_users.is_empty() || options.tracks.is_empty() {
        return Err(ServiceError::Artifacts { dir: options.addr, reason: "no users or tracks to draw from".into() });
    }
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
            total.latencies_us.extend(part.latencies_us);
            for (status, count) in part.statuses {
                *total.statuses.entry(status).or_default() += count;
            }
            total.sources.iter_mut().zip(part.sources).for_each(|(t, p)| *t += p);
            total.malformed += part.malformed;
            total.failed += part.failed;
        }
    }
    Ok(Report { seconds: started.elapsed().as_secs_f64(), rps: options.rps, groups })
}

impl Report {
    /// Responses that were not what the group expects: malformed 200s, connection failures,
    /// and any status other than 200 (400 for the invalid group).
    pub fn problems(&self) -> u64 {
        self.groups
            .iter()
            .map(|(name, s)| {
                let expected = if *name == "invalid" { 400 } else { 200 };
                s.malformed
                    + s.failed
                    + s.statuses.iter().filter(|(st, _)| **st != expected).map(|(_, c)| c).sum::<u64>()
            })
            .sum()
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[at]) / 1000.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: usize = self.groups.iter().map(|(_, s)| s.latencies_us.len()).sum();
        writeln!(
            f,
            "{total} requests in {:.1} s: {:.0} requests/s (scheduled {}/s)",
            self.seconds,
            total as f64 / self.seconds,
            self.rps
        )?;
        writeln!(
            f,
            "{:<11} {:>9} {:>8} {:>8} {:>8} {:>8}  statuses",
            "group", "requests", "p50 ms", "p90 ms", "p99 ms", "max ms"
        )?;
        let mut all = Vec::with_capacity(total);
        for (name, s) in &self.groups {
            let mut sorted = s.latencies_us.clone();
            sorted.sort_unstable();
            all.extend_from_slice(&sorted);
            let statuses: Vec<String> = s.statuses.iter().map(|(st, c)| format!("{st}: {c}")).collect();
            writeln!(
                f,
                "{name:<11} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}{}{}",
                sorted.len(),
                percentile(&sorted, 0.5),
                percentile(&sorted, 0.9),
                percentile(&sorted, 0.99),
                percentile(&sorted, 1.0),
                statuses.join(", "),
                if s.malformed > 0 { format!(", MALFORMED: {}", s.malformed) } else { String::new() },
                if s.failed > 0 { format!(", FAILED: {}", s.failed) } else { String::new() },
            )?;
        }
        all.sort_unstable();
        write!(
            f,
            "{:<11} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2}  problems: {}",
            "all",
            all.len(),
            percentile(&all, 0.5),
            percentile(&all, 0.9),
            percentile(&all, 0.99),
            percentile(&all, 1.0),
            self.problems()
        )?;
        write!(f, "\nrecommended items by source:")?;
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
