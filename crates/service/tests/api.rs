//! Every endpoint, every invalid-input case, rate limits, startup errors and hot reload,
//! through a real HTTP client against the real server.

mod common;

use common::{ADMIN_TOKEN, TestServer, admin_config, config, limited, serve_hand_made, write_artifacts, write_ranking};
use musicrec_artifacts::Artifacts;
use musicrec_config::{RateLimitStore, ServiceConfig};
use musicrec_service::{Server, Settings};
use serde_json::json;

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
    assert_eq!((status, body["events"].clone()), (200, json!([103, 102])));

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
    let errors = server.state.metrics.redis_errors_rate_limits.load(std::sync::atomic::Ordering::Relaxed);
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
