//! The load tester against the real server: every group is sent, each request kind timed on its own,
//! nothing unexpected comes back.

#[path = "../../service/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{TRACKS, TestServer, USERS, config, write_artifacts};
use musicrec_loadtest::{Options, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadtest_sends_every_group_and_finds_no_problem() {
    let dir = tempfile::tempdir().unwrap();
    write_artifacts(dir.path(), "run-1");
    let server = TestServer::start(dir.path(), config()).await;
    let options = Options {
        addr: server.url.trim_start_matches("http://").to_string(),
        rps: 400,
        duration: Duration::from_millis(500),
        connections: 4,
        threads: 1,
        old_users: USERS.to_vec(),
        tracks: TRACKS.collect(),
    };
    let report = run(options).await.unwrap();
    let text = report.to_string();
    assert_eq!(report.problems(), 0, "{text}");
    // A line of the table, spaces collapsed: group, request, count (not 0), percentiles, statuses.
    let sent = |group: &str, request: &str| {
        let prefix = format!("{group} {request} ");
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ").starts_with(&prefix) && !l.contains(" 0 "))
    };
    for group in ["old", "old+events", "new", "new+events", "invalid"] {
        assert!(sent(group, "GET /recommendations"), "{group}: {text}");
        assert_eq!(sent(group, "POST /events"), group.ends_with("+events"), "{group}: {text}");
    }
    assert!(text.contains("400: "), "invalid requests answered 400: {text}");
    server.stop().await;
}

#[tokio::test]
async fn a_service_that_does_not_answer_is_the_users_error() {
    // A port that was free a moment ago: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let options = Options {
        addr: addr.clone(),
        rps: 10,
        duration: Duration::from_millis(100),
        connections: 1,
        threads: 1,
        old_users: USERS.to_vec(),
        tracks: TRACKS.collect(),
    };
    let error = run(options).await.err().unwrap();
    assert!(error.is_user_error(), "{error}");
    assert!(error.to_string().starts_with(&format!("load test of {addr}: cannot connect")), "{error}");
}
