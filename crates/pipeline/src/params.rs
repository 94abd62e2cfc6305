//! Every stage's model parameters, built from the configuration in one place and checked
//! together before the first stage runs. The ranges live in each model's `check` (the
//! configuration checks only the keys it alone gives a meaning to); an error names the
//! configuration key. The defaults live in `default.yaml`, which users read and ran; the
//! models' `Default` repeats them for library use, and a test here holds the two equal.

use musicrec_config::{Config, ConfigError};
use musicrec_models::{AlsParams, BprParams, Hyperparameters, InvalidParameter, Item2ItemParams, TopItemsParams};
use musicrec_ranking::RankerParams;

use crate::candidates::Audience;

/// A candidate-model stage's parameters: the model's hyperparameters and what the stage does
/// with the fitted model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelStage<P> {
    pub model: P,
    /// Candidates written per user.
    pub n_candidates: usize,
    pub audience: Audience,
    /// Whether the fit computes its training loss per iteration (`Recommender::fit_with_loss`).
    pub report_loss: bool,
}

impl<P> ModelStage<P> {
    /// A collaborative model's stage: only users with train history can be scored.
    fn old_users(model: P, n_candidates: usize, report_loss: bool) -> Self {
        Self { model, n_candidates, audience: Audience::OldUsers, report_loss }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StageParams {
    pub als: ModelStage<AlsParams>,
    pub bpr: ModelStage<BprParams>,
    pub item2item: ModelStage<Item2ItemParams>,
    pub top_items: ModelStage<TopItemsParams>,
    pub ranker: RankerParams,
}

impl StageParams {
    /// The parameters `config` gives every stage, each checked; the first bad one is the
    /// error, naming its configuration key.
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let seed = config.seed;
        let (als, bpr, i2i, top) = (&config.als, &config.bpr, &config.item2item, &config.top_items);
        Ok(Self {
            als: ModelStage::old_users(
                checked(AlsParams {
                    factors: als.factors,
                    iterations: als.iterations,
                    regularization: als.regularization,
                    alpha: als.alpha,
                    min_users_per_item: als.min_users_per_item,
                    seed,
                    ..AlsParams::default()
                })?,
                als.n_candidates,
                als.report_loss,
            ),
            bpr: ModelStage::old_users(
                checked(BprParams {
                    factors: bpr.factors,
                    iterations: bpr.iterations,
                    learning_rate: bpr.learning_rate,
                    regularization: bpr.regularization,
                    min_users_per_item: bpr.min_users_per_item,
                    seed,
                    ..BprParams::default()
                })?,
                bpr.n_candidates,
                bpr.report_loss,
            ),
            item2item: ModelStage::old_users(
                checked(Item2ItemParams {
                    n_components: i2i.n_components,
                    n_neighbors: i2i.n_neighbors,
                    metric: i2i.metric,
                    min_users_per_item: i2i.min_users_per_item,
                    seed,
                })?,
                i2i.n_candidates,
                false,
            ),
            // Every popular track the user has not heard is a candidate.
            top_items: ModelStage {
                model: checked(TopItemsParams { top_n: top.top_n })?,
                n_candidates: top.top_n,
                audience: Audience::AllUsers,
                report_loss: false,
            },
            ranker: checked(RankerParams {
                iterations: config.ranking.iterations,
                learning_rate: config.ranking.learning_rate,
                depth: config.ranking.depth,
                seed,
            })?,
        })
    }
}

fn checked<P: Hyperparameters>(params: P) -> Result<P, ConfigError> {
    params.check().map_err(config_error)?;
    Ok(params)
}

fn config_error(e: InvalidParameter) -> ConfigError {
    ConfigError::Invalid { key: e.key(), reason: format!("{}, got {}", e.expected, e.value) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_defaults_are_the_models_defaults() {
        let params = StageParams::from_config(&Config::defaults()).unwrap();
        assert_eq!(params.als.model, AlsParams::default());
        assert_eq!(params.bpr.model, BprParams::default());
        assert_eq!(params.item2item.model, Item2ItemParams::default());
        assert_eq!(params.top_items.model, TopItemsParams::default());
        assert_eq!(params.ranker, RankerParams::default());
    }

    #[test]
    fn a_bad_hyperparameter_names_its_configuration_key() {
        for (key, value, reason) in [
            ("als.factors", "0", "must be between 1 and 4096, got 0"),
            ("als.iterations", "10001", "must be between 1 and 10000, got 10001"),
            ("als.regularization", "-0.1", "must be a finite number >= 0, got -0.1"),
            ("als.min_users_per_item", "0", "must be at least 1, got 0"),
            ("bpr.factors", "4096", "must be between 1 and 4095, got 4096"),
            ("bpr.learning_rate", "-1", "must be a finite number > 0, got -1"),
            ("item2item.n_components", "0", "must be between 1 and 1000, got 0"),
            ("item2item.n_neighbors", "0", "must be between 1 and 10000, got 0"),
            ("top_items.top_n", "0", "must be between 1 and 100000, got 0"),
            ("ranking.depth", "17", "must be between 1 and 16, got 17"),
            ("ranking.learning_rate", "0", "must be a finite number > 0, got 0"),
        ] {
            let var = format!("MUSICREC__{}", key.replace('.', "__").to_uppercase());
            let config = Config::from_layers(None, [(var, value.to_string())]).unwrap();
            let err = StageParams::from_config(&config).unwrap_err();
            assert_eq!(err.to_string(), format!("config key `{key}`: {reason}"));
        }
    }
}
