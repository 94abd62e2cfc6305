use super::*;
use crate::test_fixture::*;

fn params() -> BprParams {
    BprParams {
        factors: 8,
        iterations: 40,
        learning_rate: 0.05,
        regularization: 0.0001,
        min_users_per_item: 3,
        seed: 7,
        verify_negative_samples: true,
    }
}

fn fit_with_threads(threads: usize, params: &BprParams, matrix: &CsrMatrix) -> Bpr {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| Bpr::fit(params, matrix).unwrap())
}

#[test]
fn recommendations_come_from_the_users_own_group() {
    let f = fixture();
    // Two threads: the Hogwild path, whose races must not spoil the model.
    assert_recommends_own_group(&fit_with_threads(2, &params(), &f.matrix), &f);
}

#[test]
fn never_recommends_a_listened_or_filtered_item() {
    let f = fixture();
    let model = Bpr::fit(&params(), &f.matrix).unwrap();
    assert_eq!(model.factors().items(), (0..GROUPED_ITEMS).collect::<Vec<u32>>(), "rare items are filtered out");
    assert_recommends_only_eligible_items(&model, &f);
}

#[test]
fn save_and_load_give_identical_recommendations() {
    let f = fixture();
    let model = Bpr::fit(&params(), &f.matrix).unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert_save_load_round_trip(&model, &f, &dir.path().join("bpr.model"), &[0, 70]);
    // Another model's file is refused.
    let als = crate::Als::fit(
        &crate::AlsParams { factors: 2, iterations: 1, min_users_per_item: 3, ..Default::default() },
        &f.matrix,
    )
    .unwrap();
    let als_path = dir.path().join("als.model");
    als.save(&als_path).unwrap();
    let err = Bpr::load(&als_path).unwrap_err();
    assert!(matches!(err, ModelError::Corrupt { .. }) && err.to_string().contains("expected \"BPR\""), "{err}");
}

#[test]
fn check_rejects_bad_hyperparameters_naming_them() {
    let cases: Vec<(BprParams, (&str, &str))> = vec![
        (BprParams { factors: 0, ..BprParams::default() }, ("bpr.factors", "0")),
        (BprParams { factors: 4096, ..BprParams::default() }, ("bpr.factors", "4096")),
        (BprParams { iterations: 0, ..BprParams::default() }, ("bpr.iterations", "0")),
        (BprParams { learning_rate: 0.0, ..BprParams::default() }, ("bpr.learning_rate", "0")),
        (BprParams { learning_rate: -0.05, ..BprParams::default() }, ("bpr.learning_rate", "-0.05")),
        (BprParams { regularization: f32::NAN, ..BprParams::default() }, ("bpr.regularization", "NaN")),
        (BprParams { regularization: -1.0, ..BprParams::default() }, ("bpr.regularization", "-1")),
        (BprParams { min_users_per_item: 0, ..BprParams::default() }, ("bpr.min_users_per_item", "0")),
    ];
    let f = fixture();
    for (params, (key, value)) in cases {
        let err = params.check().unwrap_err();
        assert_eq!((err.key().as_str(), err.value.as_str()), (key, value), "{err}");
        assert!(err.to_string().starts_with(&format!("{key}: ")), "{err}");
        assert!(ModelError::from(err.clone()).is_user_error());
        assert_eq!(Bpr::fit(&params, &f.matrix).unwrap_err().to_string(), err.to_string());
    }
    assert!(BprParams::default().check().is_ok());
    let too_strict = BprParams { min_users_per_item: 1000, ..params() };
    assert!(matches!(Bpr::fit(&too_strict, &f.matrix), Err(ModelError::NothingToTrain { .. })));
}

#[test]
fn one_thread_and_one_seed_give_identical_factors() {
    let f = fixture();
    let p = BprParams { iterations: 5, ..params() };
    let first = fit_with_threads(1, &p, &f.matrix);
    assert_eq!(first, fit_with_threads(1, &p, &f.matrix));
    let other_seed = fit_with_threads(1, &BprParams { seed: 8, ..p.clone() }, &f.matrix);
    assert_ne!(first.factors(), other_seed.factors());
}

