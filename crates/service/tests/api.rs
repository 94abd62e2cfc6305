//! Every endpoint, every invalid-input case, rate limits, startup errors and hot reload,
//! through a real HTTP client against the real server; and clients that try to hold it (slow,
//! idle, oversized, many at once under a low descriptor limit), shutdown, the in-memory
//! events store's bound and the Redis circuit breaker, over raw sockets where HTTP clients
//! would be too polite.

mod common;

use common::{
    ADMIN_TOKEN, TestServer, admin_config, config, limited, serve_hand_made, track_ids, write_artifacts, write_ranking,
};
use musicrec_artifacts::Artifacts;
use musicrec_config::{RateLimitStore, ServiceConfig};
use musicrec_service::{Server, Settings};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for something that must happen: only a hang detector.
const HANG: std::time::Duration = std::time::Duration::from_secs(10);

#[tokio::test]
async fn endpoints_answer_in_json() {
    let (_dir, server) = serve_hand_made(config()).await;
    let (status, body) = server.get("/similar?track_id=100&k=4").await;
    assert_eq!(status, 200);
    let similar: Vec<(i64, &str)> = body["similar"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["track_id"].as_i64().unwrap(), i["source"].as_str().unwrap()))
        .collect();
    assert_eq!(similar, [(101, "als"), (107, "bpr"), (102, "als"), (108, "bpr")]);
    let (status, body) = server.get("/popular?k=2").await;
    assert_eq!((status, body["popular"][1]["track_id"].as_i64()), (200, Some(117)));

    server.listen(5, 101).await;
    server.listen(5, 102).await;
    server.listen(5, 103).await;
    let (status, body) = server.get("/events?user_id=5&k=2").await;
    assert_eq!((status, track_ids(&body["events"])), (200, vec![103, 102]));

    let (status, body) = server.get("/health").await;
    assert_eq!((status, body["status"].as_str(), body["model_version"].as_str()), (200, Some("ok"), Some("run-1")));
    assert_eq!(body["stages"]["ranking"], "run-1");
    assert_eq!(body["events_store"], "memory");

    let (status, body) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(body["paths"]["/recommendations"]["get"].is_object());

    let text = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("musicrec_http_requests_total{endpoint=\"/similar\",status=\"200\"} 1"), "{text}");
    assert!(text.contains("musicrec_events_stored_total 3"), "{text}");
    assert!(
        text.contains(
            "musicrec_http_request_duration_seconds_bucket{endpoint=\"/events\",status=\"201\",le=\"+Inf\"} 3"
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn every_bad_request_is_a_4xx_naming_the_problem() {
    let (_dir, server) = serve_hand_made(config()).await;
    for (path, status, names) in [
        ("/recommendations", 400, "user_id"),
        ("/recommendations?user_id=abc", 400, "abc"),
        ("/recommendations?user_id=1&k=0", 400, "`k`"),
        ("/recommendations?user_id=1&k=11", 400, "1..=10"),
        ("/recommendations?user_id=1&k=two", 400, "two"),
        ("/recommendations?user_id=1&user_id=2", 400, "more than once"),
        ("/recommendations?user=1", 400, "unknown parameter `user`"),
        ("/similar", 400, "track_id"),
        ("/similar?track_id=999", 404, "999"),
        ("/similar?track_id=100&k=-1", 400, "`k`"),
        ("/popular?k=1000", 400, "`k`"),
        ("/events", 400, "user_id"),
        ("/events?user_id=1&k=11", 400, "`k`"),
        ("/nowhere", 404, "no such endpoint"),
    ] {
        let (got, body) = server.get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{path}: {body}");
    }
    let post = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = server.client.post(format!("{}/events", server.url)).body(body);
        if let Some(t) = content_type {
            request = request.header("content-type", t);
        }
        request.send()
    };
    let big = Box::leak(
        format!("{{\"user_id\": 1, \"track_id\": 100, \"pad\": \"{}\"}}", "x".repeat(10_000)).into_boxed_str(),
    );
    for (body, content_type, status, names) in [
        ("{\"user_id\": 1,", Some("application/json"), 400, "EOF"),
        ("{\"user_id\": 1, \"track_id\": 100}", None, 415, "Content-Type"),
        ("{\"user_id\": 1}", Some("application/json"), 422, "track_id"),
        ("{\"user_id\": \"a\", \"track_id\": 100}", Some("application/json"), 422, "user_id"),
        ("{\"user_id\": 1, \"track_id\": 999}", Some("application/json"), 422, "999"),
        ("[1, 100]", Some("application/json"), 400, "must be a JSON object"),
        ("7", Some("application/json"), 400, "not a number"),
        (&*big, Some("application/json"), 413, "length limit"),
    ] {
        let response = post(body, content_type).await.unwrap();
        let got = response.status().as_u16();
        let body_json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(got, status, "{body_json}");
        assert!(body_json["error"].as_str().unwrap().contains(names), "{body_json}");
    }
    let response = server.client.delete(format!("{}/recommendations", server.url)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let text = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(!text.contains("status=\"500\""), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn over_the_in_memory_rate_limits_is_a_429_with_retry_after() {
    let (_dir, server) = serve_hand_made(limited(config())).await;
    common::assert_rate_limits(&server).await;
    server.stop().await;
}

/// Budgets kept in a Redis that does not answer (a closed port): the service starts, answers,
/// still limits with this instance's budgets, and counts every failed Redis call.
#[tokio::test]
async fn a_redis_limiter_that_cannot_reach_redis_falls_back_to_local_budgets() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}", closed.local_addr().unwrap());
    drop(closed);
    let mut config = limited(config());
    config.redis_url = Some(url);
    config.rate_limits.store = RateLimitStore::Redis;
    let (_dir, server) = serve_hand_made(config).await;
    common::assert_rate_limits(&server).await;
    let errors = server.state.metrics.redis_errors_rate_limits.get();
    // Every check of a budget (10 requests) failed over to local budgets; /popular (unlimited)
    // and /health (never limited) ask Redis nothing.
    assert_eq!(errors, 10);
    let text = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("musicrec_redis_errors_total{store=\"rate_limits\"} 10"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn admin_reload_needs_the_configured_token() {
    let (dir, disabled) = serve_hand_made(config()).await;
    let (status, body, _) = disabled.reload(Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("service.admin_token"), "{body}");
    disabled.stop().await;

    let server = TestServer::start(dir.path(), admin_config()).await;
    write_ranking(dir.path(), "run-2", &[(1, vec![116])]);
    for token in [None, Some("wrong"), Some(""), Some(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1])] {
        let (status, body, challenge) = server.reload(token).await;
        assert_eq!((status, challenge.as_deref()), (401, Some("Bearer")), "{token:?}: {body}");
        assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
    }
    assert_eq!(server.get("/health").await.1["model_version"], "run-1", "refused requests reload nothing");
    let (status, body, _) = server.reload(Some(ADMIN_TOKEN)).await;
    assert_eq!((status, body["model_version"].as_str()), (200, Some("run-2")), "{body}");
    assert_eq!(server.state.metrics.requests("/admin/reload", 401), 4);
    server.stop().await;
}

#[tokio::test]
async fn a_missing_or_broken_artifact_set_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let start = |config: ServiceConfig| {
        let settings = Settings { config, artifacts: Artifacts::new(dir.path()) };
        Server::start(settings, "127.0.0.1:0".parse().unwrap())
    };
    let err = start(config()).await.err().unwrap().to_string();
    assert!(err.contains("matrices") && err.contains("no complete outputs"), "{err}");
    write_artifacts(dir.path(), "run-1");
    std::fs::remove_file(dir.path().join("ranking/recommendations.parquet")).unwrap();
    let err = start(config()).await.err().unwrap().to_string();
    assert!(err.contains("ranking") && err.contains("recommendations.parquet is missing"), "{err}");
    // Offline lists of users the encoders do not know: another run's file.
    write_ranking(dir.path(), "run-2", &[(77, vec![100])]);
    let err = start(config()).await.err().unwrap().to_string();
    assert!(err.contains("1 rows whose `user_id`"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_drops_nothing_and_refuses_a_broken_set() {
    let (dir, server) = serve_hand_made(admin_config()).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (client, url, stop) = (server.client.clone(), server.url.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || ok < 20 {
                let user = [1, 2, 99][worker % 3];
                match client.get(format!("{url}/recommendations?user_id={user}")).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => failed += 1,
                }
            }
            (ok, failed)
        }));
    }
    write_ranking(dir.path(), "run-2", &[(1, vec![116, 115])]);
    let (status, body, _) = server.reload(Some(ADMIN_TOKEN)).await;
    assert_eq!((status, body["model_version"].as_str()), (200, Some("run-2")), "{body}");
    assert_eq!(server.recommend(1, 10).await, common::expect(&[(116, "offline"), (115, "offline")]));

    std::fs::write(dir.path().join("ranking/recommendations.parquet"), b"not parquet").unwrap();
    let (status, body, _) = server.reload(Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("still serving run-2"), "{body}");
    let (_, health) = server.get("/health").await;
    assert_eq!(health["model_version"], "run-2");
    assert!(health["last_reload_error"].as_str().unwrap().contains("recommendations.parquet"), "{health}");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        let (ok, failed) = task.await.unwrap();
        assert_eq!(failed, 0, "{ok} answered");
    }
    server.stop().await;
}

