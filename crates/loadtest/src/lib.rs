//! `musicrec loadtest`: an open-loop load generator for the service with the original's five
//! request groups (old users, old users with a fresh listen, new users, new users with a
//! fresh listen, invalid requests) in fixed proportions. HTTP/1.1 over keep-alive connections
//! through hyper's client connection, so the generator itself costs little of the machine it
//! shares with the service: every request's target and body are prepared before the clock
//! starts, and each connection is one task that sends its share of a fixed schedule (nothing
//! is spawned per request). Every 200 answer is checked to be well-formed JSON of the
//! documented shape (a typed parse: track ids, known sources, no repeated track).

mod error;
mod report;

pub use error::LoadtestError;
pub use report::Report;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::{SendRequest, handshake};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use musicrec_service::blend::Source;
use serde::Deserialize;
use tokio::net::TcpStream;

use report::{Health, Kind, Stats};

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

/// Items asked for per recommendations request.
const K: usize = 10;

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
/// and the recommendations request's target.
struct Script {
    group: usize,
    event: Option<Bytes>,
    get: Uri,
}

/// The options with every request prepared.
struct Plan {
    options: Options,
    host: HeaderValue,
    scripts: Vec<Script>,
}

type Body = Full<Bytes>;

impl Plan {
    fn new(options: Options) -> Result<Self, LoadtestError> {
        let host = HeaderValue::from_str(&options.addr).map_err(|_| LoadtestError::Target {
            addr: options.addr.clone(),
            reason: "not a host:port that can be sent as a Host header".into(),
        })?;
        let mut random = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random
        };
        let scripts = (0..SCRIPTS as u64)
            .map(|n| {
                let group = group_of(n);
                let name = GROUPS[group].0;
                let user = match name {
                    "old" | "old+events" => options.old_users[next() as usize % options.old_users.len()],
                    "new" => NEW_USERS + (next() % 1_000_000) as i64,
                    _ => NEW_USERS_WITH_EVENTS + (next() % 1_000_000) as i64,
                };
                let event = report::posts_events(name).then(|| {
                    let track = options.tracks[next() as usize % options.tracks.len()];
                    Bytes::from(format!("{{\"user_id\":{user},\"track_id\":{track}}}"))
                });
                let query =
                    if name == "invalid" { "user_id=x&k=0".to_string() } else { format!("user_id={user}&k={K}") };
                let get = Uri::try_from(format!("/recommendations?{query}"))
                    .expect("a path with a query of digits and letters is a valid request target");
                Script { group, event, get }
            })
            .collect();
        Ok(Self { options, host, scripts })
    }

    fn request(&self, method: Method, target: Uri, body: Option<Bytes>) -> Request<Body> {
        let mut request = Request::new(Full::new(body.unwrap_or_default()));
        if method == Method::POST {
            request.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        request.headers_mut().insert(HOST, self.host.clone());
        *request.method_mut() = method;
        *request.uri_mut() = target;
        request
    }
}

/// A keep-alive connection to the service.
async fn connect(addr: &str) -> std::io::Result<SendRequest<Body>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = handshake(TokioIo::new(stream)).await.map_err(std::io::Error::other)?;
    // The connection's reads and writes run as a task of their own; when they fail, the next
    // request on `sender` fails, which is where the worker notices.
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one request and reads its whole answer; returns the status and the body.
async fn exchange(sender: &mut SendRequest<Body>, request: Request<Body>) -> hyper::Result<(u16, Bytes)> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
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

fn lock(stats: &Mutex<Stats>) -> std::sync::MutexGuard<'_, Stats> {
    stats.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn worker(plan: &Plan, stats: &Mutex<Stats>, id: usize, started: Instant) {
    let options = &plan.options;
    let spacing = 1.0 / f64::from(options.rps);
    let mut connection = connect(&options.addr).await.ok();
    // This connection's share of the schedule: requests id, id + connections, ...; a late one
    // goes out at once, so the rate holds as long as the service keeps up.
    for n in (id..).step_by(options.connections) {
        let due = Duration::from_secs_f64(n as f64 * spacing);
        if due >= options.duration {
            break;
        }
        tokio::time::sleep_until((started + due).into()).await;
        let script = &plan.scripts[n % plan.scripts.len()];
        let group = script.group;
        let Some(sender) = connection.as_mut() else {
            lock(stats).fail(group, script.event.is_some());
            connection = connect(&options.addr).await.ok();
            continue;
        };
        if let Some(event) = &script.event {
            let request = plan.request(Method::POST, Uri::from_static("/events"), Some(event.clone()));
            let sent = Instant::now();
            match exchange(sender, request).await {
                Ok((status, _)) => lock(stats).record(group, Kind::Event, sent.elapsed(), status),
                Err(_) => {
                    lock(stats).fail(group, true);
                    connection = connect(&options.addr).await.ok();
                    continue;
                }
            }
        }
        let request = plan.request(Method::GET, script.get.clone(), None);
        let sent = Instant::now();
        match exchange(sender, request).await {
            Ok((status, body)) => {
                let latency = sent.elapsed();
                let sources = (status == 200).then(|| well_formed(&body, K));
                let mut stats = lock(stats);
                stats.record(group, Kind::Recommendations, latency, status);
                if let Some(sources) = sources {
                    stats.count_sources(group, sources.as_deref());
                }
            }
            Err(_) => {
                lock(stats).fail(group, false);
                connection = connect(&options.addr).await.ok();
            }
        }
    }
}

/// `run` on a runtime of its own, for the CLI.
pub fn run_blocking(options: Options) -> Result<Report, LoadtestError> {
    let runtime = match options.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    }
    .map_err(LoadtestError::Runtime)?;
    runtime.block_on(run(options))
}

/// The service's `GET /health`, before the clock starts.
async fn health(plan: &Plan) -> Result<Health, LoadtestError> {
    let addr = &plan.options.addr;
    let failed = |reason: String| LoadtestError::Target { addr: addr.clone(), reason };
    let mut sender = connect(addr).await.map_err(|e| failed(format!("cannot connect: {e}")))?;
    let request = plan.request(Method::GET, Uri::from_static("/health"), None);
    let (status, body) = exchange(&mut sender, request).await.map_err(|e| failed(format!("GET /health: {e}")))?;
    if status != 200 {
        return Err(failed(format!("GET /health answered {status}")));
    }
    serde_json::from_slice(&body).map_err(|e| failed(format!("GET /health answered an unexpected body: {e}")))
}

pub async fn run(options: Options) -> Result<Report, LoadtestError> {
    if options.old_users.is_empty() || options.tracks.is_empty() {
        return Err(LoadtestError::Target { addr: options.addr, reason: "no users or tracks to draw from".into() });
    }
    let plan = Arc::new(Plan::new(options)?);
    let service = health(&plan).await?;
    let stats = Arc::new(Mutex::new(Stats::default()));
    let started = Instant::now();
    let workers: Vec<_> = (0..plan.options.connections)
        .map(|id| {
            let (plan, stats) = (plan.clone(), stats.clone());
            tokio::spawn(async move { worker(&plan, &stats, id, started).await })
        })
        .collect();
    for w in workers {
        w.await.map_err(LoadtestError::Connection)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = std::mem::take(&mut *lock(&stats));
    Ok(Report { seconds, rps: plan.options.rps, service, stats })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_groups_take_their_shares_of_the_schedule() {
        let mut counts = [0u32; GROUPS.len()];
        (0..1000).for_each(|n| counts[group_of(n)] += 1);
        assert_eq!(counts, [400, 200, 200, 100, 100]);
    }
}
