//! `musicrec loadtest`: an open-loop load generator for the service with the original's five
//! request groups (old users, old users with a fresh listen, new users, new users with a
//! fresh listen, invalid requests) in fixed proportions. Plain HTTP/1.1 over keep-alive
//! connections, so the generator itself costs little of the machine it shares with the
//! service. Every 200 answer is checked to be well-formed JSON of the documented shape.

use std::fmt;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::ServiceError;

/// Request groups and their share of requests (percent).
pub const GROUPS: [(&str, u32); 5] =
    [("old", 40), ("old+events", 20), ("new", 20), ("new+events", 10), ("invalid", 10)];

pub struct Options {
    /// host:port of the service.
    pub addr: String,
    pub rps: u32,
    pub duration: Duration,
    pub connections: usize,
    /// Users with offline recommendations and tracks of the catalogue, to draw from.
    pub old_users: Vec<i64>,
    pub tracks: Vec<i64>,
}

#[derive(Default)]
struct GroupStats {
    latencies_us: Vec<u32>,
    statuses: std::collections::BTreeMap<u16, u64>,
    malformed: u64,
    failed: u64,
}

pub struct Report {
    seconds: f64,
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

struct Connection {
    reader: BufReader<TcpStream>,
    host: String,
}

impl Connection {
    async fn open(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { reader: BufReader::new(stream), host: addr.to_string() })
    }

    async fn request(&mut self, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, Vec<u8>)> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(body) = body {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
        } else {
            head.push_str("\r\n");
        }
        self.reader.get_mut().write_all(head.as_bytes()).await?;
        let mut line = String::new();
        self.reader.read_line(&mut line).await?;
        let status =
            line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad status line {line:?}"))
            })?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        self.reader.read_exact(&mut body).await?;
        Ok((status, body))
    }
}

/// True when a 200 recommendations answer has the documented shape.
fn well_formed(body: &[u8], k: usize) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else { return false };
    value["recommendations"]
        .as_array()
        .is_some_and(|recs| recs.len() <= k && recs.iter().all(|r| r["track_id"].is_i64() && r["source"].is_string()))
}

async fn worker(options: &Options, id: usize, started: Instant) -> Vec<GroupStats> {
    let mut stats: Vec<GroupStats> = GROUPS.iter().map(|_| GroupStats::default()).collect();
    let per_connection = f64::from(options.rps) / options.connections as f64;
    let interval = Duration::from_secs_f64(1.0 / per_connection);
    let mut connection = Connection::open(&options.addr).await.ok();
    let mut n = id as u64;
    let mut random = 0x9E37_79B9_7F4A_7C15u64 ^ id as u64;
    let mut next = || {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::from_std(started), interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while started.elapsed() < options.duration {
        tick.tick().await;
        let g = group_of(n);
        n += options.connections as u64;
        let user = match GROUPS[g].0 {
            "old" | "old+events" => options.old_users[next() as usize % options.old_users.len()],
            _ => 1_000_000_000_000 + (next() % 1_000_000) as i64,
        };
        let Some(c) = connection.as_mut() else {
            stats[g].failed += 1;
            connection = Connection::open(&options.addr).await.ok();
            continue;
        };
        let sent = Instant::now();
        let result = async {
            if GROUPS[g].0.ends_with("+events") {
                let track = options.tracks[next() as usize % options.tracks.len()];
                c.request("POST", "/events", Some(&format!("{{\"user_id\":{user},\"track_id\":{track}}}"))).await?;
            }
            if GROUPS[g].0 == "invalid" {
                c.request("GET", "/recommendations?user_id=x&k=0", None).await
            } else {
                c.request("GET", &format!("/recommendations?user_id={user}&k=10"), None).await
            }
        }
        .await;
        let s = &mut stats[g];
        match result {
            Ok((status, body)) => {
                s.latencies_us.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                *s.statuses.entry(status).or_default() += 1;
                if status == 200 && !well_formed(&body, 10) {
                    s.malformed += 1;
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
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(ServiceError::Serve)?;
    runtime.block_on(run(options))
}

pub async fn run(options: Options) -> Result<Report, ServiceError> {
    if options.old_users.is_empty() || options.tracks.is_empty() {
        return Err(ServiceError::Artifacts { dir: options.addr, reason: "no users or tracks to draw from".into() });
    }
    let options = std::sync::Arc::new(options);
    let started = Instant::now();
    let workers: Vec<_> = (0..options.connections)
        .map(|id| {
            let options = options.clone();
            tokio::spawn(async move { worker(&options, id, started).await })
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
            total.malformed += part.malformed;
            total.failed += part.failed;
        }
    }
    Ok(Report { seconds: started.elapsed().as_secs_f64(), groups })
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
        writeln!(f, "{total} requests in {:.1} s: {:.0} requests/s", self.seconds, total as f64 / self.seconds)?;
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
        )
    }
}
