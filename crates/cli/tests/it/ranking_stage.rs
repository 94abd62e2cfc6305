//! The ranking stage on generated `tiny` data, after every stage it reads: the offline
//! recommendations never repeat a listen or a track, the ranker's files have the shapes the
//! report and the service read, and the manifest carries candidate recall and training time.

use std::collections::{HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use musicrec_data::parquet_io::read_batches;

use crate::common::*;

#[test]
fn ranking_writes_final_recommendations_importances_and_metrics() {
    let tiny = TinyRun::generated(7)
        .config(&[
            ("MUSICREC__ALS__FACTORS", "16"),
            ("MUSICREC__ALS__ITERATIONS", "5"),
            ("MUSICREC__BPR__FACTORS", "16"),
            ("MUSICREC__BPR__ITERATIONS", "20"),
            ("MUSICREC__RANKING__ITERATIONS", "30"),
            ("MUSICREC__RANKING__TOP_N", "15"),
        ])
        .build();
    let art = &tiny.art;
    let dir = stage_dir(art, "ranking");

    let heard = train_history(art);
    let recs = read_batches(&dir.join("recommendations.parquet")).unwrap();
    let (users, tracks) = (column_i64(&recs, "user_id"), column_i64(&recs, "track_id"));
    let ranks: Vec<u32> = recs
        .iter()
        .flat_map(|b| b.column_by_name("rank").unwrap().as_primitive::<UInt32Type>().values().to_vec())
        .collect();
    let mut per_user: HashMap<i64, Vec<(u32, i64)>> = HashMap::new();
    for i in 0..users.len() {
        let history = heard.get(&users[i]).unwrap_or_else(|| panic!("user {} is not an old user", users[i]));
        assert!(!history.contains(&tracks[i]), "user {} got track {} they played", users[i], tracks[i]);
        per_user.entry(users[i]).or_default().push((ranks[i], tracks[i]));
    }
    assert!(per_user.len() as f64 >= 0.95 * heard.len() as f64, "almost every old user gets recommendations");
    for (user, mut list) in per_user {
        list.sort_unstable();
        assert!(list.len() <= 15, "user {user}: at most ranking.top_n");
        assert_eq!(list.iter().map(|e| e.0).collect::<Vec<_>>(), (1..=list.len() as u32).collect::<Vec<_>>());
        assert_eq!(list.iter().map(|e| e.1).collect::<HashSet<_>>().len(), list.len(), "no duplicate for {user}");
    }

    let metrics = json_file(&dir.join("metrics.json"));
    for window in ["target", "test"] {
        let ndcg = metrics[window]["ndcg@10"].as_f64().unwrap();
        assert!(ndcg > 0.0 && ndcg <= 1.0, "{window} NDCG {ndcg}");
        assert_eq!(metrics[window]["original_novelty@10"].as_f64().unwrap(), 1.0);
    }
    let importances = json_file(&dir.join("feature_importances.json"));
    let values: Vec<f64> = importances.as_array().unwrap().iter().map(|f| f["importance"].as_f64().unwrap()).collect();
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "sorted descending");
    let names: Vec<&str> = importances.as_array().unwrap().iter().map(|f| f["feature"].as_str().unwrap()).collect();
    for feature in ["als_score", "bpr_rank", "top_items_score", "user_listens", "item_distinct_users", "artist_share"] {
        assert!(names.contains(&feature), "{feature} in {names:?}");
    }
    assert!(dir.join("model.json").is_file());

    let published = manifest(art, "ranking");
    let summary = &published["summary"];
    for window in ["target", "test"] {
        let recall = summary["candidate_recall"][window].as_f64().unwrap();
        assert!(recall > 0.0 && recall <= 1.0, "{window} candidate recall {recall}");
    }
    assert!(summary["train_seconds"].as_f64().unwrap() >= 0.0);

    // The evaluate command agrees with the stage's own judgement of its recommendations.
    let out = evaluate(&dir.join("recommendations.parquet"), "test", art, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let judged: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(judged["test"]["ndcg@10"], metrics["test"]["ndcg@10"]);

    // Merging and scoring the users a few at a time changes nothing but memory.
    assert_eq!(summary["user_chunks"], 1);
    tiny.succeed(Some("ranking"), &[("MUSICREC__RANKING__USERS_PER_CHUNK", "7")]);
    let chunked = manifest(art, "ranking");
    assert!(chunked["summary"]["user_chunks"].as_u64().unwrap() > 10, "{}", chunked["summary"]);
    for key in ["candidate_pairs", "candidate_users", "candidate_recall", "training_rows", "metrics"] {
        assert_eq!(chunked["summary"][key], summary[key], "{key}");
    }
    assert_eq!(read_batches(&dir.join("recommendations.parquet")).unwrap(), recs);
}
