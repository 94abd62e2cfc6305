//! The CLI's integration tests, one binary: each module drives the real `musicrec` binary on
//! its own temporary directories, so they share one link of the whole stack.

mod common;
// The service crate's in-process server and HTTP client, shared rather than copied.
#[path = "../../../service/tests/common/mod.rs"]
mod service_harness;

mod browser;
mod candidate_stages;
mod eda_report;
mod evaluate;
mod faults;
mod feedback_loop;
mod fixture;
mod import;
mod kill;
mod mlflow;
mod operate;
mod pipeline_serve;
mod publish;
mod ranking_stage;
mod runs;
mod s3;
mod sharded_scoring;
mod spark_preprocess;
