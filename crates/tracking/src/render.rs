//! Run records as text: the table of `musicrec runs list`, one record in full (`runs show`),
//! any number side by side (`runs compare`, as text or JSON).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use crate::record::RunRecord;

/// A number as a person reads it: integers without decimals, others to 6 significant places.
pub fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e6) {
        format!("{v:.5e}")
    } else {
        let digits = (5 - v.abs().log10().floor() as i32).clamp(0, 9) as usize;
        let text = format!("{v:.digits$}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn start(record: &RunRecord) -> String {
    record.started_at.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// One line per record: id, stage, status, start, seconds, the headline metric.
pub fn list(records: &[RunRecord]) -> String {
    let width = records.iter().map(|r| r.id.len()).max().unwrap_or(0).max(2);
    let mut out =
        format!("{:<width$}  {:<10} {:<8} {:<19} {:>9}  metric\n", "id", "stage", "status", "start (UTC)", "seconds");
    for r in records {
        let seconds = r.duration_s.map_or("-".into(), |s| format!("{s:.2}"));
        let headline = r.headline().map_or("-".into(), |(name, v)| format!("{name} {}", number(v)));
        let _ = writeln!(
            out,
            "{:<width$}  {:<10} {:<8} {:<19} {seconds:>9}  {headline}",
            r.id,
            r.stage,
            r.status.as_str(),
            start(r)
        );
    }
    out
}

/// Everything a record holds.
pub fn show(r: &RunRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "run       {}", r.id);
    let _ = writeln!(out, "stage     {}", r.stage);
    let _ = writeln!(out, "pipeline  {}", r.pipeline_run_id);
    let _ = writeln!(out, "status    {}", r.status.as_str());
    if let Some(error) = &r.error {
        let _ = writeln!(out, "error     {error}");
    }
    let _ = writeln!(out, "started   {}", r.started_at.to_rfc3339());
    if let Some(end) = r.finished_at {
        let _ = writeln!(out, "finished  {}", end.to_rfc3339());
    }
    if let Some(d) = r.duration_s {
        let _ = writeln!(out, "seconds   {d:.3}");
    }
    if let Some(mlflow) = &r.mlflow {
        let _ = writeln!(out, "mlflow    {} (run {})", mlflow.url, mlflow.run_id);
    }
    section(&mut out, "tags", r.tags.iter().map(|(k, v)| (k.as_str(), v.clone())));
    section(&mut out, "params", r.params.iter().map(|(k, v)| (k.as_str(), v.clone())));
    section(&mut out, "metrics", r.metrics.iter().map(|(k, v)| (k.as_str(), number(*v))));
    for (name, values) in &r.metric_history {
        let _ = writeln!(out, "\nhistory {name} ({} steps)", values.len());
        for (step, v) in values.iter().enumerate() {
            let _ = writeln!(out, "  {step:>5}  {}", number(*v));
        }
    }
    if !r.artifacts.is_empty() {
        let _ = writeln!(out, "\nartifacts");
        for a in &r.artifacts {
            let _ = writeln!(out, "  {a}");
        }
    }
    out
}

fn section<'a>(out: &mut String, title: &str, rows: impl Iterator<Item = (&'a str, String)>) {
    let rows: Vec<_> = rows.collect();
    if rows.is_empty() {
        return;
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let _ = writeln!(out, "\n{title}");
    for (k, v) in rows {
        let _ = writeln!(out, "  {k:<width$}  {v}");
    }
}

/// The column label of the `i`-th compared record: A, B, ... Z, then R27, R28, ...
fn label(i: usize) -> String {
    if i < 26 { char::from(b'A' + i as u8).to_string() } else { format!("R{}", i + 1) }
}

/// Params and metrics of any number of records side by side; `*` marks a row whose values are
/// not all the same (or that some records lack), metrics also show the change of each later
/// record from the first.
pub fn compare(records: &[RunRecord]) -> String {
    let mut out = String::new();
    for (i, r) in records.iter().enumerate() {
        let _ = writeln!(out, "{}  {}  ({}, {})", label(i), r.id, r.status.as_str(), start(r));
    }
    let params: Vec<BTreeMap<String, String>> = records.iter().map(|r| r.params.clone()).collect();
    side_by_side(&mut out, "params", &params, |_| Vec::new());
    let shown: Vec<BTreeMap<String, String>> =
        records.iter().map(|r| r.metrics.iter().map(|(k, v)| (k.clone(), number(*v))).collect()).collect();
    let changes = |name: &str| {
        let Some(first) = records.first().and_then(|r| r.metrics.get(name)) else { return Vec::new() };
        let changes: Vec<Option<f64>> = records[1..].iter().map(|r| Some(r.metrics.get(name)? - first)).collect();
        if changes.iter().all(|c| c.is_none_or(|d| d == 0.0)) {
            return Vec::new();
        }
        changes
            .into_iter()
            .map(|c| match c {
                Some(d) if d > 0.0 => format!("+{}", number(d)),
                Some(d) if d < 0.0 => number(d),
                Some(_) => "0".into(),
                None => "-".into(),
            })
            .collect()
    };
    side_by_side(&mut out, "metrics", &shown, changes);
    let differ_p = count_differ(records.iter().map(|r| &r.params));
    let differ_m = count_differ(records.iter().map(|r| &r.metrics));
    let _ = writeln!(out, "\n{differ_p} params and {differ_m} metrics differ (*)");
    out
}

/// The comparison as JSON: the records compared, then every param and metric with one value
/// per record (null where a record lacks it) and whether they differ; metrics also with the
/// change of each record from the first.
pub fn compare_json(records: &[RunRecord]) -> serde_json::Value {
    use serde_json::{Value, json};
    let runs: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "pipeline_run_id": r.pipeline_run_id,
                "stage": r.stage,
                "status": r.status.as_str(),
                "started_at": r.started_at.to_rfc3339(),
                "duration_s": r.duration_s,
            })
        })
        .collect();
    let keys =
        |pick: &dyn Fn(&RunRecord) -> Vec<String>| -> BTreeSet<String> { records.iter().flat_map(pick).collect() };
    let params: serde_json::Map<String, Value> = keys(&|r| r.params.keys().cloned().collect())
        .into_iter()
        .map(|k| {
            let values: Vec<Option<&String>> = records.iter().map(|r| r.params.get(&k)).collect();
            let differs = values.windows(2).any(|w| w[0] != w[1]);
            (k, json!({"values": values, "differs": differs}))
        })
        .collect();
    let metrics: serde_json::Map<String, Value> = keys(&|r| r.metrics.keys().cloned().collect())
        .into_iter()
        .map(|k| {
            let values: Vec<Option<f64>> = records.iter().map(|r| r.metrics.get(&k).copied()).collect();
            let differs = values.windows(2).any(|w| w[0] != w[1]);
            let change: Vec<Option<f64>> = values.iter().map(|v| Some(v.as_ref()? - values[0]?)).collect();
            (k, json!({"values": values, "change": change, "differs": differs}))
        })
        .collect();
    json!({"runs": runs, "params": params, "metrics": metrics})
}

