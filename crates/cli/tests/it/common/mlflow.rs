//! The MLflow REST API, read independently of the program under test, for the tests that
//! track to the real server of `scripts/services.sh` (`MLFLOW_TRACKING_URI`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

pub fn server() -> String {
    std::env::var("MLFLOW_TRACKING_URI")
        .expect("MLFLOW_TRACKING_URI is not set: run scripts/services.sh start and eval \"$(scripts/services.sh env)\"")
        .trim_end_matches('/')
        .to_string()
}

/// A name no other test or helper uses.
pub fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("musicrec-test-{what}-{}-{nanos}", std::process::id())
}

/// The MLflow REST API, read independently of the program under test.
pub struct Rest {
    base: String,
    http: reqwest::blocking::Client,
}

impl Rest {
    pub fn new() -> Self {
        Self { base: server(), http: reqwest::blocking::Client::new() }
    }

    pub fn send(&self, request: reqwest::blocking::RequestBuilder) -> reqwest::blocking::Response {
        checked(request.send().expect("MLflow answers"))
    }

    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let url = reqwest::Url::parse_with_params(&format!("{}/{path}", self.base), query).unwrap();
        serde_json::from_str(&self.send(self.http.get(url)).text().unwrap()).unwrap()
    }

    pub fn post(&self, path: &str, body: &Value) -> Value {
        let request = self.http.post(format!("{}/{path}", self.base)).body(body.to_string());
        serde_json::from_str(&self.send(request.header("content-type", "application/json")).text().unwrap()).unwrap()
    }

    pub fn experiment_id(&self, name: &str) -> String {
        let answer = self.get("api/2.0/mlflow/experiments/get-by-name", &[("experiment_name", name)]);
        answer["experiment"]["experiment_id"].as_str().expect("experiment ids are strings").to_string()
    }

    /// The experiment's id, or `None` while it does not exist.
    pub fn experiment_id_if_any(&self, name: &str) -> Option<String> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/2.0/mlflow/experiments/get-by-name", self.base),
            [("experiment_name", name)],
        )
        .unwrap();
        let response = self.http.get(url).send().expect("MLflow answers");
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        let answer: Value = serde_json::from_str(&checked(response).text().unwrap()).unwrap();
        Some(answer["experiment"]["experiment_id"].as_str().expect("experiment ids are strings").to_string())
    }

    /// Every run of the experiment: (stage run name → run) and the pipeline's run(s).
    pub fn runs(&self, experiment_id: &str) -> (BTreeMap<String, Value>, Vec<Value>) {
        let answer =
            self.post("api/2.0/mlflow/runs/search", &json!({"experiment_ids": [experiment_id], "max_results": 100}));
        let (mut children, mut parents) = (BTreeMap::new(), Vec::new());
        for run in answer["runs"].as_array().cloned().unwrap_or_default() {
            if tag(&run, "mlflow.parentRunId").is_some() {
                children.insert(run["info"]["run_name"].as_str().unwrap().to_string(), run);
            } else {
                parents.push(run);
            }
        }
        (children, parents)
    }

    pub fn artifacts(&self, run_id: &str) -> Vec<String> {
        let answer = self.get("api/2.0/mlflow/artifacts/list", &[("run_id", run_id)]);
        let files = answer["files"].as_array().cloned().unwrap_or_default();
        files.iter().map(|f| f["path"].as_str().unwrap().to_string()).collect()
    }

    pub fn download(&self, run_id: &str, path: &str) -> Vec<u8> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/get-artifact", self.base),
            [("path", path), ("run_uuid", run_id)],
        )
        .unwrap();
        self.send(self.http.get(url)).bytes().unwrap().to_vec()
    }
}

fn checked(response: reqwest::blocking::Response) -> reqwest::blocking::Response {
    assert!(response.status().is_success(), "MLflow said {}: {}", response.status(), response.text().unwrap());
    response
}

pub fn pairs(run: &Value, kind: &str) -> BTreeMap<String, Value> {
    let items = run["data"][kind].as_array().cloned().unwrap_or_default();
    items.into_iter().map(|kv| (kv["key"].as_str().unwrap().to_string(), kv["value"].clone())).collect()
}

pub fn tag(run: &Value, key: &str) -> Option<String> {
    pairs(run, "tags").get(key).and_then(|v| v.as_str().map(str::to_string))
}

pub fn run_id(run: &Value) -> String {
    run["info"]["run_id"].as_str().unwrap().to_string()
}
