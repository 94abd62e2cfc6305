use super::*;
use crate::test_fixture::*;

fn params() -> AlsParams {
    AlsParams {
        factors: 4,
        iterations: 10,
        regularization: 0.05,
        alpha: 1.0,
        min_users_per_item: 3,
        cg_steps: 3,
        seed: 7,
    }
}

#[test]
fn recommendations_come_from_the_users_own_group() {
    let f = fixture();
    assert_recommends_own_group(&Als::fit(&params(), &f.matrix).unwrap(), &f);
}

#[test]
fn never_recommends_a_listened_or_filtered_item() {
    let f = fixture();
    let model = Als::fit(&params(), &f.matrix).unwrap();
    assert_eq!(model.factors().items(), (0..GROUPED_ITEMS).collect::<Vec<u32>>(), "rare items are filtered out");
    assert_recommends_only_eligible_items(&model, &f);
}

#[test]
fn save_and_load_give_identical_recommendations() {
    let f = fixture();
    let model = Als::fit(&params(), &f.matrix).unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert_save_load_round_trip(&model, &f, &dir.path().join("als.model"), &[0, 25]);
}

#[test]
fn damaged_or_foreign_files_are_refused() {
    let f = fixture();
    let model = Als::fit(&params(), &f.matrix).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("als.model");
    model.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let refused = |content: &[u8], expected: &str| {
        std::fs::write(&path, content).unwrap();
        let err = Als::load(&path).unwrap_err();
        assert!(matches!(err, ModelError::Corrupt { .. }) && err.to_string().contains(expected), "{err}");
    };
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x10;
    refused(&flipped, "checksum");
    refused(&bytes[..bytes.len() - 7], "checksum");
    refused(b"PAR1 certainly not a model file", "not a musicrec model");
    let mut other_kind = bytes.clone();
    other_kind[16..19].copy_from_slice(b"BPR");
    refused(&other_kind, "expected \"ALS\"");
    let mut newer = bytes.clone();
    newer[8] = 2;
    refused(&newer, "format version 2");
}

#[test]
fn check_rejects_bad_hyperparameters_naming_them() {
    let cases: Vec<(AlsParams, (&str, &str))> = vec![
        (AlsParams { factors: 0, ..AlsParams::default() }, ("als.factors", "0")),
        (AlsParams { iterations: 0, ..AlsParams::default() }, ("als.iterations", "0")),
        (AlsParams { regularization: -0.1, ..AlsParams::default() }, ("als.regularization", "-0.1")),
        (AlsParams { regularization: f32::INFINITY, ..AlsParams::default() }, ("als.regularization", "inf")),
        (AlsParams { alpha: f32::NAN, ..AlsParams::default() }, ("als.alpha", "NaN")),
        (AlsParams { alpha: 0.0, ..AlsParams::default() }, ("als.alpha", "0")),
        (AlsParams { min_users_per_item: 0, ..AlsParams::default() }, ("als.min_users_per_item", "0")),
        (AlsParams { cg_steps: 0, ..AlsParams::default() }, ("als.cg_steps", "0")),
    ];
    let f = fixture();
    for (params, (key, value)) in cases {
        let err = params.check().unwrap_err();
        assert_eq!((err.key().as_str(), err.value.as_str()), (key, value), "{err}");
        assert!(err.to_string().starts_with(&format!("{key}: ")), "{err}");
        assert!(ModelError::from(err.clone()).is_user_error());
        assert_eq!(Als::fit(&params, &f.matrix).unwrap_err().to_string(), err.to_string());
    }
    assert!(AlsParams::default().check().is_ok());
    let too_strict = AlsParams { min_users_per_item: 1000, ..params() };
    assert!(matches!(Als::fit(&too_strict, &f.matrix), Err(ModelError::NothingToTrain { .. })));
}

