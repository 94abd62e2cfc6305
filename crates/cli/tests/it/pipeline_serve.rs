//! End to end: a real pipeline run on the tiny data set leaves everything the service needs,
//! and the service serves it over HTTP: offline lists for old users, popular tracks for new
//! ones, similar tracks, and online recommendations (similar tracks, fold-in) after a listen.

use std::collections::HashSet;

use musicrec_artifacts::layout::candidates::SIMILAR_FILE;
use musicrec_artifacts::layout::ranking::RECOMMENDATIONS_FILE;
use musicrec_artifacts::{Artifacts, Stage};
use musicrec_config::{Config, ServiceConfig};
use musicrec_data::Location;
use musicrec_data::parquet_io::read_i64_column;
use musicrec_pipeline::RunContext;
use musicrec_synth::{GenerateOptions, Scale};

use crate::common::stage_dir;
use crate::service_harness::TestServer;

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_run_on_tiny_data_is_served() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, art) = (tmp.path().join("data"), tmp.path().join("artifacts"));
    musicrec_synth::generate(&GenerateOptions { scale: Scale::Tiny, seed: 3 }, &data).unwrap();
    let mut pipeline = Config::defaults();
    (pipeline.als.factors, pipeline.als.iterations) = (8, 3);
    (pipeline.bpr.factors, pipeline.bpr.iterations) = (8, 3);
    pipeline.ranking.iterations = 20;
    let ctx = RunContext::new(pipeline, Location::local(&data), Artifacts::new(&art), "test");
    let run_id = ctx.run_id.clone();
    tokio::task::spawn_blocking(move || musicrec_pipeline::run_stages(&ctx, &Stage::ALL)).await.unwrap().unwrap();

    let server = TestServer::start(&art, ServiceConfig { fold_in: true, ..Config::defaults().service }).await;
    let (status, health) = server.get("/health").await;
    assert_eq!((status, health["model_version"].as_str()), (200, Some(run_id.as_str())), "{health}");

    // An old user with no fresh listens gets the ranker's list, in its order.
    let recs = stage_dir(&art, Stage::Ranking.as_str()).join(RECOMMENDATIONS_FILE);
    let (users, tracks) = (read_i64_column(&recs, "user_id").unwrap(), read_i64_column(&recs, "track_id").unwrap());
    let old_user = users[0];
    let offline: Vec<(i64, String)> = users
        .iter()
        .zip(&tracks)
        .filter(|(u, _)| **u == old_user)
        .take(5)
        .map(|(_, t)| (*t, "offline".to_string()))
        .collect();
    assert_eq!(server.recommend(old_user, 5).await, offline);
    // With the catalogue's names and the ranker's scores.
    let (_, body) = server.get(&format!("/recommendations?user_id={old_user}&k=1")).await;
    let first = &body["recommendations"][0];
    assert!(first["name"].is_string() && first["score"].is_number() && first["artists"].is_array(), "{body}");

    // A user the run never saw gets popular tracks, then online ones once they listen.
    let new_user = users.iter().max().unwrap() + 1_000_000;
    let popular = server.recommend(new_user, 5).await;
    assert!(popular.len() == 5 && popular.iter().all(|(_, source)| source == "popular"), "{popular:?}");
    let similar = stage_dir(&art, Stage::Als.as_str()).join(SIMILAR_FILE);
    let track = read_i64_column(&similar, "track_id").unwrap()[0];
    let (status, body) = server.get(&format!("/similar?track_id={track}&k=5")).await;
    assert!(status == 200 && !body["similar"].as_array().unwrap().is_empty(), "{body}");
    server.listen(new_user, track).await;
    let blended = server.recommend(new_user, 10).await;
    assert_eq!(blended.len(), 10);
    assert!(blended.iter().all(|(t, _)| *t != track), "a just-played track is never recommended: {blended:?}");
    assert_eq!(blended.iter().map(|(t, _)| t).collect::<HashSet<_>>().len(), 10, "no duplicates: {blended:?}");
    let sources: HashSet<&str> = blended.iter().map(|(_, s)| s.as_str()).collect();
    for source in ["als", "fold_in", "popular"] {
        assert!(sources.contains(source), "{source} missing from {blended:?}");
    }
    // Asked again without a new listen: the kept fold-in answer, the same recommendations.
    assert_eq!(server.recommend(new_user, 10).await, blended);
    let text = server.client.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("musicrec_fold_in_cache_total{result=\"hit\"} 1"), "{text}");
    assert!(text.contains("musicrec_fold_in_cache_total{result=\"miss\"} 1"), "{text}");
    server.stop().await;
}
