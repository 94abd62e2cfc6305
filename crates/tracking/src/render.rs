//! Run records as text: the table of `musicrec runs list`, one record in full (`runs show`),
//! two side by side (`runs compare`).

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

/// Params and metrics of two records side by side; `*` marks a row that differs (or exists
/// in one record only), metrics also show the change from the first to the second.
pub fn compare(a: &RunRecord, b: &RunRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "A  {}  ({}, {})", a.id, a.status.as_str(), start(a));
    let _ = writeln!(out, "B  {}  ({}, {})", b.id, b.status.as_str(), start(b));
    let params = |r: &RunRecord| r.params.clone();
    side_by_side(&mut out, "params", &params(a), &params(b), |_, _| None);
    let shown = |r: &RunRecord| r.metrics.iter().map(|(k, v)| (k.clone(), number(*v))).collect::<BTreeMap<_, _>>();
    let delta = |name: &str, _: &str| {
        let (x, y) = (a.metrics.get(name)?, b.metrics.get(name)?);
        let d = y - x;
        (d != 0.0).then(|| if d > 0.0 { format!("+{}", number(d)) } else { number(d) })
    };
    side_by_side(&mut out, "metrics", &shown(a), &shown(b), delta);
    let (differ_p, differ_m) = (count_differ(&a.params, &b.params), count_differ(&a.metrics, &b.metrics));
    let _ = writeln!(out, "\n{differ_p} params and {differ_m} metrics differ (*)");
    out
}

fn count_differ<V: PartialEq>(a: &BTreeMap<String, V>, b: &BTreeMap<String, V>) -> usize {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter().filter(|k| a.get(*k) != b.get(*k)).count()
}

fn side_by_side(
    out: &mut String,
    title: &str,
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
    extra: impl Fn(&str, &str) -> Option<String>,
) {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    if keys.is_empty() {
        return;
    }
    let missing = "-".to_string();
    let kw = keys.iter().map(|k| k.len()).max().unwrap_or(0);
    let aw = a.values().map(String::len).max().unwrap_or(1).max(1);
    let bw = b.values().map(String::len).max().unwrap_or(1).max(1);
    let _ = writeln!(out, "\n{title}\n  {:<kw$}  {:>aw$}  {:>bw$}", "", "A", "B");
    for key in keys {
        let (x, y) = (a.get(key).unwrap_or(&missing), b.get(key).unwrap_or(&missing));
        let mark = if a.get(key) == b.get(key) { ' ' } else { '*' };
        let tail = extra(key, x).map_or(String::new(), |e| format!("  {e}"));
        let _ = writeln!(out, "{mark} {key:<kw$}  {x:>aw$}  {y:>bw$}{tail}");
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
        let text = compare(&a, &b);
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
}
