//! The importers on the hand-written fixtures (tests/fixtures): every output is read back by
//! the readers `preprocess` uses, so what an import writes is what a run accepts.

mod common;
mod failures;
mod formats;
pub mod yambda_fixture;