#[test]
fn the_objective_decreases_every_iteration_and_is_the_full_objective() {
    let f = fixture();
    let (model, losses) = Als::fit_with_loss(&params(), &f.matrix).unwrap();
    assert_eq!(losses.len(), params().iterations);
    assert!(losses.windows(2).all(|w| w[1] < w[0]), "{losses:?}");
    // The reported loss is the objective summed naively over every (user, item) pair.
    let factors = model.factors();
    let p = params();
    let (mut total, mut penalty, mut denominator) = (0.0f64, 0.0f64, 0.0f64);
    for &u in factors.users() {
        let x = factors.user_vector(u).unwrap();
        penalty += x.iter().map(|v| f64::from(v * v)).sum::<f64>();
        let (cols, vals) = f.matrix.row(u as usize);
        for &i in factors.items() {
            let y = factors.item_vector(i).unwrap();
            let score: f64 = x.iter().zip(y).map(|(a, b)| f64::from(a * b)).sum();
            let (c, pref) = match cols.iter().position(|&c| c == i) {
                Some(at) => (f64::from(p.alpha * vals[at]), 1.0),
                None => (1.0, 0.0),
            };
            total += c * (pref - score) * (pref - score);
            denominator += c;
        }
    }
    for &i in factors.items() {
        penalty += factors.item_vector(i).unwrap().iter().map(|v| f64::from(v * v)).sum::<f64>();
    }
    let naive = (total + f64::from(p.regularization) * penalty) / denominator;
    let last = *losses.last().unwrap();
    assert!((last - naive).abs() < 1e-4 * naive, "reported {last}, naive {naive}");
}

#[test]
fn factors_do_not_depend_on_the_thread_count() {
    let f = fixture();
    let fit_with = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| Als::fit(&params(), &f.matrix).unwrap())
    };
    assert_eq!(fit_with(1), fit_with(3));
}

#[test]
fn similar_items_exclude_the_item_and_come_from_its_group() {
    let f = fixture();
    let model = Als::fit(&params(), &f.matrix).unwrap();
    let items: Vec<u32> = (0..GROUPED_ITEMS).chain(RARE_ITEMS).collect();
    let similar = model.similar().expect("factor models have similar items").similar_items(&items, 5);
    for (item, neighbours, scores) in similar.iter() {
        if RARE_ITEMS.contains(&item) {
            assert!(neighbours.is_empty(), "filtered item {item} has no vector");
            continue;
        }
        assert_eq!(neighbours.len(), 5);
        assert!(!neighbours.contains(&item), "item {item} is not its own neighbour");
        assert!(neighbours.iter().all(|&j| group_of_item(j) == group_of_item(item)), "item {item}: {neighbours:?}");
        assert!(scores.iter().all(|s| (-1.0001..=1.0001).contains(s)), "cosines: {scores:?}");
    }
}

#[test]
fn an_alpha_that_overflows_the_confidences_is_an_error() {
    let f = fixture();
    let err = Als::fit(&AlsParams { alpha: f32::MAX, ..params() }, &f.matrix).unwrap_err();
    assert!(err.to_string().starts_with("als.alpha: times the largest") && err.is_user_error(), "{err}");
}

#[test]
fn no_regularization_and_more_factors_than_items_still_trains() {
    // YᵀY + λI is singular here (λ = 0, rank ≤ 123 < 160 factors). CG still only moves
    // within the range of each row's matrix, where the curvature is positive.
    let f = fixture();
    let p = AlsParams { factors: 160, regularization: 0.0, iterations: 3, ..params() };
    let model = Als::fit(&p, &f.matrix).unwrap();
    let recs = model.recommend(&all_users(), &f.matrix, 5).unwrap();
    assert!(recs.iter().all(|(_, items, scores)| items.len() == 5 && scores.iter().all(|s| s.is_finite())));
}

#[test]
fn every_iteration_is_a_step_with_the_loss_only_when_asked() {
    let f = fixture();
    let p = params();
    for with_loss in [false, true] {
        let mut steps = Vec::new();
        let model = Als::fit_observed(&p, &f.matrix, with_loss, &mut |s| steps.push(*s)).unwrap();
        assert_eq!(steps.iter().map(|s| s.done).collect::<Vec<_>>(), (1..=p.iterations).collect::<Vec<_>>());
        assert!(steps.iter().all(|s| s.total == p.iterations && s.seconds >= 0.0));
        assert!(steps.iter().all(|s| s.loss.is_some() == with_loss), "{steps:?}");
        // Observing does not change what is learned.
        assert_eq!(model, Als::fit(&p, &f.matrix).unwrap());
    }
}
