use super::*;
use crate::test_fixture::*;

fn params(metric: Metric) -> Item2ItemParams {
    Item2ItemParams { n_components: 8, n_neighbors: 1000, metric, min_users_per_item: 3, seed: 7 }
}

#[test]
fn recommendations_come_from_the_users_own_group_for_every_metric() {
    let f = fixture();
    for metric in Metric::ALL {
        let model = Item2Item::fit(&params(metric), f.data()).unwrap();
        assert_eq!(model.dim(), 8);
        assert_recommends_own_group(&model, &f);
    }
}

#[test]
fn never_recommends_a_listened_or_filtered_item() {
    let f = fixture();
    for metric in Metric::ALL {
        let model = Item2Item::fit(&params(metric), f.data()).unwrap();
        assert_eq!(model.items(), (0..GROUPED_ITEMS).collect::<Vec<u32>>(), "rare items are filtered out");
        assert_recommends_only_eligible_items(&model, &f);
    }
}

#[test]
fn save_and_load_give_identical_recommendations() {
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    for metric in Metric::ALL {
        let model = Item2Item::fit(&params(metric), f.data()).unwrap();
        assert_save_load_round_trip(&model, &f, &dir.path().join("i2i.model"), &[0, 25]);
    }
    let path = dir.path().join("i2i.model");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    assert!(matches!(Item2Item::load(&path), Err(ModelError::Corrupt { .. })));
}

#[test]
fn scores_are_one_over_one_plus_the_exact_distance_to_the_mean_profile() {
    let f = fixture();
    let user = 3u32;
    let listened: Vec<u32> = f.matrix.row(user as usize).0.iter().copied().filter(|&i| i < GROUPED_ITEMS).collect();
    for metric in Metric::ALL {
        let model = Item2Item::fit(&params(metric), f.data()).unwrap();
        let dim = model.dim();
        let mut profile = vec![0.0f32; dim];
        for &i in &listened {
            profile.iter_mut().zip(model.item_vector(i).unwrap()).for_each(|(p, &x)| *p += x / listened.len() as f32);
        }
        let recs = model.recommend(&[user], &f.matrix, 5).unwrap();
        let (_, items, scores) = recs.get(0);
        for (&item, &score) in items.iter().zip(scores) {
            let x = model.item_vector(item).unwrap();
            let distance = match metric {
                Metric::Manhattan => profile.iter().zip(x).map(|(p, q)| (p - q).abs()).sum::<f32>(),
                Metric::Euclidean => profile.iter().zip(x).map(|(p, q)| (p - q).powi(2)).sum::<f32>().sqrt(),
                Metric::Cosine => {
                    let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
                    1.0 - profile.iter().zip(x).map(|(p, q)| p * q).sum::<f32>() / (norm(&profile) * norm(x))
                }
            };
            let expected = 1.0 / (1.0 + distance);
            assert!((score - expected).abs() < 1e-4, "{metric:?} item {item}: {score} vs {expected}");
        }
    }
}

#[test]
fn n_neighbors_bounds_the_list_and_there_are_no_similar_items() {
    let f = fixture();
    let model = Item2Item::fit(&Item2ItemParams { n_neighbors: 3, ..params(Metric::Cosine) }, f.data()).unwrap();
    let recs = model.recommend(&all_users(), &f.matrix, 10).unwrap();
    assert!(recs.iter().all(|(_, items, _)| items.len() == 3));
    assert!(model.similar().is_none());
}

#[test]
fn explained_variance_is_a_share_that_grows_with_the_components() {
    let f = fixture();
    let shares: Vec<f32> = [2, 4, 8, 16]
        .into_iter()
        .map(|n_components| {
            let p = Item2ItemParams { n_components, ..params(Metric::Manhattan) };
            Item2Item::fit(&p, f.data()).unwrap().explained_variance()
        })
        .collect();
    assert!(shares.windows(2).all(|w| w[0] < w[1]) && shares.iter().all(|s| (0.0..=1.0).contains(s)), "{shares:?}");
    // All components of the 60 eligible items' used feature columns: everything is explained.
    let all = Item2Item::fit(&Item2ItemParams { n_components: 1000, ..params(Metric::Manhattan) }, f.data()).unwrap();
    assert!((all.explained_variance() - 1.0).abs() < 1e-4, "{}", all.explained_variance());
}

#[test]
fn check_rejects_bad_hyperparameters_naming_them() {
    let cases: Vec<(Item2ItemParams, (&str, &str))> = vec![
        (Item2ItemParams { n_components: 0, ..Item2ItemParams::default() }, ("item2item.n_components", "0")),
        (Item2ItemParams { n_components: 5000, ..Item2ItemParams::default() }, ("item2item.n_components", "5000")),
        (Item2ItemParams { n_neighbors: 0, ..Item2ItemParams::default() }, ("item2item.n_neighbors", "0")),
        (
            Item2ItemParams { min_users_per_item: 0, ..Item2ItemParams::default() },
            ("item2item.min_users_per_item", "0"),
        ),
    ];
    let f = fixture();
    for (params, (key, value)) in cases {
        let err = params.check().unwrap_err();
        assert_eq!((err.key().as_str(), err.value.as_str()), (key, value), "{err}");
        assert!(err.to_string().starts_with(&format!("{key}: ")), "{err}");
        assert!(ModelError::from(err.clone()).is_user_error());
        assert_eq!(Item2Item::fit(&params, f.data()).unwrap_err().to_string(), err.to_string());
    }
    assert!(Item2ItemParams::default().check().is_ok());
    let too_strict = Item2ItemParams { min_users_per_item: 1000, ..params(Metric::Cosine) };
    assert!(matches!(Item2Item::fit(&too_strict, f.data()), Err(ModelError::NothingToTrain { .. })));
    let err = Item2Item::fit(&params(Metric::Cosine), &f.matrix).unwrap_err();
    assert!(matches!(err, ModelError::NothingToTrain { .. }) && err.to_string().contains("item × feature"), "{err}");
}

#[test]
fn vectors_do_not_depend_on_the_thread_count() {
    let f = fixture();
    let fit_with = |threads| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| Item2Item::fit(&params(Metric::Euclidean), f.data()).unwrap())
    };
    assert_eq!(fit_with(1), fit_with(3));
}
