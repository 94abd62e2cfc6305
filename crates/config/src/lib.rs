//! Layered configuration: the documented defaults in `default.yaml`, then a YAML file, then
//! environment variables `MUSICREC__SECTION__KEY`. The embedded `default.yaml` is both the
//! documentation (`musicrec config` prints it) and the base layer, so the two cannot drift.
//!
//! `Config::check` checks the values only the configuration gives a meaning to. A model's
//! hyperparameters (`als.factors`, `ranking.depth`, ...) are checked by the model itself: the
//! pipeline builds every stage's parameters from this configuration and checks them before
//! its first stage, naming the key the same way.

use std::path::Path;

use chrono::NaiveDate;
use musicrec_models::{Metric, SIMILAR_ITEM_MODELS};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The documented default configuration, every key commented.
pub const DEFAULT_YAML: &str = include_str!("default.yaml");

/// Prefix of environment overrides: `MUSICREC__ALS__FACTORS=64` sets `als.factors`.
pub const ENV_PREFIX: &str = "MUSICREC__";

/// The standard MLflow variable, honoured when `tracking.mlflow_uri` is not set.
pub const MLFLOW_TRACKING_URI: &str = "MLFLOW_TRACKING_URI";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{origin}: not valid YAML: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: unknown key `{key}` (`musicrec config` lists every key)")]
    UnknownKey { origin: String, key: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("environment variable {name}: the value is not valid UTF-8")]
    NotUtf8 { name: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), reason: reason.into() }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub threads: usize,
    pub seed: u64,
    pub data: DataConfig,
    pub preprocess: PreprocessConfig,
    pub features: FeaturesConfig,
    pub als: AlsConfig,
    pub bpr: BprConfig,
    pub item2item: Item2ItemConfig,
    pub top_items: TopItemsConfig,
    pub ranking: RankingConfig,
    pub service: ServiceConfig,
    pub tracking: TrackingConfig,
    pub artifacts: ArtifactsConfig,
    pub evaluation: EvaluationConfig,
    pub log: LogConfig,
}

/// The artifact store's versions (docs/pipeline.md#versions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsConfig {
    pub keep_versions: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// For people: one line per event, coloured on a terminal.
    Text,
    /// For log collectors: one JSON object per line.
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub path: Option<String>,
    pub default_scale: String,
    pub unknown_tracks: UnknownTracks,
    pub extra_events: Option<String>,
}

/// What to do with events whose track is not in the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownTracks {
    Drop,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreprocessConfig {
    pub train_end: SplitDate,
    pub target_end: SplitDate,
}

/// A split date: a day, or `auto` for the split the data's own time line suggests
/// (docs/pipeline.md#automatic-split), which `preprocess` chooses and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitDate {
    Auto,
    Date(NaiveDate),
}

impl SplitDate {
    pub fn date(self) -> Option<NaiveDate> {
        match self {
            Self::Auto => None,
            Self::Date(date) => Some(date),
        }
    }
}

impl std::fmt::Display for SplitDate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Date(date) => write!(f, "{date}"),
        }
    }
}

impl Serialize for SplitDate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SplitDate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim() == "auto" {
            return Ok(Self::Auto);
        }
        NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .map(Self::Date)
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is neither a date (YYYY-MM-DD) nor `auto`: {e}")))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturesConfig {
    pub recent_days: Vec<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlsConfig {
    pub factors: usize,
    pub iterations: usize,
    pub regularization: f32,
    pub alpha: f32,
    pub min_users_per_item: usize,
    pub n_candidates: usize,
    pub report_loss: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BprConfig {
    pub factors: usize,
    pub iterations: usize,
    pub learning_rate: f32,
    pub regularization: f32,
    pub min_users_per_item: usize,
    pub n_candidates: usize,
    pub report_loss: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item2ItemConfig {
    pub n_components: usize,
    pub n_neighbors: usize,
    pub metric: Metric,
    pub min_users_per_item: usize,
    pub n_candidates: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopItemsConfig {
    pub top_n: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RankingConfig {
    pub popular_candidates: usize,
    pub negatives_per_user: usize,
    pub recent_tracks: usize,
    pub top_n: usize,
    pub iterations: usize,
    pub learning_rate: f32,
    pub depth: usize,
    pub users_per_chunk: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub addr: String,
    pub max_k: usize,
    pub max_offset: usize,
    pub events_per_user: usize,
    pub similar_sources: Vec<String>,
    pub fold_in: bool,
    pub fold_in_cache_users: usize,
    pub max_body_bytes: usize,
    pub max_uri_bytes: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout_ms: u64,
    pub body_read_timeout_ms: u64,
    pub shutdown_grace_ms: u64,
    pub events_max_users: usize,
    pub redis_url: Option<String>,
    pub redis_key_prefix: String,
    pub redis_timeout_ms: u64,
    pub redis_cooldown_ms: u64,
    pub admin_token: Option<Secret>,
    pub access_log: bool,
    pub rate_limits: RateLimitsConfig,
    pub events_ttl_seconds: u64,
    pub event_log: EventLogConfig,
}

/// The durable log of every event `POST /events` accepts (docs/service.md#event-log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLogConfig {
    pub store: EventLogStore,
    pub dir: Option<String>,
    pub fsync: bool,
    pub rotate_bytes: u64,
    pub rotate_seconds: u64,
    pub redis_stream: String,
}

/// Where the event log is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventLogStore {
    /// `none`, not `off`: YAML reads an unquoted `off` as false.
    #[serde(rename = "none")]
    Off,
    Local,
    Redis,
}

/// A configured secret: its `Debug` form is redacted, so logging a configuration never
/// prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    pub store: RateLimitStore,
    pub recommendations: RateLimit,
    pub events: RateLimit,
    pub similar: RateLimit,
    pub popular: RateLimit,
}

/// Where rate-limit budgets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitStore {
    Memory,
    Redis,
}

