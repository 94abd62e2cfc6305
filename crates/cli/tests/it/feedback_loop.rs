//! The loop closed: listens posted to a running service are logged durably, survive its
//! SIGKILL, are exported in the interactions layout, and a rerun of the pipeline trains on
//! them: they are in the train window, and a user the data set never had gets an offline
//! list that leans toward the neighbours of what they played.

use std::collections::{BTreeSet, HashMap};

use arrow_array::cast::AsArray;
use musicrec_data::parquet_io::read_batches;

use crate::common::{ServiceProcess, TinyRun, column_i64, musicrec, stage_dir, stderr, stdout};

/// The default preprocess.train_end, 2022-12-16, as a day number.
const DEFAULT_TRAIN_END: i32 = 19_342;

/// Small, single-threaded models: the same listens give the same lists (BPR's SGD is
/// deterministic on one thread).
const FAST: [(&str, &str); 6] = [
    ("MUSICREC__THREADS", "1"),
    ("MUSICREC__ALS__FACTORS", "16"),
    ("MUSICREC__BPR__FACTORS", "16"),
    ("MUSICREC__BPR__ITERATIONS", "10"),
    ("MUSICREC__RANKING__ITERATIONS", "30"),
    ("MUSICREC__ITEM2ITEM__N_COMPONENTS", "16"),
];

fn chrono_day(day: i32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap() + chrono::TimeDelta::days(day as i64)
}

fn today() -> i32 {
    (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 86_400) as i32
}

/// Each user's ranked offline list.
fn offline_lists(art: &std::path::Path) -> HashMap<i64, Vec<i64>> {
    let batches = read_batches(&stage_dir(art, "ranking").join("recommendations.parquet")).unwrap();
    let (users, tracks) = (column_i64(&batches, "user_id"), column_i64(&batches, "track_id"));
    let ranks: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let rank = arrow_cast::cast(b.column_by_name("rank").unwrap(), &arrow_schema::DataType::Int64).unwrap();
            rank.as_primitive::<arrow_array::types::Int64Type>().values().to_vec()
        })
        .collect();
    let mut ranked: Vec<(i64, i64, i64)> =
        users.into_iter().zip(ranks).zip(tracks).map(|((u, r), t)| (u, r, t)).collect();
    ranked.sort();
    let mut lists: HashMap<i64, Vec<i64>> = HashMap::new();
    for (u, _, t) in ranked {
        lists.entry(u).or_default().push(t);
    }
    lists
}

