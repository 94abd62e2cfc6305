//! ALS on a data directory in the Yandex layout, measured the way the Python reference
//! (`bench/reference/pipeline.py --models als`, i.e. `implicit`) measures itself, so that
//! the two can be compared as ratios in one session:
//!
//! ```text
//! cargo bench -p musicrec-models --bench als -- --data DIR --threads 2 --factors 64 --min-users-per-item 5
//! python bench/reference/pipeline.py --data DIR --models als --set threads=2 --set als.factors=64 --set als.min_users_per_item=5
//! ```
//!
//! Data, split and NDCG as the reference (see `common`), same parameters, and no training
//! loss, as the reference leaves implicit's `calculate_training_loss` at its default (`--loss`
//! computes it every iteration). Prints one JSON object.

mod common;

use std::time::Instant;

use musicrec_models::{Als, AlsParams, Recommender};

fn main() -> Result<(), String> {
    let mut params = AlsParams { factors: 64, min_users_per_item: 5, ..AlsParams::default() };
    let mut loss = false;
    let args = common::parse(|flag, value| {
        match flag {
            "--loss" => loss = true,
            "--factors" => params.factors = value()? as usize,
            "--iterations" => params.iterations = value()? as usize,
            "--regularization" => params.regularization = value()? as f32,
            "--alpha" => params.alpha = value()? as f32,
            "--min-users-per-item" => params.min_users_per_item = value()? as usize,
            "--seed" => params.seed = value()? as u64,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let data = common::load(&args)?;
    let matrix = &data.matrix;

    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build().map_err(|e| e.to_string())?;
    let mut losses = Vec::new();
    let cpu_before = common::cpu_seconds();
    let started = Instant::now();
    let model = pool
        .install(|| {
            if loss {
                Als::fit_with_loss(&params, matrix).map(|(model, l)| {
                    losses = l;
                    model
                })
            } else {
                Als::fit(&params, matrix)
            }
        })
        .map_err(|e| e.to_string())?;
    let fit_s = started.elapsed().as_secs_f64();
    let fit_cpu_s = common::cpu_json(cpu_before);
    if args.fit_only {
        println!("{{\"als_fit_s\": {fit_s:.3}, \"als_fit_cpu_s\": {fit_cpu_s}}}");
        return Ok(());
    }

    let serving = common::serving_json(&pool, &model, model.factors().items(), &data, args.k)?;

    println!(
        "{{\"data\": {:?}, \"threads\": {}, \"factors\": {}, \"iterations\": {}, \"train_users\": {}, \"train_items\": {}, \
         \"train_nnz\": {}, \"model_users\": {}, \"model_items\": {}, \"prepare_s\": {:.3}, \"als_fit_s\": {fit_s:.3}, \"als_fit_cpu_s\": {fit_cpu_s}, \
         \"loss_reported\": {}, \"final_loss\": {}, {serving}}}",
        args.data,
        args.threads,
        params.factors,
        params.iterations,
        matrix.rows,
        matrix.cols,
        matrix.nnz(),
        model.factors().users().len(),
        model.factors().items().len(),
        data.prepare_s,
        loss,
        losses.last().map_or("null".to_string(), |l| format!("{l:.6}")),
    );
    Ok(())
}
