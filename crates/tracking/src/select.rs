//! Which records `musicrec runs list` shows, in which order: a stage filter and a sort key.
//!
//! A sort key is `seconds` (the stage's duration), `start` (the default order), or a metric:
//! its recorded name (`test.ndcg@10`, `fit_seconds`), or a bare name (`ndcg@10`), which means
//! its test-window value (`test.ndcg@10`) when records have one. Ascending; a leading `-`
//! sorts descending (`-seconds`: slowest first). Records without the key come last either way.

use std::cmp::Ordering;

use crate::error::TrackingError;
use crate::record::RunRecord;

const TEST_PREFIX: &str = "test.";

/// What a record is sorted by.
#[derive(Debug, Clone, PartialEq)]
enum Key {
    Seconds,
    Start,
    Metric(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    key: Key,
    descending: bool,
}

impl SortKey {
    /// Parses `--sort`; whether a metric exists is checked against the records (`sort`).
    pub fn parse(text: &str) -> Result<Self, TrackingError> {
        let text = text.trim();
        let (descending, name) = match text.strip_prefix('-') {
            Some(rest) => (true, rest.trim()),
            None => (false, text),
        };
        let key = match name {
            "" => return Err(bad_sort(text, "empty; give seconds, start or a metric name such as ndcg@10")),
            "seconds" => Key::Seconds,
            "start" => Key::Start,
            metric => Key::Metric(metric.to_string()),
        };
        Ok(Self { key, descending })
    }

    fn value(&self, metric: Option<&str>, r: &RunRecord) -> Option<f64> {
        match &self.key {
            Key::Seconds => r.duration_s,
            Key::Start => Some(r.started_at.timestamp_micros() as f64),
            Key::Metric(_) => r.metrics.get(metric?).copied(),
        }
    }
}

fn bad_sort(text: &str, reason: &str) -> TrackingError {
    TrackingError::BadQuery { flag: "--sort", value: text.to_string(), reason: reason.to_string() }
}

/// The records of `stage` (all when `None`), in their order.
pub fn of_stage(records: Vec<RunRecord>, stage: Option<&str>) -> Vec<RunRecord> {
    match stage {
        Some(stage) => records.into_iter().filter(|r| r.stage == stage).collect(),
        None => records,
    }
}

/// Sorts `records` by `key` (stable: equal keys keep their order). A metric no record has is
/// an error naming the metrics they have.
pub fn sort(records: &mut [RunRecord], key: &SortKey) -> Result<(), TrackingError> {
    let metric = match &key.key {
        Key::Metric(name) => Some(resolve_metric(records, name)?),
        _ => None,
    };
    records.sort_by(|a, b| match (key.value(metric.as_deref(), a), key.value(metric.as_deref(), b)) {
        (Some(x), Some(y)) => {
            let order = x.total_cmp(&y);
            if key.descending { order.reverse() } else { order }
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    });
    Ok(())
}

/// The recorded metric `name` stands for: itself if some record has it, else its test-window
/// value.
fn resolve_metric(records: &[RunRecord], name: &str) -> Result<String, TrackingError> {
    let has = |metric: &str| records.iter().any(|r| r.metrics.contains_key(metric));
    if has(name) {
        return Ok(name.to_string());
    }
    let test = format!("{TEST_PREFIX}{name}");
    if has(&test) {
        return Ok(test);
    }
    if records.is_empty() {
        return Ok(name.to_string());
    }
    let mut known: Vec<&str> = records.iter().flat_map(|r| r.metrics.keys().map(String::as_str)).collect();
    known.sort_unstable();
    known.dedup();
    let shown: Vec<&str> = known.iter().copied().filter(|m| m.starts_with(TEST_PREFIX) || !m.contains('.')).collect();
    Err(bad_sort(
        name,
        &format!(
            "no listed run has metric `{name}` (nor `{test}`); they have: seconds, start, {}",
            if shown.is_empty() { known.join(", ") } else { shown.join(", ") }
        ),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::record::StageOutcome;

    fn record(id: &str, stage: &str, ndcg: Option<f64>, seconds: f64) -> RunRecord {
        let mut r = RunRecord::started("p", stage, BTreeMap::new());
        r.id = id.into();
        let mut metrics = BTreeMap::from([("fit_seconds".to_string(), seconds)]);
        if let Some(v) = ndcg {
            metrics.insert("test.ndcg@10".into(), v);
            metrics.insert("target.ndcg@10".into(), 1.0 - v);
        }
        r.end(Ok(StageOutcome { metrics, ..Default::default() }));
        r.duration_s = Some(seconds);
        let start = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
        r.started_at = start + chrono::Duration::seconds(i64::from(id.as_bytes()[0]));
        r
    }

    fn ids(records: &[RunRecord]) -> Vec<&str> {
        records.iter().map(|r| r.id.as_str()).collect()
    }

    fn sample() -> Vec<RunRecord> {
        vec![
            record("a", "als", Some(0.2), 3.0),
            record("b", "eda", None, 1.0),
            record("c", "als", Some(0.4), 2.0),
            record("d", "bpr", Some(0.3), 5.0),
        ]
    }

    #[test]
    fn a_bare_metric_is_its_test_value_and_a_minus_sorts_descending() {
        let mut records = sample();
        sort(&mut records, &SortKey::parse("ndcg@10").unwrap()).unwrap();
        assert_eq!(ids(&records), ["a", "d", "c", "b"], "ascending, the run without it last");
        sort(&mut records, &SortKey::parse("-ndcg@10").unwrap()).unwrap();
        assert_eq!(ids(&records), ["c", "d", "a", "b"], "descending, the run without it still last");
        sort(&mut records, &SortKey::parse("target.ndcg@10").unwrap()).unwrap();
        assert_eq!(ids(&records), ["c", "d", "a", "b"], "a recorded name is taken as it is");
        sort(&mut records, &SortKey::parse("-seconds").unwrap()).unwrap();
        assert_eq!(ids(&records), ["d", "a", "c", "b"]);
        sort(&mut records, &SortKey::parse("start").unwrap()).unwrap();
        assert_eq!(ids(&records), ["a", "b", "c", "d"], "started in that order");
    }

    #[test]
    fn stages_filter_and_unknown_keys_are_named() {
        assert_eq!(ids(&of_stage(sample(), Some("als"))), ["a", "c"]);
        assert_eq!(of_stage(sample(), None).len(), 4);
        let err = sort(&mut sample(), &SortKey::parse("-mrr@10").unwrap()).unwrap_err();
        assert!(err.is_user_error());
        let text = err.to_string();
        assert!(text.starts_with("--sort mrr@10: no listed run has metric `mrr@10`"), "{text}");
        assert!(text.contains("test.ndcg@10") && text.contains("fit_seconds") && !text.contains("target."), "{text}");
        assert!(SortKey::parse(" - ").unwrap_err().to_string().contains("empty"));
    }
}
