//! The tracker of one pipeline run: a local record per stage, always, and when a tracking
//! server is configured, an MLflow run per stage nested under one run per pipeline run.
//!
//! The local record is the source of truth: failing to write it fails the stage. The server is
//! best effort, fed by a thread of its own so stages never wait for it (only `finish` does):
//! every failed call is a warning and a line of `TrackingSummary::not_sent`, and once the
//! server is unreachable (no connection, no answer within the timeout) the run stops calling
//! it, so a dead server costs at most one timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, mpsc};

use chrono::Utc;
use musicrec_artifacts::layout::RUNS_PREFIX;

use crate::error::TrackingError;
use crate::mlflow::{KeyValue, Metric, Mlflow, MlflowSettings, RunInfo, mlflow_key};
use crate::record::{MlflowRef, RunRecord, StageOutcome, Status};
use crate::store::{self, RecordStore};

/// Name of the configuration file attached to the pipeline's MLflow run.
pub const CONFIG_ARTIFACT: &str = "config.yaml";

/// What every stage of one pipeline run shares.
#[derive(Debug, Clone)]
pub struct PipelineRun {
    pub id: String,
    /// Tags of every record (git commit, data fingerprint, ...).
    pub tags: BTreeMap<String, String>,
    /// The whole configuration, flattened: the params of the pipeline's MLflow run.
    pub params: BTreeMap<String, String>,
    /// The configuration as YAML, attached to the pipeline's MLflow run.
    pub config_yaml: String,
}

/// A stage being tracked, from `stage_started` to `stage_ended`.
pub struct StageRun {
    record: RunRecord,
}

impl StageRun {
    pub fn record(&self) -> &RunRecord {
        &self.record
    }
}

/// Where the run's records went, for the end of `musicrec run`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackingSummary {
    /// The local records (a directory or URL).
    pub records: String,
    /// The tracking server, when one is configured.
    pub mlflow_uri: Option<String>,
    /// The pipeline's MLflow run, when it was created.
    pub mlflow_run_url: Option<String>,
    /// What the server did not get, one line per item.
    pub not_sent: Vec<String>,
    /// HTTP requests made to the server and the artifact store.
    pub http_calls: u64,
}

pub struct Tracker {
    store: Arc<dyn RecordStore>,
    run: PipelineRun,
    /// The records of this pipeline run, to add their MLflow links once known.
    records: Vec<RunRecord>,
    sender: Option<Sender>,
}

/// The MLflow side runs on its own thread, in order, so the stages do not wait for the
/// server: a tiny run's stages take about as long as its ~70 requests.
struct Sender {
    uri: String,
    jobs: mpsc::Sender<Job>,
}

enum Job {
    Start {
        record: RunRecord,
    },
    End {
        record: RunRecord,
        uploads: Vec<String>,
    },
    Finish {
        ok: bool,
        reply: mpsc::Sender<Report>,
    },
    /// Pipeline runs whose process died: their MLflow runs still say `RUNNING`.
    Killed {
        pipeline_runs: Vec<String>,
    },
}

/// What the sender says when the pipeline run finishes.
struct Report {
    url: Option<String>,
    not_sent: Vec<String>,
    calls: u64,
    /// MLflow run of each record id created.
    links: BTreeMap<String, MlflowRef>,
}

impl Tracker {
    /// A tracker writing records to `store`, and to MLflow with `mlflow`. Nothing is contacted
    /// before the first stage starts.
    pub fn new(store: Arc<dyn RecordStore>, run: PipelineRun, mlflow: Option<MlflowSettings>) -> Self {
        let sender = mlflow.map(|settings| {
            let uri = settings.uri.clone();
            let (jobs, queue) = mpsc::channel();
            let remote = Remote {
                settings,
                client: None,
                parent: None,
                url: None,
                gone: None,
                not_sent: Vec::new(),
                children: BTreeMap::new(),
                links: BTreeMap::new(),
            };
            let (run, store) = (run.clone(), store.clone());
            std::thread::Builder::new()
                .name("mlflow".into())
                .spawn(move || remote.serve(&run, store.as_ref(), queue))
                .expect("starting the MLflow sender thread");
            Sender { uri, jobs }
        });
        Self { store, run, records: Vec::new(), sender }
    }