/// One endpoint's budgets, requests per minute; 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub global_per_minute: u32,
    pub per_client_per_minute: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingConfig {
    pub mlflow_uri: Option<String>,
    pub experiment: String,
    pub timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationConfig {
    pub k: Vec<usize>,
    pub headline_k: usize,
    pub resamples: usize,
    pub examples: usize,
}

impl EvaluationConfig {
    /// Checks a list of cut-offs K, named `key` in errors (the configuration's `evaluation.k`
    /// or a command's `--k`): at least one, each in 1 ..= 1000, none twice.
    pub fn check_ks(key: &str, ks: &[usize]) -> Result<(), ConfigError> {
        if ks.is_empty() {
            return Err(invalid(key, "must list at least one K"));
        }
        for (i, &k) in ks.iter().enumerate() {
            in_range(&format!("{key}[{i}]"), k, 1, 1000)?;
            if ks[..i].contains(&k) {
                return Err(invalid(&format!("{key}[{i}]"), format!("K = {k} is listed twice")));
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        Self::check_ks("evaluation.k", &self.k)?;
        if !self.k.contains(&self.headline_k) {
            return Err(invalid("evaluation.headline_k", format!("{} is not one of evaluation.k", self.headline_k)));
        }
        in_range("evaluation.resamples", self.resamples, 0, 100_000)?;
        in_range("evaluation.examples", self.examples, 0, 100)
    }
}

/// Checks that `value` lies in `[lo, hi]`, naming the key when it does not.
fn in_range<T: PartialOrd + std::fmt::Display>(key: &str, value: T, lo: T, hi: T) -> Result<(), ConfigError> {
    if value >= lo && value <= hi {
        Ok(())
    } else {
        Err(invalid(key, format!("{value} is out of range; allowed {lo} ..= {hi}")))
    }
}

impl Config {
    /// The built-in defaults (`default.yaml`).
    pub fn defaults() -> Self {
        Self::from_layers(None, std::iter::empty()).expect("the embedded default.yaml is a valid configuration")
    }

    /// Defaults, then `file`, then the process environment's `MUSICREC__*` variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_layers(file, our_variables(std::env::vars_os())?)
    }

    /// Defaults, then `file`, then the `MUSICREC__*` entries of `env`; checked.
    pub fn from_layers(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut tree = parse_yaml("default.yaml", DEFAULT_YAML)?;
        if let Some(path) = file {
            let origin = path.display().to_string();
            let text =
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: origin.clone(), source })?;
            let layer = parse_yaml(&origin, &text)?;
            match layer {
                Value::Null => {}
                Value::Object(_) => merge(&mut tree, layer, &origin, "")?,
                _ => {
                    return Err(ConfigError::Parse {
                        origin,
                        message: "the top level must be a mapping of keys to values".into(),
                    });
                }
            }
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut overrides: Vec<&(String, String)> =
            env.iter().filter(|(name, _)| name.starts_with(ENV_PREFIX)).collect();
        overrides.sort();
        let mut set_by = Vec::with_capacity(overrides.len());
        for (name, raw) in overrides {
            set_by.push((apply_env(&mut tree, name, raw)?, name.as_str()));
        }
        if let Some((_, uri)) = env.iter().find(|(name, _)| name == MLFLOW_TRACKING_URI)
            && let Some(slot) = tree.pointer_mut("/tracking/mlflow_uri")
            && slot.as_str().is_none_or(str::is_empty)
            && !uri.trim().is_empty()
        {
            *slot = Value::String(uri.trim().to_string());
        }
        let config: Config = serde_path_to_error::deserialize(tree).map_err(|e| {
            let key = e.path().to_string();
            from_variable(invalid(&key, e.into_inner().to_string()), &set_by)
        })?;
        config.check().map_err(|e| from_variable(e, &set_by))?;
        Ok(config)
    }

    /// Checks every value but the models' hyperparameters (see the crate doc); the first bad
    /// one is returned with its key.
    pub fn check(&self) -> Result<(), ConfigError> {
        in_range("threads", self.threads, 0, 1024)?;
        in_range("artifacts.keep_versions", self.artifacts.keep_versions, 1, 1000)?;
        self.evaluation.check()?;
        if self.data.path.as_ref().is_some_and(|path| path.trim().is_empty()) {
            return Err(invalid("data.path", "must not be empty (use null for the embedded data set)"));
        }
        if self.data.extra_events.as_ref().is_some_and(|path| path.trim().is_empty()) {
            return Err(invalid("data.extra_events", "must not be empty (use null for none)"));
        }
        match (self.preprocess.train_end, self.preprocess.target_end) {
            (SplitDate::Date(train_end), SplitDate::Date(target_end)) if train_end >= target_end => {
                return Err(invalid(
                    "preprocess.target_end",
                    format!("{target_end} must be after preprocess.train_end {train_end}"),
                ));
            }
            (SplitDate::Auto, SplitDate::Date(_)) | (SplitDate::Date(_), SplitDate::Auto) => {
                let key = if self.preprocess.train_end == SplitDate::Auto {
                    "preprocess.target_end"
                } else {
                    "preprocess.train_end"
                };
                return Err(invalid(
                    key,
                    "must be `auto` too: the automatic split chooses both dates (or give both as dates)",
                ));
            }
            _ => {}
        }
        let days = &self.features.recent_days;
        if days.is_empty() {
            return Err(invalid("features.recent_days", "must list at least one window"));
        }
        for (i, &d) in days.iter().enumerate() {
            in_range(&format!("features.recent_days[{i}]"), d, 1, 3650)?;
            if days[..i].contains(&d) {
                return Err(invalid(&format!("features.recent_days[{i}]"), format!("window {d} is listed twice")));
            }
        }
        in_range("als.n_candidates", self.als.n_candidates, 1, 10_000)?;
        in_range("bpr.n_candidates", self.bpr.n_candidates, 1, 10_000)?;
        in_range("item2item.n_candidates", self.item2item.n_candidates, 1, 10_000)?;
        let r = &self.ranking;
        in_range("ranking.popular_candidates", r.popular_candidates, 0, 100_000)?;
        in_range("ranking.negatives_per_user", r.negatives_per_user, 1, 1000)?;
        in_range("ranking.recent_tracks", r.recent_tracks, 1, 1000)?;
        in_range("ranking.top_n", r.top_n, 1, 10_000)?;
        in_range("ranking.users_per_chunk", r.users_per_chunk, 1, usize::MAX)?;
        self.service.check()?;
        self.tracking.check()?;
        Ok(())
    }

    /// The configuration as YAML (the keys of `default.yaml`, without its comments): given
    /// back with `--config` it reproduces this configuration.
    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).expect("configurations serialize to YAML")
    }

    /// `to_yaml` with every secret masked: the admin token, and the password of any URL
    /// (`redis://user:password@host`), so the output can be shared.
    pub fn to_masked_yaml(&self) -> String {
        let mut tree = serde_json::to_value(self).expect("configurations serialize");
        mask_secrets(&mut tree);
        serde_saphyr::to_string(&tree).expect("configurations serialize to YAML")
    }

    /// A stable fingerprint of the whole configuration (hex, 16 chars).
    pub fn fingerprint(&self) -> String {
        fingerprint_of(self)
    }
}

