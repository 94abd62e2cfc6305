//! Configuration faults: `MUSICREC__*` variables, `--config` files, the environment's other
//! variables. A bad value is refused before any work (exit 2, nothing written) with the key,
//! and the variable that set it; a string key takes its variable's value as written.

use std::path::Path;

use super::{Case, EVALUATE_SHARED, after, case, passes, refused, run_cases, with_env};

/// `musicrec config --effective`: the merged configuration, or the error loading it.
const EFFECTIVE: &[&str] = &["config", "--effective"];
/// A run refused before its first stage.
const RUN: &[&str] = &["run", "--data", "{data}", "--artifacts", "{art}", "--stages", "preprocess"];
const WITH_FILE: &[&str] = &["config", "--effective", "--config", "{tmp}/config.yaml"];

fn config_file(text: &'static str) -> fn(&Path) {
    // One function per text: fn pointers cannot capture, so the texts are matched here.
    match text {
        "list" => |d| std::fs::write(d.join("config.yaml"), "- 1\n- 2\n").unwrap(),
        "yaml" => |d| std::fs::write(d.join("config.yaml"), "als: [unclosed\n").unwrap(),
        "unknown" => |d| std::fs::write(d.join("config.yaml"), "als:\n  factorz: 3\n").unwrap(),
        "type" => |d| std::fs::write(d.join("config.yaml"), "bpr:\n  learning_rate: fast\n").unwrap(),
        "section" => |d| std::fs::write(d.join("config.yaml"), "als: 3\n").unwrap(),
        "range" => |d| std::fs::write(d.join("config.yaml"), "service:\n  max_k: 5000\n").unwrap(),
        "empty" => |d| std::fs::write(d.join("config.yaml"), "").unwrap(),
        _ => unreachable!("no config file {text}"),
    }
}