#[test]
fn the_share_of_correctly_ranked_pairs_rises_over_epochs() {
    let f = fixture();
    let mut reports = Vec::new();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    pool.install(|| Bpr::fit_reporting(&params(), &f.matrix, &mut |r| reports.push(*r))).unwrap();
    assert_eq!(reports.iter().map(|r| r.epoch).collect::<Vec<_>>(), (1..=params().iterations).collect::<Vec<_>>());
    let mean = |r: &[EpochReport]| r.iter().map(|r| r.correct).sum::<f64>() / r.len() as f64;
    let (early, late) = (mean(&reports[..3]), mean(&reports[reports.len() - 3..]));
    // Near-random factors rank about half the pairs right. The trained model ranks the other
    // group's negatives right (about 40% of the samples used) and, by overfitting, many of
    // the own group's, which the planted structure cannot tell apart.
    assert!(early < 0.6 && late > 0.8, "early {early}, late {late}: {reports:?}");
    // Near-zero initial scores lose about ln 2 per sample; training lowers that.
    let (first, last) = (reports[0].loss, reports[reports.len() - 1].loss);
    assert!(first < 0.7 && last > 0.0 && last < 0.8 * first, "loss {first} -> {last}: {reports:?}");
    // Negatives are drawn from the nonzeros: about half of a user's are the other group's
    // items, and of those of its own group ~30% are the user's, so ~15% of samples are skipped.
    for r in &reports {
        assert!((0.08..0.25).contains(&r.skipped), "{r:?}");
    }
    // Without verification nothing is skipped, and the counts still come.
    let mut unverified = Vec::new();
    let p = BprParams { verify_negative_samples: false, iterations: 2, ..params() };
    Bpr::fit_reporting(&p, &f.matrix, &mut |r| unverified.push(*r)).unwrap();
    assert!(unverified.iter().all(|r| r.skipped == 0.0 && r.correct > 0.0), "{unverified:?}");
}

#[test]
fn the_bias_column_scores_recommendations_but_not_similarity() {
    let f = fixture();
    let p = params();
    let model = Bpr::fit(&p, &f.matrix).unwrap();
    let factors = model.factors();
    assert_eq!(factors.dim(), p.factors + 1);
    assert!(
        factors.users().iter().all(|&u| factors.user_vector(u).unwrap()[p.factors] == 1.0),
        "user bias column is 1"
    );
    // Popular items (more listeners) get larger biases: the bias column learned something.
    let biases: Vec<f32> = factors.items().iter().map(|&i| factors.item_vector(i).unwrap()[p.factors]).collect();
    assert!(biases.iter().any(|&b| b.abs() > 1e-3), "{biases:?}");
    // Recommendation scores are the full dot product, bias included.
    let recs = model.recommend(&[0], &f.matrix, 3).unwrap();
    let (_, items, scores) = recs.get(0);
    let x = factors.user_vector(0).unwrap();
    for (&item, &score) in items.iter().zip(scores) {
        let full: f32 = x.iter().zip(factors.item_vector(item).unwrap()).map(|(a, b)| a * b).sum();
        assert!((score - full).abs() < 1e-5, "item {item}: {score} vs {full}");
    }
    // Similar items are by cosine over the taste columns only, from the item's group.
    let taste = |i: u32| &factors.item_vector(i).unwrap()[..p.factors];
    let cosine = |a: &[f32], b: &[f32]| {
        let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
        a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (norm(a) * norm(b))
    };
    let items: Vec<u32> = (0..GROUPED_ITEMS).chain(RARE_ITEMS).collect();
    for (item, neighbours, scores) in
        model.similar().expect("factor models have similar items").similar_items(&items, 5).iter()
    {
        if RARE_ITEMS.contains(&item) {
            assert!(neighbours.is_empty(), "filtered item {item} has no vector");
            continue;
        }
        assert_eq!(neighbours.len(), 5);
        assert!(!neighbours.contains(&item));
        assert!(neighbours.iter().all(|&j| group_of_item(j) == group_of_item(item)), "item {item}: {neighbours:?}");
        for (&j, &s) in neighbours.iter().zip(scores) {
            assert!((s - cosine(taste(item), taste(j))).abs() < 1e-5, "item {item}, {j}: {s}");
        }
    }
}

#[test]
fn every_epoch_is_a_step_with_the_loss_only_when_asked() {
    let f = fixture();
    let p = BprParams { iterations: 3, ..params() };
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let (fitted, losses) = pool.install(|| Bpr::fit_with_loss(&p, &f.matrix)).unwrap();
    assert_eq!(losses.len(), 3);
    assert!(losses.iter().all(|l| *l > 0.0 && *l < 1.0), "{losses:?}");
    for with_loss in [false, true] {
        let mut steps = Vec::new();
        let model = pool.install(|| Bpr::fit_observed(&p, &f.matrix, with_loss, &mut |s| steps.push(*s))).unwrap();
        assert_eq!(steps.iter().map(|s| (s.done, s.total)).collect::<Vec<_>>(), vec![(1, 3), (2, 3), (3, 3)]);
        let reported: Vec<f64> = steps.iter().filter_map(|s| s.loss).collect();
        assert_eq!(reported, if with_loss { losses.clone() } else { Vec::new() });
        assert_eq!(model, fitted, "observing does not change what is learned");
    }
}
