//! The run record: one per stage per pipeline run, written when the stage starts (status
//! `running`) and again when it ends, so a run that crashed shows as one that never finished.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use musicrec_artifacts::layout::RUNS_PREFIX;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::TrackingError;

const RECORD_FORMAT: u32 = 1;

/// Summary key whose number list is a per-iteration training loss.
pub const LOSS_HISTORY_KEY: &str = "loss_per_iteration";
/// Name of the metric history the losses become.
pub const LOSS_METRIC: &str = "loss";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Finished,
    Failed,
    /// Was `running` when its run's process died (killed): a later command found the writer
    /// lock free (`store::mark_abandoned`).
    Abandoned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Abandoned => "abandoned",
        }
    }
}

/// Where the MLflow copy of a record went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlflowRef {
    pub run_id: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub format: u32,
    /// `<pipeline run id>-<stage>`: unique, and sorts by start time.
    pub id: String,
    /// The pipeline run (`musicrec run`) this stage belongs to; its manifest carries it too.
    pub pipeline_run_id: String,
    pub stage: String,
    pub status: Status,
    /// Why the stage failed (the error as the user saw it).
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_s: Option<f64>,
    /// Configuration the stage used, flattened (`als.factors` → `"200"`).
    pub params: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
    /// Per-step values (step = index), e.g. `loss` per training iteration.
    pub metric_history: BTreeMap<String, Vec<f64>>,
    /// Git commit, data fingerprint, config fingerprint.
    pub tags: BTreeMap<String, String>,
    /// Outputs the stage published, as keys under the artifacts root.
    pub artifacts: Vec<String>,
    pub mlflow: Option<MlflowRef>,
}

impl RunRecord {
    pub fn started(pipeline_run_id: &str, stage: &str, tags: BTreeMap<String, String>) -> Self {
        Self {
            format: RECORD_FORMAT,
            id: format!("{pipeline_run_id}-{stage}"),
            pipeline_run_id: pipeline_run_id.to_string(),
            stage: stage.to_string(),
            status: Status::Running,
            error: None,
            started_at: Utc::now(),
            finished_at: None,
            duration_s: None,
            params: BTreeMap::new(),
            metrics: BTreeMap::new(),
            metric_history: BTreeMap::new(),
            tags,
            artifacts: Vec::new(),
            mlflow: None,
        }
    }

    /// Closes the record as finished with what the stage produced, or failed with its error.
    pub fn end(&mut self, outcome: Result<StageOutcome, String>) {
        let now = Utc::now();
        self.finished_at = Some(now);
        self.duration_s = Some((now - self.started_at).as_seconds_f64());
        match outcome {
            Ok(o) => {
                self.status = Status::Finished;
                self.params = o.params;
                self.metrics = o.metrics;
                self.metric_history = o.metric_history;
                self.artifacts = o.artifacts;
            }
            Err(error) => {
                self.status = Status::Failed;
                self.error = Some(error);
            }
        }
    }

    /// Closes a record whose process died while the stage ran.
    pub fn abandon(&mut self) {
        self.status = Status::Abandoned;
        self.error =
            Some("the run's process ended before the stage did (killed); nothing it wrote was published".into());
    }

    /// Key of this record in the store.
    pub fn key(&self) -> String {
        record_key(&self.id)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("run records serialize")
    }

    pub fn from_json(key: &str, bytes: &[u8]) -> Result<Self, TrackingError> {
        let record: Self = serde_json::from_slice(bytes)
            .map_err(|e| TrackingError::BadRecord { key: key.to_string(), reason: e.to_string() })?;
        if record.format != RECORD_FORMAT {
            return Err(TrackingError::BadRecord {
                key: key.to_string(),
                reason: format!("record format {}, this program reads {RECORD_FORMAT}", record.format),
            });
        }
        Ok(record)
    }

    /// The metric a one-line listing shows: test NDCG for a model stage.
    pub fn headline(&self) -> Option<(&str, f64)> {
        self.metrics.iter().find(|(name, _)| name.starts_with("test.ndcg@")).map(|(n, v)| (n.as_str(), *v))
    }
}

pub fn record_key(id: &str) -> String {
    format!("{RUNS_PREFIX}{id}.json")
}

/// What a finished stage produced, in record terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageOutcome {
    pub params: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
    pub metric_history: BTreeMap<String, Vec<f64>>,
    /// Every published output (keys under the artifacts root).
    pub artifacts: Vec<String>,
    /// The outputs worth a copy in MLflow (report, plots, metrics, importances).
    pub uploads: Vec<String>,
}

