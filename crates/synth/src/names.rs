//! Plausible, pronounceable names for generated genres, artists, albums and tracks.
//! Words are built from syllables (onset + vowel, sometimes a closing consonant), which reads
//! like a name in many languages without ever spelling a real artist.

use crate::random::Random;

/// Real genre names, roughly by popularity, so the common genres read naturally.
const GENRES: [&str; 48] = [
    "pop",
    "rock",
    "rap",
    "electronic",
    "dance",
    "indie",
    "metal",
    "jazz",
    "alternative",
    "rnb",
    "soundtrack",
    "folk",
    "classical",
    "house",
    "techno",
    "hiphop",
    "soul",
    "blues",
    "country",
    "reggae",
    "punk",
    "funk",
    "ambient",
    "trance",
    "disco",
    "latin",
    "kpop",
    "chanson",
    "lounge",
    "dubstep",
    "drumnbass",
    "estrada",
    "bard",
    "newage",
    "experimental",
    "opera",
    "gospel",
    "ska",
    "grunge",
    "emo",
    "hardcore",
    "synthwave",
    "lofi",
    "trap",
    "garage",
    "shoegaze",
    "swing",
    "afrobeat",
];
/// Sub-genre prefixes: `GENRES` × `GENRE_PREFIXES` gives hundreds of distinct names.
const GENRE_PREFIXES: [&str; 10] = ["alt", "post", "neo", "dark", "deep", "nu", "prog", "dream", "acid", "folk"];

const ONSETS: [&str; 28] = [
    "b", "br", "ch", "d", "dr", "f", "g", "gr", "h", "j", "k", "kr", "l", "m", "n", "p", "pr", "r", "s", "sh", "sl",
    "st", "t", "tr", "v", "y", "z", "zh",
];
const VOWELS: [&str; 10] = ["a", "e", "i", "o", "u", "a", "e", "o", "ai", "ia"];
const CODAS: [&str; 9] = ["n", "r", "s", "l", "m", "x", "nd", "rk", "st"];
const COMPILATION_TITLES: [&str; 5] = ["Greatest Hits", "The Best Of", "Collection", "Essentials", "Anthology"];

/// The name of the genre with this popularity rank: distinct for every rank below 528.
pub(crate) fn genre(rank: usize) -> String {
    let base = GENRES[rank % GENRES.len()];
    match rank / GENRES.len() {
        0 => base.to_owned(),
        round => format!("{}{base}", GENRE_PREFIXES[(round - 1) % GENRE_PREFIXES.len()]),
    }
}

pub(crate) struct NameMaker {
    rng: Random,
}

impl NameMaker {
    pub(crate) fn new(rng: Random) -> Self {
        Self { rng }
    }

    pub(crate) fn artist(&mut self) -> String {
        let syllables = 2 + self.rng.below_usize(2);
        match self.rng.below(10) {
            0..=3 => format!("{} {}", self.word(2), self.word(syllables)),
            4..=5 => format!("The {}s", self.word(2)),
            _ => self.word(syllables),
        }
    }

    pub(crate) fn album(&mut self) -> String {
        let words = 1 + self.rng.below_usize(3);
        self.phrase(words)
    }

    pub(crate) fn compilation(&mut self) -> String {
        COMPILATION_TITLES[self.rng.below_usize(COMPILATION_TITLES.len())].to_owned()
    }

    pub(crate) fn track(&mut self) -> String {
        let words = 1 + self.rng.below_usize(4);
        self.phrase(words)
    }

    /// Capitalised first word, lower-case rest, like most song titles.
    fn phrase(&mut self, words: usize) -> String {
        let mut out = String::new();
        for position in 0..words {
            if position > 0 {
                out.push(' ');
            }
            let syllables = 1 + self.rng.below_usize(3);
            let word = self.word(syllables);
            out.push_str(&if position == 0 { word } else { word.to_lowercase() });
        }
        out
    }

    fn word(&mut self, syllables: usize) -> String {
        let mut out = String::new();
        for _ in 0..syllables {
            if out.is_empty() || self.rng.chance(0.85) {
                out.push_str(ONSETS[self.rng.below_usize(ONSETS.len())]);
            }
            out.push_str(VOWELS[self.rng.below_usize(VOWELS.len())]);
        }
        if self.rng.chance(0.35) {
            out.push_str(CODAS[self.rng.below_usize(CODAS.len())]);
        }
        capitalise(&out)
    }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::random::Stream;

    #[test]
    fn genre_names_are_distinct_for_hundreds_of_genres() {
        let names: HashSet<String> = (0..500).map(genre).collect();
        assert_eq!(names.len(), 500);
        assert_eq!(genre(0), "pop");
        assert_eq!(genre(GENRES.len() + 1), "altrock");
    }

    #[test]
    fn names_are_deterministic_non_empty_and_readable() {
        let make = || {
            let mut names = NameMaker::new(Random::new(5, Stream::Names));
            (0..200).map(|_| [names.artist(), names.album(), names.track()]).collect::<Vec<_>>()
        };
        let names = make();
        assert_eq!(names, make());
        for name in names.iter().flatten() {
            assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphabetic() || c == ' '), "{name:?}");
            assert!(name.chars().next().unwrap().is_ascii_uppercase(), "{name:?}");
        }
        let distinct_tracks: HashSet<&String> = names.iter().map(|n| &n[2]).collect();
        assert!(distinct_tracks.len() > 190, "names vary");
    }
}