    pub fn run(&self) -> &PipelineRun {
        &self.run
    }

    fn send(&self, job: Job) {
        // The sender thread only stops when this tracker is dropped.
        if let Some(sender) = &self.sender {
            let _ = sender.jobs.send(job);
        }
    }

    /// Records `stage` as running (locally, then on the server in the background).
    pub fn stage_started(&mut self, stage: &str) -> Result<StageRun, TrackingError> {
        let record = RunRecord::started(&self.run.id, stage, self.run.tags.clone());
        store::save(self.store.as_ref(), &record)?;
        self.send(Job::Start { record: record.clone() });
        Ok(StageRun { record })
    }

    /// Marks `abandoned` the records other pipeline runs left `running` (the caller holds the
    /// writer lock, so their processes are gone) and ends their MLflow runs as `KILLED`, in the
    /// background like every call to the server. Returns the record ids marked.
    pub fn abandon_killed_runs(&mut self) -> Result<Vec<String>, TrackingError> {
        let marked = store::mark_abandoned(self.store.as_ref(), &self.run.id)?;
        let pipeline_runs: BTreeSet<String> = marked.iter().map(|record| record.pipeline_run_id.clone()).collect();
        if !pipeline_runs.is_empty() {
            self.send(Job::Killed { pipeline_runs: pipeline_runs.into_iter().collect() });
        }
        Ok(marked.into_iter().map(|record| record.id).collect())
    }

    /// Records how `stage` ended: what it produced, or the error it failed with.
    pub fn stage_ended(
        &mut self,
        mut run: StageRun,
        outcome: Result<StageOutcome, String>,
    ) -> Result<(), TrackingError> {
        let uploads = outcome.as_ref().map(|o| o.uploads.clone()).unwrap_or_default();
        run.record.end(outcome);
        store::save(self.store.as_ref(), &run.record)?;
        self.send(Job::End { record: run.record.clone(), uploads });
        self.records.push(run.record);
        Ok(())
    }

    /// Waits for the server to get what is queued, ends the pipeline's MLflow run (finished,
    /// or failed when a stage failed), links each record to its MLflow run and says where
    /// everything went. A later stage starts a new pipeline run on the server.
    pub fn finish(&mut self, ok: bool) -> TrackingSummary {
        let mut summary = TrackingSummary {
            records: self.store.describe(RUNS_PREFIX),
            mlflow_uri: None,
            mlflow_run_url: None,
            not_sent: Vec::new(),
            http_calls: 0,
        };
        let records = std::mem::take(&mut self.records);
        let Some(sender) = &self.sender else { return summary };
        summary.mlflow_uri = Some(sender.uri.clone());
        let (reply, answer) = mpsc::channel();
        let report = sender.jobs.send(Job::Finish { ok, reply }).ok().and_then(|()| answer.recv().ok());
        let Some(report) = report else {
            summary.not_sent.push("everything: the MLflow sender stopped".into());
            return summary;
        };
        for mut record in records {
            if let Some(link) = report.links.get(&record.id) {
                record.mlflow = Some(link.clone());
                if let Err(e) = store::save(self.store.as_ref(), &record) {
                    tracing::warn!(record = %record.id, error = %e, "could not add the MLflow link to the run record");
                }
            }
        }
        summary.mlflow_run_url = report.url;
        summary.not_sent = report.not_sent;
        summary.http_calls = report.calls;
        summary
    }
}

fn tags_of(tags: &BTreeMap<String, String>) -> Vec<KeyValue> {
    let mut out: Vec<KeyValue> = tags.iter().map(|(k, v)| KeyValue::new(mlflow_key(k), v)).collect();
    if let Some(commit) = tags.get("git_commit") {
        // The tag the MLflow UI shows as the run's source version.
        out.push(KeyValue::new("mlflow.source.git.commit", commit));
    }
    out
}

