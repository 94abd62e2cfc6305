//! Experiment tracking. Every stage of every pipeline run is a `RunRecord` (status, timings,
//! parameters, metrics, loss histories, tags, artifact keys) kept with the artifacts under
//! `runs/`; with a tracking server configured it is also an MLflow run, nested under one MLflow
//! run per pipeline run. See `tracker` for what happens when the server is down.

pub mod error;
pub mod mlflow;
pub mod record;
pub mod render;
pub mod select;
pub mod store;
pub mod tracker;

pub use error::TrackingError;
pub use mlflow::{Mlflow, MlflowSettings, mlflow_key};
pub use record::{RunRecord, StageOutcome, Status, flatten_params, summary_metrics};
pub use store::RecordStore;
pub use tracker::{PipelineRun, StageRun, Tracker, TrackingSummary};
