//! Id encoders: external ids (any i64) to dense indices `0..n` in ascending id order, the
//! form every matrix and model works in.

use std::collections::HashMap;

/// Below this ratio of id range to id count a direct lookup table beats hashing.
const DENSE_TABLE_MAX_SPREAD: i64 = 8;

#[derive(Debug, Clone)]
pub struct IdEncoder {
    ids: Vec<i64>,
    lookup: Lookup,
}

#[derive(Debug, Clone)]
enum Lookup {
    /// `table[id - min]` is the index, or `u32::MAX` for an id not encoded.
    Dense {
        min: i64,
        table: Vec<u32>,
    },
    Hashed(HashMap<i64, u32>),
}

impl IdEncoder {
    /// Builds an encoder over the distinct values of `ids`, in ascending order.
    pub fn new(mut ids: Vec<i64>) -> Self {
        ids.sort_unstable();
        ids.dedup();
        Self::from_sorted_unique(ids)
    }

    /// Builds an encoder over ids that are already strictly ascending.
    ///
    /// # Panics
    /// If the ids are not strictly ascending or there are more than `u32::MAX` of them: both
    /// are internal invariants, the callers dedupe and validate first.
    pub fn from_sorted_unique(ids: Vec<i64>) -> Self {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "encoder ids must be strictly ascending");
        assert!(ids.len() < u32::MAX as usize, "at most u32::MAX - 1 ids");
        let lookup = match (ids.first(), ids.last()) {
            (Some(&min), Some(&max))
                if max.checked_sub(min).is_some_and(|spread| spread / DENSE_TABLE_MAX_SPREAD <= ids.len() as i64) =>
            {
                let mut table = vec![u32::MAX; (max - min) as usize + 1];
                for (index, &id) in ids.iter().enumerate() {
                    table[(id - min) as usize] = index as u32;
                }
                Lookup::Dense { min, table }
            }
            _ => Lookup::Hashed(ids.iter().enumerate().map(|(i, &id)| (id, i as u32)).collect()),
        };
        Self { ids, lookup }
    }

    #[inline]
    pub fn encode(&self, id: i64) -> Option<u32> {
        match &self.lookup {
            Lookup::Dense { min, table } => {
                let offset = id.checked_sub(*min)?;
                let index = *table.get(usize::try_from(offset).ok()?)?;
                (index != u32::MAX).then_some(index)
            }
            Lookup::Hashed(map) => map.get(&id).copied(),
        }
    }

    #[inline]
    pub fn decode(&self, index: u32) -> i64 {
        self.ids[index as usize]
    }

    pub fn ids(&self) -> &[i64] {
        &self.ids
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_decode_round_trip(ids in proptest::collection::vec(any::<i64>(), 0..200), probe in any::<i64>()) {
            let enc = IdEncoder::new(ids.clone());
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(enc.ids(), &sorted[..]);
            for (i, &id) in sorted.iter().enumerate() {
                prop_assert_eq!(enc.encode(id), Some(i as u32));
                prop_assert_eq!(enc.decode(i as u32), id);
            }
            prop_assert_eq!(enc.encode(probe).is_some(), sorted.binary_search(&probe).is_ok());
        }

        #[test]
        fn dense_ids_round_trip(start in -1000i64..1000, n in 1usize..500, stride in 1i64..12) {
            let ids: Vec<i64> = (0..n as i64).map(|i| start + i * stride).collect();
            let enc = IdEncoder::new(ids.clone());
            for (i, &id) in ids.iter().enumerate() {
                prop_assert_eq!(enc.encode(id), Some(i as u32));
            }
            prop_assert_eq!(enc.encode(start - 1), None);
            prop_assert_eq!(enc.encode(start + n as i64 * stride), None);
        }
    }
}
