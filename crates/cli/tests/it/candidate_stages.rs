//! The candidate-model stages (ALS, BPR, Item2Item, top items) on generated `tiny` data: every
//! artifact the ranker and the service need is present and well-formed, no candidate is a track the user already played,
//! and the metrics file has the shape the report reads.

use std::collections::{HashMap, HashSet};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type, UInt32Type};
use musicrec_data::parquet_io::read_batches;

use crate::common::*;

#[test]
fn factor_model_stages_write_candidates_similar_tracks_model_and_metrics() {
    let tiny = TinyRun::generated(5)
        .config(&[
            ("MUSICREC__ALS__FACTORS", "16"),
            ("MUSICREC__ALS__ITERATIONS", "5"),
            ("MUSICREC__ALS__N_CANDIDATES", "20"),
            ("MUSICREC__BPR__FACTORS", "16"),
            ("MUSICREC__BPR__ITERATIONS", "20"),
            ("MUSICREC__BPR__N_CANDIDATES", "20"),
        ])
        .build();

    let heard = train_history(&tiny.art);
    for model in ["als", "bpr"] {
        check_candidates_and_metrics(&tiny.art, model, &heard);
        check_similar_tracks(&tiny.art, model);
        assert!(summary(&tiny.art, model).get("loss_per_iteration").is_none(), "{model}: losses only when asked");
    }
}

fn summary(art: &std::path::Path, stage: &str) -> serde_json::Value {
    manifest(art, stage)["summary"].clone()
}

fn losses(art: &std::path::Path, stage: &str) -> Vec<f64> {
    let summary = summary(art, stage);
    let list = summary["loss_per_iteration"].as_array().unwrap_or_else(|| panic!("{stage}: {summary}"));
    list.iter().map(|v| v.as_f64().unwrap()).collect()
}

#[test]
fn report_loss_lists_the_training_loss_per_iteration_in_the_manifest() {
    let tiny = TinyRun::generated(5)
        .stages("preprocess,matrices,als,bpr")
        .config(&[
            ("MUSICREC__ALS__FACTORS", "16"),
            ("MUSICREC__ALS__ITERATIONS", "6"),
            ("MUSICREC__ALS__REPORT_LOSS", "true"),
            ("MUSICREC__BPR__FACTORS", "16"),
            ("MUSICREC__BPR__ITERATIONS", "10"),
            ("MUSICREC__BPR__REPORT_LOSS", "true"),
        ])
        .build();
    let als = losses(&tiny.art, "als");
    assert_eq!(als.len(), 6);
    assert!(als.windows(2).all(|w| w[1] < w[0]), "the ALS objective decreases every iteration: {als:?}");
    // SGD's epoch means need not fall every epoch, but training lowers them.
    let bpr = losses(&tiny.art, "bpr");
    assert_eq!(bpr.len(), 10);
    assert!(bpr.iter().all(|l| l.is_finite() && *l > 0.0) && bpr[9] < bpr[0], "{bpr:?}");
}

#[test]
fn item2item_stage_writes_candidates_model_metrics_and_its_svd_facts() {
    let tiny = TinyRun::generated(7).prepare();
    let art = &tiny.art;
    for metric in ["manhattan", "cosine"] {
        let env = [
            ("MUSICREC__ITEM2ITEM__N_COMPONENTS", "16"),
            ("MUSICREC__ITEM2ITEM__MIN_USERS_PER_ITEM", "3"),
            ("MUSICREC__ITEM2ITEM__N_CANDIDATES", "20"),
            ("MUSICREC__ITEM2ITEM__METRIC", metric),
        ];
        tiny.succeed(Some("preprocess,matrices,item2item"), &env);
        check_candidates_and_metrics(art, "item2item", &train_history(art));
        assert!(
            !stage_dir(art, "item2item").join("similar.parquet").exists(),
            "similar tracks come from ALS and BPR only"
        );
        let manifest = manifest(art, "item2item");
        let facts = &manifest["summary"]["model"];
        assert_eq!(facts["components"].as_f64(), Some(16.0), "{facts}");
        let explained = facts["explained_variance"].as_f64().unwrap();
        assert!(explained > 0.0 && explained <= 1.0, "{explained}");
        assert_eq!(manifest["params"]["item2item"]["metric"], metric);
    }
}

