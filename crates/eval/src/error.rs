/// Inputs of an evaluation that do not fit together. Each names the structure at fault
/// (`what`) and the offending row, user or item, so a pipeline bug is found where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("{what}: {offsets} offsets for {rows} rows; CSR offsets need one more than the rows")]
    OffsetsLength { what: &'static str, rows: usize, offsets: usize },

    #[error("{what}: offsets run from {first} to {last}; they must run from 0 to the number of items, {items}")]
    OffsetsBounds { what: &'static str, first: usize, last: usize, items: usize },

    #[error("{what}: offsets decrease at row {row}")]
    OffsetsDecrease { what: &'static str, row: usize },

    #[error("recommendations: user {user} has more than one list")]
    DuplicateUser { user: u32 },

    #[error("train history: the items of user {user} are not strictly ascending")]
    UnsortedHistory { user: usize },

    #[error("{what}: item {item} is outside the catalogue of {n_items} items")]
    ItemOutOfRange { what: &'static str, item: u32, n_items: usize },

    #[error("{what}: built for {items} items; the catalogue has {n_items}")]
    CatalogueMismatch { what: &'static str, items: usize, n_items: usize },

    #[error("K: give at least one, each at least 1")]
    ZeroK,

    #[error(
        "bootstrap: series {series} has {len} users, the first has {expected}; paired resamples need the same users"
    )]
    SeriesLength { series: usize, len: usize, expected: usize },
}
