//! The `eda` and `report` stages: EDA statistics match hand-computed values on the hand-made
//! data set, the report covers every model (a ranker that was not run is a "not run" row, the
//! ranker's run is read with its candidate recall and feature importances), every PNG is a
//! PNG, and missing upstream stages give clear errors.

use std::path::Path;

use musicrec_data::parquet_io::read_batches;
use serde_json::{Value, json};

use crate::common::*;

/// Every PNG a manifest lists starts with the PNG signature and an IHDR of a non-empty image.
fn assert_pngs(dir: &Path, at_least: usize) {
    let manifest = json_file(&dir.join("manifest.json"));
    let pngs: Vec<&str> = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["file"].as_str().unwrap())
        .filter(|f| f.ends_with(".png"))
        .collect();
    assert!(pngs.len() >= at_least, "{pngs:?}");
    for file in pngs {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{file}");
        assert_eq!(&bytes[12..16], b"IHDR", "{file}");
        let (width, height) = (
            u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
            u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
        );
        assert!(width > 100 && height > 100, "{file}: {width}x{height}");
    }
}

fn close(a: &Value, b: f64) -> bool {
    (a.as_f64().unwrap() - b).abs() < 1e-9
}

#[test]
fn eda_statistics_match_the_hand_made_data() {
    let tiny = TinyRun::hand_made().stages("preprocess,eda").build();
    let art = &tiny.art;
    let stats = json_file(&stage_dir(art, "eda").join("stats.json"));

    let w = &stats["windows"];
    assert_eq!(
        w["train"],
        json!({"first_day": "2022-06-01", "last_day": "2022-12-15", "events": 6, "users": 3, "tracks": 2,
               "old_users": 3, "new_users": 0})
    );
    assert_eq!(
        w["target"],
        json!({"first_day": "2022-12-16", "last_day": "2022-12-22", "events": 3, "users": 3, "tracks": 3,
               "old_users": 2, "new_users": 1})
    );
    assert_eq!(
        w["test"],
        json!({"first_day": "2022-12-23", "last_day": "2022-12-24", "events": 2, "users": 2, "tracks": 2,
               "old_users": 1, "new_users": 1})
    );
    assert_eq!(stats["users"], json!({"total": 5, "old": 3, "new": 2}));
    assert_eq!((stats["train_end"].as_str(), stats["target_end"].as_str()), (Some("2022-12-16"), Some("2022-12-23")));

    // Events per user 5, 3, 1, 1, 1; per track 3, 3, 2, 1, 1, 1 (the unknown track is dropped).
    let u = &stats["events_per_user"];
    assert_eq!([&u["count"], &u["min"], &u["p50"], &u["p75"], &u["p90"], &u["max"]], [5, 1, 1, 3, 5, 5]);
    assert!(close(&u["mean"], 2.2));
    let t = &stats["events_per_track"];
    assert_eq!([&t["count"], &t["p50"], &t["p75"], &t["max"]], [6, 1, 3, 3]);

    let p = &stats["popularity"];
    assert_eq!([&p["catalogue_tracks"], &p["played_tracks"], &p["tracks_for_half_of_events"]], [6, 6, 2]);
    assert!(close(&p["top_10pct_event_share"], 3.0 / 11.0));
    // Ascending 1,1,1,2,3,3: 2·47/(6·11) − 7/6.
    assert!(close(&p["gini"], 94.0 / 66.0 - 7.0 / 6.0));

    // Track 20 is rock and pop: its 3 events count half to each; track 60 has no genre.
    let genres: Vec<(Value, f64)> = stats["genres"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["name"].clone(), g["events"].as_f64().unwrap()))
        .collect();
    assert_eq!(
        genres,
        vec![(json!("rock"), 4.5), (json!("pop"), 4.5), (json!("(no genre)"), 1.0), (json!("jazz"), 1.0)]
    );
    assert_eq!(stats["top_tracks"][0], json!({"track_id": 10, "name": "t10", "events": 3}));

    let days = stats["activity_by_day"].as_array().unwrap();
    assert_eq!(days.len(), 207, "every day from 2022-06-01 to 2022-12-24");
    assert_eq!(days.iter().map(|d| d["events"].as_u64().unwrap()).sum::<u64>(), 11);
    let first_target_day = days.iter().find(|d| d["date"] == "2022-12-16").unwrap();
    assert_eq!(first_target_day, &json!({"date": "2022-12-16", "window": "target", "events": 1}));

    let report = std::fs::read_to_string(stage_dir(art, "eda").join("report.md")).unwrap();
    assert!(report.contains("| rock | 40.9% |") && report.contains("![Genre shares](genres.png)"), "{report}");
    assert_pngs(&stage_dir(art, "eda"), 7);
}

