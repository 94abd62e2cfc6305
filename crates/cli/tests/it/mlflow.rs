//! Tracking to the real MLflow server of `scripts/services.sh` (`MLFLOW_TRACKING_URI`): a full
//! `tiny` run read back through the REST API (every stage's run with its params, metrics, loss
//! history and downloadable artifacts), artifacts straight to S3 for an `s3://` experiment,
//! a server that goes away mid-run, and a killed run whose MLflow runs the next run ends.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use musicrec_tracking::mlflow_key;
use serde_json::{Value, json};

use crate::common::mlflow::*;
use crate::common::*;

const ENV: [(&str, &str); 6] = [
    ("MUSICREC__ALS__FACTORS", "8"),
    ("MUSICREC__ALS__ITERATIONS", "3"),
    ("MUSICREC__ALS__REPORT_LOSS", "true"),
    ("MUSICREC__BPR__FACTORS", "8"),
    ("MUSICREC__BPR__ITERATIONS", "4"),
    ("MUSICREC__BPR__REPORT_LOSS", "true"),
];

fn local_record(art: &Path, pipeline_run: &str, stage: &str) -> Value {
    json_file(&art.join("runs").join(format!("{pipeline_run}-{stage}.json")))
}

/// The pipeline run id `musicrec run` printed ("run <id> on <data>").
fn pipeline_run_id(out: &std::process::Output) -> String {
    let text = stdout(out);
    let line = text.lines().find(|l| l.starts_with("run ")).unwrap_or_else(|| panic!("no run line in\n{text}"));
    line.split_whitespace().nth(1).unwrap().to_string()
}