/// The HTTP server reads a request's head (request line and headers) into a buffer of this
/// size; `service.max_uri_bytes` and `service.max_header_bytes` must fit in it together, so
/// that the service, not the HTTP library, answers a head over them (with a JSON error).
pub const MAX_HEAD_BYTES: usize = 64 << 10;

impl ServiceConfig {
    fn check(&self) -> Result<(), ConfigError> {
        self.addr
            .parse::<std::net::SocketAddr>()
            .map_err(|e| invalid("service.addr", format!("`{}` is not a host:port address: {e}", self.addr)))?;
        in_range("service.max_k", self.max_k, 1, 1000)?;
        in_range("service.max_offset", self.max_offset, 0, 10_000)?;
        in_range("service.events_per_user", self.events_per_user, 1, 1000)?;
        for (i, source) in self.similar_sources.iter().enumerate() {
            let key = format!("service.similar_sources[{i}]");
            if !SIMILAR_ITEM_MODELS.contains(&source.as_str()) {
                return Err(invalid(
                    &key,
                    format!(
                        "`{source}` is not one of the models with similar items: {}",
                        SIMILAR_ITEM_MODELS.join(", ")
                    ),
                ));
            }
            if self.similar_sources[..i].contains(source) {
                return Err(invalid(&key, format!("`{source}` is listed twice")));
            }
        }
        in_range("service.max_body_bytes", self.max_body_bytes, 64, 1 << 20)?;
        in_range("service.max_uri_bytes", self.max_uri_bytes, 256, MAX_HEAD_BYTES / 2)?;
        in_range("service.max_header_bytes", self.max_header_bytes, 1024, MAX_HEAD_BYTES / 2)?;
        in_range("service.header_read_timeout_ms", self.header_read_timeout_ms, 1, 3_600_000)?;
        in_range("service.body_read_timeout_ms", self.body_read_timeout_ms, 1, 3_600_000)?;
        in_range("service.shutdown_grace_ms", self.shutdown_grace_ms, 0, 3_600_000)?;
        in_range("service.events_max_users", self.events_max_users, 1, 1 << 30)?;
        in_range("service.fold_in_cache_users", self.fold_in_cache_users, 0, 1 << 26)?;
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(invalid("service.redis_url", format!("`{url}` must start with redis:// (or null for memory)")));
        }
        in_range("service.redis_timeout_ms", self.redis_timeout_ms, 1, 60_000)?;
        in_range("service.redis_cooldown_ms", self.redis_cooldown_ms, 1, 3_600_000)?;
        if let Some(token) = &self.admin_token
            && token.expose().trim().chars().count() < 16
        {
            return Err(invalid(
                "service.admin_token",
                "must be at least 16 characters (or null to disable POST /admin/reload)",
            ));
        }
        if self.rate_limits.store == RateLimitStore::Redis && self.redis_url.is_none() {
            return Err(invalid("service.rate_limits.store", "`redis` needs service.redis_url"));
        }
        in_range("service.events_ttl_seconds", self.events_ttl_seconds, 0, 1 << 40)?;
        self.event_log.check(self.redis_url.is_some())
    }
}

