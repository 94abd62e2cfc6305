//! POST /events throughput with the event log off and on, in one run: `cargo run --release -p
//! musicrec-service --example event_log_throughput -- [SECONDS] [CONNECTIONS] [REDIS_URL]`.
//! Each configuration serves the hand-made artifact set of the tests on 127.0.0.1; CONNECTIONS
//! clients post events in a closed loop (the next post when the previous is answered) for
//! SECONDS, and the posts acknowledged per second are printed with their ratio to the log
//! off. With a REDIS_URL, the Redis events store is measured with the stream log off and on.

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use musicrec_artifacts::Artifacts;
use musicrec_config::{EventLogStore, ServiceConfig};
use musicrec_service::{Server, Settings};

async fn posts_per_second(artifacts: &std::path::Path, config: ServiceConfig, seconds: f64, connections: usize) -> f64 {
    let settings = Settings { config, artifacts: Artifacts::new(artifacts) };
    let server = Server::start(settings, SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let url = format!("http://{}/events", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..connections {
        let (url, acknowledged) = (url.clone(), acknowledged.clone());
        clients.spawn(async move {
            let http = reqwest::Client::new();
            let mut n = 0i64;
            while Instant::now() < until {
                let body = serde_json::json!({"user_id": c as i64 * 1_000_000 + n, "track_id": 100 + n % 20});
                let response = http.post(&url).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 201);
                acknowledged.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        });
    }
    let started = Instant::now();
    while clients.join_next().await.is_some() {}
    let rate = acknowledged.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let _ = stop.send(());
    serving.await.unwrap();
    rate
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = args.first().map_or(5.0, |s| s.parse().expect("SECONDS is a number"));
    let connections: usize = args.get(1).map_or(16, |s| s.parse().expect("CONNECTIONS is a whole number"));
    let dir = tempfile::tempdir().unwrap();
    common::write_artifacts(dir.path(), "run-1");
    let base = common::config();
    let local = |fsync: bool| {
        let mut c = base.clone();
        c.event_log.store = EventLogStore::Local;
        c.event_log.dir = Some(dir.path().join(format!("log-{fsync}")).display().to_string());
        c.event_log.fsync = fsync;
        c
    };
    // Each group's first configuration is the reference of its ratios.
    let mut groups = vec![vec![
        ("memory store, log off", base.clone()),
        ("local log, fsync false", local(false)),
        ("local log, fsync true", local(true)),
    ]];
    let prefix = format!("musicrec-bench-{}:", std::process::id());
    if let Some(url) = args.get(2) {
        let redis = ServiceConfig { redis_url: Some(url.clone()), redis_key_prefix: prefix.clone(), ..base.clone() };
        let mut stream = redis.clone();
        stream.event_log.store = EventLogStore::Redis;
        groups.push(vec![("Redis store, log off", redis), ("Redis store, stream log", stream)]);
    }
    println!("{connections} connections, {seconds} s each");
    for group in groups {
        let mut reference = None;
        for (name, config) in group {
            let rate = posts_per_second(dir.path(), config, seconds, connections).await;
            let reference = *reference.get_or_insert(rate);
            println!("{name:<26} {rate:>9.0} posts/s  {:.2} of the log off", rate / reference);
        }
    }
    if let Some(url) = args.get(2) {
        let mut c = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut c).await.unwrap();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut c).await.unwrap();
        }
    }
}
