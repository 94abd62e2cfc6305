//! The event log (docs/service.md#event-log): every event `POST /events` accepts, with the
//! time it arrived, kept durably beyond the events store's latest listens, so that the
//! pipeline can train on what the service heard (`musicrec events export`).
//!
//! `append` returns only once the event is durable: in a local segment file (written, and
//! synced when `fsync` is on, many events sharing one sync), or acknowledged by Redis `XADD`.
//! The caller answers 201 after it, so losing the process loses nothing acknowledged.

mod export;
mod local;
mod redis_stream;

use std::sync::Arc;

use musicrec_config::{EventLogConfig, EventLogStore};
use serde::{Deserialize, Serialize};

pub use export::{ExportSummary, Source, Window, export};
pub use local::{LocalLog, ReadReport, read_dir};
pub use redis_stream::{RedisLog, read_stream};

use crate::error::ServiceError;
use crate::redis_link::RedisLink;

/// One logged event: when it arrived (milliseconds since the Unix epoch, UTC), who, what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedEvent {
    pub at_ms: i64,
    pub user_id: i64,
    pub track_id: i64,
}

/// Why an event could not be logged (the disk or Redis failed); the event was not accepted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct NotLogged(pub String);

pub enum EventLog {
    Off,
    Local(LocalLog),
    Redis(RedisLog),
}

impl EventLog {
    /// The log `config` asks for; a Redis log writes through the service's Redis link.
    pub fn open(
        config: &EventLogConfig,
        redis: Option<&Arc<RedisLink>>,
        redis_key_prefix: &str,
    ) -> Result<Self, ServiceError> {
        Ok(match (config.store, redis) {
            (EventLogStore::Off, _) => EventLog::Off,
            (EventLogStore::Local, _) => EventLog::Local(LocalLog::open(config)?),
            (EventLogStore::Redis, Some(link)) => {
                EventLog::Redis(RedisLog::new(link.clone(), &stream_key(redis_key_prefix, config)))
            }
            (EventLogStore::Redis, None) => {
                return Err(ServiceError::Redis {
                    url: "null".into(),
                    reason: "service.event_log.store `redis` needs a redis:// URL".into(),
                });
            }
        })
    }

    pub fn kind(&self) -> &'static str {
        match self {
            EventLog::Off => "none",
            EventLog::Local(_) => "local",
            EventLog::Redis(_) => "redis",
        }
    }

    /// Logs that `user` listened to `track` now; returns once the event is durable.
    pub async fn append(&self, user: i64, track: i64) -> Result<(), NotLogged> {
        let event = LoggedEvent { at_ms: now_ms(), user_id: user, track_id: track };
        match self {
            EventLog::Off => Ok(()),
            EventLog::Local(log) => log.append(event).await,
            EventLog::Redis(log) => log.append(event).await,
        }
    }
}

/// The Redis key of the log's stream.
pub fn stream_key(redis_key_prefix: &str, config: &EventLogConfig) -> String {
    format!("{redis_key_prefix}{}", config.redis_stream)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
