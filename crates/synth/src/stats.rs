//! Statistics of the generated data, gathered while it streams out: the numbers that say
//! whether it looks like real listening logs.

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::listeners::{ChunkTally, TrackCounters};

/// Shape of a generated data set. Windows are the pipeline's default split: target
/// [2022-12-16, 2022-12-23), test [2022-12-23, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataStats {
    /// Share of all listens that go to the top 1% of catalogue tracks ranked by listens
    /// (real music logs: roughly a third).
    pub top1pct_track_share: f64,
    /// Share of catalogue tracks with fewer than 5 distinct listeners, never-heard tracks
    /// included (real music logs: most of the catalogue).
    pub share_tracks_under_5_users: f64,
    /// Share of catalogue tracks nobody listened to.
    pub share_tracks_unheard: f64,
    /// Share of events whose (user, track) pair the user had already listened to before.
    pub repeat_share: f64,
    pub events_per_user_mean: f64,
    pub events_per_user_median: f64,
    pub events_per_user_max: u64,
    /// Share of all events in the target window.
    pub target_window_share: f64,
    /// Share of all events in the test window.
    pub test_window_share: f64,
    /// Of the users with an event in the target window, the share that also listened before it
    /// (and so are known to a model trained on the train window).
    pub target_users_in_train_share: f64,
    /// Of the users with an event in the test window, the share that listened before the
    /// target window.
    pub test_users_in_train_share: f64,
    /// Share of users whose first event is on or after 2022-12-16: "new" users for the pipeline.
    pub new_user_share: f64,
}

/// Totals of the chunks written so far; `finish` adds the per-track counters.
#[derive(Debug, Default)]
pub(crate) struct StatsAccumulator {
    totals: ChunkTally,
}

impl StatsAccumulator {
    pub(crate) fn add(&mut self, chunk: &ChunkTally) {
        let totals = &mut self.totals;
        totals.events += chunk.events;
        totals.repeats += chunk.repeats;
        totals.target_events += chunk.target_events;
        totals.test_events += chunk.test_events;
        totals.new_users += chunk.new_users;
        totals.target_users += chunk.target_users;
        totals.target_users_in_train += chunk.target_users_in_train;
        totals.test_users += chunk.test_users;
        totals.test_users_in_train += chunk.test_users_in_train;
        totals.events_per_user.extend_from_slice(&chunk.events_per_user);
    }

    pub(crate) fn events(&self) -> u64 {
        self.totals.events
    }

    pub(crate) fn finish(mut self, counters: &TrackCounters) -> DataStats {
        let totals = &mut self.totals;
        let mut listens: Vec<u32> = counters.listens.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        listens.sort_unstable_by(|a, b| b.cmp(a));
        let top_tracks = listens.len().div_ceil(100);
        let top_listens: u64 = listens[..top_tracks].iter().map(|&n| u64::from(n)).sum();
        let track_share = |predicate: &dyn Fn(u32) -> bool| {
            ratio(
                counters.listeners.iter().filter(|c| predicate(c.load(Ordering::Relaxed))).count() as u64,
                listens.len() as u64,
            )
        };

        let users = totals.events_per_user.len() as u64;
        totals.events_per_user.sort_unstable();
        let median = match totals.events_per_user.len() {
            0 => 0.0,
            n if n % 2 == 1 => f64::from(totals.events_per_user[n / 2]),
            n => (f64::from(totals.events_per_user[n / 2 - 1]) + f64::from(totals.events_per_user[n / 2])) / 2.0,
        };
        DataStats {
            top1pct_track_share: ratio(top_listens, totals.events),
            share_tracks_under_5_users: track_share(&|listeners| listeners < 5),
            share_tracks_unheard: track_share(&|listeners| listeners == 0),
            repeat_share: ratio(totals.repeats, totals.events),
            events_per_user_mean: ratio(totals.events, users),
            events_per_user_median: median,
            events_per_user_max: totals.events_per_user.last().map_or(0, |&n| u64::from(n)),
            target_window_share: ratio(totals.target_events, totals.events),
            test_window_share: ratio(totals.test_events, totals.events),
            target_users_in_train_share: ratio(totals.target_users_in_train, totals.target_users),
            test_users_in_train_share: ratio(totals.test_users_in_train, totals.test_users),
            new_user_share: ratio(totals.new_users, users),
        }
    }
}

/// part / whole to 6 decimals: all the precision a statistic needs, and short decimals read
/// back from generator.json to exactly the same f64.
fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { (part as f64 / whole as f64 * 1e6).round() / 1e6 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_follow_their_definitions() {
        let counters = TrackCounters::new(200);
        // Of 200 tracks the top 1% are the 2 most listened: 50 + 30 of 100 events.
        let listens = [50u32, 30, 5, 5, 10];
        let listeners = [20u32, 4, 5, 1, 0];
        for (track, (&l, &u)) in listens.iter().zip(&listeners).enumerate() {
            counters.listens[track].store(l, Ordering::Relaxed);
            counters.listeners[track].store(u, Ordering::Relaxed);
        }
        let mut accumulator = StatsAccumulator::default();
        accumulator.add(&ChunkTally {
            events: 100,
            repeats: 70,
            target_events: 4,
            test_events: 6,
            new_users: 1,
            target_users: 2,
            target_users_in_train: 1,
            test_users: 1,
            test_users_in_train: 1,
            events_per_user: vec![90, 1, 9],
        });
        accumulator.add(&ChunkTally { events_per_user: vec![3], ..ChunkTally::default() });
        let stats = accumulator.finish(&counters);
        assert_eq!(stats.top1pct_track_share, 0.8);
        assert_eq!(stats.share_tracks_under_5_users, 198.0 / 200.0);
        assert_eq!(stats.share_tracks_unheard, 196.0 / 200.0);
        assert_eq!(stats.repeat_share, 0.7);
        assert_eq!(stats.events_per_user_mean, 25.0);
        assert_eq!(stats.events_per_user_median, 6.0);
        assert_eq!(stats.events_per_user_max, 90);
        assert_eq!(stats.target_window_share, 0.04);
        assert_eq!(stats.test_window_share, 0.06);
        assert_eq!(stats.target_users_in_train_share, 0.5);
        assert_eq!(stats.new_user_share, 0.25);
    }
}
