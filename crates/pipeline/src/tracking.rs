//! Every stage of a run is a tracked run (`musicrec-tracking`): its record is kept in the
//! artifact store under `runs/`, and sent to MLflow when `tracking.mlflow_uri` (or the
//! standard `MLFLOW_TRACKING_URI`) is set. This module turns a stage's manifest into a record.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use musicrec_artifacts::layout::{MANIFEST_FILE, METRICS_FILE, eda, ranking};
use musicrec_artifacts::{Artifacts, Manifest, Stage};
use musicrec_config::Config;
use musicrec_data::Location;
use musicrec_data::schema::{CATALOG_NAMES_FILE, INTERACTIONS_FILE, TRACKS_FILE};
use musicrec_data::store::{self, Bucket};
use musicrec_tracking::{
    MlflowSettings, PipelineRun, RecordStore, StageOutcome, StageRun, Tracker, TrackingSummary, flatten_params,
    summary_metrics,
};
use sha2::{Digest, Sha256};

use crate::error::PipelineError;

/// The tracker of one `RunContext`; stages of one run are sequential, the lock only makes the
/// context shareable.
pub struct RunTracking {
    tracker: Mutex<Tracker>,
    summary: Mutex<Option<TrackingSummary>>,
}

impl RunTracking {
    pub(crate) fn new(config: &Config, data: &Location, artifacts: &Artifacts, run_id: &str, git_commit: &str) -> Self {
        let tags = BTreeMap::from([
            ("pipeline_run_id".to_string(), run_id.to_string()),
            ("git_commit".to_string(), git_commit.to_string()),
            ("data".to_string(), data.to_string()),
            ("data_fingerprint".to_string(), data_fingerprint(data)),
            ("config_fingerprint".to_string(), config.fingerprint()),
        ]);
        let params = flatten_params(&serde_json::to_value(config).expect("configurations serialize"));
        let run = PipelineRun { id: run_id.to_string(), tags, params, config_yaml: config.to_yaml() };
        let mlflow = config.tracking.mlflow_uri().map(|uri| MlflowSettings {
            uri: uri.to_string(),
            experiment: config.tracking.experiment.clone(),
            timeout: Duration::from_millis(config.tracking.timeout_ms),
        });
        let store: Arc<dyn RecordStore> = Arc::new(artifacts.clone());
        Self { tracker: Mutex::new(Tracker::new(store, run, mlflow)), summary: Mutex::new(None) }
    }

    fn tracker(&self) -> MutexGuard<'_, Tracker> {
        // A panic mid-record leaves nothing half-done that a later record depends on.
        self.tracker.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn stage_started(&self, stage: Stage) -> Result<StageRun, PipelineError> {
        Ok(self.tracker().stage_started(stage.as_str())?)
    }

    pub(crate) fn stage_ended(
        &self,
        artifacts: &Artifacts,
        stage: Stage,
        run: StageRun,
        result: &Result<Manifest, PipelineError>,
    ) -> Result<(), PipelineError> {
        let outcome = match result {
            Ok(manifest) => Ok(outcome(artifacts, stage, manifest)),
            Err(e) => Err(e.to_string()),
        };
        Ok(self.tracker().stage_ended(run, outcome)?)
    }

    /// Closes what killed runs left open: see `Tracker::abandon_killed_runs`.
    pub fn abandon_killed_runs(&self) -> Result<Vec<String>, PipelineError> {
        Ok(self.tracker().abandon_killed_runs()?)
    }

    /// The fingerprint of the run's input data (its records' `data_fingerprint` tag).
    pub fn data_fingerprint(&self) -> String {
        self.tracker().run().tags.get("data_fingerprint").cloned().unwrap_or_default()
    }

    pub(crate) fn finish(&self, ok: bool) {
        let summary = self.tracker().finish(ok);
        *self.summary.lock().unwrap_or_else(|p| p.into_inner()) = Some(summary);
    }

