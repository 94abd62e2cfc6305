//! The generated year. Days are counted from 2022-01-01 (day 0) to 2022-12-31 (day 364); the
//! pipeline's default split dates are fixed points on that axis.

use crate::random::CumulativeWeights;

pub(crate) const DAYS_IN_YEAR: u16 = 365;
pub(crate) const LAST_DAY: u16 = DAYS_IN_YEAR - 1;

/// 2022-12-16, the pipeline's default end of training: events from here on are the target window.
pub(crate) const TRAIN_END_DAY: u16 = 349;
/// 2022-12-23, the pipeline's default end of the target window: events from here on are the test window.
pub(crate) const TARGET_END_DAY: u16 = 356;

/// Days from 1970-01-01 to 2022-01-01: a day of the year plus this is an arrow date32.
pub(crate) const YEAR_START_EPOCH_DAY: i32 = 18_993;

/// A release day: a day of the year, or "before 2022" for the back catalogue.
pub(crate) type ReleaseDay = i16;
pub(crate) const BACK_CATALOGUE: ReleaseDay = -1;

pub(crate) fn epoch_day(day: u16) -> i32 {
    YEAR_START_EPOCH_DAY + i32::from(day)
}

/// How busy the service is on each day: growing through the year (more users, more habit),
/// with the rise steepest in December so that the short target and test windows at the end of
/// the year still hold a few per cent of all events each, and busier at weekends.
pub(crate) fn daily_activity() -> CumulativeWeights {
    CumulativeWeights::new((0..DAYS_IN_YEAR).map(|day| {
        let progress = f64::from(day) / f64::from(LAST_DAY);
        // 2022-01-01 was a Saturday: day 0 and day 1 are a weekend.
        let weekend = matches!(day % 7, 0 | 1);
        (1.0 + 1.6 * progress.powi(3)) * if weekend { 1.15 } else { 1.0 }
    }))
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, Days, NaiveDate, Weekday};

    use super::*;

    fn date_of(day: u16) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(2022, 1, 1)?.checked_add_days(Days::new(u64::from(day)))
    }

    #[test]
    fn fixed_days_are_the_pipelines_split_dates() {
        let unix_epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        let year_start = NaiveDate::from_ymd_opt(2022, 1, 1).unwrap();
        assert_eq!((year_start - unix_epoch).num_days(), i64::from(YEAR_START_EPOCH_DAY));
        assert_eq!(date_of(TRAIN_END_DAY), NaiveDate::from_ymd_opt(2022, 12, 16));
        assert_eq!(date_of(TARGET_END_DAY), NaiveDate::from_ymd_opt(2022, 12, 23));
        assert_eq!(date_of(LAST_DAY), NaiveDate::from_ymd_opt(2022, 12, 31));
        assert_eq!(year_start.weekday(), Weekday::Sat);
    }
}
