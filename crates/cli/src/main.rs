//! The `musicrec` program. Errors about the user's input (config, data, flags) exit with
//! code 2, artifacts another process is writing with 3, everything else with 1.

mod bench;
mod events;
mod import;

/// The commit this binary was built from (build.rs), tagged on every tracked run.
const GIT_COMMIT: &str = env!("MUSICREC_GIT_COMMIT");

/// `musicrec --version`: the package version, the commit and the build date.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("MUSICREC_GIT_COMMIT"),
    ", built ",
    env!("MUSICREC_BUILD_DATE"),
    ")"
);

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use musicrec_artifacts::layout::matrices::{ITEMS_FILE, USERS_FILE};
use musicrec_artifacts::layout::report::REPORT_FILE;
use musicrec_artifacts::{Artifacts, ArtifactsError, LockMode, Publication, Stage};
use musicrec_config::{Config, ConfigError, EvaluationConfig, LogFormat};
use musicrec_data::location::S3Location;
use musicrec_data::parquet_io::read_i64_column;
use musicrec_data::store::{self, Bucket};
use musicrec_data::{DataError, Location};
use musicrec_loadtest::LoadtestError;
use musicrec_pipeline::evaluation::{EvalWindow, Evaluator};
use musicrec_pipeline::{PipelineError, RunContext, Sharding, require};
use musicrec_service::ServiceError;
use musicrec_service::catalogue::{Fields, Track};
use musicrec_service::model::ServingModel;
use musicrec_synth::{GenerateOptions, Scale};
use musicrec_tracking::{RunRecord, Status, TrackingError, render, select};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "musicrec", version = VERSION, about = "Music recommendations: offline pipeline, evaluation and serving")]
struct Cli {
    /// Log lines on standard error as `text` (coloured only on a terminal without NO_COLOR) or
    /// `json` (one object per line); default: the config's log.format.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Fewer log lines: -q warnings and errors, -qq errors only.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "verbose")]
    quiet: u8,
    /// More log lines: -v debug, -vv trace. Without -q/-v, RUST_LOG (default: info).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
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
        /// Events to train on besides the data's: a directory or s3://bucket/prefix holding an
        /// interactions.parquet (`musicrec events export` writes one); overrides
        /// data.extra_events.
        #[arg(long)]
        extra_events: Option<String>,
        #[command(flatten)]
        sharding: ShardingArgs,
        /// When another run is writing the artifacts, wait for it to finish instead of
        /// refusing (exit code 3).
        #[arg(long)]
        wait: bool,
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
        /// The version of the artifacts to judge against (`musicrec runs versions`); default:
        /// the current one.
        #[arg(long)]
        version: Option<String>,
        /// Lengths of the judged lists, comma-separated (e.g. `5,10,20`); default: the config's
        /// `evaluation.k`.
        #[arg(long, value_delimiter = ',')]
        k: Vec<usize>,
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
    /// The events the service logged (service.event_log).
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Benchmarks against the Python reference on the same data, in one run.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// A user's most recent train listens and their recommendations, with names and
    /// sources, from a run's artifacts: what GET /recommendations answers a user who has
    /// posted no events.
    Recommend {
        /// Artifacts (directory or s3://bucket/prefix) of the run.
        #[arg(long, default_value = "artifacts")]
        artifacts: String,
        /// The user id.
        #[arg(long)]
        user: i64,
        /// Recommendations (and recent listens) to show, 1..=1000.
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Print JSON (the API's track objects) instead of a table.
        #[arg(long)]
        json: bool,
        /// YAML configuration file layered over the defaults (section `service`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// A track and its similar tracks, with names and sources, from a run's artifacts: what
    /// GET /similar answers.
    Similar {
        /// Artifacts (directory or s3://bucket/prefix) of the run.
        #[arg(long, default_value = "artifacts")]
        artifacts: String,
        /// The track id.
        #[arg(long)]
        track: i64,
        /// Similar tracks to show, 1..=1000.
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Print JSON (the API's track objects) instead of a table.
        #[arg(long)]
        json: bool,
        /// YAML configuration file layered over the defaults (section `service`).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the default configuration, every key documented; with --effective, the merged
    /// configuration a command would use (defaults, --config file, MUSICREC__* variables),
    /// secrets masked.
    Config {
        /// Print the merged configuration instead of the documented defaults.
        #[arg(long)]
        effective: bool,
        /// YAML configuration file layered over the defaults (with --effective).
        #[arg(long, requires = "effective")]
        config: Option<PathBuf>,
    },
}

impl Command {
    /// The `--config` file the command reads, if it takes one.
    fn config_file(&self) -> Option<&Path> {
        match self {
            Command::Run { config, .. }
            | Command::Evaluate { config, .. }
            | Command::Serve { config, .. }
            | Command::Recommend { config, .. }
            | Command::Similar { config, .. }
            | Command::Config { config, .. }
            | Command::Events(events::EventsCommand::Export { config, .. })
            | Command::Bench(BenchCommand::Models { config, .. }) => config.as_deref(),
            Command::Generate { .. } | Command::Import(_) | Command::Loadtest { .. } | Command::Runs(_) => None,
        }
    }
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
        /// Only the runs of this stage (e.g. als).
        #[arg(long)]
        stage: Option<String>,
        /// Order by KEY ascending, or by -KEY descending: `seconds`, `start`, or a metric as
        /// recorded (`test.ndcg@10`, `fit_seconds`); a bare metric name (`ndcg@10`) is its
        /// test-window value. Runs without the key come last.
        #[arg(long, value_name = "KEY", allow_hyphen_values = true)]
        sort: Option<String>,
    },
    /// Everything recorded about one stage run: status, timings, tags, params, metrics, loss
    /// history, artifacts, MLflow link.
    Show {
        /// Run id, as `musicrec runs list` prints it.
        id: String,
        #[arg(long, default_value = "artifacts")]
        artifacts: String,
    },
    /// Params and metrics of two or more stage runs side by side; `*` marks what differs, and
    /// each metric shows its change from the first run.
    Compare {
        /// Run ids, as `musicrec runs list` prints them; the first is the baseline (A).
        #[arg(required = true, num_args = 2..)]
        ids: Vec<String>,
        /// Print the comparison as JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "artifacts")]
        artifacts: String,
    },
    /// The published versions of the artifact set, oldest first: which is current, the run
    /// that wrote it, when, its data's fingerprint, the stages it wrote and carried over.
    Versions {
        #[arg(long, default_value = "artifacts")]
        artifacts: String,
    },
    /// Point the artifacts back at VERSION (default: the version published before the current
    /// one); `serve` picks it up at its next reload, `evaluate` and `report` read it at once.
    Rollback {
        /// A version id, as `musicrec runs versions` prints it.
        version: Option<String>,
        #[arg(long, default_value = "artifacts")]
        artifacts: String,
        /// When a run is writing the artifacts, wait for it instead of refusing.
        #[arg(long)]
        wait: bool,
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
    let cli = Cli::parse();
    init_logging(&cli);
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            let busy = error.chain().any(|c| matches!(c.downcast_ref(), Some(ArtifactsError::Busy { .. })));
            ExitCode::from(if busy {
                3
            } else if is_user_error(&error) {
                2
            } else {
                1
            })
        }
    }
}

/// Log lines go to standard error in the format of --log-format, else of the configuration the
/// command will read (a configuration that does not load is reported by the command itself).
fn init_logging(cli: &Cli) {
    let format = match cli.log_format {
        Some(LogFormatArg::Text) => LogFormat::Text,
        Some(LogFormatArg::Json) => LogFormat::Json,
        None => Config::load(cli.command.config_file()).map_or(LogFormat::Text, |c| c.log.format),
    };
    let level = match (cli.quiet, cli.verbose) {
        (0, 0) => None,
        (1, _) => Some("warn"),
        (_, 0) => Some("error"),
        (_, 1) => Some("debug"),
        _ => Some("trace"),
    };
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            builder.with_ansi(colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR"))).init()
        }
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(true).init(),
    }
}

/// Colour only for a person at a terminal who has not asked for none (no-color.org: any
/// non-empty NO_COLOR).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
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
        Command::Config { effective: false, .. } => {
            print!("{}", musicrec_config::DEFAULT_YAML);
            Ok(())
        }
        Command::Config { effective: true, config } => {
            print!("{}", Config::load(config.as_deref())?.to_masked_yaml());
            Ok(())
        }
        Command::Recommend { artifacts, user, k, json, config } => recommend(&artifacts, user, k, json, config),
        Command::Similar { artifacts, track, k, json, config } => similar(&artifacts, track, k, json, config),
        Command::Generate { scale, seed, out } => generate(scale, seed, &out),
        Command::Import(args) => import::run(args),
        Command::Run { data, artifacts, config, stages, extra_events, sharding, wait } => {
            run(data, artifacts, config, stages, extra_events, sharding, wait)
        }
        Command::Events(command) => events::run(command),
        Command::Evaluate { recs, window, artifacts, version, k, config } => {
            evaluate(&recs, window, &artifacts, version.as_deref(), k, config)
        }
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

/// The artifacts of an `--artifacts` flag; on S3 the credentials and bucket are checked here,
/// a local path must not lead through a file.
fn open_artifacts(text: &str) -> anyhow::Result<Artifacts> {
    let location = location("--artifacts", text)?;
    if let Location::Local(path) = &location {
        directory_or_absent("--artifacts", path)?;
    }
    Artifacts::open(&location).context("--artifacts")
}

/// A local directory flag names a directory, or a path that can become one: a file at it or
/// above it is the user's mistake, named before any work (the I/O error later reads as the
/// machine's).
fn directory_or_absent(flag: &str, path: &Path) -> Result<(), ConfigError> {
    let file = path.ancestors().filter(|p| !p.as_os_str().is_empty()).find_map(|p| match p.metadata() {
        Ok(meta) if meta.is_dir() => Some(None),
        Ok(_) => Some(Some(p)),
        Err(_) => None,
    });
    match file.flatten() {
        None => Ok(()),
        Some(file) => Err(ConfigError::Invalid {
            key: flag.into(),
            reason: format!("{} is a file, not a directory (in {})", file.display(), path.display()),
        }),
    }
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
    extra_events: Option<String>,
    sharding: ShardingArgs,
    wait: bool,
) -> anyhow::Result<()> {
    // Everything the user gave is checked before any work starts.
    let mut config = Config::load(config.as_deref())?;
    if let Some(text) = extra_events {
        location("--extra-events", &text)?;
        config.data.extra_events = Some(text);
    }
    if let Some(text) = &config.data.extra_events {
        location("data.extra_events", text)?;
    }
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
    let store = open_artifacts(&artifacts)?;
    let scale: Scale = config.data.default_scale.parse().map_err(|e: musicrec_synth::SynthError| {
        ConfigError::Invalid { key: "data.default_scale".into(), reason: e.to_string() }
    })?;
    rayon::ThreadPoolBuilder::new().num_threads(config.threads).build_global().context("starting worker threads")?;

    let data = match data {
        Some(location) => location,
        None => musicrec_pipeline::embedded_data(store.root(), scale, config.seed)?,
    };
    let keep_versions = config.artifacts.keep_versions;
    let mut ctx = RunContext::new(config, data, store.clone(), GIT_COMMIT);
    ctx.sharding = sharding;
    // One writer at a time; scorers of one sharded run share the lock and write no version
    // (their parts go beside the fitted model, in its version).
    let scorer = matches!(sharding, Sharding::Score(_));
    let _lock = store.lock(&ctx.run_id, if scorer { LockMode::Scorer } else { LockMode::Writer }, wait)?;
    if scorer {
        ctx.artifacts = store.current()?;
    } else {
        match ctx.tracking.abandon_killed_runs() {
            Ok(marked) if !marked.is_empty() => {
                tracing::warn!(records = %marked.join(", "), "marked the records of a killed run abandoned")
            }
            Ok(_) => {}
            // Only the records' status is at stake, not this run.
            Err(e) => tracing::warn!(error = %e, "could not mark the records of killed runs"),
        }
        ctx.artifacts = store.begin_version(&ctx.run_id)?;
    }
    let result = musicrec_pipeline::run_stages(&ctx, &stages).and_then(|manifests| {
        if scorer {
            return Ok((manifests, None));
        }
        let publication = Publication { data: ctx.data.to_string(), data_fingerprint: ctx.tracking.data_fingerprint() };
        let version = ctx.artifacts.publish_version(&publication)?;
        Ok((manifests, Some(version)))
    });
    let tracking = ctx.tracking.summary();
    let (manifests, version) = match result {
        Ok(done) => done,
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
    if let Some(version) = &version {
        let carried = version.carried().count();
        println!("published version {} ({} stages written, {carried} carried over)", version.id, version.written.len());
        // Failing to delete old versions loses nothing: the next run tries again.
        match store.prune(keep_versions) {
            Ok(dropped) if !dropped.is_empty() => println!("deleted old versions: {}", dropped.join(", ")),
            Ok(_) => {}
            Err(e) => eprintln!("warning: old versions were not deleted: {e}"),
        }
    }
    if ctx.artifacts.is_remote() {
        println!("local mirror: {}", ctx.artifacts.root().display());
    }
    if stages.contains(&Stage::Report) {
        let report = musicrec_pipeline::report::load(&ctx.artifacts)?;
        println!();
        print!("{}", musicrec_pipeline::report::headline(&report));
        for line in &report.mixed_runs {
            eprintln!("warning: {line}");
        }
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
        RunsCommand::List { artifacts, stage, sort } => {
            // Flags are checked before the store is read.
            let stage = stage.as_deref().map(Stage::parse).transpose()?;
            let sort = sort.as_deref().map(select::SortKey::parse).transpose()?;
            let store = open_artifacts(&artifacts)?;
            // A free writer lock means no run is alive to end the records still `running`: they
            // show as abandoned. Listing changes no record; the next run records it (and tells
            // MLflow). A local directory that does not exist has no lock: listing must not
            // create it.
            let exists = store.is_remote() || store.root().is_dir();
            let writer_gone = exists && matches!(store.try_lock("runs list", LockMode::Writer), Ok(Ok(_)));
            let records::Listing { mut records, unreadable } = records::list(&store)?;
            if writer_gone {
                records.iter_mut().filter(|r| r.status == Status::Running).for_each(RunRecord::abandon);
            }
            let mut records = select::of_stage(records, stage.map(Stage::as_str));
            if let Some(key) = &sort {
                select::sort(&mut records, key)?;
            }
            for error in &unreadable {
                eprintln!("warning: skipped a run record that cannot be read: {error}");
            }
            if records.is_empty() {
                let of = stage.map_or(String::new(), |s| format!(" of stage {}", s.as_str()));
                println!("no runs{of} recorded in {}", musicrec_tracking::RecordStore::describe(&store, "runs/"));
            } else {
                print!("{}", render::list(&records));
            }
        }
        RunsCommand::Show { id, artifacts } => {
            print!("{}", render::show(&records::load(&open_artifacts(&artifacts)?, &id)?))
        }
        RunsCommand::Compare { ids, json, artifacts } => {
            let store = open_artifacts(&artifacts)?;
            let compared = ids.iter().map(|id| records::load(&store, id)).collect::<Result<Vec<_>, _>>()?;
            if json {
                let text = serde_json::to_string_pretty(&render::compare_json(&compared)).expect("JSON serializes");
                println!("{text}");
            } else {
                print!("{}", render::compare(&compared));
            }
        }
        RunsCommand::Versions { artifacts } => {
            let store = open_artifacts(&artifacts)?;
            let current = store.current()?.version_id()?;
            let versions = store.versions()?;
            if versions.is_empty() {
                println!("no versions published in {} yet", store.location());
            }
            for v in &versions {
                let mark = if current.as_ref() == Some(&v.id) { "*" } else { " " };
                let carried: Vec<String> = v.carried().map(|(unit, from)| format!("{unit}<{from}")).collect();
                println!(
                    "{mark} {}  published {}  data {}  wrote: {}  carried: {}",
                    v.id,
                    v.published_at.get(..19).unwrap_or(&v.published_at),
                    v.data_fingerprint,
                    if v.written.is_empty() { "-".into() } else { v.written.join(",") },
                    if carried.is_empty() { "-".into() } else { carried.join(",") },
                );
            }
        }
        RunsCommand::Rollback { version, artifacts, wait } => {
            let store = open_artifacts(&artifacts)?;
            let _lock = store.lock("rollback", LockMode::Writer, wait)?;
            let restored = store.rollback(version.as_deref())?;
            println!("current version: {} (run of {}, data {})", restored.id, restored.published_at, restored.data);
        }
    }
    Ok(())
}

fn evaluate(
    recs: &str,
    window: WindowArg,
    artifacts: &str,
    version: Option<&str>,
    k: Vec<usize>,
    config: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let ks = if k.is_empty() { config.evaluation.k } else { k };
    EvaluationConfig::check_ks("--k", &ks)?;
    let file = location("--recs", recs)?;
    let store = open_artifacts(artifacts)?;
    let artifacts = match version {
        Some(id) => store.version(id).context("--version")?,
        None => store.current()?,
    };
    file.fetch()?;
    let lists = musicrec_data::layout::read_recommendations(&file)?;
    let evaluator = Evaluator::load(&artifacts, "evaluate")?;
    let evaluation = evaluator.evaluate_lists(&file.to_string(), &lists, window.window(), &ks)?;
    let report = serde_json::json!({ window.name(): evaluation.to_json() });
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
    musicrec_service::metrics::set_build_commit(GIT_COMMIT);
    musicrec_service::serve(settings, addr)?;
    Ok(())
}

/// The served model of an `--artifacts` flag, as the service loads it (without the fold-in,
/// which only answers users with posted events).
fn load_served(artifacts: &str, config: Option<PathBuf>, k: usize) -> anyhow::Result<(Artifacts, ServingModel)> {
    if !(1..=1000).contains(&k) {
        return Err(ConfigError::Invalid { key: "--k".into(), reason: format!("{k} is not in 1..=1000") }.into());
    }
    let config = Config::load(config.as_deref())?;
    let artifacts = open_artifacts(artifacts)?;
    let service = musicrec_config::ServiceConfig { fold_in: false, ..config.service };
    let model = ServingModel::load(&artifacts, &service)?;
    Ok((artifacts, model))
}

fn recommend(artifacts: &str, user: i64, k: usize, json: bool, config: Option<PathBuf>) -> anyhow::Result<()> {
    let (artifacts, model) = load_served(artifacts, config, k)?;
    let listens = musicrec_service::model::recent_train_listens(&artifacts, user, k)?;
    let picks = model.recommend(user, &[], k);
    let listened: Vec<Track<'_>> = listens
        .iter()
        .map(|&t| match model.items.encode(t) {
            Some(item) => model.track(item, None, None, Fields::All),
            None => Track { track_id: t, source: None, about: None },
        })
        .collect();
    let recommended = model.tracks(&picks, Fields::All);
    if json {
        let answer = serde_json::json!({
            "user_id": user, "model_version": model.version,
            "listens": listened, "recommendations": recommended,
        });
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    if listened.is_empty() {
        println!("user {user}: no train listens in run {} (a new user: served the popular tracks)", model.version);
    } else {
        println!("user {user}: {} most recent train listens, newest first", listened.len());
        listened.iter().for_each(|t| println!("  {}", describe(t)));
    }
    println!("recommendations (model {}):", model.version);
    recommended.iter().for_each(|t| println!("  {}", describe(t)));
    Ok(())
}

fn similar(artifacts: &str, track: i64, k: usize, json: bool, config: Option<PathBuf>) -> anyhow::Result<()> {
    let (_, model) = load_served(artifacts, config, k)?;
    let Some(item) = model.items.encode(track) else {
        let reason = format!("track {track} is not in the catalogue of run {}", model.version);
        return Err(ConfigError::Invalid { key: "--track".into(), reason }.into());
    };
    let this = model.track(item, None, None, Fields::All);
    let similar = model.tracks(&model.similar_to(item, k), Fields::All);
    if json {
        let answer = serde_json::json!({"track_id": track, "track": this, "similar": similar});
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    println!("{}", describe(&this));
    if similar.is_empty() {
        println!("no similar tracks in run {}", model.version);
    } else {
        println!("similar tracks (model {}):", model.version);
        similar.iter().for_each(|t| println!("  {}", describe(t)));
    }
    Ok(())
}

/// One line of a track: id, source and score when known, name, artists, album, genres.
fn describe(track: &Track<'_>) -> String {
    let mut line = format!("{:>10}", track.track_id);
    if let Some(source) = track.source {
        line.push_str(&format!("  {:<8}", source.as_str()));
    }
    let Some(about) = &track.about else { return line };
    if track.source.is_some() {
        line.push_str(&about.score.map_or("        -".into(), |s| format!("  {s:>7.4}")));
    }
    let d = &about.details;
    line.push_str(&format!("  {}", d.name.unwrap_or("(no name)")));
    if !d.artists.is_empty() {
        line.push_str(&format!(" — {}", d.artists.join(", ")));
    }
    if let Some(album) = d.album {
        line.push_str(&format!(" · {album}"));
    }
    if !d.genres.is_empty() {
        line.push_str(&format!(" [{}]", d.genres.join(", ")));
    }
    line
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
