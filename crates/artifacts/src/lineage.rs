//! Whether the outputs in an artifacts directory belong together: every stage records the run
//! id of each upstream stage it read (`Stage::inputs`), so an output built on outputs that a
//! later run of one stage replaced (a ranker trained on the candidates of an ALS that was
//! rerun since, a model judged on windows of another preprocess run) is found by name.

use std::collections::BTreeMap;
use std::fmt;

use crate::artifacts::Manifest;
use crate::layout::Stage;

/// A stage whose outputs were built on another run of `upstream` than the one now there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleInput {
    pub stage: Stage,
    /// The pipeline run of `stage`'s outputs.
    pub stage_run: String,
    pub upstream: Stage,
    /// The run of `upstream` whose outputs `stage` read.
    pub read_run: String,
    /// The run of `upstream`'s outputs now in the artifacts.
    pub current_run: String,
}

impl fmt::Display for StaleInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (stage, upstream) = (self.stage.as_str(), self.upstream.as_str());
        let read = if self.stage == Stage::Ranking && self.upstream.is_model() {
            "was trained on the candidates of"
        } else {
            "read the outputs of"
        };
        write!(
            f,
            "`{stage}` (run {}) {read} `{upstream}` run {}, but `{upstream}` now holds run {}: \
             rerun `{stage}` so they agree",
            self.stage_run, self.read_run, self.current_run
        )
    }
}

/// Every edge of the dependency graph, among the stages in `manifests`, whose upstream run
/// differs from the one the downstream stage recorded; in pipeline order. A manifest that
/// does not record an input (written before inputs were recorded) is not judged on it.
pub fn stale_inputs(manifests: &BTreeMap<Stage, Manifest>) -> Vec<StaleInput> {
    let mut stale = Vec::new();
    for (&stage, manifest) in manifests {
        for &upstream in stage.inputs() {
            let (Some(read), Some(current)) = (manifest.inputs.get(upstream.as_str()), manifests.get(&upstream)) else {
                continue;
            };
            if *read != current.run_id {
                stale.push(StaleInput {
                    stage,
                    stage_run: manifest.run_id.clone(),
                    upstream,
                    read_run: read.clone(),
                    current_run: current.run_id.clone(),
                });
            }
        }
    }
    stale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(stage: Stage, run: &str, inputs: &[(Stage, &str)]) -> Manifest {
        Manifest {
            format: 1,
            stage: stage.as_str().into(),
            run_id: run.into(),
            started_at: String::new(),
            finished_at: String::new(),
            duration_s: 0.0,
            peak_rss_bytes: None,
            config_fingerprint: String::new(),
            params: serde_json::Value::Null,
            inputs: inputs.iter().map(|(s, r)| (s.as_str().to_string(), r.to_string())).collect(),
            outputs: Vec::new(),
            summary: serde_json::Value::Null,
        }
    }

    /// A whole run `r1` of preprocess, matrices, als and ranking (ranking reading only those).
    fn one_run() -> BTreeMap<Stage, Manifest> {
        let (p, m, a) = (Stage::Preprocess, Stage::Matrices, Stage::Als);
        BTreeMap::from([
            (p, manifest(p, "r1", &[])),
            (m, manifest(m, "r1", &[(p, "r1")])),
            (a, manifest(a, "r1", &[(p, "r1"), (m, "r1")])),
            (Stage::Ranking, manifest(Stage::Ranking, "r1", &[(p, "r1"), (m, "r1"), (a, "r1")])),
        ])
    }

    #[test]
    fn one_run_is_consistent() {
        assert!(stale_inputs(&one_run()).is_empty());
    }

    #[test]
    fn a_rerun_model_makes_the_ranker_stale_by_name() {
        let mut set = one_run();
        set.insert(Stage::Als, manifest(Stage::Als, "r2", &[(Stage::Preprocess, "r1"), (Stage::Matrices, "r1")]));
        let stale = stale_inputs(&set);
        assert_eq!(stale.len(), 1, "{stale:?}");
        assert_eq!((stale[0].stage, stale[0].upstream), (Stage::Ranking, Stage::Als));
        assert_eq!((stale[0].read_run.as_str(), stale[0].current_run.as_str()), ("r1", "r2"));
        let text = stale[0].to_string();
        assert!(
            text.contains("`ranking` (run r1) was trained on the candidates of `als` run r1")
                && text.contains("now holds run r2"),
            "{text}"
        );
    }

    #[test]
    fn a_rerun_preprocess_makes_every_reader_stale() {
        let mut set = one_run();
        set.insert(Stage::Preprocess, manifest(Stage::Preprocess, "r3", &[]));
        let stale: Vec<(Stage, Stage)> = stale_inputs(&set).iter().map(|s| (s.stage, s.upstream)).collect();
        assert_eq!(
            stale,
            vec![
                (Stage::Matrices, Stage::Preprocess),
                (Stage::Als, Stage::Preprocess),
                (Stage::Ranking, Stage::Preprocess)
            ]
        );
        assert!(stale_inputs(&set)[1].to_string().contains("`als` (run r1) read the outputs of `preprocess` run r1"));
    }

    #[test]
    fn missing_stages_and_unrecorded_inputs_are_not_judged() {
        let mut set = one_run();
        set.remove(&Stage::Als);
        set.insert(Stage::Matrices, manifest(Stage::Matrices, "r4", &[]));
        let stale: Vec<(Stage, Stage)> = stale_inputs(&set).iter().map(|s| (s.stage, s.upstream)).collect();
        assert_eq!(stale, vec![(Stage::Ranking, Stage::Matrices)]);
    }
}
