//! The `musicrec` program. Errors about the user's input (config, data, flags) exit with
//! code 2, everything else with 1.

mod bench;
mod import;

/// The commit this binary was built from (build.rs), tagged on every tracked run.
const GIT_COMMIT: &str = env!("MUSICREC_GIT_COMMIT");

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use musicrec_artifacts::layout::matrices::{ITEMS_FILE, USERS_FILE};
use musicrec_artifacts::layout::report::REPORT_FILE;
use musicrec_artifacts::{Artifacts, ArtifactsError, Stage};
use musicrec_config::{Config, ConfigError};
use musicrec_data::location::S3Location;
use musicrec_data::parquet_io::read_i64_column;
use musicrec_data::store::{self, Bucket};
use musicrec_data::{DataError, Location};
use musicrec_loadtest::LoadtestError;
use musicrec_pipeline::evaluation::{EvalWindow, Evaluator};
use musicrec_pipeline::{PipelineError, RunContext, Sharding, require};
use musicrec_service::ServiceError;
use musicrec_synth::{GenerateOptions, Scale};
use musicrec_tracking::{TrackingError, render};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "musicrec", version, about = "Music recommendations: offline pipeline, evaluation and serving")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a deterministic synthetic data set in the Yandex Music layout (docs/data.md).
    Generate {
        /// Size of the data set: tiny (tests), small (the default demo), medium (~10× small) or
        /// yandex (the real data set's size: ~1.37M users, 1M tracks, 220M events).
        #[arg(long, default_value = "small")]
        scale: Scale,
        /// Seed; the same seed gives the same bytes.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output directory (created if missing) or s3://bucket/prefix (written locally into
        /// the prefix's mirror, then uploaded; generator.json last).
        #[arg(long)]
        out: String,
    },
    /// Bring outside listening data into our layout (docs/data.md#import): MovieLens, Last.fm
    /// 1K, Yambda or any CSV/parquet of events; writes the three parquet files, config.yaml
    /// with the split the data suggests, and import.json last.
    Import(import::ImportArgs),
    /// Run pipeline stages (all of them by default) and print where the results are; with
    /// `report`, the headline metrics table too (docs/pipeline.md).
    Run {
        /// Input data directory or s3://bucket/prefix; default: the embedded synthetic data set
        /// (config data.path).
        #[arg(long)]
        data: Option<String>,
        /// Artifacts directory or s3://bucket/prefix.
        #[arg(long, default_value = "artifacts")]
        artifacts: String,
        /// YAML configuration file layered over the defaults (see `musicrec config`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Comma-separated stages to run, in any order (they run in pipeline order): preprocess,
        /// eda, matrices, features, als, bpr, item2item, top_items, ranking, report; default:
        /// every stage.
        #[arg(long)]
        stages: Option<String>,
        #[command(flatten)]
        sharding: ShardingArgs,
    },
    /// Evaluate a recommendations parquet file (user_id, track_id, rank) on a window of a
    /// finished run and print the metrics (docs/metrics.md) as JSON.
    Evaluate {
        /// Recommendations: parquet with columns user_id, track_id, rank (score optional); a
        /// path or s3://bucket/key.
        #[arg(long)]
        recs: String,
        /// Window to judge against.
        #[arg(long, value_enum)]
        window: WindowArg,
        /// Artifacts (directory or s3://bucket/prefix) of the run whose windows and encoders to use.
        #[arg(long, default_value = "artifacts")]
        artifacts: String,
        /// Length of the judged lists; default: the config's `k`.
        #[arg(long)]
        k: Option<usize>,
        /// YAML configuration file layered over the defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Serve recommendations over HTTP from a pipeline run's artifacts (SIGHUP or
    /// POST /admin/reload loads them again); the API is in docs/service.md and at
    /// GET /openapi.json.
    Serve {
        /// Artifacts (directory or s3://bucket/prefix) of the run to serve; on S3 a reload
        /// mirrors a newer run first.
        #[arg(long, default_value = "artifacts")]
        artifacts: String,
        /// Address to listen on (host:port); default: the config's service.addr.
        #[arg(long)]
        addr: Option<String>,
        /// YAML configuration file layered over the defaults (section `service`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Load-test a running service with the five request groups (old 40 %, old+events 20 %,
    /// new 20 %, new+events 10 %, invalid 10 %); prints throughput, latency percentiles per
    /// group and request kind, status counts and items by source, and fails if any answer was
    /// not as expected (docs/service.md#load-test).
    Loadtest {
        /// The service, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        url: String,
        /// Recommendation requests per second to send (open loop; the +events groups post their
        /// events on top).
        #[arg(long, default_value_t = 1000)]
        rps: u32,
        /// Seconds to run.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Keep-alive connections.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// Threads of the load generator (the rest of the machine is the service's).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Artifacts (directory or s3://bucket/prefix) of the served run: old users and tracks
        /// are drawn from its encoders.
        #[arg(long, default_value = "artifacts")]
        artifacts: String,
    },
    /// Tracked runs: every stage of every `musicrec run` is recorded under <artifacts>/runs/
    /// (and sent to MLflow when tracking.mlflow_uri or MLFLOW_TRACKING_URI is set).
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Benchmarks against the Python reference on the same data, in one run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print the default configuration, every key documented.
    Config,
}

/// Sharded scoring of the candidate-model stages (als, bpr, item2item, top_items): fit once
/// with `--shards N`, score each part with `--shard I/N` (any process or machine sharing the
/// artifacts), then `--merge-shards` publishes the stage as a single run would.
#[derive(clap::Args)]
struct ShardingArgs {
    /// Fit the model stages once and publish the model for N scoring processes.
    #[arg(long, value_name = "N")]
    shards: Option<String>,
    /// Score shard I of N (from 0) with the model published by `--shards N`.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Check that every part is present, complete and scored with the current model, then
    /// publish the stage from them.
    #[arg(long)]
    merge_shards: bool,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Candidate models and the ranker vs the Python reference (implicit, scikit-learn,
    /// CatBoost) on the same data, split, parameters and threads: time ratios (fit; for
    /// Item2Item fit + recommend for the test window's users), test NDCG@10 of both and our
    /// recommendation throughput, written to bench.json (bench/README.md).
    Models {
        #[command(flatten)]
        args: bench::BenchModels,
        /// YAML configuration file layered over the defaults (the bench overrides threads,
        /// factors, item filters and candidates to match the reference).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RunsCommand {
    /// One line per stage run, oldest first: id, stage, status, start, seconds, and the test
    /// NDCG of model stages.
    List {
        /// Artifacts (directory or s3://bucket/prefix) whose runs to list.
        #[arg(long, default_value = "artifacts")]
        artifacts: String,
    },
    /// Everything recorded about one stage run: status, timings, tags, params, metrics, loss
    /// history, artifacts, MLflow link.
    Show {
        /// Run id, as `musicrec runs list` prints it.
        id: String,
        #[arg(long, default_value = "artifacts")]
        artifacts: String,
    },
    /// Params and metrics of two stage runs side by side; `*` marks what differs.
    Compare {
        /// First run id (A).
        a: String,
        /// Second run id (B).
        b: String,
        #[arg(long, default_value = "artifacts")]
        artifacts: String,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum WindowArg {
    Target,
    Test,
}

impl WindowArg {
    fn window(self) -> EvalWindow {
        match self {
            WindowArg::Target => EvalWindow::Target,
            WindowArg::Test => EvalWindow::Test,
        }
    }

    fn name(self) -> &'static str {
        self.window().window().as_str()
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(if is_user_error(&error) { 2 } else { 1 })
        }
    }
}

fn is_user_error(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.downcast_ref::<ConfigError>().is_some()
            || cause.downcast_ref::<PipelineError>().is_some_and(PipelineError::is_user_error)
            || cause.downcast_ref::<ArtifactsError>().is_some_and(ArtifactsError::is_user_error)
            || cause.downcast_ref::<DataError>().is_some_and(DataError::is_user_error)
            || cause.downcast_ref::<ServiceError>().is_some_and(ServiceError::is_user_error)
            || cause.downcast_ref::<LoadtestError>().is_some_and(LoadtestError::is_user_error)
            || cause.downcast_ref::<TrackingError>().is_some_and(TrackingError::is_user_error)
            || cause.downcast_ref::<musicrec_import::ImportError>().is_some_and(|e| e.is_user_error())
    })
}

fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Config => {
            print!("{}", musicrec_config::DEFAULT_YAML);
            Ok(())
        }
        Command::Generate { scale, seed, out } => generate(scale, seed, &out),
        Command::Import(args) => import::run(args),
        Command::Run { data, artifacts, config, stages, sharding } => run(data, artifacts, config, stages, sharding),
        Command::Evaluate { recs, window, artifacts, k, config } => evaluate(&recs, window, &artifacts, k, config),
        Command::Runs(command) => runs(command),
        Command::Bench(BenchCommand::Models { args, config }) => bench::run(args, config.as_deref()),
        Command::Serve { artifacts, addr, config } => serve(artifacts, addr, config),
        Command::Loadtest { url, rps, duration, connections, threads, artifacts } => {
            loadtest(&url, rps, duration, connections, threads, &artifacts)
        }
    }
}