impl EventLogConfig {
    fn check(&self, has_redis: bool) -> Result<(), ConfigError> {
        match self.store {
            EventLogStore::Local if self.dir.as_ref().is_none_or(|d| d.trim().is_empty()) => {
                return Err(invalid("service.event_log.dir", "`local` needs a directory to write the log into"));
            }
            EventLogStore::Redis if !has_redis => {
                return Err(invalid("service.event_log.store", "`redis` needs service.redis_url"));
            }
            _ => {}
        }
        in_range("service.event_log.rotate_bytes", self.rotate_bytes, 4096, 1 << 40)?;
        in_range("service.event_log.rotate_seconds", self.rotate_seconds, 1, 366 * 86_400)?;
        if self.redis_stream.trim().is_empty() {
            return Err(invalid("service.event_log.redis_stream", "must not be empty"));
        }
        Ok(())
    }
}

impl TrackingConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if let Some(uri) = self.mlflow_uri.as_deref().filter(|u| !u.is_empty())
            && !(uri.starts_with("http://") || uri.starts_with("https://"))
        {
            return Err(invalid(
                "tracking.mlflow_uri",
                format!(
                    "`{uri}` must be an http:// or https:// tracking server (or null; also read from {MLFLOW_TRACKING_URI})"
                ),
            ));
        }
        if self.experiment.trim().is_empty() {
            return Err(invalid("tracking.experiment", "must not be empty"));
        }
        in_range("tracking.timeout_ms", self.timeout_ms, 1, 600_000)?;
        Ok(())
    }

    /// The tracking server runs go to, if any.
    pub fn mlflow_uri(&self) -> Option<&str> {
        self.mlflow_uri.as_deref().filter(|u| !u.is_empty())
    }
}

/// What `to_masked_yaml` shows instead of a secret.
pub const MASKED: &str = "<masked>";

fn mask_secrets(tree: &mut Value) {
    if let Some(token) = tree.pointer_mut("/service/admin_token")
        && !token.is_null()
    {
        *token = Value::String(MASKED.into());
    }
    mask_url_passwords(tree);
}

/// Replaces the password of every `scheme://user:password@host` string in `tree`.
fn mask_url_passwords(tree: &mut Value) {
    match tree {
        Value::String(text) => {
            if let Some((scheme, rest)) = text.split_once("://")
                && let Some((userinfo, host)) = rest.split_once('@')
                && let Some((user, _password)) = userinfo.split_once(':')
            {
                *text = format!("{scheme}://{user}:{MASKED}@{host}");
            }
        }
        Value::Array(values) => values.iter_mut().for_each(mask_url_passwords),
        Value::Object(map) => map.values_mut().for_each(mask_url_passwords),
        _ => {}
    }
}

/// A stable fingerprint of any serializable value (e.g. one config section), hex, 16 chars.
pub fn fingerprint_of<T: Serialize>(value: &T) -> String {
    let json = serde_json::to_vec(value).expect("config values serialize to JSON");
    let digest = Sha256::digest(&json);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_yaml(origin: &str, text: &str) -> Result<Value, ConfigError> {
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ConfigError::Parse { origin: origin.to_string(), message: e.to_string() })
}

fn join_key(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") }
}

/// Merges `layer` into `base`. Every key of the layer must exist in the base, which starts as
/// the full default tree, so a misspelt key is an error naming it rather than silently ignored.
fn merge(base: &mut Value, layer: Value, origin: &str, prefix: &str) -> Result<(), ConfigError> {
    match (base, layer) {
        (Value::Object(base_map), Value::Object(layer_map)) => {
            for (key, value) in layer_map {
                let full = join_key(prefix, &key);
                let slot = base_map
                    .get_mut(&key)
                    .ok_or_else(|| ConfigError::UnknownKey { origin: origin.to_string(), key: full.clone() })?;
                merge(slot, value, origin, &full)?;
            }
            Ok(())
        }
        (Value::Object(_), other) => {
            Err(invalid(prefix, format!("in {origin}: expected a section of keys, found {other}")))
        }
        (slot, value) => {
            *slot = value;
            Ok(())
        }
    }
}