fn params_of(params: &BTreeMap<String, String>) -> Vec<KeyValue> {
    params.iter().map(|(k, v)| KeyValue::new(mlflow_key(k), v)).collect()
}

/// The MLflow side of a tracker.
struct Remote {
    settings: MlflowSettings,
    client: Option<Mlflow>,
    /// The pipeline's run, once created.
    parent: Option<RunInfo>,
    url: Option<String>,
    /// Why nothing more is sent, once the server is unreachable or has no pipeline run.
    gone: Option<String>,
    not_sent: Vec<String>,
    /// The MLflow run of each stage record being tracked.
    children: BTreeMap<String, RunInfo>,
    links: BTreeMap<String, MlflowRef>,
}

impl Remote {
    /// Sends the jobs in order until the tracker goes away.
    fn serve(mut self, run: &PipelineRun, store: &dyn RecordStore, queue: mpsc::Receiver<Job>) {
        for job in queue {
            match job {
                Job::Start { record } => self.start_stage(run, &record),
                Job::End { record, uploads } => {
                    if let Some(info) = self.children.remove(&record.id) {
                        self.send_stage(&record, &info, &uploads, store);
                    }
                }
                Job::Killed { pipeline_runs } => self.end_killed(run, &pipeline_runs),
                Job::Finish { ok, reply } => {
                    if let Some(parent) = self.parent.take() {
                        let status = if ok { "FINISHED" } else { "FAILED" };
                        let end_ms = Utc::now().timestamp_millis();
                        self.send("pipeline run: status", |c| c.end_run(&parent.run_id, status, end_ms));
                    }
                    let _ = reply.send(Report {
                        url: self.url.take(),
                        not_sent: std::mem::take(&mut self.not_sent),
                        calls: self.client.as_ref().map_or(0, Mlflow::calls),
                        links: std::mem::take(&mut self.links),
                    });
                }
            }
        }
    }

    /// Ends as `KILLED` the MLflow runs (pipeline and stages) of pipeline runs that died. The
    /// experiment comes with this run's own pipeline run, which it needs anyway.
    fn end_killed(&mut self, run: &PipelineRun, pipeline_runs: &[String]) {
        let Some(parent) = self.parent(run) else { return };
        let end_ms = Utc::now().timestamp_millis();
        for killed in pipeline_runs {
            let what = format!("killed run {killed}");
            let Some(running) = self.send(&what, |c| c.running_runs(&parent.experiment_id, killed)) else { continue };
            for mlflow_run in running {
                self.send(&format!("{what}: status"), |c| c.end_run(&mlflow_run, "KILLED", end_ms));
            }
        }
    }

    /// The stage's MLflow run, nested under the pipeline's.
    fn start_stage(&mut self, run: &PipelineRun, record: &RunRecord) {
        let stage = &record.stage;
        let Some(parent) = self.parent(run) else {
            let reason = self.gone.clone().unwrap_or_default();
            self.not_sent.push(format!("{stage}: run not sent ({reason})"));
            return;
        };
        let mut tags = tags_of(&run.tags);
        tags.push(KeyValue::new("stage", stage));
        tags.push(KeyValue::new("mlflow.parentRunId", &parent.run_id));
        let start_ms = record.started_at.timestamp_millis();
        if let Some(info) =
            self.send(&format!("{stage}: run"), |c| c.create_run(&parent.experiment_id, stage, start_ms, &tags))
        {
            let url = self.client.as_ref().map(|c| c.run_url(&info)).unwrap_or_default();
            self.links.insert(record.id.clone(), MlflowRef { run_id: info.run_id.clone(), url });
            self.children.insert(record.id.clone(), info);
        }
    }

    /// Runs one call unless the server is gone; a failure is warned about and noted.
    fn send<T>(&mut self, what: &str, call: impl FnOnce(&Mlflow) -> Result<T, TrackingError>) -> Option<T> {
        if let Some(reason) = &self.gone {
            self.not_sent.push(format!("{what}: skipped ({reason})"));
            return None;
        }
        let result = call(self.client.as_ref().expect("a server that is not gone has a client"));
        result.map_err(|e| self.fail(what, e)).ok()
    }

