//! The data's own time line: how many events fall on each day, and the split into train,
//! target and test windows it suggests (docs/pipeline.md#automatic-split). Both `preprocess`
//! (`preprocess.train_end: auto`) and `musicrec import` (the suggested configuration) choose
//! the split here, so the two always agree.

use std::collections::BTreeMap;

use crate::error::DataError;

/// Length of each of the two last periods (target, test) of the week rule.
pub const PERIOD_DAYS: i32 = 7;
/// The week rule holds when each of the two last weeks has at least this share of the events
/// and the train window keeps at least `MIN_TRAIN_SHARE`; otherwise the quantile rule is used.
pub const MIN_WEEK_SHARE: f64 = 0.01;
pub const MIN_TRAIN_SHARE: f64 = 0.5;
/// The quantile rule: train holds about the first 80 % of the events, target the next 10 %,
/// test the last 10 %, cut at day boundaries.
pub const TRAIN_QUANTILE: f64 = 0.8;
pub const TARGET_QUANTILE: f64 = 0.9;

/// Events per day (days since 1970-01-01, UTC); its size is the number of distinct days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayCounts(BTreeMap<i32, u64>);

impl DayCounts {
    pub fn add(&mut self, day: i32, events: u64) {
        *self.0.entry(day).or_default() += events;
    }

    pub fn add_days(&mut self, days: &[i32]) {
        for &day in days {
            self.add(day, 1);
        }
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The first and the last day with events.
    pub fn span(&self) -> Option<(i32, i32)> {
        Some((*self.0.keys().next()?, *self.0.keys().next_back()?))
    }

    /// Events on days before `day`.
    fn before(&self, day: i32) -> u64 {
        self.0.range(..day).map(|(_, n)| n).sum()
    }
}

/// Which rule chose an automatic split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitRule {
    /// The last 7 days are the test window, the 7 before the target window.
    LastTwoWeeks,
    /// Too little data in the last weeks: 80 % / 10 % / 10 % of the events, at day boundaries.
    EventQuantiles,
}

impl SplitRule {
    /// The rule's name in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LastTwoWeeks => "last_two_weeks",
            Self::EventQuantiles => "event_quantiles",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::LastTwoWeeks => "the last 7 days are test, the 7 before target",
            Self::EventQuantiles => "train, target and test hold about 80/10/10 % of the events",
        }
    }
}

/// A split chosen from the data: train < `train_end` <= target < `target_end` <= test, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoSplit {
    pub train_end: i32,
    pub target_end: i32,
    pub rule: SplitRule,
}

/// The date of a day number.
pub fn date_of(day: i32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date") + chrono::TimeDelta::days(i64::from(day))
}

/// The split the time line suggests: the last two weeks when each holds a fair share of the
/// events, else event quantiles. Every window gets at least one day with events; fewer than
/// three distinct days cannot be split.
pub fn auto_split(days: &DayCounts) -> Result<AutoSplit, DataError> {
    let distinct: Vec<i32> = days.0.keys().copied().collect();
    let (first, last) = days.span().unwrap_or((0, 0));
    if distinct.len() < 3 {
        return Err(DataError::UnsplittableTimeLine {
            days: distinct.len(),
            first: date_of(first).to_string(),
            last: date_of(last).to_string(),
        });
    }
    let total = days.total() as f64;
    let target_end = last - (PERIOD_DAYS - 1);
    let train_end = target_end - PERIOD_DAYS;
    let train = days.before(train_end) as f64;
    let target = days.before(target_end) as f64 - train;
    let test = total - train - target;
    if train / total >= MIN_TRAIN_SHARE && target / total >= MIN_WEEK_SHARE && test / total >= MIN_WEEK_SHARE {
        return Ok(AutoSplit { train_end, target_end, rule: SplitRule::LastTwoWeeks });
    }
    // The first day whose earlier events reach the share, among the days allowed so that
    // every window keeps a day.
    let cut = |share: f64, from: usize, to: usize| {
        (from..=to).find(|&i| days.before(distinct[i]) as f64 >= share * total).unwrap_or(to)
    };
    let n = distinct.len();
    let train_index = cut(TRAIN_QUANTILE, 1, n - 2);
    let target_index = cut(TARGET_QUANTILE, train_index + 1, n - 1);
    Ok(AutoSplit {
        train_end: distinct[train_index],
        target_end: distinct[target_index],
        rule: SplitRule::EventQuantiles,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(i32, u64)]) -> DayCounts {
        let mut c = DayCounts::default();
        for &(day, n) in pairs {
            c.add(day, n);
        }
        c
    }

    #[test]
    fn dense_data_gets_the_last_two_weeks() {
        // 100 days, 10 events each: the last two weeks hold 7 % each.
        let c = counts(&(0..100).map(|d| (d, 10)).collect::<Vec<_>>());
        let s = auto_split(&c).unwrap();
        assert_eq!((s.train_end, s.target_end, s.rule), (86, 93, SplitRule::LastTwoWeeks));
    }

    #[test]
    fn sparse_tails_fall_back_to_quantiles() {
        // Years of data, nearly nothing in the last weeks.
        let mut pairs: Vec<(i32, u64)> = (0..10).map(|d| (d * 100, 100)).collect();
        pairs.push((2000, 1));
        let s = auto_split(&counts(&pairs)).unwrap();
        assert_eq!(s.rule, SplitRule::EventQuantiles);
        // 1001 events: 80 % (800.8) is first reached before day 900; 90 % only before the
        // last day, which stays the test window.
        assert_eq!((s.train_end, s.target_end), (900, 2000));
    }

    #[test]
    fn quantiles_keep_every_window_non_empty() {
        // One heavy first day: the quantiles would all fall on it.
        let s = auto_split(&counts(&[(10, 1000), (11, 1), (12, 1)])).unwrap();
        assert_eq!((s.train_end, s.target_end), (11, 12));
        let s = auto_split(&counts(&[(10, 1), (11, 1), (12, 1000)])).unwrap();
        assert_eq!((s.train_end, s.target_end), (11, 12));
    }

    #[test]
    fn fewer_than_three_days_cannot_be_split() {
        let err = auto_split(&counts(&[(19000, 5), (19001, 5)])).unwrap_err().to_string();
        assert!(err.contains("2 distinct day(s)") && err.contains("2022-01-08..2022-01-09"), "{err}");
        assert!(err.contains("preprocess.train_end"), "{err}");
        assert!(auto_split(&DayCounts::default()).is_err());
    }
}
