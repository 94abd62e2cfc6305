//! The planted two-group fixture the factor models' tests share, and the checks every
//! model must pass on it.

use musicrec_data::CsrMatrix;

use crate::{Recommender, TrainingData};

/// Two taste groups: the first half of the users listen only to items of the first group,
/// the others only to the second group's (each to a random ~30% of them, 1 to 4 listens).
/// The rare items after the groups have one or two listeners, below the filter used here (3).
/// Item features follow the groups: each group has its own genre, artists and albums.
pub(crate) struct Fixture {
    pub matrix: CsrMatrix,
    /// Items × features, one-hot: albums of 4 consecutive items, then 5 artists per group,
    /// then one genre per group.
    pub features: CsrMatrix,
}

impl Fixture {
    /// Listens and item features.
    pub fn data(&self) -> TrainingData<'_> {
        TrainingData { user_items: &self.matrix, item_features: Some(&self.features) }
    }
}

pub(crate) const USERS: u32 = 200;
pub(crate) const GROUP_ITEMS: u32 = 60;
pub(crate) const GROUPED_ITEMS: u32 = 2 * GROUP_ITEMS;
pub(crate) const RARE_ITEMS: std::ops::Range<u32> = GROUPED_ITEMS..GROUPED_ITEMS + 3;

pub(crate) fn group_of_user(u: u32) -> u32 {
    u / (USERS / 2)
}

pub(crate) fn group_of_item(i: u32) -> u32 {
    i / GROUP_ITEMS
}

/// A hash of (user, item): which pairs are listened must look random, or the pattern itself
/// is a low-rank matrix that a factor model learns instead of the groups.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn fixture() -> Fixture {
    let (mut rows, mut cols, mut vals) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..USERS {
        let first = group_of_user(u) * GROUP_ITEMS;
        for i in first..first + GROUP_ITEMS {
            let h = mix(u64::from(u) << 32 | u64::from(i));
            if h % 10 < 3 {
                rows.push(u);
                cols.push(i);
                vals.push((1 + (h >> 8) % 4) as f32);
            }
        }
    }
    for (n, i) in RARE_ITEMS.enumerate() {
        for u in 0..=(n as u32 % 2) {
            rows.push(u * 31);
            cols.push(i);
            vals.push(1.0);
        }
    }
    Fixture {
        matrix: CsrMatrix::from_coo(USERS as usize, RARE_ITEMS.end as usize, &rows, &cols, &vals),
        features: item_features(),
    }
}

fn item_features() -> CsrMatrix {
    const ALBUM_ITEMS: u32 = 4;
    const ARTISTS_PER_GROUP: u32 = 5;
    let albums = RARE_ITEMS.end.div_ceil(ALBUM_ITEMS);
    let (mut rows, mut cols) = (Vec::new(), Vec::new());
    for i in 0..RARE_ITEMS.end {
        let group = group_of_item(i).min(1);
        let artist = albums + group * ARTISTS_PER_GROUP + mix(u64::from(i)) as u32 % ARTISTS_PER_GROUP;
        let genre = albums + 2 * ARTISTS_PER_GROUP + group;
        for feature in [i / ALBUM_ITEMS, artist, genre] {
            rows.push(i);
            cols.push(feature);
        }
    }
    let ones = vec![1.0; rows.len()];
    CsrMatrix::from_coo(RARE_ITEMS.end as usize, (albums + 2 * ARTISTS_PER_GROUP + 2) as usize, &rows, &cols, &ones)
}

/// How many items of the user's group the user has not listened to.
pub(crate) fn own_group_unlistened(f: &Fixture, user: u32) -> usize {
    let listened = f.matrix.row(user as usize).0;
    listened
        .iter()
        .filter(|&&i| i < GROUPED_ITEMS && group_of_item(i) == group_of_user(user))
        .count()
        .abs_diff(GROUP_ITEMS as usize)
}

pub(crate) fn all_users() -> Vec<u32> {
    (0..USERS).collect()
}

/// Recommendations stay in the user's own group until that group is exhausted, best first.
pub(crate) fn assert_recommends_own_group<M: Recommender>(model: &M, f: &Fixture) {
    let recs = model.recommend(&all_users(), &f.matrix, 5).unwrap();
    for (user, items, scores) in recs.iter() {
        assert_eq!(items.len(), 5, "user {user}");
        // Other-group items may only fill the list once the user's group is exhausted.
        let own = own_group_unlistened(f, user).min(5);
        assert!(items[..own].iter().all(|&i| group_of_item(i) == group_of_user(user)), "user {user} got {items:?}");
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first: {scores:?}");
    }
}

/// Never a listened or filtered (rare) item; asked for more than there is, every eligible item
/// comes back and nothing else; a user outside the training matrix gets an empty list.
pub(crate) fn assert_recommends_only_eligible_items<M: Recommender>(model: &M, f: &Fixture) {
    let recs = model.recommend(&all_users(), &f.matrix, 2 * RARE_ITEMS.end as usize).unwrap();
    for (user, items, _) in recs.iter() {
        let listened = f.matrix.row(user as usize).0;
        assert!(items.iter().all(|i| !listened.contains(i) && !RARE_ITEMS.contains(i)), "user {user}: {items:?}");
        let eligible = (0..GROUPED_ITEMS).filter(|i| !listened.contains(i)).count();
        assert_eq!(items.len(), eligible, "user {user}");
    }
    assert_eq!(model.recommend(&[USERS + 5], &f.matrix, 5).unwrap().get(0).1.len(), 0);
}

/// Saving then loading gives the same model, recommendations and similar items; the model
/// has similar items exactly when `SIMILAR_ITEM_MODELS` says so.
pub(crate) fn assert_save_load_round_trip<M: Recommender + PartialEq + std::fmt::Debug>(
    model: &M,
    f: &Fixture,
    path: &std::path::Path,
    similar_queries: &[u32],
) {
    model.save(path).unwrap();
    let loaded = M::load(path).unwrap();
    assert_eq!(&loaded, model);
    assert_eq!(
        loaded.recommend(&all_users(), &f.matrix, 10).unwrap(),
        model.recommend(&all_users(), &f.matrix, 10).unwrap()
    );
    let similar = |m: &M| m.similar().map(|s| s.similar_items(similar_queries, 5));
    assert_eq!(similar(&loaded), similar(model));
    assert_eq!(model.similar().is_some(), crate::SIMILAR_ITEM_MODELS.contains(&M::NAME), "{}", M::NAME);
}