    fn fail(&mut self, what: &str, error: TrackingError) {
        tracing::warn!(what, error = %error, "MLflow: not sent");
        if error.is_unreachable() && self.gone.is_none() {
            tracing::warn!(uri = %self.settings.uri, "MLflow unreachable: the rest of this run is recorded locally only");
            self.gone = Some("server unreachable".into());
        }
        self.not_sent.push(format!("{what}: {error}"));
    }

    /// The pipeline's run, created with the experiment (if missing) on first use. Without
    /// it stages cannot nest, so a failure here ends sending for the run.
    fn parent(&mut self, run: &PipelineRun) -> Option<RunInfo> {
        if self.parent.is_some() || self.gone.is_some() {
            return self.parent.clone();
        }
        if self.client.is_none() {
            match Mlflow::new(&self.settings.uri, self.settings.timeout) {
                Ok(client) => self.client = Some(client),
                Err(e) => {
                    self.fail("connecting", e);
                    self.gone = Some("no usable server".into());
                    return None;
                }
            }
        }
        let experiment = self.settings.experiment.clone();
        let created = self.send(&format!("experiment {experiment}"), |c| c.experiment(&experiment)).and_then(|id| {
            let tags = tags_of(&run.tags);
            self.send("pipeline run", |c| {
                c.create_run(&id, &format!("run {}", run.id), Utc::now().timestamp_millis(), &tags)
            })
        });
        let Some(parent) = created else {
            self.gone.get_or_insert_with(|| "no pipeline run on the server".into());
            return None;
        };
        self.url = self.client.as_ref().map(|c| c.run_url(&parent));
        self.send("pipeline run: params", |c| c.log(&parent.run_id, Vec::new(), params_of(&run.params), Vec::new()));
        self.upload(&parent, vec![(CONFIG_ARTIFACT.to_string(), run.config_yaml.clone().into_bytes())], "pipeline run");
        self.parent = Some(parent.clone());
        Some(parent)
    }

    /// Params, metrics (histories with their steps), artifacts and the final status of a
    /// stage's run.
    fn send_stage(&mut self, record: &RunRecord, info: &RunInfo, uploads: &[String], store: &dyn RecordStore) {
        let stage = &record.stage;
        let timestamp = record.finished_at.unwrap_or(record.started_at).timestamp_millis();
        let mut metrics: Vec<Metric> = record
            .metrics
            .iter()
            .map(|(name, &value)| Metric { key: mlflow_key(name), value, timestamp, step: 0 })
            .collect();
        for (name, values) in &record.metric_history {
            metrics.extend(values.iter().enumerate().map(|(step, &value)| Metric {
                key: mlflow_key(name),
                value,
                timestamp,
                step: step as i64,
            }));
        }
        if let Some(duration) = record.duration_s {
            metrics.push(Metric { key: "duration_s".into(), value: duration, timestamp, step: 0 });
        }
        let what = format!("{stage}: {} params, {} metric values", record.params.len(), metrics.len());
        self.send(&what, |c| c.log(&info.run_id, metrics, params_of(&record.params), Vec::new()));

        let mut files = Vec::new();
        for key in uploads {
            let name = key.rsplit('/').next().unwrap_or(key).to_string();
            match store.get(key) {
                Ok(Some(bytes)) => files.push((name, bytes)),
                Ok(None) => self.not_sent.push(format!("{stage}: artifact {name}: {} is missing", store.describe(key))),
                Err(e) => self.not_sent.push(format!("{stage}: artifact {name}: {e}")),
            }
        }
        self.upload(info, files, stage);

        let status = match record.status {
            Status::Failed => "FAILED",
            Status::Abandoned => "KILLED",
            Status::Finished | Status::Running => "FINISHED",
        };
        let end_ms = record.finished_at.map_or_else(|| Utc::now().timestamp_millis(), |t| t.timestamp_millis());
        self.send(&format!("{stage}: status"), |c| c.end_run(&info.run_id, status, end_ms));
    }

