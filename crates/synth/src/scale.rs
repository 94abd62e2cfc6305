//! The named data set sizes and the parameters behind each.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::SynthError;

/// A data set size, from unit tests up to the size of the real Yandex Music data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// ~300 users, 1,000 tracks, ~15k events: for tests, generated in milliseconds.
    Tiny,
    /// ~10k users, 20k tracks, ~1.2M events: the default demo data.
    Small,
    /// ~100k users, 200k tracks, ~12M events.
    Medium,
    /// ~1.37M users, 1M tracks, ~220M events: the real data set's size.
    Yandex,
}

impl Scale {
    pub const ALL: [Scale; 4] = [Self::Tiny, Self::Small, Self::Medium, Self::Yandex];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tiny => "tiny",
            Self::Small => "small",
            Self::Medium => "medium",
            Self::Yandex => "yandex",
        }
    }

    pub(crate) fn params(self) -> ScaleParams {
        match self {
            Self::Tiny => ScaleParams { users: 300, tracks: 1_000, genres: 12, median_events: 38.0, chunk_users: 64 },
            Self::Small => {
                ScaleParams { users: 10_000, tracks: 20_000, genres: 40, median_events: 99.0, chunk_users: 1024 }
            }
            Self::Medium => {
                ScaleParams { users: 100_000, tracks: 200_000, genres: 90, median_events: 99.0, chunk_users: 1024 }
            }
            Self::Yandex => ScaleParams {
                users: 1_370_000,
                tracks: 1_000_000,
                genres: 170,
                median_events: 132.0,
                chunk_users: 1024,
            },
        }
    }
}

impl fmt::Display for Scale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scale {
    type Err = SynthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|scale| scale.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| SynthError::UnknownScale { given: s.to_owned() })
    }
}

/// What a scale means in numbers. Everything else (catalogue depth, tastes, habits) is the
/// same at every scale, so small data behaves like big data, only less of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScaleParams {
    pub users: u32,
    /// Exactly this many tracks are generated.
    pub tracks: u32,
    pub genres: u16,
    /// Median events of a user active the whole year (users active part of it listen less);
    /// calibrated so the total lands near the scale's target event count.
    pub median_events: f64,
    /// Users per unit of parallel work. Part of the data's definition: each chunk has its own
    /// random stream, so changing it changes the data (but the thread count never does).
    pub chunk_users: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{MAX_TRACK_ID_GAP, TRACK_ID_START_SPREAD};

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for scale in Scale::ALL {
            assert_eq!(scale.as_str().parse::<Scale>().unwrap(), scale);
            assert_eq!(scale.to_string(), scale.as_str());
        }
        assert_eq!("Small".parse::<Scale>().unwrap(), Scale::Small);
        let message = "huge".parse::<Scale>().unwrap_err().to_string();
        assert!(message.contains("huge") && message.contains("tiny, small, medium, yandex"), "{message}");
    }

    #[test]
    fn ids_fit_the_interactions_int32_and_seq_int16() {
        for scale in Scale::ALL {
            let params = scale.params();
            assert!(params.chunk_users > 0 && params.chunk_users <= u32::from(u16::MAX));
            assert!(u64::from(params.users) < 1 << 31);
            let largest_track_id = u64::from(params.tracks) * MAX_TRACK_ID_GAP + TRACK_ID_START_SPREAD;
            assert!(largest_track_id < 1 << 31, "{scale}: track ids up to {largest_track_id}");
        }
    }
}