#[test]
#[ignore = "needs scripts/services.sh start (run by .ci/run)"]
fn a_full_tiny_run_is_in_mlflow_with_params_metrics_losses_and_artifacts() {
    let rest = Rest::new();
    let experiment = unique("full");
    let uri = server();
    let tiny = TinyRun::generated(11)
        .config(&ENV)
        .config(&[("MLFLOW_TRACKING_URI", uri.as_str()), ("MUSICREC__TRACKING__EXPERIMENT", experiment.as_str())])
        .build();
    let (art, out) = (&tiny.art, tiny.output());
    assert!(!stderr(out).contains("not sent"), "{}", stderr(out));
    let pipeline_run = pipeline_run_id(out);

    let experiment_id = rest.experiment_id(&experiment);
    let (children, parents) = rest.runs(&experiment_id);
    assert_eq!(parents.len(), 1, "one MLflow run per pipeline run");
    let parent = &parents[0];
    assert!(stdout(out).contains(&format!("mlflow: {uri}/#/experiments/{experiment_id}/runs/{}", run_id(parent))));
    assert_eq!(parent["info"]["status"], "FINISHED");
    assert_eq!(tag(parent, "pipeline_run_id").as_deref(), Some(pipeline_run.as_str()));
    assert_eq!(pairs(parent, "params")["als.factors"], "8", "the pipeline's run holds the whole configuration");
    assert_eq!(rest.artifacts(&run_id(parent)), ["config.yaml"]);
    let config = String::from_utf8(rest.download(&run_id(parent), "config.yaml")).unwrap();
    assert!(config.contains("factors: 8") && config.contains("tracking:"), "{config}");

    let stages =
        ["als", "bpr", "eda", "features", "item2item", "matrices", "preprocess", "ranking", "report", "top_items"];
    assert_eq!(children.keys().map(String::as_str).collect::<Vec<_>>(), stages);
    for (stage, run) in &children {
        let id = run_id(run);
        let record = local_record(art, &pipeline_run, stage);
        assert_eq!(record["mlflow"]["run_id"], id.as_str(), "{stage}: the local record links its MLflow run");
        assert_eq!(run["info"]["status"], "FINISHED", "{stage}");
        assert_eq!(tag(run, "mlflow.parentRunId"), Some(run_id(parent)), "{stage}");
        for key in ["git_commit", "data_fingerprint", "pipeline_run_id", "config_fingerprint"] {
            assert_eq!(tag(run, key).as_deref(), record["tags"][key].as_str(), "{stage}: tag {key}");
        }

        let params = pairs(run, "params");
        let local: &serde_json::Map<String, Value> = record["params"].as_object().unwrap();
        assert!(!local.is_empty(), "{stage}");
        assert_eq!(params.len(), local.len(), "{stage}: {params:?}");
        for (name, value) in local {
            assert_eq!(params.get(&mlflow_key(name)), Some(value), "{stage}: param {name}");
        }

        let metrics = pairs(run, "metrics");
        for (name, value) in record["metrics"].as_object().unwrap() {
            let sent = metrics.get(&mlflow_key(name)).unwrap_or_else(|| panic!("{stage}: metric {name} missing"));
            assert!((sent.as_f64().unwrap() - value.as_f64().unwrap()).abs() <= 1e-12, "{stage}: {name}");
        }
        if ["als", "bpr", "item2item", "top_items", "ranking"].contains(&stage.as_str()) {
            assert!(metrics.contains_key("test.ndcg_at_10"), "{stage}: {metrics:?}");
        }

        // Every listed artifact downloads as the stage's published file.
        let files = rest.artifacts(&id);
        assert!(files.contains(&"manifest.json".to_string()), "{stage}: {files:?}");
        for file in &files {
            let local = std::fs::read(stage_dir(art, stage).join(file)).unwrap();
            assert_eq!(rest.download(&id, file), local, "{stage}/{file}");
        }
        let expected: &[&str] = match stage.as_str() {
            "eda" => &["report.md", "stats.json", "users.png"],
            "report" => &["report.md", "metrics.json", "ndcg_test.png"],
            "ranking" => &["feature_importances.json", "metrics.json"],
            "als" | "bpr" | "item2item" | "top_items" => &["metrics.json"],
            _ => &[],
        };
        for file in expected {
            assert!(files.contains(&file.to_string()), "{stage}: {file} not in {files:?}");
        }
        assert!(!files.iter().any(|f| f.ends_with(".parquet") || f.ends_with(".bin")), "{stage}: {files:?}");
    }

    // Loss histories keep their steps.
    for (stage, iterations) in [("als", 3), ("bpr", 4)] {
        let history = rest.get(
            "api/2.0/mlflow/metrics/get-history",
            &[("run_id", &run_id(&children[stage])), ("metric_key", "loss")],
        );
        let mut points: Vec<(i64, f64)> = history["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["step"].as_i64().unwrap_or(0), m["value"].as_f64().unwrap()))
            .collect();
        points.sort_by_key(|p| p.0);
        let local = local_record(art, &pipeline_run, stage)["metric_history"]["loss"].clone();
        let local: Vec<f64> = local.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(points.iter().map(|p| p.0).collect::<Vec<_>>(), (0..iterations).collect::<Vec<_>>(), "{stage}");
        assert_eq!(points.iter().map(|p| p.1).collect::<Vec<_>>(), local, "{stage}");
    }
}

#[test]
#[ignore = "needs scripts/services.sh start (run by .ci/run)"]
fn artifacts_go_straight_to_s3_for_an_s3_experiment() {
    let rest = Rest::new();
    let bucket = std::env::var("MUSICREC_MLFLOW_BUCKET").unwrap_or_else(|_| "mlflow".into());
    for var in ["AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(std::env::var(var).is_ok(), "{var} is not set: eval \"$(scripts/services.sh env)\"");
    }
    let experiment = unique("s3");
    let location = format!("s3://{bucket}/{experiment}");
    let created =
        rest.post("api/2.0/mlflow/experiments/create", &json!({"name": experiment, "artifact_location": location}));
    let experiment_id = created["experiment_id"].as_str().unwrap().to_string();

    let uri = server();
    let tiny = TinyRun::generated(12)
        .stages("preprocess,eda")
        .config(&ENV)
        .config(&[("MLFLOW_TRACKING_URI", uri.as_str()), ("MUSICREC__TRACKING__EXPERIMENT", experiment.as_str())])
        .build();
    assert!(!stderr(tiny.output()).contains("not sent"), "{}", stderr(tiny.output()));

    let (children, _) = rest.runs(&experiment_id);
    let eda = &children["eda"];
    let root = eda["info"]["artifact_uri"].as_str().unwrap();
    assert!(root.starts_with(&format!("{location}/")), "{root}");
    let files = rest.artifacts(&run_id(eda));
    assert!(files.contains(&"report.md".to_string()) && files.iter().any(|f| f.ends_with(".png")), "{files:?}");
    assert_eq!(
        rest.download(&run_id(eda), "report.md"),
        std::fs::read(stage_dir(&tiny.art, "eda").join("report.md")).unwrap()
    );
}