/// A raw connection to `server` that has sent `bytes`.
async fn connect_and_send(server: &TestServer, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(server.url.trim_start_matches("http://")).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    stream
}

/// Everything the server sends until it closes (or resets) the connection.
async fn read_until_closed(mut stream: TcpStream) -> String {
    let mut answer = Vec::new();
    let _closed_or_reset = tokio::time::timeout(HANG, stream.read_to_end(&mut answer))
        .await
        .expect("the server keeps the connection open");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status and JSON body of a raw HTTP/1.1 answer.
fn parse_answer(answer: &str) -> (u16, serde_json::Value) {
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{answer:?}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {answer:?}")))
}

fn quick_timeouts() -> ServiceConfig {
    ServiceConfig { header_read_timeout_ms: 300, body_read_timeout_ms: 300, ..config() }
}

#[tokio::test]
async fn silent_half_sent_and_idle_connections_are_closed_after_the_header_timeout() {
    let (_dir, server) = serve_hand_made(quick_timeouts()).await;
    assert_eq!(read_until_closed(connect_and_send(&server, b"").await).await, "", "silent");
    let half = connect_and_send(&server, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    assert_eq!(read_until_closed(half).await, "", "half-sent head");
    // One answered request, then idle on a keep-alive connection.
    let idle = connect_and_send(&server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answer = read_until_closed(idle).await;
    assert_eq!(parse_answer(&answer).0, 200, "{answer}");
    assert_eq!(server.get("/health").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_is_a_408_and_an_oversized_one_a_413_unread() {
    let (_dir, server) = serve_hand_made(quick_timeouts()).await;
    let head = "POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length";
    let slow = connect_and_send(&server, format!("{head}: 40\r\n\r\n{{\"user_id\"").as_bytes()).await;
    let (status, body) = parse_answer(&read_until_closed(slow).await);
    assert_eq!(status, 408, "{body}");
    assert!(body["error"].as_str().unwrap().contains("service.body_read_timeout_ms"), "{body}");

    // Answered from the head alone: the body is never sent.
    let big = connect_and_send(&server, format!("{head}: 100000\r\n\r\n").as_bytes()).await;
    let (status, body) = parse_answer(&read_until_closed(big).await);
    assert_eq!((status, body["status"].as_u64()), (413, Some(413)), "{body}");
    assert!(body["error"].as_str().unwrap().contains("service.max_body_bytes"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn a_long_target_is_a_414_and_large_headers_a_431_in_json() {
    let (_dir, server) = serve_hand_made(config()).await;
    let (status, body) = server.get(&format!("/popular?k=1&pad={}", "x".repeat(9000))).await;
    assert_eq!((status, body["status"].as_u64()), (414, Some(414)), "{body}");
    assert!(body["error"].as_str().unwrap().contains("service.max_uri_bytes"), "{body}");
    let response =
        server.client.get(format!("{}/health", server.url)).header("x-pad", "y".repeat(20_000)).send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!((status, body["status"].as_u64()), (431, Some(431)), "{body}");
    assert!(body["error"].as_str().unwrap().contains("service.max_header_bytes"), "{body}");
    assert_eq!(server.state.metrics.requests("/popular", 414), 1);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_does_not_wait_on_half_sent_requests_past_the_grace_period() {
    let config = ServiceConfig {
        header_read_timeout_ms: 3_600_000,
        body_read_timeout_ms: 3_600_000,
        shutdown_grace_ms: 200,
        ..config()
    };
    let (_dir, server) = serve_hand_made(config).await;
    let half_head = connect_and_send(&server, b"GET /health HTTP/1.1\r\nHost: x\r\n").await;
    let half_body = connect_and_send(
        &server,
        b"POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{",
    )
    .await;
    let idle = connect_and_send(&server, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let addr = server.url.trim_start_matches("http://").to_string();
    tokio::time::timeout(HANG, server.stop()).await.expect("shutdown waits on the clients");
    assert!(TcpStream::connect(&addr).await.is_err(), "still accepting after shutdown");
    // The idle connection got its answer before it was closed.
    assert_eq!(parse_answer(&read_until_closed(idle).await).0, 200);
    for open in [half_head, half_body] {
        read_until_closed(open).await;
    }
}

#[tokio::test]
async fn the_in_memory_events_store_forgets_the_oldest_users_past_its_bound() {
    let (_dir, server) = serve_hand_made(ServiceConfig { events_max_users: 3, ..config() }).await;
    for user in 1..=10 {
        server.listen(user, 100).await;
    }
    assert_eq!(track_ids(&server.get("/events?user_id=1").await.1["events"]), Vec::<i64>::new());
    assert_eq!(track_ids(&server.get("/events?user_id=10").await.1["events"]), [100]);
    let text = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("\nmusicrec_events_users 3\n"), "{text}");
    assert!(text.contains("\nmusicrec_events_evicted_total 7\n"), "{text}");
    server.stop().await;
}

/// A Redis that accepts connections and never answers: the first command waits for its
/// timeout (or the connection at startup does), then the circuit stays open for the cool-down
/// and no request waits on Redis again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_redis_costs_one_timeout_per_cool_down_not_one_per_request() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let config = ServiceConfig { redis_url: Some(url), redis_cooldown_ms: 3_600_000, ..config() };
    let (_dir, server) = serve_hand_made(config).await;
    for _ in 0..20 {
        assert_eq!(server.recommend(1, 2).await.len(), 2);
    }
    let text = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("\nmusicrec_redis_circuit_opened_total 1\n"), "{text}");
    let skipped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("musicrec_redis_skipped_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(skipped >= 19, "{skipped} of 20 requests skipped Redis");
    assert!(text.contains("musicrec_redis_errors_total{store=\"events\"} 20"), "{text}");
    server.stop().await;
    held.abort();
}

/// Set in the environment of the child process that `many_half_sent_requests_...` starts.
const CHILD_SERVER: &str = "MUSICREC_TEST_CHILD_SERVER";

/// 140 half-sent requests against a server limited to 128 descriptors: it runs out of them,
/// and only the header timeout frees them, so /health must still answer while the clients
/// stay. The server runs in a child process (this test binary, running
/// `child_server_for_descriptor_exhaustion`) under `ulimit -n 128`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_half_sent_requests_under_a_low_descriptor_limit_do_not_stop_health() {
    let exe = std::env::current_exe().unwrap();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 128 && exec \"$0\" --exact child_server_for_descriptor_exhaustion --nocapture")
        .arg(exe)
        .env(CHILD_SERVER, "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let addr = tokio::time::timeout(HANG, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(addr) = line.strip_prefix("listening on ") {
                return addr.to_string();
            }
        }
        panic!("the child server exited without listening");
    })
    .await
    .expect("the child server does not start");
    let mut clients = Vec::new();
    for _ in 0..140 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        clients.push(stream);
    }
    let client = reqwest::Client::builder().timeout(HANG).build().unwrap();
    let health = client.get(format!("http://{addr}/health")).send().await.expect("/health does not answer");
    assert_eq!(health.status().as_u16(), 200);
    drop(clients);
    drop(child.stdin.take());
    let status = tokio::time::timeout(HANG, child.wait()).await.expect("the child server does not stop").unwrap();
    assert!(status.success(), "{status}");
}

/// The server of `many_half_sent_requests_...`, when run as its child; passes at once otherwise.
#[tokio::test]
async fn child_server_for_descriptor_exhaustion() {
    if std::env::var_os(CHILD_SERVER).is_none() {
        return;
    }
    let (_dir, server) = serve_hand_made(ServiceConfig { header_read_timeout_ms: 500, ..config() }).await;
    println!("listening on {}", server.url.trim_start_matches("http://"));
    // Serves until the parent closes stdin.
    tokio::task::spawn_blocking(|| std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new()))
        .await
        .unwrap()
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn the_web_pages_are_served_from_the_binary_and_name_a_random_user() {
    let (_dir, server) = serve_hand_made(config()).await;
    for (path, content_type, marker) in [
        ("/", "text/html", "/web/page.js"),
        ("/docs", "text/html", "/web/docs.js"),
        ("/web/page.js", "text/javascript", "/recommendations?user_id="),
        ("/web/docs.js", "text/javascript", "/openapi.json"),
        ("/web/common.js", "text/javascript", "fetch("),
        ("/web/style.css", "text/css", ".track"),
    ] {
        let response = server.client.get(format!("{}{path}", server.url)).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_string());
        assert!(
            header("content-type").is_some_and(|t| t.starts_with(content_type)),
            "{path}: {:?}",
            header("content-type")
        );
        assert!(header("content-security-policy").is_some_and(|p| p.starts_with("default-src 'self'")), "{path}");
        assert!(response.text().await.unwrap().contains(marker), "{path} holds {marker}");
    }

    // Both old users of the hand-made set have offline lists: either may come.
    for _ in 0..10 {
        let (status, body) = server.get("/users/random").await;
        assert_eq!(status, 200, "{body}");
        assert!(common::USERS.contains(&body["user_id"].as_i64().unwrap()), "{body}");
        assert_eq!(body["offline"], true, "{body}");
    }
    let (status, body) = server.get("/users/random?k=3").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("GET /users/random takes no parameters")));
    let (_, document) = server.get("/openapi.json").await;
    assert!(document["paths"]["/users/random"]["get"].is_object(), "{document}");
    assert!(document["components"]["schemas"]["RandomUser"]["properties"]["user_id"].is_object());
    let (status, _) = server.get("/web/missing.js").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn tracks_come_with_their_names_scores_and_pages() {
    let (_dir, server) = serve_hand_made(config()).await;
    let (status, body) = server.get("/recommendations?user_id=1&k=2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"user_id": 1, "model_version": "run-1", "offset": 0, "recommendations": [
            {"track_id": 110, "source": "offline", "score": 1.0, "name": "Song 110",
             "artists": ["Artist 2", "Artist 3"], "album": "Album 11", "genres": ["rock"]},
            {"track_id": 100, "source": "offline", "score": 0.5, "name": "Song 100",
             "artists": ["Artist 1", "Artist 3"], "album": "Album 10", "genres": ["rock"]},
        ]})
    );
    // The next page continues the same list; past its end a page is short, then empty.
    let (_, body) = server.get("/recommendations?user_id=1&k=2&offset=2").await;
    assert_eq!((body["offset"].as_u64(), track_ids(&body["recommendations"])), (Some(2), vec![111, 112]));
    let (_, body) = server.get("/recommendations?user_id=1&k=2&offset=4").await;
    assert_eq!(track_ids(&body["recommendations"]), [113]);
    let (_, body) = server.get("/recommendations?user_id=1&offset=90").await;
    assert_eq!(track_ids(&body["recommendations"]), Vec::<i64>::new());
    let (_, body) = server.get("/recommendations?user_id=1&k=1&fields=ids").await;
    assert_eq!(body["recommendations"], json!([{"track_id": 110, "source": "offline"}]));

    let (_, body) = server.get("/similar?track_id=100&k=2").await;
    assert_eq!(
        body["track"],
        json!({"track_id": 100, "score": null, "name": "Song 100", "artists": ["Artist 1", "Artist 3"],
               "album": "Album 10", "genres": ["rock"]})
    );
    let similar: Vec<(i64, &str, f64)> = body["similar"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["track_id"].as_i64().unwrap(), t["source"].as_str().unwrap(), t["score"].as_f64().unwrap()))
        .collect();
    assert_eq!(similar, [(101, "als", 1.0), (107, "bpr", 1.0)]);
    let (_, body) = server.get("/similar?track_id=100&k=1&fields=ids").await;
    assert_eq!(
        body,
        json!({"track_id": 100, "track": {"track_id": 100}, "similar": [{"track_id": 101, "source": "als"}]})
    );

    // Track 119 has no name: nulls and empty lists, not missing keys. Both users played it.
    let (_, body) = server.get("/popular?k=1").await;
    assert_eq!(
        body,
        json!({"popular": [{"track_id": 119, "source": "popular", "score": 1.0, "name": null, "artists": [],
                            "album": null, "genres": []}]})
    );

    server.listen(5, 101).await;
    let (_, body) = server.get("/events?user_id=5").await;
    assert_eq!(
        body,
        json!({"user_id": 5, "events": [{"track_id": 101, "score": null, "name": "Song 101",
                                         "artists": ["Artist 2"], "album": "Album 10", "genres": ["rock"]}]})
    );
    let (_, body) = server.get("/events?user_id=5&fields=ids").await;
    assert_eq!(body["events"], json!([{"track_id": 101}]));

    for (path, names) in [
        ("/recommendations?user_id=1&offset=91", "0..=90"),
        ("/recommendations?user_id=1&offset=-1", "`offset`"),
        ("/recommendations?user_id=1&fields=names", "`fields`"),
        ("/popular?fields=", "`fields`"),
        ("/similar?track_id=100&offset=1", "unknown parameter `offset`"),
    ] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains(names), "{path}: {body}");
    }
    server.stop().await;
}