/// The variables the configuration reads, out of a whole environment. Any other variable may
/// hold bytes that are not UTF-8 (the environment is the user's, not ours) and is skipped; one
/// of ours that is not UTF-8 is an error naming it.
fn our_variables(
    env: impl IntoIterator<Item = (std::ffi::OsString, std::ffi::OsString)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut ours = Vec::new();
    for (name, value) in env {
        let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX) || *n == MLFLOW_TRACKING_URI) else {
            continue;
        };
        let value = value.into_string().map_err(|_| ConfigError::NotUtf8 { name: name.to_string() })?;
        ours.push((name.to_string(), value));
    }
    Ok(ours)
}

/// Sets the key `name` spells to `raw`, read as the type the key has in the default tree (the
/// documented defaults hold every key). A string key, or an optional one (null by default: all
/// are strings), takes the value exactly as written: read as YAML, a secret `abc #x` would lose
/// ` #x` as a comment, `~` would turn into null and `prefix:` into a map. An empty value unsets
/// an optional key. Numbers, booleans, lists and sections are read as YAML and must come out as
/// that type. Returns the key set.
fn apply_env(tree: &mut Value, name: &str, raw: &str) -> Result<String, ConfigError> {
    let path: Vec<String> = name[ENV_PREFIX.len()..].split("__").map(|s| s.to_ascii_lowercase()).collect();
    let key = path.join(".");
    let origin = format!("environment variable {name}");
    let mut slot = &mut *tree;
    for part in &path {
        slot = slot
            .as_object_mut()
            .and_then(|section| section.get_mut(part))
            .ok_or_else(|| ConfigError::UnknownKey { origin: origin.clone(), key: key.clone() })?;
    }
    let expected = match slot {
        Value::String(_) => {
            *slot = Value::String(raw.to_string());
            return Ok(key);
        }
        Value::Null => {
            *slot = if raw.is_empty() { Value::Null } else { Value::String(raw.to_string()) };
            return Ok(key);
        }
        Value::Bool(_) => "true or false",
        Value::Number(_) => "a number",
        Value::Array(_) => "a list such as [5, 10, 20]",
        Value::Object(_) => "a section of keys such as {key: value}",
    };
    let value = serde_saphyr::from_str::<Value>(raw)
        .ok()
        .filter(|value| std::mem::discriminant(value) == std::mem::discriminant(slot))
        .ok_or_else(|| invalid(&key, format!("{origin}: `{raw}` is not {expected}")))?;
    merge(slot, value, &origin, &key)?;
    Ok(key)
}