/// Forwards TCP connections to `target` until the client has sent `trigger` and the answer to
/// that request has gone back; then it closes every connection and stops listening, as a
/// server that dies would.
struct Forwarder {
    port: u16,
}

impl Forwarder {
    fn start(target: SocketAddr, trigger: &'static [u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        std::thread::spawn(move || {
            while !down.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let upstream = TcpStream::connect(target).unwrap();
                open.lock().unwrap().extend([client.try_clone().unwrap(), upstream.try_clone().unwrap()]);
                // Only the answer on the connection that carried the trigger ends the server.
                let armed = Arc::new(AtomicBool::new(false));
                let (armed_up, armed_down, down2, open2) = (armed.clone(), armed, down.clone(), open.clone());
                let (mut from_client, mut to_upstream) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                std::thread::spawn(move || {
                    let mut seen: Vec<u8> = Vec::new();
                    let mut buf = [0u8; 65536];
                    while let Ok(n) = from_client.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        // Armed before the trigger goes on, so that every byte of its answer
                        // is read after.
                        seen.extend_from_slice(&buf[..n]);
                        if seen.windows(trigger.len()).any(|w| w == trigger) {
                            armed_up.store(true, Ordering::SeqCst);
                        }
                        let keep = seen.len().saturating_sub(trigger.len());
                        seen.drain(..keep);
                        if to_upstream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
                let (mut from_upstream, mut to_client) = (upstream, client);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    // The answer to the trigger, as far as it has been forwarded.
                    let mut answer: Vec<u8> = Vec::new();
                    while let Ok(n) = from_upstream.read(&mut buf) {
                        // Asked before these bytes go on: once they have, the client may send
                        // the trigger at once, and the end of the answer before it (failed CI
                        // of 577f1b5) would then be taken for the trigger's.
                        let of_the_trigger = armed_down.load(Ordering::SeqCst);
                        if n == 0 || to_client.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        if !of_the_trigger {
                            continue;
                        }
                        // It may come in several reads (headers, then body): the server dies
                        // once the whole of it has gone back, not before.
                        answer.extend_from_slice(&buf[..n]);
                        if http_answer_is_whole(&answer) {
                            down2.store(true, Ordering::SeqCst);
                            for stream in open2.lock().unwrap().drain(..) {
                                let _ = stream.shutdown(Shutdown::Both);
                            }
                            break;
                        }
                    }
                });
            }
        });
        Self { port }
    }
}

/// Whether `bytes` hold a whole HTTP/1.1 answer: headers and a body of its Content-Length, or
/// a chunked body up to its last chunk.
fn http_answer_is_whole(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let headers = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let body = &bytes[end + 4..];
    if headers.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    let length = headers
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    body.len() >= length
}

