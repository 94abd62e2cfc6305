//! A small client of the MLflow tracking server's REST API (2.0 endpoints, as served by
//! MLflow 3.x): experiments, runs, batched params/metrics/tags, artifacts through the
//! server's proxy (`mlflow-artifacts:`) or straight to S3 (`s3://`).
//!
//! What the server accepts, measured on MLflow 3.17: ids are JSON strings; every metric needs a
//! timestamp; one log-batch holds at most 1000 metrics, 100 params and 100 tags (1000 items
//! in all); a param logged again with another value is refused; empty answers are `{}`; the
//! Host header must be localhost or 127.0.0.1 for a local server; metric and param names may
//! only contain alphanumerics and `_ - . / space` (see `mlflow_key`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use musicrec_data::store::{self, Bucket};
use reqwest::{Method, Url};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::TrackingError;

/// Limits of one `runs/log-batch` request.
pub const MAX_BATCH_METRICS: usize = 1000;
pub const MAX_BATCH_PARAMS: usize = 100;
pub const MAX_BATCH_TAGS: usize = 100;
pub const MAX_BATCH_ITEMS: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct MlflowSettings {
    /// The tracking server, e.g. `http://127.0.0.1:5000`.
    pub uri: String,
    pub experiment: String,
    /// Longest wait for one request (connecting included).
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl KeyValue {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self { key: key.into(), value: value.into() }
    }
}

/// One `runs/log-batch` body's worth of items.
#[derive(Debug, Default, PartialEq)]
pub struct Batch {
    pub metrics: Vec<Metric>,
    pub params: Vec<KeyValue>,
    pub tags: Vec<KeyValue>,
}

/// Splits items into as few batches as the server's limits allow, keeping their order.
pub fn batches(metrics: Vec<Metric>, params: Vec<KeyValue>, tags: Vec<KeyValue>) -> Vec<Batch> {
    let (mut metrics, mut params, mut tags) = (metrics.into_iter(), params.into_iter(), tags.into_iter());
    let mut out = Vec::new();
    loop {
        let params: Vec<_> = params.by_ref().take(MAX_BATCH_PARAMS).collect();
        let tags: Vec<_> = tags.by_ref().take(MAX_BATCH_TAGS).collect();
        let room = MAX_BATCH_METRICS.min(MAX_BATCH_ITEMS - params.len() - tags.len());
        let metrics: Vec<_> = metrics.by_ref().take(room).collect();
        if metrics.is_empty() && params.is_empty() && tags.is_empty() {
            return out;
        }
        out.push(Batch { metrics, params, tags });
    }
}

/// A metric or param name as MLflow accepts it: `@` becomes `_at_` (`ndcg@10` → `ndcg_at_10`),
/// any other character outside alphanumerics and `_ - . / space` becomes `_`.
pub fn mlflow_key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '@' => out.push_str("_at_"),
            c if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' ') => out.push(c),
            _ => out.push('_'),
        }
    }
    out
}

/// A run as the server created it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    pub artifact_uri: String,
}

pub struct Mlflow {
    base: Url,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    calls: AtomicU64,
}

/// Below every common server's keep-alive timeout (see `Mlflow::new`).
const IDLE_CONNECTION_REUSE: Duration = Duration::from_secs(1);

impl Mlflow {
    pub fn new(uri: &str, timeout: Duration) -> Result<Self, TrackingError> {
        let unusable = |reason: String| TrackingError::Unreachable { call: format!("server {uri}"), reason };
        let base = Url::parse(uri.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| unusable("not an http(s):// URL".into()))?;
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Servers close idle keep-alive connections after a few seconds (gunicorn 2 s,
            // uvicorn 5 s), and this client's runtime only runs during a call, so it cannot see
            // such a close between two stages' calls: reusing that connection then fails the
            // request unsent ("SendRequest"). A connection idle this long is not reused.
            .pool_idle_timeout(IDLE_CONNECTION_REUSE)
            .build()
            .map_err(|e| unusable(format!("HTTP client: {e}")))?;
        // One thread is enough: the calls of a run are sequential, except artifact uploads,
        // which overlap on this runtime.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unusable(format!("starting the I/O runtime: {e}")))?;
        Ok(Self { base, http, runtime, calls: AtomicU64::new(0) })
    }

    /// HTTP requests sent so far (answered or not).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The server's page of a run.
    pub fn run_url(&self, run: &RunInfo) -> String {
        format!("{}/#/experiments/{}/runs/{}", self.base.as_str().trim_end_matches('/'), run.experiment_id, run.run_id)
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}/{}", self.base.path().trim_end_matches('/'), path.trim_start_matches('/')));
        url
    }