fn check_candidates_and_metrics(art: &std::path::Path, model: &str, heard: &HashMap<i64, HashSet<i64>>) {
    let dir = stage_dir(art, model);
    let cands = read_batches(&dir.join("candidates.parquet")).unwrap();
    let (users, tracks) = (column_i64(&cands, "user_id"), column_i64(&cands, "track_id"));
    assert!(!users.is_empty());
    let ranks: Vec<u32> = cands
        .iter()
        .flat_map(|b| b.column_by_name("rank").unwrap().as_primitive::<UInt32Type>().values().to_vec())
        .collect();
    let scores: Vec<f32> = cands
        .iter()
        .flat_map(|b| b.column_by_name("score").unwrap().as_primitive::<Float32Type>().values().to_vec())
        .collect();
    let mut per_user: HashMap<i64, Vec<(u32, i64, f32)>> = HashMap::new();
    for i in 0..users.len() {
        assert!(
            !heard[&users[i]].contains(&tracks[i]),
            "user {} was recommended track {} they played",
            users[i],
            tracks[i]
        );
        per_user.entry(users[i]).or_default().push((ranks[i], tracks[i], scores[i]));
    }
    for (user, mut list) in per_user {
        list.sort_by_key(|e| e.0);
        assert!(list.len() <= 20);
        assert_eq!(
            list.iter().map(|e| e.0).collect::<Vec<_>>(),
            (1..=list.len() as u32).collect::<Vec<_>>(),
            "user {user}"
        );
        assert!(list.windows(2).all(|w| w[0].2 >= w[1].2), "scores descend with rank for user {user}");
        assert_eq!(list.iter().map(|e| e.1).collect::<HashSet<_>>().len(), list.len(), "no duplicate for user {user}");
    }

    let metrics = json_file(&dir.join("metrics.json"));
    for window in ["target", "test"] {
        for key in
            ["precision@10", "recall@10", "ndcg@10", "coverage_user@10", "coverage_item@10", "original_novelty@10"]
        {
            let v = metrics[window][key].as_f64().unwrap_or_else(|| panic!("{window}.{key} missing"));
            assert!((0.0..=1.0).contains(&v), "{window}.{key} = {v}");
        }
        assert_eq!(
            metrics[window]["original_novelty@10"].as_f64().unwrap(),
            1.0,
            "listened tracks are never recommended"
        );
        assert!(metrics[window]["ndcg@10"].as_f64().unwrap() > 0.0, "{model} finds some of what users play next");
    }
    assert!(dir.join("model.bin").is_file());

    // The evaluate command agrees with the stage's own evaluation of the same candidates.
    let out = evaluate(&dir.join("candidates.parquet"), "test", art, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let judged: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(judged["test"]["ndcg@10"], metrics["test"]["ndcg@10"]);
    assert_eq!(judged["test"]["coverage_user@10"], metrics["test"]["coverage_user@10"]);
}

fn check_similar_tracks(art: &std::path::Path, model: &str) {
    let similar = read_batches(&stage_dir(art, model).join("similar.parquet")).unwrap();
    let (from, to) = (column_i64(&similar, "track_id"), column_i64(&similar, "similar_track_id"));
    assert!(!from.is_empty());
    assert!(from.iter().zip(&to).all(|(a, b)| a != b), "a track is never similar to itself");
    let mut per_track: HashMap<i64, usize> = HashMap::new();
    from.iter().for_each(|t| *per_track.entry(*t).or_default() += 1);
    assert!(per_track.values().all(|&n| n <= 10));
}

#[test]
fn top_items_serves_new_users_and_never_repeats_a_listen() {
    let tiny = TinyRun::generated(6)
        .stages("preprocess,matrices,top_items")
        .config(&[("MUSICREC__TOP_ITEMS__TOP_N", "30")])
        .build();
    let art = &tiny.art;
    let users = read_batches(&stage_dir(art, "preprocess").join("users.parquet")).unwrap();
    let new_in_windows: HashSet<i64> = users
        .iter()
        .flat_map(|b| {
            let ids = b.column_by_name("user_id").unwrap().as_primitive::<Int64Type>().values().to_vec();
            let old = b.column_by_name("old").unwrap().as_boolean().clone();
            ids.into_iter().enumerate().filter(move |&(i, _)| !old.value(i)).map(|(_, id)| id)
        })
        .collect();
    assert!(!new_in_windows.is_empty(), "tiny data has new users");
    let cands = read_batches(&stage_dir(art, "top_items").join("candidates.parquet")).unwrap();
    let served: HashSet<i64> = column_i64(&cands, "user_id").into_iter().collect();
    assert!(new_in_windows.is_subset(&served), "every new user of a window gets popular tracks");
    assert!(!stage_dir(art, "top_items").join("similar.parquet").exists(), "popularity has no similar tracks");
    let metrics = json_file(&stage_dir(art, "top_items").join("metrics.json"));
    assert_eq!(metrics["test"]["coverage_user@10"].as_f64().unwrap(), 1.0);
    assert_eq!(metrics["test"]["original_novelty@10"].as_f64().unwrap(), 1.0);
}