fn cases() -> Vec<Case> {
    vec![
        // Values refused before work.
        with_env("negative factors", RUN, &[("MUSICREC__ALS__FACTORS", "-3")], refused(&["als.factors"])),
        with_env(
            "train_end after target_end",
            RUN,
            &[("MUSICREC__PREPROCESS__TRAIN_END", "2023-01-01")],
            refused(&["preprocess.target_end", "must be after"]),
        ),
        with_env(
            "an MLflow URI that is a file",
            RUN,
            &[("MUSICREC__TRACKING__MLFLOW_URI", "file:///mlruns")],
            refused(&["tracking.mlflow_uri"]),
        ),
        with_env("threads past the bound", RUN, &[("MUSICREC__THREADS", "2000")], refused(&["`threads`", "2000"])),
        with_env(
            "unknown embedded scale",
            &["run", "--artifacts", "{art}"],
            &[("MUSICREC__DATA__DEFAULT_SCALE", "huge")],
            refused(&["data.default_scale", "huge"]),
        ),
        with_env(
            "a split date that is no date",
            RUN,
            &[("MUSICREC__PREPROCESS__TRAIN_END", "soon")],
            refused(&["preprocess.train_end", "soon"]),
        ),
        with_env(
            "an address without a port",
            EFFECTIVE,
            &[("MUSICREC__SERVICE__ADDR", "localhost")],
            refused(&["service.addr", "localhost"]),
        ),
        with_env(
            "a Redis URL of another scheme",
            EFFECTIVE,
            &[("MUSICREC__SERVICE__REDIS_URL", "http://x")],
            refused(&["service.redis_url", "redis://"]),
        ),
        with_env(
            "a local event log without a directory",
            EFFECTIVE,
            &[("MUSICREC__SERVICE__EVENT_LOG__STORE", "local")],
            refused(&["service.event_log.dir"]),
        ),
        with_env(
            "an unknown log format",
            EFFECTIVE,
            &[("MUSICREC__LOG__FORMAT", "xml")],
            refused(&["log.format", "xml"]),
        ),
        with_env(
            "evaluation K of zero",
            EFFECTIVE,
            &[("MUSICREC__EVALUATION__K", "[10, 0]")],
            refused(&["evaluation.k[1]"]),
        ),
        with_env(
            "a similar source without similar items",
            EFFECTIVE,
            &[("MUSICREC__SERVICE__SIMILAR_SOURCES", "[item2item]")],
            refused(&["service.similar_sources[0]", "item2item"]),
        ),
        // Variables: named with their key; typed by the key.
        with_env(
            "a misspelt key",
            EFFECTIVE,
            &[("MUSICREC__ALS__FACTRS", "3")],
            refused(&["MUSICREC__ALS__FACTRS", "als.factrs", "unknown key"]),
        ),
        with_env(
            "a key under a value",
            EFFECTIVE,
            &[("MUSICREC__SEED__X", "3")],
            refused(&["MUSICREC__SEED__X", "seed.x"]),
        ),
        with_env(
            "a word for a number",
            EFFECTIVE,
            &[("MUSICREC__ALS__FACTORS", "many")],
            refused(&["MUSICREC__ALS__FACTORS", "`als.factors`", "`many` is not a number"]),
        ),
        with_env(
            "a list for a number",
            EFFECTIVE,
            &[("MUSICREC__BPR__ITERATIONS", "[3]")],
            refused(&["MUSICREC__BPR__ITERATIONS", "`bpr.iterations`", "a number"]),
        ),
        with_env(
            "a word for a boolean",
            EFFECTIVE,
            &[("MUSICREC__SERVICE__FOLD_IN", "maybe")],
            refused(&["MUSICREC__SERVICE__FOLD_IN", "`service.fold_in`", "true or false"]),
        ),
        with_env(
            "commas for a list",
            EFFECTIVE,
            &[("MUSICREC__EVALUATION__K", "5,10")],
            refused(&["MUSICREC__EVALUATION__K", "`evaluation.k`", "a list"]),
        ),
        with_env(
            "a number for a section",
            EFFECTIVE,
            &[("MUSICREC__SERVICE__RATE_LIMITS", "7")],
            refused(&["MUSICREC__SERVICE__RATE_LIMITS", "a section"]),
        ),
        with_env("a negative seed", EFFECTIVE, &[("MUSICREC__SEED", "-1")], refused(&["`seed`", "MUSICREC__SEED"])),
        with_env(
            "max_k out of range, from a variable",
            EFFECTIVE,
            &[("MUSICREC__SERVICE__MAX_K", "0")],
            refused(&["`service.max_k`", "MUSICREC__SERVICE__MAX_K"]),
        ),
        with_env(
            "a key prefix ending in a colon is a string",
            EFFECTIVE,
            &[("MUSICREC__SERVICE__REDIS_KEY_PREFIX", "reltest:")],
            passes(&["redis_key_prefix: \"reltest:\""]),
        ),
        with_env(
            "`~` for a data path is a path",
            EFFECTIVE,
            &[("MUSICREC__DATA__PATH", "~")],
            passes(&["path: \"~\""]),
        ),
        with_env(
            "a token of `~` is too short, not disabled",
            EFFECTIVE,
            &[("MUSICREC__SERVICE__ADMIN_TOKEN", "~")],
            refused(&["service.admin_token", "at least 16", "MUSICREC__SERVICE__ADMIN_TOKEN"]),
        ),
        with_env(
            "a token with ` #` is kept whole (masked)",
            EFFECTIVE,
            &[("MUSICREC__SERVICE__ADMIN_TOKEN", "abcdefghijklmnop #suffix")],
            passes(&["admin_token: <masked>"]),
        ),
        with_env(
            "an empty value unsets an optional key",
            EFFECTIVE,
            &[("MUSICREC__DATA__EXTRA_EVENTS", "")],
            passes(&["extra_events: null"]),
        ),
        with_env(
            "blank extra events",
            EFFECTIVE,
            &[("MUSICREC__DATA__EXTRA_EVENTS", "  ")],
            refused(&["data.extra_events", "must not be empty"]),
        ),
        // The environment is the user's: bytes that are not UTF-8.
        Case {
            bytes_env: Some(("MUSICREC__SEED", b"\xff")),
            ..case("one of ours not UTF-8", EFFECTIVE, refused(&["MUSICREC__SEED", "UTF-8"]))
        },
        Case {
            bytes_env: Some(("UNRELATED", b"\xff")),
            ..case("an unrelated variable not UTF-8: run", RUN, passes(&["results:"]))
        },
        Case {
            bytes_env: Some(("MLFLOW_TRACKING_URI", b"http://\xff")),
            ..case("MLFLOW_TRACKING_URI not UTF-8", RUN, refused(&["MLFLOW_TRACKING_URI", "UTF-8"]))
        },
        Case { bytes_env: Some(("RUST_LOG", b"\xff")), ..case("RUST_LOG not UTF-8", EFFECTIVE, passes(&["threads:"])) },
        Case { bytes_env: Some(("NO_COLOR", b"\xff")), ..case("NO_COLOR not UTF-8", EFFECTIVE, passes(&["threads:"])) },
        Case {
            bytes_env: Some(("UNRELATED", b"\xff")),
            ..case("an unrelated variable not UTF-8: evaluate", EVALUATE_SHARED, passes(&["ndcg@10"]))
        },
        Case {
            bytes_env: Some(("UNRELATED", b"\xff")),
            ..case(
                "an unrelated variable not UTF-8: recommend",
                &["recommend", "--artifacts", "{shared}", "--user", "{user}"],
                passes(&["recommendations"]),
            )
        },
        // Files.
        case(
            "a config file that does not exist",
            &["config", "--effective", "--config", "{tmp}/none.yaml"],
            refused(&["config file", "none.yaml"]),
        ),
        after(
            "a config file that is not YAML",
            config_file("yaml"),
            WITH_FILE,
            refused(&["config.yaml", "not valid YAML"]),
        ),
        after("a config file holding a list", config_file("list"), WITH_FILE, refused(&["config.yaml", "mapping"])),
        after(
            "a misspelt key in a file",
            config_file("unknown"),
            WITH_FILE,
            refused(&["config.yaml", "als.factorz", "unknown key"]),
        ),
        after("a word for a number in a file", config_file("type"), WITH_FILE, refused(&["bpr.learning_rate"])),
        after(
            "a value for a section in a file",
            config_file("section"),
            WITH_FILE,
            refused(&["`als`", "expected a section"]),
        ),
        after("max_k out of range in a file", config_file("range"), WITH_FILE, refused(&["service.max_k", "5000"])),
        after("an empty config file is the defaults", config_file("empty"), WITH_FILE, passes(&["threads:"])),
        case(
            "the config file is a directory",
            &["config", "--effective", "--config", "{tmp}"],
            refused(&["config file"]),
        ),
    ]
}

#[test]
fn config_faults() {
    run_cases("config", &cases());
}

#[test]
fn config_prints_every_section_documented() {
    let out = crate::common::musicrec(&["config"], &[]);
    assert!(out.status.success());
    let text = crate::common::stdout(&out);
    for key in [
        "threads:",
        "seed:",
        "evaluation:",
        "k: [5, 10, 20]",
        "train_end: 2022-12-16",
        "target_end: 2022-12-23",
        "als:",
        "bpr:",
        "item2item:",
        "top_items:",
        "ranking:",
        "negatives_per_user: 5",
    ] {
        assert!(text.contains(key), "missing {key}");
    }
}
