//! What every model's hyperparameters share: defaults, and a check run before any work that
//! names the offending parameter the way the configuration does (`als.factors`). Each model's
//! `check` is the only place its ranges are stated: the pipeline builds the parameters from the
//! configuration and runs these checks before its first stage.

use std::ops::RangeInclusive;

/// Hyperparameters of one model. `Default` gives the values documented in the configuration's
/// defaults (`musicrec config`), which the pipeline's tests hold equal.
pub trait Hyperparameters: Default + Clone + std::fmt::Debug + PartialEq + Send + Sync {
    /// Rejects values the model cannot train with, naming the parameter.
    fn check(&self) -> Result<(), InvalidParameter>;
}

/// A hyperparameter outside what its model accepts. `section` is the model's name, which is
/// also its configuration section, so `section.parameter` is the configuration key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{section}.{parameter}: {expected}, got {value}")]
pub struct InvalidParameter {
    pub section: &'static str,
    pub parameter: &'static str,
    pub expected: String,
    pub value: String,
}

impl InvalidParameter {
    /// The configuration key of the parameter.
    pub fn key(&self) -> String {
        format!("{}.{}", self.section, self.parameter)
    }
}

/// The checks of one model's (or the ranker's) `Hyperparameters::check`, naming its section.
pub struct ParamCheck {
    pub section: &'static str,
}

impl ParamCheck {
    pub fn invalid(
        &self,
        parameter: &'static str,
        value: impl ToString,
        expected: impl Into<String>,
    ) -> InvalidParameter {
        InvalidParameter { section: self.section, parameter, expected: expected.into(), value: value.to_string() }
    }

    /// A count within `range` (an end of `usize::MAX` means no upper bound).
    pub fn count_in(
        &self,
        parameter: &'static str,
        value: usize,
        range: RangeInclusive<usize>,
    ) -> Result<(), InvalidParameter> {
        if range.contains(&value) {
            return Ok(());
        }
        let expected = if *range.end() == usize::MAX {
            format!("must be at least {}", range.start())
        } else {
            format!("must be between {} and {}", range.start(), range.end())
        };
        Err(self.invalid(parameter, value, expected))
    }

    /// A finite number above 0.
    pub fn positive(&self, parameter: &'static str, value: f32) -> Result<(), InvalidParameter> {
        if value.is_finite() && value > 0.0 {
            Ok(())
        } else {
            Err(self.invalid(parameter, value, "must be a finite number > 0"))
        }
    }

    /// A finite number, 0 or above.
    pub fn non_negative(&self, parameter: &'static str, value: f32) -> Result<(), InvalidParameter> {
        if value.is_finite() && value >= 0.0 {
            Ok(())
        } else {
            Err(self.invalid(parameter, value, "must be a finite number >= 0"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_key_the_rule_and_the_value() {
        let check = ParamCheck { section: "als" };
        let err = check.count_in("factors", 0, 1..=4096).unwrap_err();
        assert_eq!(err.to_string(), "als.factors: must be between 1 and 4096, got 0");
        assert_eq!(err.key(), "als.factors");
        let err = check.count_in("iterations", 0, 1..=usize::MAX).unwrap_err();
        assert_eq!(err.to_string(), "als.iterations: must be at least 1, got 0");
        assert!(check.non_negative("regularization", 0.0).is_ok());
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY] {
            assert!(check.positive("alpha", bad).is_err(), "{bad}");
        }
        let err = check.non_negative("regularization", -0.1).unwrap_err().to_string();
        assert_eq!(err, "als.regularization: must be a finite number >= 0, got -0.1");
    }
}