/// /metrics, parsed as Prometheus text, serves exactly the metric families and types below
/// (a renamed or retyped series fails here, not on a dashboard), and every metric name the
/// Grafana dashboard in the repository queries is among its series.
#[tokio::test]
async fn metrics_resolve_every_dashboard_query() {
    let (_dir, server) = serve_hand_made(config()).await;
    server.get("/recommendations?user_id=1").await;
    let text = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    let mut families = std::collections::BTreeMap::new();
    let mut series = std::collections::BTreeSet::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(typed) = line.strip_prefix("# TYPE ") {
            let (name, kind) = typed.split_once(' ').unwrap();
            assert!(families.insert(name.to_string(), kind.to_string()).is_none(), "typed twice: {line}");
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"));
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "not a number: {line}");
        let name = &line[..name_end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| families.get(*f).is_some_and(|k| k == "histogram"))
            .unwrap_or(name);
        assert!(families.contains_key(family), "a sample before its # TYPE line: {line}");
        series.insert(name.to_string());
    }
    let histogram = "musicrec_http_request_duration_seconds";
    let want = [
        ("musicrec_build_info", "gauge"),
        ("musicrec_events_evicted_total", "counter"),
        ("musicrec_events_stored_total", "counter"),
        ("musicrec_events_users", "gauge"),
        ("musicrec_fold_in_cache_total", "counter"),
        (histogram, "histogram"),
        ("musicrec_http_requests_total", "counter"),
        ("musicrec_model_age_seconds", "gauge"),
        ("musicrec_model_info", "gauge"),
        ("musicrec_model_load_seconds", "gauge"),
        ("musicrec_model_loaded_timestamp_seconds", "gauge"),
        ("musicrec_rate_limited_total", "counter"),
        ("musicrec_recommendations_total", "counter"),
        ("musicrec_redis_errors_total", "counter"),
        ("musicrec_reloads_total", "counter"),
        ("process_cpu_seconds_total", "counter"),
        ("process_max_fds", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_start_time_seconds", "gauge"),
        ("process_virtual_memory_bytes", "gauge"),
    ];
    let served: Vec<(&str, &str)> = families.iter().map(|(n, k)| (n.as_str(), k.as_str())).collect();
    assert_eq!(served, want, "{text}");
    assert!(text.contains("musicrec_model_info{run_id=\"run-1\"} 1"), "{text}");
    for (le, count) in [("0.0001", None), ("1", None), ("+Inf", Some(1))] {
        let bucket = format!("{histogram}_bucket{{endpoint=\"/recommendations\",status=\"200\",le=\"{le}\"}} ");
        let line = text.lines().find(|l| l.starts_with(&bucket)).unwrap_or_else(|| panic!("no {bucket}: {text}"));
        if let Some(count) = count {
            assert_eq!(line, format!("{bucket}{count}"));
        }
    }

    let dashboard: serde_json::Value = serde_json::from_str(include_str!("../../../dashboards/musicrec.json")).unwrap();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let words = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
            queried.extend(words.filter(|w| w.starts_with("musicrec_") || w.starts_with("process_")).map(String::from));
        }
    }
    assert!(queried.len() >= 12, "{queried:?}");
    for name in queried {
        assert!(series.contains(&name), "the dashboard queries {name}, which /metrics does not serve");
    }
    server.stop().await;
}