/// A location flag, parsed; a bad one is an error naming the flag.
fn location(flag: &str, text: &str) -> anyhow::Result<Location> {
    Location::parse(text).with_context(|| flag.to_string())
}

/// The artifacts of an `--artifacts` flag; on S3 the credentials and bucket are checked here.
fn open_artifacts(text: &str) -> anyhow::Result<Artifacts> {
    let location = location("--artifacts", text)?;
    Artifacts::open(&location).context("--artifacts")
}

fn generate(scale: Scale, seed: u64, out: &str) -> anyhow::Result<()> {
    let out = location("--out", out)?;
    // An S3 destination is checked before the work, then written into its mirror and uploaded.
    let bucket = match &out {
        Location::S3(s3) => {
            let bucket = Bucket::from_env(&s3.bucket)?;
            bucket.probe(&s3.key).context("--out")?;
            Some((bucket, s3))
        }
        Location::Local(_) => None,
    };
    let summary = musicrec_synth::generate(&GenerateOptions { scale, seed }, out.as_path())
        .with_context(|| format!("generating the {scale} data set into {}", out.as_path().display()))?;
    if let Some((bucket, s3)) = bucket {
        upload_data_set(&bucket, s3, &[], musicrec_synth::GENERATOR_MANIFEST)?;
    }
    println!("wrote {} events of {} users over {} tracks to {out}", summary.events, summary.users, summary.tracks);
    Ok(())
}

