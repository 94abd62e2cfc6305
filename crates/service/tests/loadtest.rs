//! The load tester against the real server: every group is sent, nothing unexpected comes back.

mod common;

use std::time::Duration;

use common::{TRACKS, TestServer, USERS, config, write_artifacts};
use musicrec_service::loadtest::{Options, run};

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
    for group in ["old ", "old+events", "new ", "new+events", "invalid"] {
        assert!(text.lines().any(|l| l.starts_with(group) && !l.contains(" 0 ")), "{group}: {text}");
    }
    assert!(text.contains("400: "), "invalid requests answered 400: {text}");
    server.stop().await;
}