/// The served OpenAPI document describes exactly the routes the server answers: each
/// documented operation reaches its handler (not the 404/405 fallbacks), and no other
/// operation is listed.
#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let (_dir, server) = serve_hand_made(admin_config()).await;
    let (status, doc) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = server.client.request(method, format!("{}{path}", server.url)).send().await.unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert!(status != 405 && !body.contains("no such endpoint"), "{path}: {status} {body}");
        }
    }
    documented.sort();
    let routes = [
        "GET /events",
        "GET /health",
        "GET /metrics",
        "GET /openapi.json",
        "GET /popular",
        "GET /recommendations",
        "GET /similar",
        "GET /users/random",
        "POST /admin/reload",
        "POST /events",
    ];
    assert_eq!(documented, routes);
    server.stop().await;
}

/// A real OpenAPI validator (the Python `openapi-spec-validator` of the services' venv) accepts
/// the served document.
#[tokio::test]
#[ignore = "needs the services venv: scripts/services.sh start"]
async fn the_openapi_document_passes_openapi_spec_validator_needs_services() {
    let python = std::env::var("MUSICREC_SERVICES_PYTHON").expect("eval \"$(scripts/services.sh env)\" first");
    let (dir, server) = serve_hand_made(config()).await;
    let text = server.client.get(format!("{}/openapi.json", server.url)).send().await.unwrap().text().await.unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, text).unwrap();
    let out =
        tokio::process::Command::new(python).args(["-m", "openapi_spec_validator"]).arg(&file).output().await.unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains("OK"), "{said}");

    // The validator fails a broken document: the check can fail.
    let mut broken: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    broken["paths"]["/popular"]["get"]["responses"] = json!("none");
    std::fs::write(&file, broken.to_string()).unwrap();
    let python = std::env::var("MUSICREC_SERVICES_PYTHON").unwrap();
    let out =
        tokio::process::Command::new(python).args(["-m", "openapi_spec_validator"]).arg(&file).output().await.unwrap();
    assert!(!out.status.success(), "a broken document passed");
    server.stop().await;
}