/// Flattens nested parameters into dotted keys with values as text: strings as they are,
/// everything else (numbers, booleans, lists, null) as JSON.
pub fn flatten_params(value: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk(value, String::new(), &mut |key, leaf| {
        let text = match leaf {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.insert(key, text);
    });
    out
}

/// The numeric leaves of a stage summary as dotted metric names. Lists are not metrics,
/// except `loss_per_iteration`, which becomes the `loss` history; booleans and text are
/// not metrics either.
pub fn summary_metrics(summary: &Value) -> (BTreeMap<String, f64>, BTreeMap<String, Vec<f64>>) {
    let mut metrics = BTreeMap::new();
    walk(summary, String::new(), &mut |key, leaf| {
        if let Some(v) = leaf.as_f64() {
            metrics.insert(key, v);
        }
    });
    let mut history = BTreeMap::new();
    if let Some(losses) = summary.get(LOSS_HISTORY_KEY).and_then(Value::as_array) {
        history.insert(LOSS_METRIC.to_string(), losses.iter().filter_map(Value::as_f64).collect());
    }
    (metrics, history)
}

/// Visits the non-object leaves of `value` with their dotted paths; a leaf at the top level
/// (not an object) has the empty path. Lists are leaves.
fn walk(value: &Value, prefix: String, visit: &mut impl FnMut(String, &Value)) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                walk(child, path, visit);
            }
        }
        leaf if !prefix.is_empty() => visit(prefix, leaf),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_flatten_to_dotted_text() {
        let params = flatten_params(&json!({
            "k": 10,
            "als": {"factors": 200, "regularization": 0.05, "report_loss": true},
            "features": {"recent_days": [7, 30]},
            "data": {"path": null, "unknown_tracks": "drop"},
        }));
        let expect: BTreeMap<String, String> = [
            ("als.factors", "200"),
            ("als.regularization", "0.05"),
            ("als.report_loss", "true"),
            ("data.path", "null"),
            ("data.unknown_tracks", "drop"),
            ("features.recent_days", "[7,30]"),
            ("k", "10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(params, expect);
        assert!(flatten_params(&json!(null)).is_empty());
    }

    #[test]
    fn summary_numbers_become_metrics_and_losses_a_history() {
        let (metrics, history) = summary_metrics(&json!({
            "fit_seconds": 0.5,
            "candidate_pairs": 14300,
            "windows": {"train": {"events": 11209, "first": "2022-01-01"}},
            "features": ["a", "b"],
            "loss_per_iteration": [0.3, 0.2, 0.1],
            "ok": true,
        }));
        assert_eq!(
            metrics.into_iter().collect::<Vec<_>>(),
            vec![
                ("candidate_pairs".to_string(), 14300.0),
                ("fit_seconds".to_string(), 0.5),
                ("windows.train.events".to_string(), 11209.0)
            ]
        );
        assert_eq!(history[LOSS_METRIC], vec![0.3, 0.2, 0.1]);
        assert!(summary_metrics(&json!({"x": 1})).1.is_empty(), "no loss list, no history");
    }

    #[test]
    fn records_round_trip_and_end_with_their_status() {
        let tags = BTreeMap::from([("git_commit".to_string(), "abc".to_string())]);
        let mut record = RunRecord::started("20260101T000000Z-7", "als", tags);
        assert_eq!((record.id.as_str(), record.status), ("20260101T000000Z-7-als", Status::Running));
        assert_eq!(record.key(), "runs/20260101T000000Z-7-als.json");
        let back = RunRecord::from_json(&record.key(), &record.to_json()).unwrap();
        assert_eq!(back, record);

        let outcome = StageOutcome {
            params: BTreeMap::from([("als.factors".into(), "8".into())]),
            metrics: BTreeMap::from([("test.ndcg@10".into(), 0.25)]),
            metric_history: BTreeMap::from([("loss".into(), vec![2.0, 1.0])]),
            artifacts: vec!["als/metrics.json".into()],
            uploads: vec!["als/metrics.json".into()],
        };
        record.end(Ok(outcome));
        assert_eq!(record.status, Status::Finished);
        assert!(record.duration_s.is_some_and(|d| d >= 0.0) && record.finished_at.is_some());
        assert_eq!(record.headline(), Some(("test.ndcg@10", 0.25)));
        assert_eq!(RunRecord::from_json(&record.key(), &record.to_json()).unwrap(), record);

        let mut failed = RunRecord::started("r", "bpr", BTreeMap::new());
        failed.end(Err("bpr.factors: out of memory".into()));
        assert_eq!(failed.status, Status::Failed);
        assert_eq!(failed.error.as_deref(), Some("bpr.factors: out of memory"));
        assert!(failed.params.is_empty() && failed.headline().is_none());
    }

    #[test]
    fn bad_records_name_the_key() {
        let err = RunRecord::from_json("runs/x.json", b"{").unwrap_err().to_string();
        assert!(err.contains("runs/x.json"), "{err}");
        let mut record = RunRecord::started("r", "eda", BTreeMap::new());
        record.format = 99;
        let err = RunRecord::from_json("runs/y.json", &record.to_json()).unwrap_err().to_string();
        assert!(err.contains("runs/y.json") && err.contains("format 99"), "{err}");
    }
}
