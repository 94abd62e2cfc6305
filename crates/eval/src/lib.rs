//! Offline evaluation of musicrec (docs/metrics.md): how well ranked recommendations match what users
//! listened to in an evaluation window, and how far they reach beyond the users' training
//! history and the popular tracks.
//!
//! Everything works on dense indices (users `0..n_users`, items `0..n_items`): the pipeline
//! encodes ids before evaluating.

mod error;
mod metrics;

pub use error::EvalError;
pub use metrics::{Metrics, Recommendations, Relevance, TrainHistory, evaluate};
