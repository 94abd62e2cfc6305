//! The planted two-group fixture the factor models' tests share.

use musicrec_data::CsrMatrix;

/// Two taste groups: the first half of the users listen only to items of the first group,
/// the others only to the second group's (each to a random ~30% of them, 1 to 4 listens).
/// The rare items after the groups have one or two listeners, below the filter used here (3).
pub(crate) struct Fixture {
    pub matrix: CsrMatrix,
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
    Fixture { matrix: CsrMatrix::from_coo(USERS as usize, RARE_ITEMS.end as usize, &rows, &cols, &vals) }
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