/// Uploads a data set (generated or imported) from its mirror, `extra` files after the data
/// and its `manifest` last, as locally: while it is absent the data set is incomplete. The
/// mirror records what it holds, so a run on the same machine does not download it again.
fn upload_data_set(bucket: &Bucket, s3: &S3Location, extra: &[&str], manifest: &str) -> anyhow::Result<()> {
    bucket.delete(&store::join_key(&s3.key, manifest))?;
    for &file in musicrec_data::schema::DATA_FILES.iter().chain(extra).chain([&manifest]) {
        let path = s3.mirror.join(file);
        let uploaded = bucket.upload(&path, &store::join_key(&s3.key, file))?;
        store::record_mirrored(&path, &uploaded)?;
    }
    Ok(())
}

fn run(
    data: Option<String>,
    artifacts: String,
    config: Option<PathBuf>,
    stages: Option<String>,
    sharding: ShardingArgs,
) -> anyhow::Result<()> {
    // Everything the user gave is checked before any work starts.
    let config = Config::load(config.as_deref())?;
    musicrec_pipeline::StageParams::from_config(&config)?;
    let stages = match stages {
        Some(list) => Stage::parse_list(&list)?,
        None => Stage::ALL.to_vec(),
    };
    let sharding = Sharding::from_flags(sharding.shards.as_deref(), sharding.shard.as_deref(), sharding.merge_shards)?;
    sharding.check_stages(&stages)?;
    let data = match (data, &config.data.path) {
        (Some(text), _) => Some(location("--data", &text)?),
        (None, Some(text)) => Some(location("data.path", text)?),
        (None, None) => None,
    };
    let artifacts = open_artifacts(&artifacts)?;
    let scale: Scale = config.data.default_scale.parse().map_err(|e: musicrec_synth::SynthError| {
        ConfigError::Invalid { key: "data.default_scale".into(), reason: e.to_string() }
    })?;
    rayon::ThreadPoolBuilder::new().num_threads(config.threads).build_global().context("starting worker threads")?;

    let data = match data {
        Some(location) => location,
        None => musicrec_pipeline::embedded_data(artifacts.root(), scale, config.seed)?,
    };
    let mut ctx = RunContext::new(config, data, artifacts, GIT_COMMIT);
    ctx.sharding = sharding;
    let result = musicrec_pipeline::run_stages(&ctx, &stages);
    let tracking = ctx.tracking.summary();
    let manifests = match result {
        Ok(manifests) => manifests,
        Err(error) => {
            // Where the records went (the failed stage's among them) matters most now.
            if let Some(summary) = &tracking {
                print_tracking(summary, &ctx.artifacts);
            }
            return Err(error.into());
        }
    };
    println!("run {} on {}", ctx.run_id, ctx.data);
    println!("{:<12} {:>9} {:>10}  outputs", "stage", "seconds", "peak MB");
    for m in &manifests {
        let outputs: Vec<&str> = m.outputs.iter().map(|o| o.file.as_str()).collect();
        println!(
            "{:<12} {:>9.2} {:>10}  {}",
            m.stage,
            m.duration_s,
            m.peak_rss_bytes.map_or("-".into(), |b| (b >> 20).to_string()),
            outputs.join(", ")
        );
    }
    if let Some(pre) = manifests.iter().find(|m| m.stage == Stage::Preprocess.as_str()) {
        let split = &pre.summary["split"];
        let text = |key: &str| split[key].as_str().unwrap_or("?").to_string();
        println!(
            "split: train < {} <= target < {} <= test (chosen by: {})",
            text("train_end"),
            text("target_end"),
            text("chosen_by")
        );
    }
    println!("results: {}", ctx.artifacts.location());
    if ctx.artifacts.is_remote() {
        println!("local mirror: {}", ctx.artifacts.root().display());
    }
    if stages.contains(&Stage::Report) {
        let report = musicrec_pipeline::report::load(&ctx.artifacts)?;
        println!();
        print!("{}", musicrec_pipeline::report::headline(&report));
        println!("report: {}", ctx.artifacts.location_of(Stage::Report, REPORT_FILE));
        println!("service inputs:");
        for input in &report.service_inputs {
            let files = if input.files.is_empty() { input.status.clone() } else { input.files.join(", ") };
            println!("  {}: {files}", input.what);
        }
    }
    if let Some(summary) = &tracking {
        print_tracking(summary, &ctx.artifacts);
    }
    Ok(())
}

