//! The four blending cases of the original service, with exact expected order, through HTTP.

mod common;

use common::{config, expect, serve_hand_made};

#[tokio::test]
async fn old_user_without_listens_gets_the_offline_list() {
    let (_dir, server) = serve_hand_made(config()).await;
    let want = expect(&[(110, "offline"), (100, "offline"), (111, "offline"), (112, "offline"), (113, "offline")]);
    assert_eq!(server.recommend(1, 10).await, want);
    assert_eq!(server.recommend(1, 2).await, want[..2]);
    server.stop().await;
}

#[tokio::test]
async fn new_user_without_listens_gets_the_popular_list() {
    let (_dir, server) = serve_hand_made(config()).await;
    assert_eq!(server.recommend(99, 10).await, expect(&[(119, "popular"), (117, "popular"), (118, "popular")]));
    server.stop().await;
}

#[tokio::test]
async fn old_user_with_listens_gets_online_then_offline_round_robin() {
    let (_dir, server) = serve_hand_made(config()).await;
    server.listen(1, 104).await;
    server.listen(1, 100).await;
    // Recent listens newest first: 100, 104. ALS: 100 → 101 102 103, 104 → 105 106, by rank
    // round-robin: 101 105 102 106 103. BPR: 100 → 107 101 108. Sources round-robin without
    // repeats: 101a 107b 105a 108b 102a 106a 103a. Offline without the listened 100:
    // 110 111 112 113. Merged online first.
    let want = expect(&[
        (101, "als"),
        (110, "offline"),
        (107, "bpr"),
        (111, "offline"),
        (105, "als"),
        (112, "offline"),
        (108, "bpr"),
        (113, "offline"),
        (102, "als"),
        (106, "als"),
    ]);
    assert_eq!(server.recommend(1, 10).await, want);
    server.stop().await;
}

#[tokio::test]
async fn new_user_with_listens_gets_online_then_popular_round_robin() {
    let (_dir, server) = serve_hand_made(config()).await;
    server.listen(99, 100).await;
    let want = expect(&[(101, "als"), (119, "popular"), (107, "bpr"), (117, "popular"), (102, "als")]);
    assert_eq!(server.recommend(99, 5).await, want);
    server.stop().await;
}

#[tokio::test]
async fn fold_in_adds_a_personal_source_after_one_listen() {
    let (_dir, server) = serve_hand_made(musicrec_service_config_with_fold_in()).await;
    server.listen(99, 117).await;
    let recs = server.recommend(99, 10).await;
    // 117 has no similar tracks; the fold-in scores the tracks with ALS factors (117, 118,
    // 119) minus the one played.
    let fold_in: Vec<i64> = recs.iter().filter(|(_, s)| s == "fold_in").map(|(t, _)| *t).collect();
    assert!(!fold_in.is_empty() && fold_in.iter().all(|t| [118, 119].contains(t)), "{recs:?}");
    assert_eq!(recs[0].1, "fold_in", "online first: {recs:?}");
    assert!(recs.iter().all(|(t, _)| *t != 117), "{recs:?}");
    server.stop().await;
}

fn musicrec_service_config_with_fold_in() -> musicrec_config::ServiceConfig {
    musicrec_config::ServiceConfig { fold_in: true, ..config() }
}