#[test]
fn listens_posted_to_the_service_are_trained_on_after_an_export() {
    // The generated data moved so that its train window ends the day after tomorrow: the
    // listens posted today fall into it.
    let train_end = today() + 2;
    let (train_end_date, target_end_date) = (chrono_day(train_end).to_string(), chrono_day(train_end + 7).to_string());
    let split = [
        ("MUSICREC__PREPROCESS__TRAIN_END", train_end_date.as_str()),
        ("MUSICREC__PREPROCESS__TARGET_END", target_end_date.as_str()),
    ];
    let tiny = TinyRun::generated(11).shifted(train_end - DEFAULT_TRAIN_END).config(&FAST).config(&split).build();
    let before = offline_lists(&tiny.art);

    let log = tiny.scratch("event-log");
    let log_env = [
        ("MUSICREC__SERVICE__EVENT_LOG__STORE", "local"),
        ("MUSICREC__SERVICE__EVENT_LOG__DIR", log.to_str().unwrap()),
    ];
    let service = ServiceProcess::start(&tiny.art, &log_env);
    // A user the data set does not have listens to a track of middling popularity and the
    // tracks the service calls similar to it, twice each.
    let all_users =
        column_i64(&read_batches(&stage_dir(&tiny.art, "preprocess").join("users.parquet")).unwrap(), "user_id");
    let new_user = all_users.iter().max().unwrap() + 1_000;
    assert!(!before.contains_key(&new_user));
    let popular = ServiceProcess::track_ids(&service.get("/popular?k=10")["popular"]);
    let items = column_i64(&read_batches(&stage_dir(&tiny.art, "matrices").join("items.parquet")).unwrap(), "track_id");
    let similar = |t: i64| ServiceProcess::track_ids(&service.get(&format!("/similar?track_id={t}&k=5"))["similar"]);
    // Past the first third of the catalogue, the first track with five similar tracks.
    let seed = items[items.len() / 3..].iter().copied().find(|&t| similar(t).len() == 5).unwrap();
    let mut played = vec![seed];
    played.extend(similar(seed));
    for _ in 0..2 {
        for &track in &played {
            service.listen(new_user, track);
        }
    }
    let neighbours: BTreeSet<i64> = played
        .iter()
        .flat_map(|t| ServiceProcess::track_ids(&service.get(&format!("/similar?track_id={t}&k=10"))["similar"]))
        .filter(|t| !played.contains(t))
        .collect();
    // Every acknowledged listen is in the log, whatever happens to the process next.
    service.kill();

    let extra = tiny.scratch("extra");
    let out = musicrec(&["events", "export", "--from", log.to_str().unwrap(), "--out", extra.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("wrote {} events of 1 users", played.len() * 2)), "{}", stdout(&out));

    let rerun = tiny.command(&["--extra-events", extra.to_str().unwrap()], &[]).output().unwrap();
    assert!(rerun.status.success(), "{}", stderr(&rerun));

    // The listens are in the train window, on today's date, and the user is an old user now.
    let train = read_batches(&stage_dir(&tiny.art, "preprocess").join("train.parquet")).unwrap();
    let (users, tracks) = (column_i64(&train, "user_id"), column_i64(&train, "track_id"));
    let mut heard: Vec<i64> = users.iter().zip(&tracks).filter(|(u, _)| **u == new_user).map(|(_, t)| *t).collect();
    heard.sort();
    let mut expected: Vec<i64> = played.iter().chain(&played).copied().collect();
    expected.sort();
    assert_eq!(heard, expected);
    let manifest = crate::common::json_file(&stage_dir(&tiny.art, "preprocess").join("manifest.json"));
    assert_eq!(manifest["summary"]["extra_events"]["events_kept"], played.len() as u64 * 2, "{manifest}");

    // Their offline list: none of what they played, and closer to its neighbours than the
    // popular list they were served before.
    let after = offline_lists(&tiny.art);
    let list = &after[&new_user];
    assert!(list.iter().all(|t| !played.contains(t)), "{list:?} repeats {played:?}");
    let near = |tracks: &[i64]| tracks.iter().take(10).filter(|t| neighbours.contains(t)).count();
    assert!(
        near(list) > near(&popular),
        "{} of {list:?} vs {} of the popular {popular:?} among {neighbours:?}",
        near(list),
        near(&popular)
    );

    // Served again from the new run, the user gets that list.
    let service = ServiceProcess::start(&tiny.art, &[]);
    let answer = service.get(&format!("/recommendations?user_id={new_user}&k=10"));
    let sources: BTreeSet<&str> =
        answer["recommendations"].as_array().unwrap().iter().map(|r| r["source"].as_str().unwrap()).collect();
    assert_eq!(
        (ServiceProcess::track_ids(&answer["recommendations"]), sources),
        (list[..10].to_vec(), BTreeSet::from(["offline"]))
    );
}

#[test]
fn export_and_extra_events_refuse_bad_input_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, out) = (tmp.path().join("log"), tmp.path().join("out"));
    std::fs::create_dir(&log).unwrap();
    let export = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["events", "export", "--out", out.to_str().unwrap()];
        all.extend(args);
        let output = musicrec(&all, env);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", stderr(&output));
        stderr(&output)
    };
    let from = ["--from", log.to_str().unwrap()];
    assert!(export(&[], &[]).contains("service.event_log.store"));
    assert!(export(&[&from[..], &["--since", "yesterday"]].concat(), &[]).contains("--since"));
    assert!(
        export(&[&from[..], &["--since", "2026-12-02", "--until", "2026-12-01"]].concat(), &[]).contains("--until")
    );
    assert!(export(&["--from", "http://host"], &[]).contains("--from"));
    assert!(export(&from, &[]).contains("no events to export"));
    std::fs::write(
        log.join("events-0000000000001-1-000000.jsonl"),
        "{\"at_ms\":1,\"user_id\":1,\"track_id\":10}\nnot json\n",
    )
    .unwrap();
    let err = export(&from, &[]);
    assert!(err.contains("events-0000000000001-1-000000.jsonl") && err.contains("line 2"), "{err}");
    assert!(!out.join("interactions.parquet").exists(), "nothing written on failure");

    let tiny = TinyRun::hand_made().prepare();
    let missing = tmp.path().join("no-events");
    let rerun =
        tiny.command(&["--stages", "preprocess", "--extra-events", missing.to_str().unwrap()], &[]).output().unwrap();
    assert_eq!(rerun.status.code(), Some(2), "{}", stderr(&rerun));
    assert!(stderr(&rerun).contains("no-events/interactions.parquet"), "{}", stderr(&rerun));
}