fn print_tracking(summary: &musicrec_tracking::TrackingSummary, artifacts: &Artifacts) {
    println!("run records: {} (musicrec runs list --artifacts {})", summary.records, artifacts.location());
    if let Some(url) = &summary.mlflow_run_url {
        println!("mlflow: {url} ({} requests)", summary.http_calls);
    }
    if let Some(uri) = &summary.mlflow_uri
        && !summary.not_sent.is_empty()
    {
        eprintln!(
            "warning: MLflow at {uri} did not get {} item(s); the local run records are complete:",
            summary.not_sent.len()
        );
        for item in &summary.not_sent {
            eprintln!("  not sent: {item}");
        }
    }
}

fn runs(command: RunsCommand) -> anyhow::Result<()> {
    use musicrec_tracking::store as records;
    match command {
        RunsCommand::List { artifacts } => {
            let store = open_artifacts(&artifacts)?;
            let records::Listing { records, unreadable } = records::list(&store)?;
            for error in &unreadable {
                eprintln!("warning: skipped a run record that cannot be read: {error}");
            }
            if records.is_empty() {
                println!("no runs recorded in {}", musicrec_tracking::RecordStore::describe(&store, "runs/"));
            } else {
                print!("{}", render::list(&records));
            }
        }
        RunsCommand::Show { id, artifacts } => {
            print!("{}", render::show(&records::load(&open_artifacts(&artifacts)?, &id)?))
        }
        RunsCommand::Compare { a, b, artifacts } => {
            let store = open_artifacts(&artifacts)?;
            print!("{}", render::compare(&records::load(&store, &a)?, &records::load(&store, &b)?));
        }
    }
    Ok(())
}

