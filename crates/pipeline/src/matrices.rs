//! Stage `matrices` (docs/pipeline.md#matrices): id encoders, the train user × item matrix of listen counts
//! and the item × feature one-hot matrix (albums, artists, genres).
//!
//! Items are the whole catalogue, so a track new in the target window still has an index and
//! features; users are the old users (those with train events).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use musicrec_artifacts::layout::matrices::{FEATURES_FILE, ITEM_FEATURE_FILE, ITEMS_FILE, USER_ITEM_FILE, USERS_FILE};
use musicrec_artifacts::layout::preprocess::{self, Window};
use musicrec_artifacts::{Artifacts, Manifest, Stage};
use musicrec_data::parquet_io::{self, for_each_batch, read_i64_column};
use musicrec_data::schema::EntityType;
use musicrec_data::{CsrMatrix, IdEncoder};
use serde_json::json;

use crate::error::PipelineError;
use crate::events::read_encoded;
use crate::stage::{RunContext, require};

/// Feature columns of the item × feature matrix, in column order.
pub const FEATURE_KINDS: [EntityType; 3] = [EntityType::Album, EntityType::Artist, EntityType::Genre];

/// The encoders of a finished `matrices` stage.
pub struct Encoders {
    pub users: IdEncoder,
    pub items: IdEncoder,
}

impl Encoders {
    /// Loads the encoders written by the `matrices` stage.
    pub fn load(artifacts: &Artifacts, needed_by: &'static str) -> Result<(Self, Manifest), PipelineError> {
        let manifest = require(artifacts, Stage::Matrices, needed_by)?;
        let dir = artifacts.dir(Stage::Matrices);
        let users = IdEncoder::from_sorted_unique(read_i64_column(&dir.join(USERS_FILE), "user_id")?);
        let items = IdEncoder::from_sorted_unique(read_i64_column(&dir.join(ITEMS_FILE), "track_id")?);
        Ok((Self { users, items }, manifest))
    }
}

pub fn run(ctx: &RunContext) -> Result<Manifest, PipelineError> {
    let mut out = ctx.artifacts.begin(Stage::Matrices, &ctx.run_id)?;
    let upstream = ctx.upstream(Stage::Matrices, Stage::Preprocess)?;
    let pre = ctx.artifacts.dir(Stage::Preprocess);
    ctx.record_inputs(Stage::Matrices, &mut out)?;

    let items = IdEncoder::from_sorted_unique(read_i64_column(&pre.join(preprocess::TRACKS_FILE), "track_id")?);
    let mut old_users = Vec::new();
    for_each_batch(&pre.join(preprocess::USERS_FILE), &["user_id", "old"], |batch| {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let old = batch.column(1).as_boolean();
        old_users.extend((0..batch.num_rows()).filter(|&i| old.value(i)).map(|i| ids.value(i)));
        Ok(())
    })?;
    let users = IdEncoder::from_sorted_unique(old_users);

    let (train, skipped) = read_encoded(&pre.join(Window::Train.file()), &users, &items)?;
    if skipped > 0 {
        return Err(PipelineError::Artifact {
            path: pre.join(Window::Train.file()).display().to_string(),
            reason: format!("{skipped} train events have a user or track that preprocess did not list"),
        });
    }
    let ones = vec![1.0f32; train.user.len()];
    let user_item = CsrMatrix::from_coo(users.len(), items.len(), &train.user, &train.item, &ones);
    drop(train);

    let (item_feature, feature_kinds, feature_ids) = item_features(&pre, &items)?;

    let id_table = |name: &str, ids: &[i64]| {
        RecordBatch::try_from_iter([(name, Arc::new(Int64Array::from(ids.to_vec())) as ArrayRef)]).expect("one column")
    };
    out.add_parquet(parquet_io::write_batch(out.path(USERS_FILE), &id_table("user_id", users.ids()))?);
    out.add_parquet(parquet_io::write_batch(out.path(ITEMS_FILE), &id_table("track_id", items.ids()))?);
    let features = RecordBatch::try_from_iter([
        ("type", Arc::new(StringArray::from_iter_values(feature_kinds.iter().map(|k| k.as_str()))) as ArrayRef),
        ("id", Arc::new(Int64Array::from(feature_ids)) as ArrayRef),
    ])
    .expect("equal lengths");
    out.add_parquet(parquet_io::write_batch(out.path(FEATURES_FILE), &features)?);
    let bytes = user_item.save(&out.path(USER_ITEM_FILE))?;
    out.add_file(USER_ITEM_FILE, bytes);
    let bytes = item_feature.save(&out.path(ITEM_FEATURE_FILE))?;
    out.add_file(ITEM_FEATURE_FILE, bytes);

    let items_with_listens = {
        let mut seen = vec![false; items.len()];
        user_item.indices.iter().for_each(|&i| seen[i as usize] = true);
        seen.iter().filter(|&&s| s).count()
    };
    let summary = json!({
        "users": users.len(),
        "items": items.len(),
        "items_with_train_listens": items_with_listens,
        "features": item_feature.cols,
        "user_item_nnz": user_item.nnz(),
        "user_item_listens": user_item.values.iter().map(|&v| v as f64).sum::<f64>(),
        "user_item_density": user_item.nnz() as f64 / (users.len().max(1) as f64 * items.len().max(1) as f64),
        "item_feature_nnz": item_feature.nnz(),
    });
    let params = ctx.params(json!({"preprocess": upstream.params["preprocess"]}));
    Ok(out.commit(musicrec_config::fingerprint_of(&params), params, &summary)?)
}

/// The one-hot item × feature matrix: columns are albums, then artists, then genres, each in
/// ascending id order.
fn item_features(
    pre: &std::path::Path,
    items: &IdEncoder,
) -> Result<(CsrMatrix, Vec<EntityType>, Vec<i64>), PipelineError> {
    let (mut rows, mut cols) = (Vec::new(), Vec::new());
    let (mut kinds, mut ids) = (Vec::new(), Vec::new());
    for kind in FEATURE_KINDS {
        let path = pre.join(preprocess::track_entities_file(kind));
        let column = format!("{}_id", kind.as_str());
        let mut pairs = Vec::new();
        for_each_batch(&path, &["track_id", &column], |batch| {
            let t = batch.column(0).as_primitive::<Int64Type>().values();
            let e = batch.column(1).as_primitive::<Int64Type>().values();
            pairs.extend(t.iter().zip(e).map(|(&t, &e)| (t, e)));
            Ok(())
        })?;
        let encoder = IdEncoder::new(pairs.iter().map(|p| p.1).collect());
        let offset = ids.len() as u32;
        for (track, entity) in pairs {
            let item = items.encode(track).ok_or_else(|| PipelineError::Artifact {
                path: path.display().to_string(),
                reason: format!("track {track} is not in the catalogue"),
            })?;
            rows.push(item);
            cols.push(offset + encoder.encode(entity).expect("encoder built from these ids"));
        }
        kinds.extend(std::iter::repeat_n(kind, encoder.len()));
        ids.extend_from_slice(encoder.ids());
    }
    let ones = vec![1.0f32; rows.len()];
    let mut matrix = CsrMatrix::from_coo(items.len(), ids.len(), &rows, &cols, &ones);
    // A track listing the same album twice is still one-hot.
    matrix.values.iter_mut().for_each(|v| *v = 1.0);
    Ok((matrix, kinds, ids))
}
