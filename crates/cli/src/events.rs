//! `musicrec events export`: the service's event log in the interactions layout.

use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, NaiveDate};
use musicrec_config::{Config, ConfigError, EventLogStore};
use musicrec_service::event_log::{self, Source, Window};

#[derive(clap::Subcommand)]
pub enum EventsCommand {
    /// Write the events the service logged (service.event_log) to DIR/interactions.parquet,
    /// in the layout `musicrec run` reads (docs/data.md#layout): train on them beside a data
    /// set with `musicrec run --extra-events DIR` (docs/pipeline.md#extra-events).
    Export {
        /// Output directory (created if missing); its interactions.parquet is replaced
        /// atomically.
        #[arg(long)]
        out: PathBuf,
        /// The log to read: a local log directory or a redis://HOST:PORT URL (the stream
        /// service.redis_key_prefix + service.event_log.redis_stream); default: the one
        /// service.event_log configures.
        #[arg(long)]
        from: Option<String>,
        /// Only events that arrived at or after this time: YYYY-MM-DD (midnight UTC) or an
        /// RFC 3339 time such as 2026-12-06T10:00:00Z.
        #[arg(long)]
        since: Option<String>,
        /// Only events that arrived before this time (same forms as --since).
        #[arg(long)]
        until: Option<String>,
        /// YAML configuration file layered over the defaults (section service).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

pub fn run(command: EventsCommand) -> anyhow::Result<()> {
    let EventsCommand::Export { out, from, since, until, config } = command;
    let config = Config::load(config.as_deref())?;
    let window = Window { since_ms: time("--since", since.as_deref())?, until_ms: time("--until", until.as_deref())? };
    if let (Some(since), Some(until)) = (window.since_ms, window.until_ms)
        && since >= until
    {
        return Err(invalid("--until", "must be after --since".into()).into());
    }
    let source = source(&config, from)?;
    let summary = event_log::export(&source, window, &out).context("events export")?;
    let day = |ms: i64| DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| t.to_rfc3339());
    println!(
        "wrote {} events of {} users, {} .. {}, from {source} to {}",
        summary.events,
        summary.users,
        day(summary.first_ms),
        day(summary.last_ms),
        summary.file.display()
    );
    for segment in &summary.torn_segments {
        eprintln!("warning: {segment}: skipped its torn last line (the service stopped mid-write)");
    }
    Ok(())
}

fn invalid(key: &str, reason: String) -> ConfigError {
    ConfigError::Invalid { key: key.into(), reason }
}

/// Milliseconds since the Unix epoch of a date (midnight UTC) or an RFC 3339 time.
fn time(flag: &str, text: Option<&str>) -> anyhow::Result<Option<i64>> {
    let Some(text) = text.map(str::trim) else { return Ok(None) };
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Some(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_millis()));
    }
    match DateTime::parse_from_rfc3339(text) {
        Ok(time) => Ok(Some(time.timestamp_millis())),
        Err(_) => Err(invalid(
            flag,
            format!("`{text}` is neither a date YYYY-MM-DD nor an RFC 3339 time (2026-12-06T10:00:00Z)"),
        )
        .into()),
    }
}

fn source(config: &Config, from: Option<String>) -> anyhow::Result<Source> {
    let service = &config.service;
    let stream = || event_log::stream_key(&service.redis_key_prefix, &service.event_log);
    if let Some(from) = from {
        let from = from.trim().to_string();
        if from.starts_with("redis://") || from.starts_with("rediss://") {
            return Ok(Source::Redis { url: from, key: stream() });
        }
        if from.contains("://") || from.is_empty() {
            return Err(invalid("--from", format!("`{from}` is neither a log directory nor a redis:// URL")).into());
        }
        let dir = PathBuf::from(from);
        if !dir.is_dir() {
            return Err(invalid("--from", format!("{} is not a directory", dir.display())).into());
        }
        return Ok(Source::Local(dir));
    }
    match service.event_log.store {
        EventLogStore::Local => Ok(Source::Local(PathBuf::from(service.event_log.dir.clone().unwrap_or_default()))),
        EventLogStore::Redis => Ok(Source::Redis { url: service.redis_url.clone().unwrap_or_default(), key: stream() }),
        EventLogStore::Off => Err(invalid(
            "service.event_log.store",
            "is none: there is no log to export; give --from DIR or --from redis://HOST:PORT".into(),
        )
        .into()),
    }
}