    /// One REST call; `Ok` holds the answer's JSON (`{}` when it had nothing to say).
    fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, TrackingError> {
        let mut url = self.url(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let call = format!("{method} {path}");
        self.calls.fetch_add(1, Ordering::Relaxed);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.runtime.block_on(async {
            let response = request.send().await.map_err(|e| unreachable(&call, &e))?;
            let status = response.status();
            let text = response.text().await.map_err(|e| unreachable(&call, &e))?;
            if !status.is_success() {
                return Err(refused(&call, status.as_u16(), &text));
            }
            if text.trim().is_empty() {
                return Ok(json!({}));
            }
            serde_json::from_str(&text).map_err(|e| TrackingError::Refused {
                call: call.clone(),
                status: status.as_u16(),
                message: format!("answer is not JSON ({e}): {}", clip(&text)),
            })
        })
    }

    /// The id of the experiment called `name`, created if missing.
    pub fn experiment(&self, name: &str) -> Result<String, TrackingError> {
        match self.call(Method::GET, "api/2.0/mlflow/experiments/get-by-name", &[("experiment_name", name)], None) {
            Ok(answer) => {
                let experiment = &answer["experiment"];
                if experiment["lifecycle_stage"] == "deleted" {
                    return Err(TrackingError::Refused {
                        call: "experiments/get-by-name".into(),
                        status: 200,
                        message: format!(
                            "experiment `{name}` is deleted; restore it in MLflow or set tracking.experiment"
                        ),
                    });
                }
                Ok(id_of(experiment, "experiment_id"))
            }
            Err(TrackingError::Refused { status: 404, .. }) => match self.create_experiment(name) {
                Ok(id) => {
                    tracing::info!(experiment = name, id, "created the MLflow experiment");
                    Ok(id)
                }
                // Another process created it between our two calls.
                Err(TrackingError::Refused { message, .. }) if message.contains("RESOURCE_ALREADY_EXISTS") => {
                    self.experiment(name)
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// Creates an experiment under the server's default artifact root.
    fn create_experiment(&self, name: &str) -> Result<String, TrackingError> {
        let answer =
            self.call(Method::POST, "api/2.0/mlflow/experiments/create", &[], Some(&json!({ "name": name })))?;
        Ok(id_of(&answer, "experiment_id"))
    }

    pub fn create_run(
        &self,
        experiment_id: &str,
        run_name: &str,
        start_ms: i64,
        tags: &[KeyValue],
    ) -> Result<RunInfo, TrackingError> {
        let body = json!({
            "experiment_id": experiment_id,
            "run_name": run_name,
            "start_time": start_ms,
            "tags": tags,
        });
        let answer = self.call(Method::POST, "api/2.0/mlflow/runs/create", &[], Some(&body))?;
        let info = &answer["run"]["info"];
        Ok(RunInfo {
            run_id: id_of(info, "run_id"),
            experiment_id: experiment_id.to_string(),
            artifact_uri: text_of(info, "artifact_uri"),
        })
    }

    /// Logs everything in as few requests as the limits allow; returns how many it sent.
    pub fn log(
        &self,
        run_id: &str,
        metrics: Vec<Metric>,
        params: Vec<KeyValue>,
        tags: Vec<KeyValue>,
    ) -> Result<usize, TrackingError> {
        let batches = batches(metrics, params, tags);
        for batch in &batches {
            let body =
                json!({ "run_id": run_id, "metrics": batch.metrics, "params": batch.params, "tags": batch.tags });
            self.call(Method::POST, "api/2.0/mlflow/runs/log-batch", &[], Some(&body))?;
        }
        Ok(batches.len())
    }

    /// Sets the run's final status (`FINISHED`, `FAILED`) and end time.
    pub fn end_run(&self, run_id: &str, status: &str, end_ms: i64) -> Result<(), TrackingError> {
        let body = json!({ "run_id": run_id, "status": status, "end_time": end_ms });
        self.call(Method::POST, "api/2.0/mlflow/runs/update", &[], Some(&body)).map(drop)
    }

    /// The runs of `experiment_id` still `RUNNING` that carry the tag `pipeline_run_id` =
    /// `pipeline_run` (the pipeline's run and its stages' runs).
    pub fn running_runs(&self, experiment_id: &str, pipeline_run: &str) -> Result<Vec<String>, TrackingError> {
        // Run ids are ours (timestamp-pid); a quote would end MLflow's filter string early.
        let quoted = pipeline_run.replace('\'', "");
        let body = json!({
            "experiment_ids": [experiment_id],
            "filter": format!("tags.pipeline_run_id = '{quoted}' and attributes.status = 'RUNNING'"),
            "max_results": 1000,
        });
        let answer = self.call(Method::POST, "api/2.0/mlflow/runs/search", &[], Some(&body))?;
        let runs = answer["runs"].as_array().map(Vec::as_slice).unwrap_or_default();
        Ok(runs.iter().map(|run| id_of(&run["info"], "run_id")).collect())
    }

    /// Uploads files (name, bytes) into the run's artifact root, all at once; the result of
    /// each, in order.
    pub fn upload(&self, run: &RunInfo, files: Vec<(String, Vec<u8>)>) -> Vec<(String, Result<(), TrackingError>)> {
        let names: Vec<String> = files.iter().map(|(name, _)| name.clone()).collect();
        let store = ArtifactRoot::parse(&run.artifact_uri).and_then(|root| match root {
            ArtifactRoot::Proxy(path) => Ok(Uploader::Proxy(path)),
            // The data crate's S3 client: one place that reads the AWS environment and keeps
            // credentials out of its errors.
            ArtifactRoot::S3 { bucket, prefix } => {
                Bucket::from_env(&bucket).map(|bucket| Uploader::S3 { bucket, prefix }).map_err(|e| e.to_string())
            }
        });
        let store = match store {
            Ok(store) => store,
            Err(reason) => {
                let error = |_| Err(TrackingError::Artifact { uri: run.artifact_uri.clone(), reason: reason.clone() });
                return names.iter().map(|name| (name.clone(), error(name))).collect();
            }
        };
        let results = match &store {
            // Report, plots and JSON files: small, so one after the other.
            Uploader::S3 { bucket, prefix } => files
                .into_iter()
                .map(|(name, bytes)| {
                    self.calls.fetch_add(1, Ordering::Relaxed);
                    let key = store::join_key(prefix, &name);
                    bucket
                        .put(&key, bytes)
                        .map(drop)
                        .map_err(|e| TrackingError::Artifact { uri: bucket.url(&key), reason: e.to_string() })
                })
                .collect(),
            Uploader::Proxy(path) => self.runtime.block_on(async {
                let mut tasks = tokio::task::JoinSet::new();
                for (i, (name, bytes)) in files.into_iter().enumerate() {
                    self.calls.fetch_add(1, Ordering::Relaxed);
                    let call = format!("PUT artifact {name}");
                    let request = self
                        .http
                        .put(self.url(&format!("api/2.0/mlflow-artifacts/artifacts/{path}/{name}")))
                        .body(bytes);
                    tasks.spawn(async move {
                        let result = match request.send().await {
                            Err(e) => Err(unreachable(&call, &e)),
                            Ok(r) => {
                                let status = r.status();
                                // Reading the answer to its end keeps the connection reusable.
                                match r.text().await {
                                    Err(e) => Err(unreachable(&call, &e)),
                                    Ok(_) if status.is_success() => Ok(()),
                                    Ok(text) => Err(refused(&call, status.as_u16(), &text)),
                                }
                            }
                        };
                        (i, result)
                    });
                }
                collect_in_order(tasks, names.len()).await
            }),
        };
        names.into_iter().zip(results).collect()
    }
}

enum Uploader {
    Proxy(String),
    S3 { bucket: Bucket, prefix: String },
}

async fn collect_in_order(
    mut tasks: tokio::task::JoinSet<(usize, Result<(), TrackingError>)>,
    n: usize,
) -> Vec<Result<(), TrackingError>> {
    let mut results: Vec<Option<Result<(), TrackingError>>> = (0..n).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined.expect("upload tasks do not panic");
        results[i] = Some(result);
    }
    results.into_iter().map(|r| r.expect("every upload reports")).collect()
}

/// Where a run's artifacts go.
#[derive(Debug, PartialEq)]
enum ArtifactRoot {
    /// Through the tracking server (`mlflow-artifacts:/<path>`): the path under its proxy.
    Proxy(String),
    S3 {
        bucket: String,
        prefix: String,
    },
}

impl ArtifactRoot {
    /// The root of an artifact URI, or why this client cannot upload there.
    fn parse(uri: &str) -> Result<Self, String> {
        if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
            // `mlflow-artifacts://host:port/path` names the server; ours is the one we talk to.
            let path = match rest.strip_prefix("//") {
                Some(authority_and_path) => authority_and_path.split_once('/').map_or("", |(_, p)| p),
                None => rest,
            };
            return Ok(Self::Proxy(path.trim_matches('/').to_string()));
        }
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !bucket.is_empty() {
                return Ok(Self::S3 { bucket: bucket.to_string(), prefix: prefix.trim_matches('/').to_string() });
            }
        }
        Err("this client uploads to `mlflow-artifacts:` (a server started with artifact serving) or `s3://` \
             artifact roots only"
            .into())
    }
}

fn unreachable(call: &str, e: &reqwest::Error) -> TrackingError {
    let reason = if e.is_timeout() {
        "no answer in time (tracking.timeout_ms)".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    };
    // reqwest's source chain holds the reason: the OS's (connection refused, ...) or HTTP's
    // (connection closed before the answer, ...), a few levels down.
    let detail: String =
        std::iter::successors(std::error::Error::source(e), |s| s.source()).map(|s| format!(": {s}")).collect();
    TrackingError::Unreachable { call: call.to_string(), reason: format!("{reason}{detail}") }
}

fn refused(call: &str, status: u16, body: &str) -> TrackingError {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| Some(format!("{}: {}", v.get("error_code")?.as_str()?, v.get("message")?.as_str()?)))
        .unwrap_or_else(|| clip(body));
    TrackingError::Refused { call: call.to_string(), status, message }
}

fn clip(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// An id field: a JSON string (MLflow's), or a number from servers that send one.
fn id_of(value: &Value, field: &str) -> String {
    match &value[field] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn text_of(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(i: usize) -> Metric {
        Metric { key: format!("m{i}"), value: i as f64, timestamp: 0, step: 0 }
    }

    fn kv(prefix: &str, i: usize) -> KeyValue {
        KeyValue::new(format!("{prefix}{i}"), "v")
    }

    #[test]
    fn batches_respect_every_limit_and_keep_everything_in_order() {
        let metrics: Vec<Metric> = (0..2345).map(metric).collect();
        let params: Vec<KeyValue> = (0..250).map(|i| kv("p", i)).collect();
        let tags: Vec<KeyValue> = (0..30).map(|i| kv("t", i)).collect();
        let out = batches(metrics.clone(), params.clone(), tags.clone());
        for b in &out {
            assert!(b.metrics.len() <= MAX_BATCH_METRICS && b.params.len() <= MAX_BATCH_PARAMS);
            assert!(b.tags.len() <= MAX_BATCH_TAGS);
            assert!(b.metrics.len() + b.params.len() + b.tags.len() <= MAX_BATCH_ITEMS);
            assert!(!(b.metrics.is_empty() && b.params.is_empty() && b.tags.is_empty()));
        }
        assert_eq!(out.iter().flat_map(|b| b.metrics.clone()).collect::<Vec<_>>(), metrics);
        assert_eq!(out.iter().flat_map(|b| b.params.clone()).collect::<Vec<_>>(), params);
        assert_eq!(out.iter().flat_map(|b| b.tags.clone()).collect::<Vec<_>>(), tags);
        // 2345 metrics next to 100+30, 100 and 50 other items: 870 + 900 + 575.
        assert_eq!(out.len(), 3);
        assert_eq!(batches(vec![metric(0)], vec![], vec![]).len(), 1);
        assert!(batches(vec![], vec![], vec![]).is_empty());
        assert_eq!(batches((0..1000).map(metric).collect(), vec![], vec![]).len(), 1, "exactly 1000 fit one");
    }

    #[test]
    fn keys_are_sanitized_for_mlflow() {
        assert_eq!(mlflow_key("test.ndcg@10"), "test.ndcg_at_10");
        assert_eq!(mlflow_key("NDCG@10"), "NDCG_at_10");
        assert_eq!(mlflow_key("a-b_c/d e.f"), "a-b_c/d e.f");
        assert_eq!(mlflow_key("features.recent_days[0]"), "features.recent_days_0_");
        assert_eq!(mlflow_key("größe:x"), "gr__e_x");
    }

    #[test]
    fn artifact_roots_parse() {
        assert_eq!(
            ArtifactRoot::parse("mlflow-artifacts:/1/abc/artifacts").unwrap(),
            ArtifactRoot::Proxy("1/abc/artifacts".into())
        );
        assert_eq!(
            ArtifactRoot::parse("mlflow-artifacts://127.0.0.1:5000/1/abc/artifacts").unwrap(),
            ArtifactRoot::Proxy("1/abc/artifacts".into())
        );
        assert_eq!(
            ArtifactRoot::parse("s3://mlflow/me/7/abc/artifacts").unwrap(),
            ArtifactRoot::S3 { bucket: "mlflow".into(), prefix: "me/7/abc/artifacts".into() }
        );
        let err = ArtifactRoot::parse("file:mlruns").unwrap_err();
        assert!(err.contains("mlflow-artifacts:") && err.contains("s3://"), "{err}");
        assert!(ArtifactRoot::parse("s3:///x").is_err());
    }

    #[test]
    fn bad_uris_and_down_servers_are_unreachable_errors() {
        assert!(Mlflow::new("ftp://x", Duration::from_secs(1)).err().is_some_and(|e| e.is_unreachable()));
        // A port nothing listens on: refused at once, well within the timeout.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let client = Mlflow::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(2)).unwrap();
        let err = client.experiment("x").unwrap_err();
        assert!(err.is_unreachable(), "{err}");
        assert!(err.to_string().contains("experiments/get-by-name"), "{err}");
        assert_eq!(client.calls(), 1);
    }

    #[test]
    fn a_connection_closed_before_the_answer_says_so() {
        // A server that reads the request and hangs up.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let _ = std::io::Read::read(&mut stream, &mut [0u8; 4096]);
        });
        let client = Mlflow::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
        let err = client.experiment("x").unwrap_err();
        server.join().unwrap();
        assert!(err.is_unreachable(), "{err}");
        // hyper's own words, below reqwest's and hyper-util's in the source chain.
        assert!(err.to_string().contains("connection closed before message completed"), "{err}");
    }

    #[test]
    fn error_answers_keep_mlflow_code_and_message() {
        let err = refused("POST x", 400, r#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "bad key"}"#);
        assert_eq!(err.to_string(), "MLflow POST x: HTTP 400: INVALID_PARAMETER_VALUE: bad key");
        assert!(!err.is_unreachable());
        let err = refused("GET y", 502, "<html>Bad Gateway</html>");
        assert!(err.to_string().contains("502") && err.to_string().contains("Bad Gateway"));
    }
}
