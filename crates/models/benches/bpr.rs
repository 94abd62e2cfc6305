//! BPR on a data directory in the Yandex layout, measured the way the Python reference
//! (`bench/reference/pipeline.py --models bpr`, i.e. `implicit`) measures itself, so that
//! the two can be compared as ratios in one session:
//!
//! ```text
//! cargo bench -p musicrec-models --bench bpr -- --data DIR --threads 2 --factors 64 --min-users-per-item 5
//! python bench/reference/pipeline.py --data DIR --models bpr --set threads=2 --set bpr.factors=64 --set bpr.min_users_per_item=5
//! ```
//!
//! Data, split and NDCG as the reference (see `common`), same parameters (factors 64,
//! 50 epochs, learning rate 0.05, regularization 1e-4, negatives verified). Prints one JSON
//! object, with the last epoch's share of correctly ranked samples (implicit's "train_auc").

mod common;

use std::time::Instant;

use musicrec_models::{Bpr, BprParams};

fn main() -> Result<(), String> {
    let mut params = BprParams { factors: 64, min_users_per_item: 5, ..BprParams::default() };
    let args = common::parse(|flag, value| {
        match flag {
            "--factors" => params.factors = value()? as usize,
            "--iterations" => params.iterations = value()? as usize,
            "--learning-rate" => params.learning_rate = value()? as f32,
            "--regularization" => params.regularization = value()? as f32,
            "--min-users-per-item" => params.min_users_per_item = value()? as usize,
            "--seed" => params.seed = value()? as u64,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    let data = common::load(&args)?;
    let matrix = &data.matrix;

    let pool = rayon::ThreadPoolBuilder::new().num_threads(args.threads).build().map_err(|e| e.to_string())?;
    let mut last = None;
    let cpu_before = common::cpu_seconds();
    let started = Instant::now();
    let model =
        pool.install(|| Bpr::fit_reporting(&params, matrix, &mut |r| last = Some(*r))).map_err(|e| e.to_string())?;
    let fit_s = started.elapsed().as_secs_f64();
    let fit_cpu_s = common::cpu_json(cpu_before);
    if args.fit_only {
        println!("{{\"bpr_fit_s\": {fit_s:.3}, \"bpr_fit_cpu_s\": {fit_cpu_s}}}");
        return Ok(());
    }

    let serving = common::serving_json(&pool, &model, model.factors().items(), &data, args.k)?;

    let last = last.expect("at least one epoch");
    println!(
        "{{\"data\": {:?}, \"threads\": {}, \"factors\": {}, \"iterations\": {}, \"learning_rate\": {}, \"regularization\": {}, \
         \"train_users\": {}, \"train_items\": {}, \"train_nnz\": {}, \"model_users\": {}, \"model_items\": {}, \"prepare_s\": {:.3}, \
         \"bpr_fit_s\": {fit_s:.3}, \"bpr_fit_cpu_s\": {fit_cpu_s}, \"final_correct\": {:.4}, \"final_skipped\": {:.4}, \
         {serving}}}",
        args.data,
        args.threads,
        params.factors,
        params.iterations,
        params.learning_rate,
        params.regularization,
        matrix.rows,
        matrix.cols,
        matrix.nnz(),
        model.factors().users().len(),
        model.factors().items().len(),
        data.prepare_s,
        last.correct,
        last.skipped,
    );
    Ok(())
}
