//! Run records on generated `tiny` data: every stage of every `musicrec run` is on record
//! (`runs list`, `runs show`, `runs compare`), a failed stage with its error, and a tracking
//! server that cannot be reached costs nothing but a warning.

use std::path::Path;

use serde_json::Value;

use crate::common::*;

/// Small models keep the debug-build test quick; ALS reports its loss so a history exists.
const ENV: [(&str, &str); 5] = [
    ("MUSICREC__ALS__FACTORS", "8"),
    ("MUSICREC__ALS__ITERATIONS", "3"),
    ("MUSICREC__ALS__REPORT_LOSS", "true"),
    ("MUSICREC__BPR__FACTORS", "8"),
    ("MUSICREC__BPR__ITERATIONS", "3"),
];

fn runs(args: &[&str], art: &Path) -> std::process::Output {
    let mut all = vec!["runs"];
    all.extend(args);
    all.extend(["--artifacts", art.to_str().unwrap()]);
    musicrec(&all, &[])
}

/// The listed rows as (id, stage, status, rest of the line).
fn listed(art: &Path) -> Vec<(String, String, String, String)> {
    listed_with(art, &[])
}

/// `listed` with flags of `runs list`.
fn listed_with(art: &Path, flags: &[&str]) -> Vec<(String, String, String, String)> {
    let mut args = vec!["list"];
    args.extend(flags);
    let out = runs(&args, art);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let mut lines = text.lines();
    assert!(lines.next().is_some_and(|h| h.starts_with("id") && h.contains("status")), "{text}");
    lines
        .map(|line| {
            let mut words = line.split_whitespace();
            let mut next = || words.next().unwrap_or_default().to_string();
            (next(), next(), next(), line.to_string())
        })
        .collect()
}

fn record(art: &Path, id: &str) -> Value {
    json_file(&art.join("runs").join(format!("{id}.json")))
}

