//! What an operator meets: `--version`, log lines fit for a file or a collector, the
//! effective configuration with secrets masked, and looking up one user or track by name.

use serde_json::Value;

use crate::common::{TinyRun, musicrec, stage_dir, stderr, stdout};

#[test]
fn version_names_the_commit_and_the_build_date() {
    let out = musicrec(&["--version"], &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.starts_with(&format!("musicrec {} (commit ", env!("CARGO_PKG_VERSION"))), "{text}");
    let built = text.split(", built ").nth(1).unwrap_or_default().trim_end().trim_end_matches(')');
    assert!(built.len() == 10 && built.as_bytes()[4] == b'-' && built.as_bytes()[7] == b'-', "{text}");
}

#[test]
fn logs_are_plain_off_a_terminal_json_on_request_and_quiet_with_q() {
    let tiny = TinyRun::hand_made().prepare();
    let (data, art) = (tiny.data.to_str().unwrap(), tiny.art.to_str().unwrap());
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let mut args = vec!["run", "--data", data, "--artifacts", art, "--stages", "preprocess"];
        args.extend_from_slice(extra);
        let out = musicrec(&args, &[&[("RUST_LOG", "info")], env].concat());
        assert!(out.status.success(), "{}", stderr(&out));
        stderr(&out)
    };
    let text = run(&[], &[]);
    assert!(text.lines().count() >= 3 && text.contains("INFO"), "{text}");
    assert!(!text.contains('\x1b'), "escape codes in a log written to a pipe: {text:?}");

    for (flag, env) in [(&["--log-format", "json"][..], &[][..]), (&[][..], &[("MUSICREC__LOG__FORMAT", "json")][..])] {
        let text = run(flag, env);
        assert!(text.lines().count() >= 3, "{text}");
        for line in text.lines() {
            let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            for key in ["timestamp", "level", "target", "message"] {
                assert!(entry[key].is_string(), "{key} missing: {line}");
            }
        }
    }
    let quiet = run(&["-q"], &[]);
    assert!(
        !quiet.contains("INFO") && text.contains("WARN") == quiet.contains("WARN"),
        "-q: warnings and errors only: {quiet}"
    );

    let out = musicrec(&["config", "--log-format", "xml"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--log-format"), "{}", stderr(&out));
}

#[test]
fn config_effective_prints_the_merged_configuration_with_secrets_masked() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("config.yaml");
    std::fs::write(&file, "service:\n  max_k: 25\n").unwrap();
    let token = "0123456789abcdef-secret-token";
    let env = [
        ("MUSICREC__SERVICE__ADMIN_TOKEN", token),
        ("MUSICREC__SERVICE__REDIS_URL", "redis://app:hunter2@127.0.0.1:6379"),
        ("MUSICREC__ALS__FACTORS", "32"),
    ];
    let out = musicrec(&["config", "--effective", "--config", file.to_str().unwrap()], &env);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!text.contains(token) && !text.contains("hunter2"), "a secret is printed: {text}");
    assert!(text.contains("redis://app:<masked>@127.0.0.1:6379"), "{text}");
    assert!(text.contains("max_k: 25") && text.contains("factors: 32"), "{text}");

    // Given back as a configuration file, it is the same configuration (secrets aside).
    let effective = tmp.path().join("effective.yaml");
    std::fs::write(&effective, text.replace("admin_token: <masked>", "admin_token: null")).unwrap();
    let again = musicrec(&["config", "--effective", "--config", effective.to_str().unwrap()], &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stdout(&again).contains("max_k: 25") && stdout(&again).contains("factors: 32"), "{}", stdout(&again));

    let out = musicrec(&["config", "--effective"], &[("MUSICREC__SERVICE__MAX_K", "0")]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("service.max_k"), "{}", stderr(&out));
}

#[test]
fn recommend_and_similar_print_names_and_sources() {
    let tiny = TinyRun::generated(3)
        .stages("preprocess,matrices,features,als,bpr,item2item,top_items,ranking")
        .config(&[("MUSICREC__ALS__FACTORS", "8"), ("MUSICREC__BPR__FACTORS", "8"), ("MUSICREC__BPR__ITERATIONS", "3")])
        .build();
    let art = tiny.art.to_str().unwrap();
    let recs = stage_dir(&tiny.art, "ranking").join("recommendations.parquet");
    let user = musicrec_data::parquet_io::read_i64_column(&recs, "user_id").unwrap()[0];

    let out = musicrec(&["recommend", "--artifacts", art, "--user", &user.to_string(), "--k", "3", "--json"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let recommendations = answer["recommendations"].as_array().unwrap();
    assert_eq!(recommendations.len(), 3, "{answer}");
    for track in recommendations {
        assert_eq!(track["source"], "offline", "{answer}");
        assert!(track["name"].is_string() && track["score"].is_number() && track["artists"].is_array(), "{answer}");
    }
    let listens = answer["listens"].as_array().unwrap();
    assert!(!listens.is_empty() && listens.len() <= 3 && listens[0]["name"].is_string(), "{answer}");

    let out = musicrec(&["recommend", "--artifacts", art, "--user", &user.to_string(), "--k", "3"], &[]);
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    let first = recommendations[0]["name"].as_str().unwrap();
    assert!(text.contains("most recent train listens") && text.contains("offline") && text.contains(first), "{text}");

    let out = musicrec(&["recommend", "--artifacts", art, "--user", "999999999"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("a new user") && stdout(&out).contains("popular"), "{}", stdout(&out));

    let track = recommendations[0]["track_id"].as_i64().unwrap().to_string();
    let out = musicrec(&["similar", "--artifacts", art, "--track", &track, "--k", "4", "--json"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let answer: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(answer["track"]["name"], recommendations[0]["name"], "{answer}");
    assert!(answer["similar"].as_array().is_some_and(|s| !s.is_empty() && s.len() <= 4), "{answer}");

    for (args, names) in [
        (vec!["similar", "--artifacts", art, "--track", "999999999"], "999999999"),
        (vec!["recommend", "--artifacts", art, "--user", "abc"], "abc"),
        (vec!["recommend", "--artifacts", art, "--user", "1", "--k", "0"], "--k"),
    ] {
        let out = musicrec(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(names), "{args:?}: {}", stderr(&out));
    }
}
