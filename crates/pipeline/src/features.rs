//! Stage `features` (docs/pipeline.md#features): per user and per item, as of the split date (train_end):
//! listens in all of train and in the last N days (config `features.recent_days`), distinct
//! counterparts, days since the first and the last listen.
//!
//! Every catalogue track gets a row: a track nobody played in train has 0 listens and null
//! days-since values (unknown, not zero), which is what the ranker must see.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int32Array, Int64Array, RecordBatch, UInt32Array};
use musicrec_artifacts::layout::features::{ITEM_FEATURES_FILE, USER_FEATURES_FILE};
use musicrec_artifacts::layout::matrices::USER_ITEM_FILE;
use musicrec_artifacts::layout::preprocess::Window;
use musicrec_artifacts::{Manifest, Stage};
use musicrec_data::CsrMatrix;
use musicrec_data::parquet_io;
use serde_json::json;

use crate::error::PipelineError;
use crate::events::{EncodedEvents, read_encoded};
use crate::matrices::Encoders;
use crate::preprocess::{SplitDates, epoch_day};
use crate::stage::RunContext;

/// Activity counters of one side (users or items) of the train events.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub listens: Vec<u32>,
    /// One vector per configured recent window, in config order.
    pub recent: Vec<Vec<u32>>,
    pub first_day: Vec<i32>,
    pub last_day: Vec<i32>,
}

impl Activity {
    /// Counts events per entity; `entity` gives each event's user or item index.
    pub fn count(entities: usize, entity: &[u32], day: &[i32], as_of: i32, recent_days: &[u32]) -> Self {
        let mut a = Self {
            listens: vec![0; entities],
            recent: vec![vec![0; entities]; recent_days.len()],
            first_day: vec![i32::MAX; entities],
            last_day: vec![i32::MIN; entities],
        };
        for (&e, &d) in entity.iter().zip(day) {
            let e = e as usize;
            a.listens[e] += 1;
            a.first_day[e] = a.first_day[e].min(d);
            a.last_day[e] = a.last_day[e].max(d);
            for (w, &days) in recent_days.iter().enumerate() {
                if d >= as_of - days as i32 {
                    a.recent[w][e] += 1;
                }
            }
        }
        a
    }

    /// Days from the first (or last) listen to `as_of`; null for an entity never played.
    fn days_since(days: &[i32], as_of: i32) -> Int32Array {
        Int32Array::from_iter(days.iter().map(|&d| (d != i32::MAX && d != i32::MIN).then(|| as_of - d)))
    }

    fn columns(
        &self,
        as_of: i32,
        recent_days: &[u32],
        distinct_name: &str,
        distinct: Vec<u32>,
    ) -> Vec<(String, ArrayRef)> {
        let mut cols: Vec<(String, ArrayRef)> =
            vec![("listens".into(), Arc::new(UInt32Array::from(self.listens.clone())))];
        for (w, &days) in recent_days.iter().enumerate() {
            cols.push((format!("listens_last_{days}d"), Arc::new(UInt32Array::from(self.recent[w].clone()))));
        }
        cols.push((distinct_name.into(), Arc::new(UInt32Array::from(distinct))));
        cols.push(("days_since_first".into(), Arc::new(Self::days_since(&self.first_day, as_of))));
        cols.push(("days_since_last".into(), Arc::new(Self::days_since(&self.last_day, as_of))));
        cols
    }
}

fn table(id_name: &str, ids: &[i64], columns: Vec<(String, ArrayRef)>) -> RecordBatch {
    let mut all: Vec<(String, ArrayRef)> = vec![(id_name.to_string(), Arc::new(Int64Array::from(ids.to_vec())))];
    all.extend(columns);
    RecordBatch::try_from_iter(all).expect("equal lengths")
}

pub fn run(ctx: &RunContext) -> Result<Manifest, PipelineError> {
    let mut out = ctx.artifacts.begin(Stage::Features, &ctx.run_id)?;
    let pre_manifest = ctx.upstream(Stage::Features, Stage::Preprocess)?;
    let split = SplitDates::of(&pre_manifest, &ctx.artifacts.dir(Stage::Preprocess))?;
    let (encoders, _) = Encoders::load(&ctx.artifacts, Stage::Features.as_str())?;
    ctx.record_inputs(Stage::Features, &mut out)?;

    let as_of = epoch_day(split.train_end);
    let recent = &ctx.config.features.recent_days;
    let pre = ctx.artifacts.dir(Stage::Preprocess);
    let (train, _) = read_encoded(&pre.join(Window::Train.file()), &encoders.users, &encoders.items)?;
    let user_item = CsrMatrix::load(&ctx.artifacts.dir(Stage::Matrices).join(USER_ITEM_FILE))?;
    let (users, items) = activity(&train, &user_item, as_of, recent);

    let user_table = table(
        "user_id",
        encoders.users.ids(),
        users.columns(
            as_of,
            recent,
            "distinct_tracks",
            (0..user_item.rows).map(|u| user_item.row(u).0.len() as u32).collect(),
        ),
    );
    let mut distinct_users = vec![0u32; user_item.cols];
    user_item.indices.iter().for_each(|&i| distinct_users[i as usize] += 1);
    let item_table =
        table("track_id", encoders.items.ids(), items.columns(as_of, recent, "distinct_users", distinct_users));
    out.add_parquet(parquet_io::write_batch(out.path(USER_FEATURES_FILE), &user_table)?);
    out.add_parquet(parquet_io::write_batch(out.path(ITEM_FEATURES_FILE), &item_table)?);

    let summary = json!({
        "users": user_table.num_rows(),
        "items": item_table.num_rows(),
        "as_of": split.train_end.to_string(),
        "user_columns": user_table.schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>(),
        "item_columns": item_table.schema().fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>(),
    });
    let params = ctx.params(json!({"preprocess": split, "features": ctx.config.features}));
    Ok(out.commit(musicrec_config::fingerprint_of(&params), params, &summary)?)
}

fn activity(train: &EncodedEvents, user_item: &CsrMatrix, as_of: i32, recent: &[u32]) -> (Activity, Activity) {
    rayon::join(
        || Activity::count(user_item.rows, &train.user, &train.day, as_of, recent),
        || Activity::count(user_item.cols, &train.item, &train.day, as_of, recent),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_windows_and_days_by_hand() {
        // Entity 0: days 90, 95, 99 before as_of=100; entity 1: day 60; entity 2: none.
        let a = Activity::count(3, &[0, 0, 1, 0], &[90, 95, 60, 99], 100, &[7, 30]);
        assert_eq!(a.listens, vec![3, 1, 0]);
        assert_eq!(a.recent, vec![vec![2, 0, 0], vec![3, 0, 0]]);
        let first = Activity::days_since(&a.first_day, 100);
        let last = Activity::days_since(&a.last_day, 100);
        assert_eq!(first.iter().collect::<Vec<_>>(), vec![Some(10), Some(40), None]);
        assert_eq!(last.iter().collect::<Vec<_>>(), vec![Some(1), Some(40), None]);
    }
}
