//! The event log as a Redis stream: one `XADD` per event (fields `at_ms`, `user_id`,
//! `track_id`), acknowledged by Redis before the service answers. How durable an
//! acknowledged entry is then depends on Redis's persistence (`appendonly yes` with
//! `appendfsync always` or `everysec`; see docs/service.md#event-log).

use std::sync::Arc;
use std::time::Duration;

use super::{LoggedEvent, NotLogged};
use crate::error::ServiceError;
use crate::redis_link::RedisLink;

pub struct RedisLog {
    link: Arc<RedisLink>,
    key: String,
}

impl RedisLog {
    pub fn new(link: Arc<RedisLink>, key: &str) -> Self {
        Self { link, key: key.to_string() }
    }

    pub async fn append(&self, event: LoggedEvent) -> Result<(), NotLogged> {
        let key = &self.key;
        self.link
            .run("XADD", async move |mut c| {
                redis::cmd("XADD")
                    .arg(key)
                    .arg("*")
                    .arg("at_ms")
                    .arg(event.at_ms)
                    .arg("user_id")
                    .arg(event.user_id)
                    .arg("track_id")
                    .arg(event.track_id)
                    .query_async::<String>(&mut c)
                    .await
            })
            .await
            .map(|_id| ())
            .map_err(|e| NotLogged(e.0))
    }
}

/// Entries read per `XRANGE`.
const PAGE: usize = 10_000;

/// Every event of the stream `key` on the Redis at `url`, in stream order.
pub fn read_stream(url: &str, key: &str) -> Result<Vec<LoggedEvent>, ServiceError> {
    let bad = |reason: String| ServiceError::EventLog { what: format!("Redis stream `{key}` at {url}"), reason };
    let client = redis::Client::open(url).map_err(|e| bad(e.to_string()))?;
    let mut c = client.get_connection_with_timeout(Duration::from_secs(5)).map_err(|e| bad(e.to_string()))?;
    let mut events = Vec::new();
    let mut start = "-".to_string();
    loop {
        let page: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg(key)
            .arg(&start)
            .arg("+")
            .arg("COUNT")
            .arg(PAGE)
            .query(&mut c)
            .map_err(|e| bad(e.to_string()))?;
        for (id, fields) in &page {
            events.push(parse_entry(fields).map_err(|reason| bad(format!("entry {id}: {reason}")))?);
        }
        match page.last() {
            Some((id, _)) if page.len() == PAGE => start = format!("({id}"),
            _ => return Ok(events),
        }
    }
}

/// An entry's field-value list as an event: the three fields, integers, nothing else.
fn parse_entry(fields: &[String]) -> Result<LoggedEvent, String> {
    let (mut at_ms, mut user_id, mut track_id) = (None, None, None);
    for pair in fields.chunks(2) {
        let [name, value] = pair else { return Err("a field without a value".into()) };
        let slot = match name.as_str() {
            "at_ms" => &mut at_ms,
            "user_id" => &mut user_id,
            "track_id" => &mut track_id,
            other => return Err(format!("unknown field `{other}`")),
        };
        *slot = Some(value.parse::<i64>().map_err(|_| format!("field `{name}`: `{value}` is not an integer"))?);
    }
    match (at_ms, user_id, track_id) {
        (Some(at_ms), Some(user_id), Some(track_id)) => Ok(LoggedEvent { at_ms, user_id, track_id }),
        _ => Err("the fields at_ms, user_id and track_id are not all there".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_must_hold_exactly_the_three_integer_fields() {
        let fields = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            parse_entry(&fields(&["user_id", "7", "track_id", "100", "at_ms", "5"])),
            Ok(LoggedEvent { at_ms: 5, user_id: 7, track_id: 100 })
        );
        assert!(parse_entry(&fields(&["user_id", "7", "track_id", "100"])).unwrap_err().contains("not all there"));
        assert!(parse_entry(&fields(&["user_id", "x", "track_id", "100", "at_ms", "5"])).unwrap_err().contains("`x`"));
        assert!(parse_entry(&fields(&["user_id", "7", "extra"])).is_err());
    }
}
