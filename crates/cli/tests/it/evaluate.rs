//! `musicrec evaluate` judges a recommendations file on a window of a finished run, with the
//! metrics of docs/metrics.md; values checked by hand on the fixture.

use arrow_array::{Float32Array, Int64Array};

use crate::common::*;

fn recs(path: &std::path::Path, rows: &[(i64, i64, i64)]) {
    write_parquet(
        path,
        vec![
            ("user_id", arr(Int64Array::from_iter_values(rows.iter().map(|r| r.0)))),
            ("track_id", arr(Int64Array::from_iter_values(rows.iter().map(|r| r.1)))),
            ("score", arr(Float32Array::from_iter_values(rows.iter().map(|r| 1.0 / r.2 as f32)))),
            ("rank", arr(Int64Array::from_iter_values(rows.iter().map(|r| r.2)))),
        ],
    );
}

#[test]
fn metrics_by_hand_on_the_test_window() {
    let tiny = TinyRun::hand_made().stages("preprocess,matrices,features").build();
    let art = &tiny.art;

    // Test window: user 1 played 40, new user 4 played 30. Rows deliberately out of rank order;
    // user 2 is not in the window and user 999 is unknown: both ignored.
    let file = tiny.scratch("recs.parquet");
    recs(&file, &[(1, 50, 2), (1, 40, 1), (4, 30, 2), (4, 10, 1), (2, 10, 1), (999, 10, 1)]);
    let judge = |k: &str| {
        let out = evaluate(&file, "test", art, Some(k));
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()["test"].clone()
    };
    let m = judge("2");
    let close = |key: &str, want: f64| {
        let got = m[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {m}"));
        assert!((got - want).abs() < 1e-9, "{key}: {got} != {want}");
    };
    close("precision@2", 0.5);
    close("recall@2", 1.0);
    close("ndcg@2", (1.0 + 1.0 / 3f64.log2()) / 2.0);
    close("coverage_user@2", 1.0);
    close("coverage_item@2", 1.0);
    close("original_novelty@2", 1.0);
    // User 1 hits at 1, user 4 at 2: MAP (1 + 1/2) / 2, MRR the same, both hit.
    close("map@2", 0.75);
    close("mrr@2", 0.75);
    close("hit_rate@2", 1.0);
    assert_eq!(m["evaluated_users"], 2);
    let m1 = judge("1");
    assert_eq!(m1["precision@1"].as_f64().unwrap(), 0.5);
    assert_eq!(m1["ndcg@1"].as_f64().unwrap(), 0.5);
    assert_eq!(m1["hit_rate@1"].as_f64().unwrap(), 0.5);

    // Several Ks in one call give each K's values, the same as one at a time.
    let both = judge("1,2");
    for key in ["precision@1", "ndcg@1", "precision@2", "ndcg@2", "map@2", "popularity_percentile@2"] {
        assert_eq!(&both[key], if key.ends_with("@1") { &m1[key] } else { &m[key] }, "{key}");
    }
    // Without --k, the configuration's evaluation.k: 5, 10 and 20.
    let out = evaluate(&file, "test", art, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let default: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    for key in ["ndcg@5", "ndcg@10", "ndcg@20"] {
        assert!(default["test"][key].is_number(), "{key} in {default}");
    }
    for (k, needle) in [("0", "--k[0]"), ("5,5", "--k[1]"), ("5,x", "invalid digit")] {
        let out = evaluate(&file, "test", art, Some(k));
        assert_eq!(out.status.code(), Some(2), "--k {k}: {}", stderr(&out));
        assert!(stderr(&out).contains(needle), "--k {k}: {}", stderr(&out));
    }

    // Bad files: an unknown track, a missing column, a repeated pair.
    recs(&file, &[(1, 40, 1), (1, 77, 2), (4, 78, 1)]);
    let out = evaluate(&file, "test", art, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("2 row(s) name tracks that are not in the catalogue"), "{}", stderr(&out));
    // In order, and out of order with another user's row between the two.
    for rows in [[(1, 40, 1), (1, 40, 2), (4, 30, 1)], [(1, 40, 2), (4, 30, 1), (1, 40, 1)]] {
        recs(&file, &rows);
        let out = evaluate(&file, "target", art, None);
        assert_eq!(out.status.code(), Some(2));
        assert!(stderr(&out).contains("1 row(s) repeat a track"), "{}", stderr(&out));
    }
    write_parquet(
        &file,
        vec![("user_id", arr(Int64Array::from(vec![1]))), ("track_id", arr(Int64Array::from(vec![40])))],
    );
    let out = evaluate(&file, "test", art, None);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("missing column `rank`"), "{}", stderr(&out));
    recs(&file, &[(1, 40, 1)]);
    let out = evaluate(&file, "test", &tiny.scratch("none"), None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("`evaluate` needs the outputs of stage `preprocess`"), "{}", stderr(&out));
}