/// Keys whose values are not the same in every map (missing in some counts as different).
fn count_differ<'a, V: PartialEq + 'a>(maps: impl Iterator<Item = &'a BTreeMap<String, V>> + Clone) -> usize {
    let keys: BTreeSet<&String> = maps.clone().flat_map(|m| m.keys()).collect();
    keys.into_iter()
        .filter(|k| {
            let mut values = maps.clone().map(|m| m.get(*k));
            let first = values.next().flatten();
            values.any(|v| v != first)
        })
        .count()
}

fn side_by_side(
    out: &mut String,
    title: &str,
    columns: &[BTreeMap<String, String>],
    extra: impl Fn(&str) -> Vec<String>,
) {
    let keys: BTreeSet<&String> = columns.iter().flat_map(|c| c.keys()).collect();
    if keys.is_empty() {
        return;
    }
    let missing = "-".to_string();
    let kw = keys.iter().map(|k| k.len()).max().unwrap_or(0);
    let widths: Vec<usize> = columns.iter().map(|c| c.values().map(String::len).max().unwrap_or(1).max(1)).collect();
    let _ = write!(out, "\n{title}\n  {:<kw$}", "");
    for (i, w) in widths.iter().enumerate() {
        let _ = write!(out, "  {:>w$}", label(i));
    }
    out.push('\n');
    for key in keys {
        let values: Vec<&String> = columns.iter().map(|c| c.get(key).unwrap_or(&missing)).collect();
        let same = columns.iter().all(|c| c.get(key) == columns[0].get(key));
        let _ = write!(out, "{} {key:<kw$}", if same { ' ' } else { '*' });
        for (v, w) in values.iter().zip(&widths) {
            let _ = write!(out, "  {v:>w$}");
        }
        let tail = extra(key);
        if !tail.is_empty() {
            let _ = write!(out, "  {}", tail.join("  "));
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::StageOutcome;

    fn finished(stage: &str, factors: &str, ndcg: f64) -> RunRecord {
        let mut r =
            RunRecord::started("20260101T000000Z-1", stage, BTreeMap::from([("git_commit".into(), "abc".into())]));
        r.end(Ok(StageOutcome {
            params: BTreeMap::from([("als.factors".into(), factors.into()), ("k".into(), "10".into())]),
            metrics: BTreeMap::from([("test.ndcg@10".into(), ndcg), ("fit_seconds".into(), 2.0)]),
            metric_history: BTreeMap::from([("loss".into(), vec![0.5, 0.25])]),
            artifacts: vec![format!("{stage}/metrics.json")],
            uploads: vec![],
        }));
        r
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(14300.0), "14300");
        assert_eq!(number(0.038284175), "0.0382842");
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1.25), "1.25");
        assert_eq!(number(0.00001234), "1.23400e-5");
        assert_eq!(number(-2.5), "-2.5");
    }

    #[test]
    fn list_has_a_line_per_record_with_its_headline() {
        let mut running = RunRecord::started("20260101T000000Z-1", "eda", BTreeMap::new());
        running.id = "x-eda".into();
        let text = list(&[finished("als", "8", 0.25), running]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("id") && lines[0].ends_with("metric"), "{text}");
        assert!(lines[1].contains("als") && lines[1].contains("finished") && lines[1].ends_with("test.ndcg@10 0.25"));
        assert!(lines[2].contains("running") && lines[2].ends_with('-'), "{text}");
    }

    #[test]
    fn show_holds_everything() {
        let mut r = finished("als", "8", 0.25);
        r.error = Some("boom".into());
        let text = show(&r);
        for needle in ["run       20260101T000000Z-1-als", "error     boom", "als.factors  8", "test.ndcg@10  0.25"] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        assert!(text.contains("history loss (2 steps)\n      0  0.5\n      1  0.25\n"), "{text}");
        assert!(text.contains("git_commit  abc") && text.contains("artifacts\n  als/metrics.json"), "{text}");
    }

    #[test]
    fn compare_marks_differences() {
        let (a, mut b) = (finished("als", "8", 0.25), finished("als", "16", 0.5));
        b.id = "other-als".into();
        b.params.remove("k");
        let text = compare(&[a, b]);
        let line = |key: &str| {
            text.lines()
                .find(|l| l.get(2..).is_some_and(|rest| rest.starts_with(key)))
                .unwrap_or_else(|| panic!("{key}\n{text}"))
        };
        assert!(line("als.factors").starts_with('*') && line("als.factors").contains("16"), "{text}");
        assert!(line("k ").starts_with('*') && line("k ").trim_end().ends_with('-'), "{text}");
        assert!(line("fit_seconds").starts_with(' '), "{text}");
        assert!(line("test.ndcg@10").starts_with('*') && line("test.ndcg@10").ends_with("+0.25"), "{text}");
        assert!(text.contains("2 params and 1 metrics differ"), "{text}");
    }

    #[test]
    fn compare_takes_any_number_of_records_as_text_and_json() {
        let (a, mut b, mut c) = (finished("als", "8", 0.25), finished("als", "16", 0.5), finished("als", "8", 0.125));
        b.id = "b-als".into();
        c.id = "c-als".into();
        c.metrics.remove("fit_seconds");
        let text = compare(&[a.clone(), b.clone(), c.clone()]);
        assert!(text.starts_with("A  20260101T000000Z-1-als") && text.contains("\nC  c-als  (finished"), "{text}");
        let line = |key: &str| text.lines().find(|l| l.get(2..).is_some_and(|r| r.starts_with(key))).unwrap();
        let words: Vec<&str> = line("test.ndcg@10").split_whitespace().collect();
        assert_eq!(words, ["*", "test.ndcg@10", "0.25", "0.5", "0.125", "+0.25", "-0.125"], "{text}");
        let words: Vec<&str> = line("fit_seconds").split_whitespace().collect();
        assert_eq!(words, ["*", "fit_seconds", "2", "2", "-"], "no change where any is known is 0 or unknown");
        let words: Vec<&str> = line("k ").split_whitespace().collect();
        assert_eq!(words, ["k", "10", "10", "10"], "{text}");
        assert!(text.contains("1 params and 2 metrics differ"), "{text}");

        let json = compare_json(&[a, b, c]);
        assert_eq!(json["runs"].as_array().unwrap().len(), 3);
        assert_eq!(json["runs"][2]["id"], "c-als");
        assert_eq!(json["params"]["als.factors"], serde_json::json!({"values": ["8", "16", "8"], "differs": true}));
        assert_eq!(json["params"]["k"]["differs"], false);
        let ndcg = &json["metrics"]["test.ndcg@10"];
        assert_eq!(ndcg["values"], serde_json::json!([0.25, 0.5, 0.125]));
        assert_eq!(ndcg["change"], serde_json::json!([0.0, 0.25, -0.125]));
        assert_eq!(json["metrics"]["fit_seconds"]["values"], serde_json::json!([2.0, 2.0, null]));
        assert_eq!(json["metrics"]["fit_seconds"]["change"], serde_json::json!([0.0, 0.0, null]));
    }
}