    fn upload(&mut self, info: &RunInfo, files: Vec<(String, Vec<u8>)>, owner: &str) {
        if files.is_empty() {
            return;
        }
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        let Some(results) =
            self.send(&format!("{owner}: artifacts {}", names.join(", ")), |c| Ok(c.upload(info, files)))
        else {
            return;
        };
        for (name, result) in results {
            if let Err(e) = result {
                self.fail(&format!("{owner}: artifact {name}"), e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::store::memory::MemoryStore;

    fn pipeline_run() -> PipelineRun {
        PipelineRun {
            id: "20260101T000000Z-1".into(),
            tags: BTreeMap::from([("git_commit".into(), "abc".into()), ("data_fingerprint".into(), "d".into())]),
            params: BTreeMap::from([("als.factors".into(), "8".into())]),
            config_yaml: "als:\n  factors: 8\n".into(),
        }
    }

    #[test]
    fn local_records_follow_the_stage_and_record_failures() {
        let store = Arc::new(MemoryStore::default());
        let mut tracker = Tracker::new(store.clone(), pipeline_run(), None);
        let run = tracker.stage_started("als").unwrap();
        let running = store::load(store.as_ref(), &run.record().id).unwrap();
        assert_eq!(running.status, Status::Running, "a started stage is on record before it ends");
        assert_eq!(running.tags["data_fingerprint"], "d");
        let outcome = StageOutcome { metrics: BTreeMap::from([("fit_seconds".into(), 1.5)]), ..Default::default() };
        tracker.stage_ended(run, Ok(outcome)).unwrap();

        let run = tracker.stage_started("bpr").unwrap();
        tracker.stage_ended(run, Err("bpr: out of memory".into())).unwrap();
        let records = store::list(store.as_ref()).unwrap().records;
        assert_eq!(
            records.iter().map(|r| (r.stage.as_str(), r.status)).collect::<Vec<_>>(),
            [("als", Status::Finished), ("bpr", Status::Failed)]
        );
        assert_eq!(records[0].metrics["fit_seconds"], 1.5);
        assert_eq!(records[1].error.as_deref(), Some("bpr: out of memory"));

        let summary = tracker.finish(false);
        assert_eq!((summary.records.as_str(), summary.mlflow_uri, summary.http_calls), ("mem:runs/", None, 0));
        assert!(summary.not_sent.is_empty());
    }

    #[test]
    fn a_down_server_costs_one_call_and_every_stage_is_noted() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let settings = MlflowSettings {
            uri: format!("http://127.0.0.1:{port}"),
            experiment: "musicrec".into(),
            timeout: Duration::from_secs(2),
        };
        let store = Arc::new(MemoryStore::default());
        let mut tracker = Tracker::new(store.clone(), pipeline_run(), Some(settings));
        for stage in ["preprocess", "eda"] {
            let run = tracker.stage_started(stage).unwrap();
            tracker.stage_ended(run, Ok(StageOutcome::default())).unwrap();
        }
        let summary = tracker.finish(true);
        assert_eq!(summary.http_calls, 1, "the first refused connection stops all calls");
        assert!(summary.mlflow_run_url.is_none());
        let not_sent = &summary.not_sent;
        assert_eq!(not_sent.len(), 3, "{not_sent:?}");
        assert!(
            not_sent[0].starts_with("experiment musicrec: MLflow GET") && not_sent[0].contains("connect"),
            "{not_sent:?}"
        );
        assert_eq!(
            not_sent[1..],
            ["preprocess: run not sent (server unreachable)", "eda: run not sent (server unreachable)"]
        );
        let records = store::list(store.as_ref()).unwrap().records;
        assert_eq!(records.len(), 2, "local records are complete");
        assert!(records.iter().all(|r| r.status == Status::Finished && r.mlflow.is_none()));
    }
}