#[test]
fn every_stage_is_recorded_listed_shown_and_compared() {
    let tiny = TinyRun::generated(3).config(&ENV).build();
    let (art, printed) = (&tiny.art, stdout(tiny.output()));
    assert!(printed.contains(&format!("run records: {}", art.join("runs/").display())), "{printed}");
    assert!(!printed.contains("mlflow:"), "no server configured, none named");

    let rows = listed(art);
    let stages: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(
        stages,
        ["preprocess", "eda", "matrices", "features", "als", "bpr", "item2item", "top_items", "ranking", "report"]
    );
    for (id, stage, status, line) in &rows {
        assert_eq!(status, "finished", "{line}");
        let model = ["als", "bpr", "item2item", "top_items", "ranking"].contains(&stage.as_str());
        assert_eq!(line.contains("test.ndcg@10"), model, "{line}");
        let r = record(art, id);
        assert_eq!((r["stage"].as_str(), r["status"].as_str()), (Some(stage.as_str()), Some("finished")));
        // Keys under the artifacts root: the stage in the version its run wrote.
        let manifest = format!("versions/{}/{stage}/manifest.json", r["pipeline_run_id"].as_str().unwrap());
        assert!(r["artifacts"].as_array().unwrap().iter().any(|a| a == &manifest), "{r}");
        let tags = &r["tags"];
        assert_eq!(tags["data_fingerprint"].as_str().map(str::len), Some(16), "{tags}");
        let commit = tags["git_commit"].as_str().unwrap();
        assert!(commit == "unknown" || commit.len() == 40, "{commit}");
    }
    let als = &rows[4].0;
    let pipeline_run = record(art, als)["pipeline_run_id"].as_str().unwrap().to_string();
    assert!(rows.iter().all(|r| record(art, &r.0)["pipeline_run_id"] == pipeline_run.as_str()));

    let out = runs(&["show", als], art);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown = stdout(&out);
    for needle in ["status    finished", "als.factors", "test.ndcg@10", "history loss (3 steps)", "data_fingerprint"] {
        assert!(shown.contains(needle), "{needle} missing in\n{shown}");
    }
    let factors_line = shown.lines().find(|l| l.trim_start().starts_with("als.factors")).unwrap();
    assert!(factors_line.trim_end().ends_with(" 8"), "{factors_line}");

    // A second run of one stage with other parameters, compared with the first.
    tiny.succeed(Some("als"), &[("MUSICREC__ALS__FACTORS", "16")]);
    let rows = listed(art);
    assert_eq!(rows.len(), 11);
    let (second, stage, status, _) = rows.last().unwrap();
    assert_eq!((stage.as_str(), status.as_str()), ("als", "finished"));
    assert_ne!(second, als);

    let out = runs(&["compare", als, second], art);
    assert!(out.status.success(), "{}", stderr(&out));
    let compared = stdout(&out);
    let line = |key: &str| {
        compared
            .lines()
            .find(|l| l.get(2..).is_some_and(|rest| rest.starts_with(key)))
            .unwrap_or_else(|| panic!("{key} missing in\n{compared}"))
    };
    let factors: Vec<&str> = line("als.factors ").split_whitespace().collect();
    assert_eq!(factors, ["*", "als.factors", "8", "16"], "{compared}");
    assert!(line("als.iterations ").starts_with(' '), "same value, no mark:\n{compared}");
    assert!(line("test.ndcg@10 ").starts_with('*'), "{compared}");
    assert!(compared.contains("1 params and"), "{compared}");

    // A third: any number of runs compare, as text or JSON.
    tiny.succeed(Some("als"), &[("MUSICREC__ALS__FACTORS", "4")]);
    let third = listed(art).last().unwrap().0.clone();
    let out = runs(&["compare", als, second, &third], art);
    assert!(out.status.success(), "{}", stderr(&out));
    let compared = stdout(&out);
    assert!(compared.contains(&format!("\nC  {third}  (finished")), "{compared}");
    let factors = compared.lines().find(|l| l.contains("als.factors ")).unwrap();
    assert_eq!(factors.split_whitespace().collect::<Vec<_>>(), ["*", "als.factors", "8", "16", "4"]);
    let out = runs(&["compare", als, second, &third, "--json"], art);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let ids: Vec<&str> = json["runs"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [als.as_str(), second.as_str(), third.as_str()]);
    assert_eq!(json["params"]["als.factors"], serde_json::json!({"values": ["8", "16", "4"], "differs": true}));
    assert_eq!(json["params"]["als.iterations"]["differs"], false);
    let ndcg = &json["metrics"]["test.ndcg@10"];
    let values: Vec<f64> = ndcg["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    assert_eq!(values[0], record(art, als)["metrics"]["test.ndcg@10"].as_f64().unwrap());
    assert_eq!(ndcg["change"][2].as_f64().unwrap(), values[2] - values[0]);

    // The listing filtered by stage and sorted by a metric or the time.
    let als_rows = listed_with(art, &["--stage", "als"]);
    assert_eq!(als_rows.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), [als, second, &third]);
    let by_ndcg = listed_with(art, &["--sort", "-ndcg@10"]);
    assert_eq!(by_ndcg.len(), 12);
    let ndcgs: Vec<Option<f64>> =
        by_ndcg.iter().map(|r| record(art, &r.0)["metrics"]["test.ndcg@10"].as_f64()).collect();
    let known = ndcgs.iter().take_while(|v| v.is_some()).count();
    assert_eq!(known, 7, "5 model stages and 2 reruns of als first: {ndcgs:?}");
    assert!(ndcgs[..known].is_sorted_by(|a, b| a >= b) && ndcgs[known..].iter().all(Option::is_none), "{ndcgs:?}");
    let slowest_als = listed_with(art, &["--stage", "als", "--sort", "-seconds"]);
    let seconds: Vec<f64> = slowest_als.iter().map(|r| record(art, &r.0)["duration_s"].as_f64().unwrap()).collect();
    assert!(seconds.len() == 3 && seconds.is_sorted_by(|a, b| a >= b), "{seconds:?}");

    // Flags that cannot be used are bad input, named.
    for (args, named) in [
        (vec!["list", "--stage", "alz"], "unknown stage `alz`"),
        (vec!["list", "--sort", "-mrr@7"], "--sort mrr@7: no listed run has metric `mrr@7`"),
        (vec!["compare", als.as_str()], "<IDS> <IDS>..."),
    ] {
        let out = runs(&args, art);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(named), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn unknown_ids_and_failed_stages_are_explained() {
    let tiny = TinyRun::generated(4).config(&ENV).prepare();
    let art = &tiny.art;

    let out = runs(&["list"], art);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("no runs recorded in"), "{}", stdout(&out));

    // `als` without its upstream stages fails; the record says so, with the error.
    let out = tiny.pipeline(Some("als"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stdout(&out).contains("run records:"), "where the records went is said on failure too");
    let rows = listed(art);
    assert_eq!(rows.len(), 1);
    let (id, stage, status, _) = &rows[0];
    assert_eq!((stage.as_str(), status.as_str()), ("als", "failed"));
    let out = runs(&["show", id], art);
    let shown = stdout(&out);
    assert!(shown.contains("status    failed") && shown.contains("error     stage `als` needs"), "{shown}");

    for args in [vec!["show", "no-such-run"], vec!["compare", id.as_str(), "no-such-run"]] {
        let out = runs(&args, art);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains("no-such-run") && err.contains("musicrec runs list --artifacts"), "{err}");
    }
}

/// A tracking server nobody listens on: the run finishes, every record is kept locally, and
/// the end of the run says what was not sent.
#[test]
fn a_tracking_server_that_is_down_costs_a_warning_not_the_run() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let uri = format!("http://127.0.0.1:{port}");
    let tiny = TinyRun::generated(5)
        .stages("preprocess,eda,matrices")
        .config(&ENV)
        .config(&[("MLFLOW_TRACKING_URI", &uri)])
        .build();
    let art = &tiny.art;
    let err = stderr(tiny.output());
    assert!(err.contains("MLflow unreachable"), "{err}");
    assert!(err.contains(&format!("warning: MLflow at {uri} did not get 4 item(s)")), "{err}");
    for stage in ["preprocess", "eda", "matrices"] {
        assert!(err.contains(&format!("not sent: {stage}: run not sent (server unreachable)")), "{err}");
    }
    let rows = listed(art);
    assert_eq!(
        rows.iter().map(|r| (r.1.as_str(), r.2.as_str())).collect::<Vec<_>>(),
        [("preprocess", "finished"), ("eda", "finished"), ("matrices", "finished")]
    );
    assert!(rows.iter().all(|r| record(art, &r.0)["mlflow"].is_null()));
}

