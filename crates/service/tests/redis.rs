//! The Redis-backed events store and rate limiter against the real Redis on 127.0.0.1:6379
//! (each test under its own key prefix): shared by instances, trimmed to N, and an outage
//! survived: served without the online part, counted, reconnected. Ignored in the plain test
//! run; `.ci/run` runs them after `scripts/services.sh start`, and they fail (not pass) when
//! no Redis answers there.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::{TestServer, assert_rate_limits, config, expect, limited, write_artifacts};
use musicrec_config::{RateLimitStore, ServiceConfig};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

const REDIS: &str = "127.0.0.1:6379";

fn prefix() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("musicrec-test-{}-{nanos}-{}:", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

fn redis_config(url: &str, prefix: &str) -> ServiceConfig {
    ServiceConfig {
        redis_url: Some(url.to_string()),
        redis_key_prefix: prefix.to_string(),
        events_per_user: 3,
        ..config()
    }
}

async fn delete_keys(prefix: &str) {
    let client = redis::Client::open(format!("redis://{REDIS}")).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut c).await.unwrap();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut c).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/services.sh start (run by .ci/run)"]
async fn instances_share_the_store_and_keep_the_latest_n() {
    let dir = tempfile::tempdir().unwrap();
    write_artifacts(dir.path(), "run-1");
    let prefix = prefix();
    let url = format!("redis://{REDIS}");
    let a = TestServer::start(dir.path(), redis_config(&url, &prefix)).await;
    let b = TestServer::start(dir.path(), redis_config(&url, &prefix)).await;
    for track in [101, 102, 103, 104] {
        a.listen(7, track).await;
    }
    let (status, body) = b.get("/events?user_id=7").await;
    assert_eq!((status, common::track_ids(&body["events"])), (200, vec![104, 103, 102]));
    assert_eq!(b.get("/health").await.1["events_store"], "redis");
    // Instance b blends a's listens: 104's ALS list (105, 106) first.
    assert_eq!(b.recommend(7, 3).await, expect(&[(105, "als"), (119, "popular"), (106, "als")]));
    a.stop().await;
    b.stop().await;
    delete_keys(&prefix).await;
}

/// A TCP relay to the real Redis that the test can cut and restore: an outage without
/// touching the shared Redis server.
struct Relay {
    listener_task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(listener: TcpListener) -> Self {
        let listener_task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { break };
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(REDIS).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        // Aborting the task drops the JoinSet, which aborts every relayed connection.
        Self { listener_task }
    }

    fn cut(self) {
        self.listener_task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/services.sh start (run by .ci/run)"]
async fn a_redis_outage_is_served_without_the_online_part_and_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    write_artifacts(dir.path(), "run-1");
    let prefix = prefix();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let relay = Relay::start(listener).await;
    let server = TestServer::start(dir.path(), redis_config(&format!("redis://{addr}"), &prefix)).await;
    server.listen(99, 100).await;
    assert_eq!(server.recommend(99, 2).await, expect(&[(101, "als"), (119, "popular")]));

    relay.cut();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    // Still answered, from the base part only.
    assert_eq!(server.recommend(99, 2).await, expect(&[(119, "popular"), (117, "popular")]));
    let (status, body) = server.post_json("/events", &json!({"user_id": 99, "track_id": 104})).await;
    assert_eq!(status, 503, "{body}");
    assert!(server.state.metrics.redis_errors.get() >= 2);

    // Back on the same port: the next requests reconnect.
    let listener = TcpListener::bind(addr).await.unwrap();
    let relay = Relay::start(listener).await;
    let mut recovered = false;
    for _ in 0..50 {
        if server.recommend(99, 2).await == expect(&[(101, "als"), (119, "popular")]) {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "no reconnection to Redis");
    // With Redis, /metrics has the circuit's series and not the in-memory store's.
    let text = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("musicrec_redis_circuit_opened_total 0\n"), "the outage opened the circuit: {text}");
    for name in ["musicrec_redis_circuit_opened_total ", "musicrec_redis_skipped_total "] {
        assert!(text.contains(name), "{name}is not served: {text}");
    }
    assert!(!text.contains("musicrec_events_users"), "{text}");
    relay.cut();
    server.stop().await;
    delete_keys(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/services.sh start (run by .ci/run)"]
async fn redis_rate_limits_are_shared_by_instances_and_answer_429_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    write_artifacts(dir.path(), "run-1");
    let prefix = prefix();
    let url = format!("redis://{REDIS}");
    let limited_on_redis = || {
        let mut config = limited(redis_config(&url, &prefix));
        config.rate_limits.store = RateLimitStore::Redis;
        config
    };
    let a = TestServer::start(dir.path(), limited_on_redis()).await;
    assert_rate_limits(&a).await;
    // A second instance draws from the same budgets: this client's are spent.
    let b = TestServer::start(dir.path(), limited_on_redis()).await;
    let response = b.client.get(format!("{}/recommendations?user_id=1", b.url)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(a.state.metrics.redis_errors_rate_limits.get(), 0, "Redis answered every check");
    a.stop().await;
    b.stop().await;
    delete_keys(&prefix).await;
}

/// The Redis event log: every acknowledged event is an entry of the stream, read back by the
/// exporter; and the events store's lists expire after `service.events_ttl_seconds`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs scripts/services.sh start (run by .ci/run)"]
async fn events_are_logged_to_a_stream_and_the_latest_listens_expire() {
    use musicrec_config::EventLogStore;
    use musicrec_service::event_log::{Source, Window, export, stream_key};
    let dir = tempfile::tempdir().unwrap();
    write_artifacts(dir.path(), "run-1");
    let prefix = prefix();
    let url = format!("redis://{REDIS}");
    let mut config = redis_config(&url, &prefix);
    config.event_log.store = EventLogStore::Redis;
    config.events_ttl_seconds = 1;
    let server = TestServer::start(dir.path(), config.clone()).await;
    for (user, track) in [(7, 101), (8, 102), (7, 103)] {
        server.listen(user, track).await;
    }

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL").arg(format!("{prefix}events:7")).query_async(&mut c).await.unwrap();
    assert!((1..=1000).contains(&ttl), "the list of user 7 expires within a second: PTTL {ttl}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(server.get("/events?user_id=7").await.1["events"], json!([]), "expired");

    let key = stream_key(&prefix, &config.event_log);
    let out = tempfile::tempdir().unwrap();
    let source = Source::Redis { url: url.clone(), key };
    let summary = tokio::task::spawn_blocking(move || export(&source, Window::default(), out.path()).map(|s| (s, out)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((summary.0.events, summary.0.users), (3, 2));
    let batches = musicrec_data::parquet_io::read_batches(&summary.0.file).unwrap();
    let users: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_any().downcast_ref::<arrow_array::Int64Array>().unwrap().values().to_vec())
        .collect();
    assert_eq!(users, [7, 7, 8]);
    server.stop().await;
    delete_keys(&prefix).await;
}