    /// Where the records of the last `run_stages` went, and what MLflow did not get.
    pub fn summary(&self) -> Option<TrackingSummary> {
        self.summary.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Which outputs go to MLflow too: what a person reads (reports, plots, metrics, feature
/// importances, data statistics, the manifest), not the data and model files.
fn worth_uploading(file: &str) -> bool {
    file.ends_with(".md")
        || file.ends_with(".png")
        || [METRICS_FILE, ranking::FEATURE_IMPORTANCES_FILE, eda::STATS_FILE, MANIFEST_FILE].contains(&file)
}

/// A finished stage in record terms: the manifest's params flattened, its summary's numbers
/// as metrics (and `loss_per_iteration` as the `loss` history), and for a model stage the
/// window metrics of its `metrics.json` (`test.ndcg@10`), which replace the copy in the
/// summary.
fn outcome(artifacts: &Artifacts, stage: Stage, manifest: &Manifest) -> StageOutcome {
    let unit = artifacts.key_of(&manifest.stage);
    let key = |file: &str| format!("{unit}/{file}");
    let window_metrics = (stage.is_model() && manifest.outputs.iter().any(|o| o.file == METRICS_FILE))
        .then(|| artifacts.read_object(&key(METRICS_FILE)).ok().flatten())
        .flatten()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    let mut summary = manifest.summary.clone();
    if let (Some(_), Some(map)) = (&window_metrics, summary.as_object_mut()) {
        map.remove("metrics");
    }
    let (mut metrics, metric_history) = summary_metrics(&summary);
    if let Some(windows) = &window_metrics {
        metrics.extend(summary_metrics(windows).0);
    }
    if let Some(bytes) = manifest.peak_rss_bytes {
        metrics.insert("peak_rss_mb".into(), bytes as f64 / (1u64 << 20) as f64);
    }
    let mut files: Vec<&str> = manifest.outputs.iter().map(|o| o.file.as_str()).collect();
    files.push(MANIFEST_FILE);
    StageOutcome {
        params: flatten_params(&manifest.params),
        metrics,
        metric_history,
        artifacts: files.iter().map(|f| key(f)).collect(),
        uploads: files.iter().filter(|f| worth_uploading(f)).map(|f| key(f)).collect(),
    }
}

/// Bytes read from the end of each input file: a parquet file ends with its footer (schema,
/// row groups, column statistics), so together with the size this tells data sets apart
/// without reading gigabytes, and a copy of the same files gets the same fingerprint.
const FINGERPRINT_TAIL: u64 = 64 << 10;

/// A fingerprint (hex, 16 chars) of the input files: their names, sizes and last bytes; on S3
/// their sizes and etags (asked of S3: the mirror may not hold them yet).
pub(crate) fn data_fingerprint(data: &Location) -> String {
    let mut hash = Sha256::new();
    let bucket = match data {
        Location::S3(s3) => Bucket::from_env(&s3.bucket).ok().map(|bucket| (bucket, s3)),
        Location::Local(_) => None,
    };
    for name in [INTERACTIONS_FILE, TRACKS_FILE, CATALOG_NAMES_FILE] {
        hash.update(name.as_bytes());
        let facts = match &bucket {
            Some((bucket, s3)) => match bucket.head(&store::join_key(&s3.key, name)) {
                Ok(Some(info)) => Some((info.size, info.etag.unwrap_or_default().into_bytes())),
                _ => None,
            },
            None => read_tail(data.join(name).as_path()).ok(),
        };
        match facts {
            Some((size, tail)) => {
                hash.update(size.to_le_bytes());
                hash.update(&tail);
            }
            None => hash.update(b"missing"),
        }
    }
    hash.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn read_tail(path: &std::path::Path) -> std::io::Result<(u64, Vec<u8>)> {
    let mut file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    file.seek(SeekFrom::Start(size.saturating_sub(FINGERPRINT_TAIL)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    Ok((size, tail))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use musicrec_artifacts::OutputFile;

    fn manifest(stage: &str, outputs: &[&str], summary: serde_json::Value) -> Manifest {
        Manifest {
            format: 1,
            stage: stage.into(),
            run_id: "r".into(),
            started_at: String::new(),
            finished_at: String::new(),
            duration_s: 0.5,
            peak_rss_bytes: Some(3 << 20),
            config_fingerprint: String::new(),
            params: json!({"k": 10, "als": {"factors": 8}}),
            inputs: BTreeMap::new(),
            outputs: outputs.iter().map(|f| OutputFile { file: f.to_string(), rows: None, bytes: 1 }).collect(),
            summary,
        }
    }

    #[test]
    fn a_model_stage_takes_window_metrics_from_its_metrics_file() {
        let dir = tempfile::tempdir().unwrap();
        let artifacts = Artifacts::new(dir.path());
        artifacts
            .write_object("als/metrics.json", br#"{"test": {"ndcg@10": 0.25}, "target": {"ndcg@10": 0.5}}"#)
            .unwrap();
        let summary =
            json!({"fit_seconds": 1.0, "metrics": {"test": {"ndcg@10": 0.0}}, "loss_per_iteration": [3.0, 2.0]});
        let m = manifest("als", &["candidates.parquet", "model.bin", "metrics.json"], summary);
        let o = outcome(&artifacts, Stage::Als, &m);
        assert_eq!(o.params["als.factors"], "8");
        assert_eq!(o.params["k"], "10");
        let names: Vec<&str> = o.metrics.keys().map(String::as_str).collect();
        assert_eq!(names, ["fit_seconds", "peak_rss_mb", "target.ndcg@10", "test.ndcg@10"]);
        assert_eq!((o.metrics["test.ndcg@10"], o.metrics["peak_rss_mb"]), (0.25, 3.0));
        assert_eq!(o.metric_history["loss"], [3.0, 2.0]);
        assert_eq!(o.artifacts, ["als/candidates.parquet", "als/model.bin", "als/metrics.json", "als/manifest.json"]);
        assert_eq!(o.uploads, ["als/metrics.json", "als/manifest.json"]);
    }

    #[test]
    fn other_stages_keep_their_summary_and_upload_reports_and_plots() {
        let dir = tempfile::tempdir().unwrap();
        let m =
            manifest("eda", &["stats.json", "users.png", "report.md"], json!({"windows": {"train": {"events": 5}}}));
        let o = outcome(&Artifacts::new(dir.path()), Stage::Eda, &m);
        assert_eq!(o.metrics["windows.train.events"], 5.0);
        assert!(o.metric_history.is_empty());
        assert_eq!(o.uploads, ["eda/stats.json", "eda/users.png", "eda/report.md", "eda/manifest.json"]);
    }

    #[test]
    fn data_fingerprints_follow_content_not_place() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for dir in [a.path(), b.path()] {
            for name in [INTERACTIONS_FILE, TRACKS_FILE, CATALOG_NAMES_FILE] {
                std::fs::write(dir.join(name), name).unwrap();
            }
        }
        let fingerprint = |dir: &std::path::Path| data_fingerprint(&Location::local(dir));
        assert_eq!(fingerprint(a.path()), fingerprint(b.path()), "a copy matches");
        assert_eq!(fingerprint(a.path()).len(), 16);
        std::fs::write(b.path().join(TRACKS_FILE), "other").unwrap();
        assert_ne!(fingerprint(a.path()), fingerprint(b.path()));
        assert_ne!(fingerprint(a.path()), fingerprint(&a.path().join("nothing")));
    }
}
