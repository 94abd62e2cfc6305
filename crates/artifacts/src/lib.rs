//! The artifact store of musicrec: every stage publishes its outputs under `<stage>/`
//! atomically, manifest last, in a local directory or on S3 (see `artifacts`), and `layout`
//! names every stage and file, and `lineage` checks that the outputs present belong together. The offline pipeline writes through it, the service reads
//! through it; it is their contract.

pub mod artifacts;
pub mod error;
pub mod layout;
pub mod lineage;
mod rss;

pub use artifacts::{Artifacts, Manifest, OutputFile, StageWriter};
pub use error::{ArtifactsError, Untrusted};
pub use layout::Stage;
pub use lineage::{StaleInput, stale_inputs};
