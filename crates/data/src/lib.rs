//! The data contract of musicrec: where data lives, the Yandex Music layout and its
//! validation, and the compact in-memory and on-disk forms later stages share (id encoders,
//! sparse matrices).

pub mod atomic;
pub mod error;
pub mod parquet_io;
pub mod schema;

pub use error::DataError;
pub mod encoder;
pub mod layout;
pub mod location;

pub use encoder::IdEncoder;
pub use location::Location;
pub mod sparse;
pub mod store;
pub mod timeline;
pub use sparse::CsrMatrix;
