//! Reading the window event files of `preprocess` in encoded form, the shape every later
//! stage computes on.

use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int64Type};
use musicrec_data::parquet_io::{for_each_batch, row_count};
use musicrec_data::{DataError, IdEncoder};

/// Events with dense user and item indices.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedEvents {
    pub user: Vec<u32>,
    pub item: Vec<u32>,
    pub day: Vec<i32>,
}

/// Reads a window's events, encoding users and tracks. Events whose user or track is not in
/// the encoders are skipped and counted (a new user of the target window has no train row).
pub fn read_encoded(path: &Path, users: &IdEncoder, items: &IdEncoder) -> Result<(EncodedEvents, u64), DataError> {
    let rows = row_count(path)?;
    let mut events = EncodedEvents {
        user: Vec::with_capacity(rows as usize),
        item: Vec::with_capacity(rows as usize),
        day: Vec::with_capacity(rows as usize),
    };
    let mut skipped = 0u64;
    let bar = crate::progress::bar(rows, "read events");
    for_each_batch(path, &["user_id", "track_id", "started_at"], |batch| {
        bar.inc(batch.num_rows() as u64);
        let u = batch.column(0).as_primitive::<Int64Type>().values();
        let t = batch.column(1).as_primitive::<Int64Type>().values();
        let d = batch.column(2).as_primitive::<Date32Type>().values();
        for i in 0..batch.num_rows() {
            match (users.encode(u[i]), items.encode(t[i])) {
                (Some(user), Some(item)) => {
                    events.user.push(user);
                    events.item.push(item);
                    events.day.push(d[i]);
                }
                _ => skipped += 1,
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok((events, skipped))
}