/// A stand-in tracking server that accepts the experiment and runs but refuses every
/// log-batch (400) and artifact (500); it answers `musicrec` over plain HTTP/1.1.
fn refusing_server() -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let runs = runs.clone();
            // A thread per connection: artifact uploads arrive on several at once.
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut head = Vec::new();
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                        head.push(std::mem::take(&mut line));
                    }
                    let Some(request) = head.first() else { break };
                    let length = head
                        .iter()
                        .find_map(|h| {
                            h.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .map_or(0, |v| v.parse::<usize>().unwrap());
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let (status, answer) = if request.contains("experiments/get-by-name") {
                        ("200 OK", r#"{"experiment": {"experiment_id": "1", "lifecycle_stage": "active"}}"#.to_string())
                    } else if request.contains("runs/create") {
                        let run = runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        let info = format!(
                            r#"{{"run_id": "r{run}", "artifact_uri": "mlflow-artifacts:/1/r{run}/artifacts"}}"#
                        );
                        ("200 OK", format!(r#"{{"run": {{"info": {info}}}}}"#))
                    } else if request.contains("runs/log-batch") {
                        ("400 Bad Request", r#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "refused"}"#.into())
                    } else if request.starts_with("PUT") {
                        ("500 Internal Server Error", "storage is full".into())
                    } else {
                        ("200 OK", "{}".into())
                    };
                    let reply = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{answer}", answer.len());
                    if writer.write_all(reply.as_bytes()).is_err() {
                        break;
                    }
                }
            });
        }
    });
    uri
}

/// A server that answers with errors: each refused item is a warning and a line of the
/// summary, the others still go, and the local records are complete.
#[test]
fn a_tracking_server_that_refuses_items_costs_warnings_not_the_run() {
    let uri = refusing_server();
    let tiny =
        TinyRun::generated(6).stages("preprocess,eda").config(&ENV).config(&[("MLFLOW_TRACKING_URI", &uri)]).build();
    let art = &tiny.art;
    let err = stderr(tiny.output());
    assert!(!err.contains("unreachable"), "errors answered are not a dead server: {err}");
    assert!(err.contains("pipeline run: params: MLflow POST api/2.0/mlflow/runs/log-batch: HTTP 400"), "{err}");
    assert!(err.contains("pipeline run: artifact config.yaml: MLflow PUT artifact config.yaml: HTTP 500"), "{err}");
    assert!(err.contains("not sent: eda: 2 params,") && err.contains("INVALID_PARAMETER_VALUE: refused"), "{err}");
    assert!(err.contains("not sent: eda: artifact report.md") && err.contains("storage is full"), "{err}");
    let printed = stdout(tiny.output());
    assert!(printed.contains(&format!("mlflow: {uri}/#/experiments/1/runs/r1")), "{printed}");
    let rows = listed(art);
    assert_eq!(rows.len(), 2);
    for (i, (id, _, status, _)) in rows.iter().enumerate() {
        assert_eq!(status, "finished");
        assert_eq!(record(art, id)["mlflow"]["run_id"], format!("r{}", i + 2), "stage runs were created");
    }
}

/// One damaged record does not hide the others: it is skipped with a warning naming it.
#[test]
fn an_unreadable_record_is_skipped_with_a_warning_naming_it() {
    let tiny = TinyRun::hand_made().stages("preprocess,eda").build();
    std::fs::write(tiny.art.join("runs").join("damaged.json"), b"{ not json").unwrap();
    let out = runs(&["list"], &tiny.art);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("damaged.json"), "{}", stderr(&out));
    let stages: Vec<String> = listed(&tiny.art).into_iter().map(|row| row.1).collect();
    assert_eq!(stages, ["preprocess", "eda"]);
}
