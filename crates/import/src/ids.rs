//! Stable integer ids for entities the source names by text (a Last.fm MusicBrainz id, an
//! artist and track name, a genre name, a string user id): the same text gets the same id on
//! every run and machine, so imports of overlapping data agree.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::error::ImportError;

/// Ids stay below 2^53, the integers a JSON reader in a browser keeps exactly.
const ID_BITS: u32 = 53;

/// The stable id of `parts` for entities of `kind`, and a second, independent hash of the same
/// text that tells two texts apart when their ids collide.
pub fn stable_id(kind: &str, parts: &[&str]) -> (i64, u64) {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    for part in parts {
        // A separator that text fields do not hold, so ("ab", "c") and ("a", "bc") differ.
        hasher.update([0x1f]);
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let word = |i: usize| u64::from_le_bytes(digest[i..i + 8].try_into().expect("8 bytes"));
    ((word(0) >> (64 - ID_BITS)) as i64, word(8))
}

/// The stable ids given out for one kind of entity, each with its check hash: two different
/// texts with one id are an error rather than one merged entity.
pub struct StableIds {
    kind: &'static str,
    checks: HashMap<i64, (u64, String)>,
}

impl StableIds {
    pub fn new(kind: &'static str) -> Self {
        Self { kind, checks: HashMap::new() }
    }

    /// The id of `parts`; the text is kept (for the error message) only on first sight.
    pub fn id(&mut self, parts: &[&str]) -> Result<i64, ImportError> {
        let (id, check) = stable_id(self.kind, parts);
        match self.checks.get(&id) {
            Some((seen, _)) if *seen == check => Ok(id),
            Some((_, first)) => {
                Err(ImportError::IdCollision { kind: self.kind, id, first: first.clone(), second: parts.join(" / ") })
            }
            None => {
                self.checks.insert(id, (check, parts.join(" / ")));
                Ok(id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_bounded_and_separate_parts() {
        // Fixed values: a change of the hash would renumber every imported data set.
        let (id, _) = stable_id("track", &["Deep Dish", "Flashdance"]);
        assert_eq!(id, stable_id("track", &["Deep Dish", "Flashdance"]).0);
        assert!((0..1 << 53).contains(&id));
        assert_ne!(id, stable_id("track", &["Deep DishFlashdance"]).0);
        assert_ne!(id, stable_id("track", &["Deep Dis", "hFlashdance"]).0);
        assert_ne!(id, stable_id("artist", &["Deep Dish", "Flashdance"]).0);
        assert_eq!(stable_id("genre", &["Drama"]).0, GENRE_DRAMA);
    }

    const GENRE_DRAMA: i64 = 1_947_938_106_389_927;

    #[test]
    fn a_collision_is_an_error_naming_both_texts() {
        let mut ids = StableIds::new("track");
        let a = ids.id(&["a"]).unwrap();
        assert_eq!(ids.id(&["a"]).unwrap(), a);
        // Forge a collision: same id, other check hash.
        ids.checks.insert(a, (0, "x".into()));
        let err = ids.id(&["a"]).unwrap_err().to_string();
        assert!(err.contains("`x` and `a`") && err.contains(&a.to_string()), "{err}");
    }
}
