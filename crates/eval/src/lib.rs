//! Offline evaluation of musicrec (docs/metrics.md): how well ranked recommendations match what users
//! listened to in an evaluation window, how far they reach beyond the users' training
//! history and the popular tracks, and how sure those figures are (`bootstrap`).
//!
//! Everything works on dense indices (users `0..n_users`, items `0..n_items`): the pipeline
//! encodes ids before evaluating.

mod bootstrap;
mod error;
mod metrics;

pub use bootstrap::{Interval, bootstrap_means, interval};
pub use error::EvalError;
pub use metrics::{
    AtK, ClassCounts, Evaluation, ItemGroups, Metrics, PerUser, PopularityClass, Recommendations, Relevance,
    TrainHistory, Truth, UserMetric, evaluate, hits_by_class,
};