#[test]
fn eda_and_report_need_their_inputs() {
    let tiny = TinyRun::hand_made().prepare();
    let out = tiny.pipeline(Some("eda"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("stage `eda` needs the outputs of stage `preprocess`"), "{}", stderr(&out));

    assert!(tiny.pipeline(Some("preprocess"), &[]).status.success());
    let out = tiny.pipeline(Some("report"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("found no model outputs")
            && stderr(&out).contains("als, bpr, item2item, top_items, ranking"),
        "{}",
        stderr(&out)
    );
    assert!(!stage_dir(&tiny.art, "report").exists());
}

#[test]
fn report_covers_every_model_and_says_what_was_not_run() {
    let tiny = TinyRun::generated(8)
        .stages("preprocess,eda,matrices,features,als,bpr,top_items,report")
        .config(&[
            ("MUSICREC__ALS__FACTORS", "8"),
            ("MUSICREC__ALS__ITERATIONS", "3"),
            ("MUSICREC__BPR__FACTORS", "8"),
            ("MUSICREC__BPR__ITERATIONS", "3"),
        ])
        .build();
    let art = &tiny.art;
    let printed = stdout(tiny.output());
    let report_dir = stage_dir(art, "report");
    assert!(
        printed.contains(&format!("report: {}", std::path::absolute(report_dir.join("report.md")).unwrap().display()))
    );
    let ranker_line = printed.lines().find(|l| l.starts_with("ranking (ranker)")).unwrap_or_default();
    assert!(ranker_line.contains("not run"), "{printed}");
    assert!(printed.contains("similar tracks: ") && printed.contains("als/similar.parquet"), "{printed}");

    let metrics = json_file(&report_dir.join("metrics.json"));
    let models = metrics["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["model"].as_str().unwrap()).collect();
    assert_eq!(names, ["als", "bpr", "item2item", "top_items", "ranking"]);
    for m in [&models[0], &models[1], &models[3]] {
        assert_eq!(m["status"], "ok");
        for key in ["precision@10", "recall@10", "ndcg@10", "coverage_user@10", "novelty@10", "catalog_coverage@10"] {
            assert!(m["test"][key].is_number(), "{} test {key}", m["model"]);
        }
        assert_eq!(m["test"], json_file(&stage_dir(art, m["model"].as_str().unwrap()).join("metrics.json"))["test"]);
    }
    for m in [&models[2], &models[4]] {
        assert!(m["status"].as_str().unwrap().starts_with("not run"), "{}", m["model"]);
    }
    let stages: Vec<&str> =
        metrics["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(
        stages,
        ["preprocess", "eda", "matrices", "features", "als", "bpr", "item2item", "top_items", "ranking"]
    );
    assert!(metrics["stages"][0]["duration_s"].as_f64().unwrap() > 0.0);
    // The stage's own time counts the lists it read and judged (it once began timing after).
    let report_manifest = manifest(art, "report");
    let summary = &report_manifest["summary"];
    let judged = summary["read_lists_seconds"].as_f64().unwrap() + summary["evaluate_seconds"].as_f64().unwrap();
    assert!(report_manifest["duration_s"].as_f64().unwrap() >= judged, "{report_manifest}");
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    for row in ["| als |", "| bpr |", "| top_items |", "| ranking (ranker) | not run", "Slowest stage: "] {
        assert!(md.contains(row), "{row} in {md}");
    }
    assert_pngs(&report_dir, 5);

    // Without a ranker the system is the popular list; every row is judged on the same users.
    let card = &metrics["scorecard"];
    assert_same_users_every_k(card);
    assert_eq!(card["rows"][0]["name"], "system");
    assert!(card["rows"][0]["description"].as_str().unwrap().contains("popular"), "{card}");
    let first_run = metrics["run_id"].clone();

    // A ranker run appears beside the models, with recall, importances and the service's recs.
    let out = tiny.succeed(Some("item2item,ranking,report"), &[("MUSICREC__RANKING__ITERATIONS", "20")]);
    let printed = stdout(&out);
    let report_dir = stage_dir(art, "report");
    for needle in ["ranker vs the best base model", "ranker vs popularity (top_items)", "[0.", "system "] {
        assert!(printed.contains(needle), "{needle} in {printed}");
    }
    assert!(printed.contains("ranking/recommendations.parquet"), "{printed}");
    let metrics = json_file(&report_dir.join("metrics.json"));
    let ranking = &metrics["models"][4];
    assert_eq!((ranking["status"].as_str(), ranking["ranker"].as_bool()), (Some("ok"), Some(true)));
    assert_eq!(ranking["test"], json_file(&stage_dir(art, "ranking").join("metrics.json"))["test"]);
    let ranking_manifest = manifest(art, "ranking");
    assert_eq!(metrics["candidate_recall"], ranking_manifest["summary"]["candidate_recall"]);
    let importances: Vec<f64> =
        metrics["feature_importances"].as_array().unwrap().iter().map(|f| f["importance"].as_f64().unwrap()).collect();
    assert!(!importances.is_empty() && importances.is_sorted_by(|a, b| a >= b), "{importances:?}");
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(md.contains("| ranking (ranker) | 0."), "{md}");
    assert_pngs(&report_dir, 6);

    // The scorecard: the system row first (ranker for old users, popular for new ones), every
    // model on the same users at every K, intervals, claims, segments and named examples.
    let card = &metrics["scorecard"];
    assert_same_users_every_k(card);
    let rows: Vec<&str> = card["rows"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(rows, ["system", "ranking", "als", "bpr", "item2item", "top_items"]);
    let claims: Vec<&str> =
        card["comparisons"].as_array().unwrap().iter().map(|c| c["claim"].as_str().unwrap()).collect();
    assert!(claims[0].starts_with("ranker vs the best base model"), "{claims:?}");
    let previous = card["comparisons"].as_array().unwrap().iter().find(|c| c["against_run"] == first_run);
    assert!(previous.is_some(), "the previous report on the same data is compared with: {claims:?}");
    let segments: Vec<&str> =
        card["user_segments"].as_array().unwrap().iter().map(|s| s["segment"].as_str().unwrap()).collect();
    assert_eq!(&segments[..2], ["old users", "new users"]);
    assert!(segments[2..].iter().all(|s| s.starts_with("old, train listens Q")), "{segments:?}");
    assert_eq!(card["item_mix"].as_array().unwrap().len(), rows.len());
    let examples = card["examples"].as_array().unwrap();
    assert_eq!(examples.len(), 3);
    assert!(examples.iter().any(|e| e["old"] == false), "one sampled user is new");
    let named = &examples[0]["top"][0][0];
    assert!(named["track"] != "-" && named["artist"] != "-" && named["genre"] != "-", "{named}");
    for section in [
        "## Headline: test window, K = 10",
        "Convention: every row is judged on the same",
        "## Segments",
        "## Examples",
        "| **system** |",
        "K = 20",
    ] {
        assert!(md.contains(section), "{section} in the report");
    }
    assert!(md.find("## Headline").unwrap() < md.find("## Target window").unwrap(), "the headline table comes first");
    let per_user = read_batches(&report_dir.join("per_user.parquet")).unwrap();
    let users = card["evaluated_users"].as_u64().unwrap() as usize;
    assert_eq!(per_user.iter().map(|b| b.num_rows()).sum::<usize>(), users * rows.len());
}

/// Every row of a scorecard is judged on the same users, at K = 5, 10 and 20, with intervals
/// around its headline estimates.
fn assert_same_users_every_k(card: &Value) {
    let users = card["evaluated_users"].as_u64().unwrap();
    assert!(users > 0);
    for row in card["rows"].as_array().unwrap() {
        assert_eq!(row["metrics"]["evaluated_users"].as_u64(), Some(users), "{}", row["name"]);
        for k in [5, 10, 20] {
            assert!(row["metrics"][format!("ndcg@{k}")].is_number(), "{} ndcg@{k}", row["name"]);
        }
        let ndcg = &row["intervals"]["ndcg"];
        let (low, estimate, high) =
            (ndcg["low"].as_f64().unwrap(), ndcg["estimate"].as_f64().unwrap(), ndcg["high"].as_f64().unwrap());
        assert!(low <= estimate + 1e-12 && estimate <= high + 1e-12, "{}: {ndcg}", row["name"]);
        assert_eq!(row["metrics"]["ndcg@10"].as_f64().unwrap(), estimate);
    }
}

/// After rerunning one model alone, the report names the ranker trained on the old model's
/// candidates; rerunning the ranker makes the set whole again. The ALS loss it recorded is
/// plotted.
#[test]
fn a_report_over_outputs_of_different_runs_warns_by_name_and_plots_recorded_losses() {
    let tiny = TinyRun::generated(9)
        .config(&[
            ("MUSICREC__ALS__FACTORS", "8"),
            ("MUSICREC__ALS__ITERATIONS", "3"),
            ("MUSICREC__ALS__REPORT_LOSS", "true"),
            ("MUSICREC__BPR__FACTORS", "8"),
            ("MUSICREC__BPR__ITERATIONS", "3"),
        ])
        .build();
    let art = &tiny.art;
    // The report of the current version: every run publishes a new one.
    let report_dir = || stage_dir(art, "report");
    let read = || {
        let md = std::fs::read_to_string(report_dir().join("report.md")).unwrap();
        (json_file(&report_dir().join("metrics.json")), md)
    };
    let (metrics, md) = read();
    assert_eq!(metrics["mixed_runs"], serde_json::json!([]), "one run is consistent");
    assert!(!md.contains("Warning"), "{md}");
    let curves = metrics["loss_curves"].as_array().unwrap();
    assert_eq!(curves.len(), 1, "only ALS recorded its loss: {curves:?}");
    assert_eq!(curves[0]["model"], "als");
    assert_eq!(curves[0]["loss"], manifest(art, "als")["summary"]["loss_per_iteration"]);
    assert!(md.contains("## Training loss") && md.contains("![als training loss](loss_als.png)"), "{md}");
    assert!(report_dir().join("loss_als.png").exists() && !report_dir().join("loss_bpr.png").exists());

    tiny.succeed(Some("als"), &[("MUSICREC__ALS__FACTORS", "4")]);
    let out = tiny.succeed(Some("report"), &[]);
    let (first, second) = (manifest(art, "ranking")["run_id"].clone(), manifest(art, "als")["run_id"].clone());
    let (first, second) = (first.as_str().unwrap(), second.as_str().unwrap());
    assert_ne!(first, second);
    let warning = format!(
        "`ranking` (run {first}) was trained on the candidates of `als` run {first}, but `als` now holds run \
         {second}: rerun `ranking` so they agree"
    );
    let (metrics, md) = read();
    assert_eq!(metrics["mixed_runs"], serde_json::json!([warning]));
    assert!(md.contains("Warning: these outputs come from different pipeline runs") && md.contains(&warning), "{md}");
    assert!(stderr(&out).contains(&format!("warning: {warning}")), "{}", stderr(&out));
    assert_eq!(metrics["loss_curves"][0]["run_id"], second, "the curve of the ALS now there");

    tiny.succeed(Some("ranking,report"), &[]);
    let (metrics, md) = read();
    assert_eq!(metrics["mixed_runs"], serde_json::json!([]), "rerunning the ranker makes the set whole");
    assert!(!md.contains("Warning"), "{md}");
}