#[test]
#[ignore = "needs scripts/services.sh start (run by .ci/run)"]
fn a_server_that_dies_mid_run_loses_nothing_locally() {
    let rest = Rest::new();
    let target = server().trim_start_matches("http://").to_socket_addrs().unwrap().next().unwrap();
    // The first runs/update ends the first stage's MLflow run; then the server "dies".
    let forwarder = Forwarder::start(target, b"/api/2.0/mlflow/runs/update");
    let uri = format!("http://127.0.0.1:{}", forwarder.port);

    let experiment = unique("down");
    let stages = ["preprocess", "eda", "matrices", "features"];
    let tiny = TinyRun::generated(13)
        .stages(&stages.join(","))
        .config(&ENV)
        .config(&[("MLFLOW_TRACKING_URI", uri.as_str()), ("MUSICREC__TRACKING__EXPERIMENT", experiment.as_str())])
        .build();
    let (art, out) = (&tiny.art, tiny.output());
    let err = stderr(out);
    assert!(err.contains("MLflow unreachable: the rest of this run is recorded locally only"), "{err}");
    assert!(err.contains(&format!("warning: MLflow at {uri} did not get")), "{err}");
    for stage in &stages[1..] {
        assert!(err.contains(&format!("not sent: {stage}: run")), "{stage}: {err}");
    }
    assert!(err.contains("not sent: pipeline run: status"), "{err}");

    // Locally, every stage is complete.
    let pipeline_run = pipeline_run_id(out);
    for stage in stages {
        let record = local_record(art, &pipeline_run, stage);
        assert_eq!(record["status"], "finished", "{stage}");
        assert!(!record["metrics"].as_object().unwrap().is_empty(), "{stage}: {record}");
        assert_eq!(record["mlflow"].is_null(), stage != "preprocess", "{stage}: {record}");
    }

    // The server has what it got before it went away: the first stage, whole.
    let (children, parents) = rest.runs(&rest.experiment_id(&experiment));
    assert_eq!(children.keys().collect::<Vec<_>>(), ["preprocess"]);
    let preprocess = &children["preprocess"];
    assert_eq!(preprocess["info"]["status"], "FINISHED", "{err}");
    assert_eq!(
        pairs(preprocess, "metrics").len(),
        local_record(art, &pipeline_run, "preprocess")["metrics"].as_object().unwrap().len() + 1
    );
    assert_eq!(parents.len(), 1);
    assert_eq!(parents[0]["info"]["status"], "RUNNING", "the server was gone when the pipeline's run ended");
}

#[test]
#[ignore = "needs scripts/services.sh start (run by .ci/run)"]
fn a_killed_runs_mlflow_runs_end_killed_when_the_next_run_starts() {
    let rest = Rest::new();
    let experiment = unique("killed");
    let uri = server();
    let tiny = TinyRun::generated(12)
        .config(&ENV)
        .config(&[("MLFLOW_TRACKING_URI", uri.as_str()), ("MUSICREC__TRACKING__EXPERIMENT", experiment.as_str())])
        .prepare();
    // An ALS slow enough in a debug build to be killed while its MLflow run is open.
    let slow = [("MUSICREC__ALS__FACTORS", "64"), ("MUSICREC__ALS__ITERATIONS", "400")];
    let mut child = tiny.command(&[], &slow).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let killed = loop {
        assert!(std::time::Instant::now() < deadline, "the run's `als` never showed in MLflow");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(100));
        let Some(experiment_id) = rest.experiment_id_if_any(&experiment) else { continue };
        let (children, _) = rest.runs(&experiment_id);
        if let Some(als) = children.get("als") {
            break tag(als, "pipeline_run_id").unwrap();
        }
    };
    child.kill().unwrap(); // SIGKILL: nothing of the run ends its MLflow runs.
    child.wait().unwrap();
    let experiment_id = rest.experiment_id(&experiment);
    let statuses = |pipeline_run: &str| -> BTreeMap<String, String> {
        let answer = rest.post(
            "api/2.0/mlflow/runs/search",
            &json!({"experiment_ids": [experiment_id], "filter": format!("tags.pipeline_run_id = '{pipeline_run}'")}),
        );
        let runs = answer["runs"].as_array().cloned().unwrap_or_default();
        runs.iter()
            .map(|r| {
                (r["info"]["run_name"].as_str().unwrap().to_string(), r["info"]["status"].as_str().unwrap().into())
            })
            .collect()
    };
    let before = statuses(&killed);
    assert_eq!(before.get("als").map(String::as_str), Some("RUNNING"), "{before:?}");

    let out = tiny.pipeline(Some("preprocess"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = statuses(&killed);
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>(), "no run added or lost");
    for (name, status) in &after {
        let was = &before[name];
        let expected = if was == "RUNNING" { "KILLED" } else { was.as_str() };
        assert_eq!(status, expected, "{name}: was {was}");
    }
    assert_eq!(local_record(&tiny.art, &killed, "als")["status"], "abandoned");
}