/// The local event log: a 201 means the event is in the log; a log that cannot be written
/// refuses the event (503) and stores it nowhere, and recovers once the disk is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_acknowledged_only_once_it_is_in_the_log() {
    use musicrec_config::EventLogStore;
    use musicrec_service::event_log::read_dir;
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("log");
    let mut config = config();
    config.event_log.store = EventLogStore::Local;
    config.event_log.dir = Some(log.display().to_string());
    config.event_log.rotate_seconds = 1;
    let (_dir, server) = serve_hand_made(config).await;
    server.listen(7, 101).await;
    server.listen(8, 102).await;
    let logged = |events: Vec<musicrec_service::event_log::LoggedEvent>| {
        events.iter().map(|e| (e.user_id, e.track_id)).collect::<Vec<_>>()
    };
    assert_eq!(logged(read_dir(&log).unwrap().0), [(7, 101), (8, 102)]);

    // The directory gone and a plain file in its place: the next segment (the open one is a
    // second old, so the next write rotates) cannot be created there.
    std::fs::remove_dir_all(&log).unwrap();
    std::fs::write(&log, b"not a directory").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body) = server.post_json("/events", &json!({"user_id": 7, "track_id": 103})).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].as_str().unwrap().contains("event log"), "{body}");
    assert_eq!(
        server.get("/events?user_id=7&fields=ids").await.1["events"],
        json!([{"track_id": 101}]),
        "not stored either"
    );

    std::fs::remove_file(&log).unwrap();
    std::fs::create_dir(&log).unwrap();
    server.listen(7, 104).await;
    assert_eq!(logged(read_dir(&log).unwrap().0), [(7, 104)]);
    server.stop().await;
}
