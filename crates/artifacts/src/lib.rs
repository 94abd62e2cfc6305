//! The artifact store of musicrec: every stage publishes its outputs atomically, manifest last,
//! in a local directory or on S3 (see `artifacts`), inside a version of the whole set that one
//! pointer publishes when the run ends (`versions`), written by one writer at a time (`lock`);
//! `layout` names every stage and file, and `lineage` checks that the outputs present belong
//! together. The offline pipeline writes through it, the service reads through it; it is their
//! contract.

pub mod artifacts;
pub mod error;
pub mod layout;
pub mod lineage;
pub mod lock;
mod rss;
pub mod versions;

pub use artifacts::{Artifacts, Manifest, OutputFile, StageWriter};
pub use error::{ArtifactsError, Untrusted};
pub use layout::Stage;
pub use lineage::{StaleInput, stale_inputs};
pub use lock::{Holder, LockMode, WriterLock};
pub use versions::{Publication, VersionRecord};