fn evaluate(
    recs: &str,
    window: WindowArg,
    artifacts: &str,
    k: Option<usize>,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let k = k.unwrap_or(config.k);
    if k == 0 {
        return Err(ConfigError::Invalid { key: "--k".into(), reason: "must be at least 1".into() }.into());
    }
    let file = location("--recs", recs)?;
    let artifacts = open_artifacts(artifacts)?;
    file.fetch()?;
    let lists = musicrec_data::layout::read_recommendations(&file)?;
    let evaluator = Evaluator::load(&artifacts, "evaluate")?;
    let metrics = evaluator.evaluate_lists(&file.to_string(), &lists, window.window(), k)?;
    let report = serde_json::json!({ window.name(): metrics.to_json() });
    println!("{}", serde_json::to_string_pretty(&report).expect("metrics serialize"));
    Ok(())
}

fn serve(artifacts: String, addr: Option<String>, config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let (flag, addr) = match addr {
        Some(addr) => ("--addr", addr),
        None => ("service.addr", config.service.addr.clone()),
    };
    let addr = addr.parse().map_err(|e| ConfigError::Invalid {
        key: flag.into(),
        reason: format!("`{addr}` is not a host:port address: {e}"),
    })?;
    let settings = musicrec_service::Settings { config: config.service, artifacts: open_artifacts(&artifacts)? };
    musicrec_service::serve(settings, addr)?;
    Ok(())
}

fn loadtest(
    url: &str,
    rps: u32,
    duration: f64,
    connections: usize,
    threads: usize,
    artifacts: &str,
) -> anyhow::Result<()> {
    let flag = |key: &str, reason: String| ConfigError::Invalid { key: key.into(), reason };
    let addr = url.strip_prefix("http://").unwrap_or(url).trim_end_matches('/');
    if addr.is_empty() || addr.contains('/') {
        return Err(flag("--url", format!("`{url}` is not http://host:port")).into());
    }
    if rps == 0 || connections == 0 || threads == 0 || !(duration > 0.0 && duration.is_finite()) {
        return Err(flag("--rps/--duration/--connections/--threads", "must all be positive".into()).into());
    }
    let artifacts = open_artifacts(artifacts)?;
    let matrices = require(&artifacts, Stage::Matrices, "loadtest")?;
    let dir = artifacts.dir(&matrices.stage);
    let read = |file: &str, column: &str| read_i64_column(&dir.join(file), column);
    let options = musicrec_loadtest::Options {
        addr: addr.to_string(),
        rps,
        duration: std::time::Duration::from_secs_f64(duration),
        connections,
        threads,
        old_users: read(USERS_FILE, "user_id")?,
        tracks: read(ITEMS_FILE, "track_id")?,
    };
    let report = musicrec_loadtest::run_blocking(options)?;
    println!("{report}");
    anyhow::ensure!(report.problems() == 0, "{} answers were not as expected", report.problems());
    Ok(())
}
