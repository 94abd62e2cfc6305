//! The matrix a factor model trains on: the item filter of the original system (items with
//! fewer than `min_users_per_item` distinct users are left out), then the users left with no
//! item dropped, re-indexed densely so the solvers work on contiguous factor rows; and the
//! seeded initial factors the solvers start from.

use std::ops::Range;

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};
use rayon::prelude::*;

use musicrec_data::CsrMatrix;

use crate::error::ModelError;
use crate::huge_pages;

/// Entries per column: the distinct users of each item, as column indices are unique within a
/// row.
pub(crate) fn users_per_item(user_items: &CsrMatrix) -> Vec<u64> {
    let mut users = vec![0u64; user_items.cols];
    for &item in &user_items.indices {
        users[item as usize] += 1;
    }
    users
}

/// Checks the values (listen counts must be finite and > 0) and returns the items, ascending,
/// with at least `min_users_per_item` distinct users: the item filter of the original system.
pub(crate) fn eligible_items(
    model: &'static str,
    user_items: &CsrMatrix,
    min_users_per_item: usize,
) -> Result<Vec<u32>, ModelError> {
    let bad = user_items.values.par_iter().filter(|v| !(v.is_finite() && **v > 0.0)).count();
    if bad > 0 {
        let example = *user_items.values.iter().find(|v| !(v.is_finite() && **v > 0.0)).expect("counted above");
        return Err(ModelError::BadTrainingValues { model, count: bad, example });
    }
    let users_per_item = users_per_item(user_items);
    let items: Vec<u32> =
        (0..user_items.cols as u32).filter(|&i| users_per_item[i as usize] >= min_users_per_item as u64).collect();
    if items.is_empty() {
        let most = users_per_item.iter().max().copied().unwrap_or(0);
        return Err(ModelError::NothingToTrain {
            model,
            reason: format!(
                "no item has at least min_users_per_item = {min_users_per_item} distinct users (the most listened item has {most})"
            ),
        });
    }
    Ok(items)
}

#[derive(Debug)]
pub(crate) struct TrainingSet {
    /// Row `r` of `matrix` is user `users[r]` of the input; ascending.
    pub users: Vec<u32>,
    /// Column `c` of `matrix` is item `items[c]` of the input; ascending.
    pub items: Vec<u32>,
    pub matrix: CsrMatrix,
}

/// Checks the values (listen counts must be finite and > 0: they become confidences) and
/// applies the item filter.
pub(crate) fn training_set(
    model: &'static str,
    user_items: &CsrMatrix,
    min_users_per_item: usize,
) -> Result<TrainingSet, ModelError> {
    let items = eligible_items(model, user_items, min_users_per_item)?;
    const DROPPED: u32 = u32::MAX;
    let mut column_of = vec![DROPPED; user_items.cols];
    for (column, &item) in items.iter().enumerate() {
        column_of[item as usize] = column as u32;
    }
    let kept_per_user: Vec<usize> = (0..user_items.rows)
        .into_par_iter()
        .map(|u| user_items.row(u).0.iter().filter(|&&i| column_of[i as usize] != DROPPED).count())
        .collect();
    let users: Vec<u32> = (0..user_items.rows).filter(|&u| kept_per_user[u] > 0).map(|u| u as u32).collect();
    let mut indptr = Vec::with_capacity(users.len() + 1);
    indptr.push(0u64);
    for &u in &users {
        indptr.push(indptr.last().expect("starts with 0") + kept_per_user[u as usize] as u64);
    }
    let nnz = *indptr.last().expect("starts with 0") as usize;
    let mut indices = huge_pages::filled(nnz, |_| 0u32);
    let mut values = vec![0f32; nnz];
    let mut rows: Vec<(u32, &mut [u32], &mut [f32])> = Vec::with_capacity(users.len());
    let (mut index_rest, mut value_rest) = (indices.as_mut_slice(), values.as_mut_slice());
    for &u in &users {
        let length = kept_per_user[u as usize];
        let (index_row, index_tail) = std::mem::take(&mut index_rest).split_at_mut(length);
        let (value_row, value_tail) = std::mem::take(&mut value_rest).split_at_mut(length);
        rows.push((u, index_row, value_row));
        (index_rest, value_rest) = (index_tail, value_tail);
    }
    rows.into_par_iter().for_each(|(u, index_row, value_row)| {
        let (cols, vals) = user_items.row(u as usize);
        let kept = cols.iter().zip(vals).filter(|&(&i, _)| column_of[i as usize] != DROPPED);
        for ((slot_index, slot_value), (&i, &v)) in index_row.iter_mut().zip(value_row.iter_mut()).zip(kept) {
            *slot_index = column_of[i as usize];
            *slot_value = v;
        }
    });
    let matrix = CsrMatrix { rows: users.len(), cols: items.len(), indptr, indices, values };
    Ok(TrainingSet { users, items, matrix })
}

/// Rows of factors drawn from one random stream: the unit of parallel initialisation, so that
/// the factors do not depend on the number of threads.
const INIT_ROWS_PER_STREAM: usize = 4096;

/// `rows` × `k` factors uniform in `range` (24 random bits each), from a stream per
/// (seed, side, block of rows): the same values whatever the number of threads. Models give
/// each matrix they initialise its own `side` (ALS and BPR: 0 for users, 1 for items).
pub(crate) fn initial_factors(seed: u64, side: u64, rows: usize, k: usize, range: Range<f32>) -> Vec<f32> {
    let mut factors = huge_pages::filled(rows * k, |_| 0.0f32);
    let step = (range.end - range.start) / (1u32 << 24) as f32;
    factors.par_chunks_mut(INIT_ROWS_PER_STREAM * k).enumerate().for_each(|(block, chunk)| {
        let stream = (side << 40) ^ block as u64;
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for v in chunk {
            *v = range.start + (rng.next_u32() >> 8) as f32 * step;
        }
    });
    factors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rare_items_and_then_empty_users_are_dropped() {
        // Item 0: users 0, 1, 2; item 1: user 1; item 2: users 0, 3. User 3 only has item 2.
        let m = CsrMatrix::from_coo(4, 3, &[0, 1, 2, 1, 0, 3], &[0, 0, 0, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let set = training_set("test", &m, 2).unwrap();
        assert_eq!(set.items, vec![0, 2]);
        assert_eq!(set.users, vec![0, 1, 2, 3]);
        assert_eq!(set.matrix.row(0), (&[0u32, 1][..], &[1.0f32, 5.0][..]));
        assert_eq!(set.matrix.row(1), (&[0u32][..], &[2.0f32][..]));
        let set = training_set("test", &m, 3).unwrap();
        assert_eq!((set.items, set.users), (vec![0], vec![0, 1, 2]));
        let err = training_set("test", &m, 4).unwrap_err().to_string();
        assert!(err.contains("min_users_per_item = 4") && err.contains("has 3"), "{err}");
    }

    #[test]
    fn non_positive_or_non_finite_counts_are_refused() {
        let m = CsrMatrix::from_coo(2, 2, &[0, 1], &[0, 1], &[1.0, f32::NAN]);
        let err = training_set("als", &m, 1).unwrap_err();
        assert!(matches!(err, ModelError::BadTrainingValues { count: 1, .. }), "{err}");
    }
}