/// `error` with the environment variable that set its key, when one did: the user looks for
/// the value there, not in a file.
fn from_variable(error: ConfigError, set_by: &[(String, &str)]) -> ConfigError {
    match error {
        ConfigError::Invalid { key, reason } => {
            let within =
                |set: &str| key == set || key.strip_prefix(set).is_some_and(|rest| rest.starts_with(['.', '[']));
            match set_by.iter().find(|(set, _)| within(set)) {
                Some((_, name)) if !reason.contains(name) => {
                    ConfigError::Invalid { reason: format!("{reason} (set by environment variable {name})"), key }
                }
                _ => ConfigError::Invalid { key, reason },
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// A YAML file that is deleted when dropped.
    fn write_yaml(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn defaults_hold_the_original_names_and_values() {
        let c = Config::defaults();
        assert_eq!((c.evaluation.k.as_slice(), c.evaluation.headline_k), (&[5, 10, 20][..], 10));
        assert_eq!(c.preprocess.train_end, SplitDate::Date(NaiveDate::from_ymd_opt(2022, 12, 16).unwrap()));
        assert_eq!(c.preprocess.target_end, SplitDate::Date(NaiveDate::from_ymd_opt(2022, 12, 23).unwrap()));
        assert_eq!((c.als.factors, c.als.iterations, c.als.regularization, c.als.alpha), (200, 15, 0.05, 1.0));
        assert_eq!((c.bpr.factors, c.bpr.iterations, c.bpr.learning_rate), (200, 50, 0.05));
        assert!(!c.als.report_loss && !c.bpr.report_loss, "losses are computed only when asked");
        assert_eq!(c.item2item.metric, Metric::Manhattan);
        assert_eq!(c.item2item.n_components, 100);
        assert_eq!(c.top_items.top_n, 100);
        assert_eq!(c.ranking.negatives_per_user, 5);
        assert_eq!(c.data.unknown_tracks, UnknownTracks::Drop);
        assert_eq!((c.service.max_k, c.service.events_per_user, c.service.redis_url.as_deref()), (10, 10, None));
        assert_eq!(c.service.similar_sources, ["als", "bpr"]);
    }

    #[test]
    fn file_then_env_override_in_order() {
        let file = write_yaml("als:\n  factors: 64\n  iterations: 3\nseed: 7\n");
        let c =
            Config::from_layers(Some(file.path()), env(&[("MUSICREC__ALS__FACTORS", "32"), ("OTHER", "x")])).unwrap();
        assert_eq!(c.als.factors, 32, "environment wins over the file");
        assert_eq!(c.als.iterations, 3, "file wins over defaults");
        assert_eq!(c.seed, 7);
        assert_eq!(c.bpr.factors, 200, "untouched keys keep their defaults");
    }

    #[test]
    fn env_values_are_typed_and_nested() {
        let c = Config::from_layers(
            None,
            env(&[("MUSICREC__FEATURES__RECENT_DAYS", "[3, 14]"), ("MUSICREC__ITEM2ITEM__METRIC", "cosine")]),
        )
        .unwrap();
        assert_eq!(c.features.recent_days, vec![3, 14]);
        assert_eq!(c.item2item.metric, Metric::Cosine);
    }

    #[test]
    fn service_token_and_limits_come_from_the_environment_and_the_token_is_never_printed() {
        let c = Config::from_layers(
            None,
            env(&[
                ("MUSICREC__SERVICE__ADMIN_TOKEN", "0123456789abcdef-token"),
                ("MUSICREC__SERVICE__RATE_LIMITS__RECOMMENDATIONS__PER_CLIENT_PER_MINUTE", "100"),
            ]),
        )
        .unwrap();
        assert_eq!(c.service.admin_token.as_ref().map(Secret::expose), Some("0123456789abcdef-token"));
        assert_eq!(c.service.rate_limits.recommendations.per_client_per_minute, 100);
        assert_eq!(c.service.rate_limits.store, RateLimitStore::Memory);
        assert!(!format!("{c:?}").contains("0123456789abcdef"), "Debug must redact the token");
        assert!(Config::defaults().service.admin_token.is_none(), "reload is disabled unless a token is set");
    }

    #[test]
    fn misspelt_file_key_is_named() {
        let file = write_yaml("als:\n  factrs: 64\n");
        let err = Config::from_layers(Some(file.path()), env(&[])).unwrap_err().to_string();
        assert!(err.contains("unknown key `als.factrs`"), "{err}");
        assert!(err.contains(&file.path().display().to_string()), "{err}");
    }

    #[test]
    fn other_variables_may_be_any_bytes_ours_must_be_utf8() {
        use std::ffi::OsString;
        use std::os::unix::ffi::OsStringExt;
        let bytes = |b: &[u8]| OsString::from_vec(b.to_vec());
        let ours = our_variables([
            (bytes(b"FOO"), bytes(b"\xff")),
            (bytes(b"\xfe"), bytes(b"x")),
            (OsString::from("MUSICREC__ALS__FACTORS"), OsString::from("32")),
        ])
        .unwrap();
        assert_eq!(ours, vec![("MUSICREC__ALS__FACTORS".to_string(), "32".to_string())]);
        let err = our_variables([(OsString::from("MUSICREC__SEED"), bytes(b"\xff"))]).unwrap_err().to_string();
        assert!(err.contains("MUSICREC__SEED") && err.contains("UTF-8"), "{err}");
    }

    #[test]
    fn misspelt_env_key_is_named() {
        let err = Config::from_layers(None, env(&[("MUSICREC__ALS__FACTRS", "3")])).unwrap_err().to_string();
        assert!(err.contains("MUSICREC__ALS__FACTRS") && err.contains("als.factrs"), "{err}");
    }

    #[test]
    fn split_dates_may_be_auto_together() {
        let both = env(&[("MUSICREC__PREPROCESS__TRAIN_END", "auto"), ("MUSICREC__PREPROCESS__TARGET_END", "auto")]);
        let c = Config::from_layers(None, both).unwrap();
        assert_eq!((c.preprocess.train_end, c.preprocess.target_end), (SplitDate::Auto, SplitDate::Auto));
        assert!(c.to_yaml().contains("train_end: auto"), "{}", c.to_yaml());
        let one = env(&[("MUSICREC__PREPROCESS__TRAIN_END", "auto")]);
        let err = Config::from_layers(None, one).unwrap_err().to_string();
        assert!(err.contains("preprocess.target_end") && err.contains("must be `auto` too"), "{err}");
        let bad = env(&[("MUSICREC__PREPROCESS__TRAIN_END", "soon")]);
        let err = Config::from_layers(None, bad).unwrap_err().to_string();
        assert!(err.contains("preprocess.train_end") && err.contains("nor `auto`"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let file = write_yaml("bpr:\n  learning_rate: fast\n");
        let err = Config::from_layers(Some(file.path()), env(&[])).unwrap_err().to_string();
        assert!(err.contains("bpr.learning_rate"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        for (var, value, key) in [
            ("MUSICREC__EVALUATION__K", "[10, 0]", "evaluation.k[1]"),
            ("MUSICREC__EVALUATION__K", "[10, 10]", "evaluation.k[1]"),
            ("MUSICREC__EVALUATION__K", "[]", "evaluation.k"),
            ("MUSICREC__EVALUATION__HEADLINE_K", "7", "evaluation.headline_k"),
            ("MUSICREC__PREPROCESS__TARGET_END", "2022-12-01", "preprocess.target_end"),
            ("MUSICREC__PREPROCESS__TRAIN_END", "2022-13-01", "preprocess.train_end"),
            ("MUSICREC__ITEM2ITEM__METRIC", "hamming", "item2item.metric"),
            ("MUSICREC__DATA__UNKNOWN_TRACKS", "ignore", "data.unknown_tracks"),
            ("MUSICREC__FEATURES__RECENT_DAYS", "[7, 7]", "features.recent_days[1]"),
            ("MUSICREC__RANKING__TOP_N", "0", "ranking.top_n"),
            ("MUSICREC__SERVICE__ADDR", "localhost", "service.addr"),
            ("MUSICREC__SERVICE__MAX_K", "0", "service.max_k"),
            ("MUSICREC__SERVICE__SIMILAR_SOURCES", "[als, als]", "service.similar_sources[1]"),
            ("MUSICREC__SERVICE__SIMILAR_SOURCES", "[top_items]", "service.similar_sources[0]"),
            ("MUSICREC__SERVICE__SIMILAR_SOURCES", "[als, item2item]", "service.similar_sources[1]"),
            ("MUSICREC__ALS__N_CANDIDATES", "0", "als.n_candidates"),
            ("MUSICREC__SERVICE__REDIS_URL", "http://x", "service.redis_url"),
            ("MUSICREC__TRACKING__MLFLOW_URI", "file:mlruns", "tracking.mlflow_uri"),
            ("MLFLOW_TRACKING_URI", "databricks", "tracking.mlflow_uri"),
            ("MUSICREC__TRACKING__TIMEOUT_MS", "0", "tracking.timeout_ms"),
            ("MUSICREC__SERVICE__ADMIN_TOKEN", "short", "service.admin_token"),
            ("MUSICREC__SERVICE__RATE_LIMITS__STORE", "redis", "service.rate_limits.store"),
            ("MUSICREC__SERVICE__RATE_LIMITS__STORE", "disk", "service.rate_limits.store"),
            ("MUSICREC__SERVICE__MAX_URI_BYTES", "40000", "service.max_uri_bytes"),
            ("MUSICREC__SERVICE__MAX_HEADER_BYTES", "100", "service.max_header_bytes"),
            ("MUSICREC__SERVICE__HEADER_READ_TIMEOUT_MS", "0", "service.header_read_timeout_ms"),
            ("MUSICREC__SERVICE__BODY_READ_TIMEOUT_MS", "0", "service.body_read_timeout_ms"),
            ("MUSICREC__SERVICE__SHUTDOWN_GRACE_MS", "-1", "service.shutdown_grace_ms"),
            ("MUSICREC__SERVICE__EVENTS_MAX_USERS", "0", "service.events_max_users"),
            ("MUSICREC__SERVICE__REDIS_COOLDOWN_MS", "0", "service.redis_cooldown_ms"),
            ("MUSICREC__SERVICE__EVENT_LOG__STORE", "local", "service.event_log.dir"),
            ("MUSICREC__SERVICE__EVENT_LOG__STORE", "redis", "service.event_log.store"),
            ("MUSICREC__SERVICE__EVENT_LOG__STORE", "kafka", "service.event_log.store"),
            ("MUSICREC__SERVICE__EVENT_LOG__ROTATE_BYTES", "10", "service.event_log.rotate_bytes"),
            ("MUSICREC__SERVICE__EVENT_LOG__ROTATE_SECONDS", "0", "service.event_log.rotate_seconds"),
            ("MUSICREC__DATA__EXTRA_EVENTS", "  ", "data.extra_events"),
        ] {
            let err = Config::from_layers(None, env(&[(var, value)])).unwrap_err();
            assert!(matches!(err, ConfigError::Invalid { .. }), "{var}={value}: {err}");
            assert!(err.to_string().contains(&format!("`{key}`")), "{var}={value}: {err}");
        }
    }

    /// A string key takes its variable's value as written (YAML would cut a secret at ` #`,
    /// read `~` as null and `prefix:` as a map); an empty value unsets an optional key.
    #[test]
    fn string_keys_take_the_value_as_written() {
        let c = Config::from_layers(
            None,
            env(&[
                ("MUSICREC__SERVICE__ADMIN_TOKEN", "abcdefghijklmnop #suffix"),
                ("MUSICREC__SERVICE__REDIS_KEY_PREFIX", "reltest:"),
                ("MUSICREC__DATA__PATH", "~"),
                ("MUSICREC__DATA__EXTRA_EVENTS", ""),
                ("MUSICREC__TRACKING__EXPERIMENT", "null"),
            ]),
        )
        .unwrap();
        assert_eq!(c.service.admin_token.as_ref().map(Secret::expose), Some("abcdefghijklmnop #suffix"));
        assert_eq!(c.service.redis_key_prefix, "reltest:");
        assert_eq!(c.data.path.as_deref(), Some("~"));
        assert_eq!(c.data.extra_events, None);
        assert_eq!(c.tracking.experiment, "null");
        let err = Config::from_layers(None, env(&[("MUSICREC__SERVICE__ADMIN_TOKEN", "~")])).unwrap_err().to_string();
        assert!(err.contains("service.admin_token") && err.contains("at least 16"), "{err}");
    }

    /// Keys null by default are taken as written, which is right only while every one of them
    /// is an optional string.
    #[test]
    fn every_key_null_by_default_is_an_optional_string() {
        fn null_keys(value: &Value, path: &str, out: &mut Vec<String>) {
            match value {
                Value::Null => out.push(path.to_string()),
                Value::Object(map) => map.iter().for_each(|(k, v)| null_keys(v, &join_key(path, k), out)),
                _ => {}
            }
        }
        let defaults = parse_yaml("default.yaml", DEFAULT_YAML).unwrap();
        let mut keys = Vec::new();
        null_keys(&defaults, "", &mut keys);
        assert!(keys.contains(&"service.admin_token".to_string()), "{keys:?}");
        for key in keys {
            let mut tree = defaults.clone();
            *tree.pointer_mut(&format!("/{}", key.replace('.', "/"))).unwrap() = Value::String("text".into());
            let typed: Result<Config, _> = serde_path_to_error::deserialize(tree);
            assert!(typed.is_ok(), "{key} is not an optional string: {:?}", typed.err());
        }
    }

    #[test]
    fn a_variable_of_the_wrong_type_names_itself_the_key_and_the_type() {
        for (var, value, key, expected) in [
            ("MUSICREC__ALS__FACTORS", "many", "als.factors", "a number"),
            ("MUSICREC__ALS__FACTORS", "[3]", "als.factors", "a number"),
            ("MUSICREC__SERVICE__FOLD_IN", "maybe", "service.fold_in", "true or false"),
            ("MUSICREC__EVALUATION__K", "5,10", "evaluation.k", "a list"),
            ("MUSICREC__SERVICE__RATE_LIMITS", "7", "service.rate_limits", "a section"),
        ] {
            let err = Config::from_layers(None, env(&[(var, value)])).unwrap_err().to_string();
            for part in [var, &format!("`{key}`"), expected, value] {
                assert!(err.contains(part), "{var}={value}: {part:?} missing in {err}");
            }
        }
        // A number of the right kind but out of the key's range names the variable too.
        let err = Config::from_layers(None, env(&[("MUSICREC__SERVICE__MAX_K", "0")])).unwrap_err().to_string();
        assert!(err.contains("`service.max_k`") && err.contains("MUSICREC__SERVICE__MAX_K"), "{err}");
        let err = Config::from_layers(None, env(&[("MUSICREC__SEED", "-1")])).unwrap_err().to_string();
        assert!(err.contains("`seed`") && err.contains("MUSICREC__SEED"), "{err}");
    }

    #[test]
    fn similar_sources_are_the_models_with_similar_items() {
        let err = Config::from_layers(None, env(&[("MUSICREC__SERVICE__SIMILAR_SOURCES", "[item2item]")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config key `service.similar_sources[0]`: `item2item` is not one of the models with similar items: als, bpr \
             (set by environment variable MUSICREC__SERVICE__SIMILAR_SOURCES)"
        );
    }

    #[test]
    fn mlflow_uri_comes_from_the_config_key_then_the_standard_variable() {
        let standard = ("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000");
        assert_eq!(Config::defaults().tracking.mlflow_uri(), None);
        assert_eq!(Config::from_layers(None, env(&[standard])).unwrap().tracking.mlflow_uri(), Some(standard.1));
        let ours = ("MUSICREC__TRACKING__MLFLOW_URI", "http://mlflow:5000");
        let c = Config::from_layers(None, env(&[standard, ours])).unwrap();
        assert_eq!(c.tracking.mlflow_uri(), Some("http://mlflow:5000"), "the config key wins");
        assert_eq!(Config::from_layers(None, env(&[("MLFLOW_TRACKING_URI", "")])).unwrap().tracking.mlflow_uri(), None);
    }

    #[test]
    fn invalid_yaml_names_the_file() {
        let file = write_yaml("als: [unclosed\n");
        let err = Config::from_layers(Some(file.path()), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        assert!(err.to_string().contains(&file.path().display().to_string()));
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let err = Config::from_layers(Some(Path::new("/nonexistent/musicrec.yaml")), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }));
    }

    #[test]
    fn empty_file_means_defaults() {
        let file = write_yaml("# nothing\n");
        assert_eq!(Config::from_layers(Some(file.path()), env(&[])).unwrap(), Config::defaults());
    }

    #[test]
    fn yaml_round_trips() {
        let mut c = Config::defaults();
        c.als.alpha = 2.5;
        c.tracking.mlflow_uri = Some("http://127.0.0.1:5000".into());
        let file = write_yaml(&c.to_yaml());
        assert_eq!(Config::from_layers(Some(file.path()), env(&[])).unwrap(), c);
    }

    #[test]
    fn fingerprint_changes_with_any_value() {
        let a = Config::defaults();
        let mut b = a.clone();
        b.als.alpha = 2.0;
        assert_eq!(a.fingerprint(), Config::defaults().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
