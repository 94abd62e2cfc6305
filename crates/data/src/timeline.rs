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

/// The first and last day a date may be (0001-01-01 and 9999-12-31, in days since 1970-01-01):
/// the years every reader of the layout can represent. A date outside is an error in the data
/// (a day count or a timestamp in the wrong unit), never wrapped into range.
pub const FIRST_DAY: i32 = -719_162;
pub const LAST_DAY: i32 = 2_932_896;

/// Length of the periods of [`DateSpread`], in days.
const SPREAD_PERIOD_DAYS: i32 = 365;
/// Empty periods that cut the time line in two: a long but continuous history (MovieLens spans
/// decades) stays whole, a year 1 or a timestamp 0 (1970) among 2022 dates is cut off.
const SPREAD_GAP_PERIODS: i32 = 10;

/// Events per 365-day period, with each period's first and last day: enough to find dates far
/// from the bulk of the data in one pass, with memory for a few periods, not a day table.
#[derive(Debug, Clone, Default)]
pub struct DateSpread {
    periods: BTreeMap<i32, Period>,
    /// The period of the last day added, not yet in `periods`: consecutive events mostly
    /// share one, so the map is touched once per change of period.
    current: Option<(i32, Period)>,
}

#[derive(Debug, Clone, Copy)]
struct Period {
    events: u64,
    first: i32,
    last: i32,
}

/// Events dated far from the bulk of a file's dates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FarDates {
    pub file: String,
    pub events: u64,
    pub first: chrono::NaiveDate,
    pub last: chrono::NaiveDate,
    pub bulk_first: chrono::NaiveDate,
    pub bulk_last: chrono::NaiveDate,
}

impl std::fmt::Display for FarDates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: column `started_at`: {} event(s) dated {}..{}, more than {} years away from the bulk of the \
             data ({}..{}); they are kept, but check the dates (a wrong unit or a placeholder date?)",
            self.file, self.events, self.first, self.last, SPREAD_GAP_PERIODS, self.bulk_first, self.bulk_last
        )
    }
}

impl DateSpread {
    pub fn add_days(&mut self, days: &[i32]) {
        for &day in days {
            let period = day.div_euclid(SPREAD_PERIOD_DAYS);
            match &mut self.current {
                Some((p, count)) if *p == period => {
                    count.events += 1;
                    count.first = count.first.min(day);
                    count.last = count.last.max(day);
                }
                current => {
                    if let Some((p, count)) = current.take() {
                        self.periods.insert(p, count);
                    }
                    let mut count = self.periods.remove(&period).unwrap_or(Period { events: 0, first: day, last: day });
                    count.events += 1;
                    count.first = count.first.min(day);
                    count.last = count.last.max(day);
                    *current = Some((period, count));
                }
            }
        }
    }

    /// The events outside the bulk of the time line, if any. The time line is cut wherever
    /// `SPREAD_GAP_PERIODS` years pass without an event; the bulk is the part with the most
    /// events, the rest is far from it.
    pub fn far_from_bulk(mut self, file: &str) -> Option<FarDates> {
        if let Some((p, count)) = self.current.take() {
            self.periods.insert(p, count);
        }
        let mut parts: Vec<Vec<(i32, Period)>> = Vec::new();
        for (&p, &period) in &self.periods {
            match parts.last_mut() {
                Some(part) if p - part.last().map_or(p, |last| last.0) <= SPREAD_GAP_PERIODS => part.push((p, period)),
                _ => parts.push(vec![(p, period)]),
            }
        }
        let events = |part: &Vec<(i32, Period)>| part.iter().map(|(_, p)| p.events).sum::<u64>();
        let bulk = (0..parts.len()).max_by_key(|&i| events(&parts[i]))?;
        let far: Vec<Period> = parts
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != bulk)
            .flat_map(|(_, part)| part.iter().map(|p| p.1))
            .collect();
        Some(FarDates {
            file: file.to_string(),
            events: far.iter().map(|p| p.events).sum(),
            first: date_of(far.iter().map(|p| p.first).min()?),
            last: date_of(far.iter().map(|p| p.last).max()?),
            bulk_first: date_of(parts[bulk].first()?.1.first),
            bulk_last: date_of(parts[bulk].last()?.1.last),
        })
    }
}

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
    fn the_calendar_bounds_are_years_1_and_9999() {
        assert_eq!(date_of(FIRST_DAY).to_string(), "0001-01-01");
        assert_eq!(date_of(LAST_DAY).to_string(), "9999-12-31");
    }

    fn spread(days: &[(i32, usize)]) -> DateSpread {
        let mut s = DateSpread::default();
        for &(day, n) in days {
            s.add_days(&vec![day; n]);
        }
        s
    }

    #[test]
    fn dates_far_from_the_bulk_are_found_at_either_end() {
        // 2022 (day 18993..) with 3 events in year 1 and 2 in 9999, interleaved.
        let s = spread(&[(19000, 500), (FIRST_DAY, 2), (19100, 500), (LAST_DAY, 2), (FIRST_DAY + 3, 1)]);
        let far = s.far_from_bulk("f.parquet").unwrap();
        assert_eq!(far.events, 5);
        assert_eq!((far.first.to_string(), far.last.to_string()), ("0001-01-01".into(), "9999-12-31".into()));
        assert_eq!((far.bulk_first.to_string(), far.bulk_last.to_string()), ("2022-01-08".into(), "2022-04-18".into()));
        let text = far.to_string();
        assert!(text.contains("f.parquet") && text.contains("5 event(s)") && text.contains("started_at"), "{text}");
        // The epoch (a timestamp 0) among recent dates is far too.
        assert_eq!(spread(&[(19000, 1000), (0, 1)]).far_from_bulk("f").unwrap().events, 1);
    }

    #[test]
    fn a_long_continuous_history_is_not_far() {
        // Thirty years, a few events a year, most in the last years (MovieLens-like).
        let mut days: Vec<(i32, usize)> = (0..30).map(|y| (9000 + y * 365, 20)).collect();
        days.push((20000, 5000));
        assert_eq!(spread(&days).far_from_bulk("f"), None);
        assert_eq!(DateSpread::default().far_from_bulk("f"), None);
    }

    #[test]
    fn fewer_than_three_days_cannot_be_split() {
        let err = auto_split(&counts(&[(19000, 5), (19001, 5)])).unwrap_err().to_string();
        assert!(err.contains("2 distinct day(s)") && err.contains("2022-01-08..2022-01-09"), "{err}");
        assert!(err.contains("preprocess.train_end"), "{err}");
        assert!(auto_split(&DayCounts::default()).is_err());
    }
}
