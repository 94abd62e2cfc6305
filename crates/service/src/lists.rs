//! Ranked lists held for serving: every list of one kind in two flat arrays indexed by a dense
//! key, so a million users cost 4 bytes of offset plus 8 bytes per recommended track (its
//! index and its producer's score).

use std::path::Path;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int64Type};
use arrow_cast::cast;
use arrow_schema::DataType;
use musicrec_data::parquet_io::for_each_batch;
use musicrec_data::{DataError, IdEncoder};

use crate::blend::List;

/// `items[offsets[key]..offsets[key + 1]]` is the list of `key`, best first, and `scores` the
/// same range's scores.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RankedLists {
    offsets: Vec<u32>,
    items: Vec<u32>,
    scores: Vec<f32>,
}

impl RankedLists {
    /// Lists from `(key, rank, item, score)` rows in any order; keys below `keys`.
    pub fn from_rows(keys: usize, mut rows: Vec<(u32, i64, u32, f32)>) -> Self {
        rows.sort_unstable_by_key(|&(key, rank, item, _)| (key, rank, item));
        let mut offsets = vec![0u32; keys + 1];
        for &(key, ..) in &rows {
            offsets[key as usize + 1] += 1;
        }
        for k in 0..keys {
            offsets[k + 1] += offsets[k];
        }
        let (items, scores) = rows.into_iter().map(|(_, _, item, score)| (item, score)).unzip();
        Self { offsets, items, scores }
    }

    /// The list of `key`; empty for a key without one.
    pub fn get(&self, key: u32) -> List<'_> {
        let k = key as usize;
        if k + 1 >= self.offsets.len() {
            return List::default();
        }
        let range = self.offsets[k] as usize..self.offsets[k + 1] as usize;
        List { items: &self.items[range.clone()], scores: &self.scores[range] }
    }

    /// Keys whose list is not empty.
    pub fn keys_with_lists(&self) -> usize {
        self.offsets.windows(2).filter(|w| w[0] < w[1]).count()
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        (self.offsets.capacity() + self.items.capacity() + self.scores.capacity()) * size_of::<u32>()
    }
}

/// Reads the ranked table `path` (`key_column`, `item_column`, `rank`, any integer types;
/// `score`, any number type),
/// encoding keys with `keys` and items with `items`. A key or item the encoders do not know
/// means the file belongs to another run: an error naming how many rows are affected.
pub fn read_ranked(
    path: &Path,
    key_column: &str,
    item_column: &str,
    keys: &IdEncoder,
    items: &IdEncoder,
) -> Result<RankedLists, DataError> {
    let mut rows = Vec::new();
    let (mut unknown_keys, mut unknown_items, mut nulls) = (0usize, 0usize, 0usize);
    for_each_batch(path, &[key_column, item_column, "rank", "score"], |batch| {
        let mut columns = Vec::with_capacity(3);
        for (c, name) in [key_column, item_column, "rank"].into_iter().enumerate() {
            let column = cast(batch.column(c), &DataType::Int64)
                .map_err(|e| DataError::corrupt(path, format!("column `{name}` is not an integer column: {e}")))?;
            nulls += column.null_count();
            columns.push(column);
        }
        let score = cast(batch.column(3), &DataType::Float32)
            .map_err(|e| DataError::corrupt(path, format!("column `score` is not a number column: {e}")))?;
        nulls += score.null_count();
        let s = score.as_primitive::<Float32Type>();
        let [k, i, r] = [0, 1, 2].map(|c| columns[c].as_primitive::<Int64Type>());
        for row in 0..batch.num_rows() {
            if k.is_null(row) || i.is_null(row) || r.is_null(row) || s.is_null(row) {
                continue;
            }
            match (keys.encode(k.value(row)), items.encode(i.value(row))) {
                (Some(key), Some(item)) => rows.push((key, r.value(row), item, s.value(row))),
                (None, _) => unknown_keys += 1,
                (_, None) => unknown_items += 1,
            }
        }
        Ok(())
    })?;
    for (count, problem) in [
        (nulls, "null values".to_string()),
        (unknown_keys, format!("rows whose `{key_column}` is not in the run's encoders (matrices stage)")),
        (unknown_items, format!("rows whose `{item_column}` is not in the run's item encoder (matrices stage)")),
    ] {
        if count > 0 {
            return Err(DataError::corrupt(path, format!("{count} {problem}")));
        }
    }
    Ok(RankedLists::from_rows(keys.len(), rows))
}
