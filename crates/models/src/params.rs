//! What every model's hyperparameters share: defaults, and a check run before any work that
//! names the offending parameter the way the configuration does (`als.factors`).

use crate::error::ModelError;

/// Hyperparameters of one model: `Default` gives the original system's values.
pub trait Hyperparameters: Default + Clone + std::fmt::Debug + PartialEq + Send + Sync {
    /// Rejects values the model cannot train with, naming the parameter.
    fn check(&self) -> Result<(), ModelError>;
}

/// Builds the errors of `Hyperparameters::check` for one model.
pub(crate) struct ParamCheck {
    pub model: &'static str,
}

impl ParamCheck {
    fn invalid(&self, parameter: &'static str, value: impl ToString, expected: &'static str) -> ModelError {
        ModelError::InvalidParameter { model: self.model, parameter, value: value.to_string(), expected }
    }

    pub fn count_in(
        &self,
        parameter: &'static str,
        value: usize,
        range: std::ops::RangeInclusive<usize>,
        expected: &'static str,
    ) -> Result<(), ModelError> {
        if range.contains(&value) { Ok(()) } else { Err(self.invalid(parameter, value, expected)) }
    }

    pub fn positive(&self, parameter: &'static str, value: f32) -> Result<(), ModelError> {
        if value.is_finite() && value > 0.0 {
            Ok(())
        } else {
            Err(self.invalid(parameter, value, "must be a finite number > 0"))
        }
    }

    pub fn non_negative(&self, parameter: &'static str, value: f32) -> Result<(), ModelError> {
        if value.is_finite() && value >= 0.0 {
            Ok(())
        } else {
            Err(self.invalid(parameter, value, "must be a finite number >= 0"))
        }
    }
}
