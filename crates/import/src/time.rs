//! Event times of outside sources as days since 1970-01-01 (UTC), the day granularity of our
//! layout.

use std::str::FromStr;

use chrono::{DateTime, NaiveDate};

/// How a time column is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Millis,
    Micros,
    /// `YYYY-MM-DD`.
    Date,
    /// `2009-05-04T23:08:57Z` and other RFC 3339 forms.
    Rfc3339,
}

impl FromStr for TimeUnit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "s" => Self::Seconds,
            "ms" => Self::Millis,
            "us" => Self::Micros,
            "date" => Self::Date,
            "rfc3339" => Self::Rfc3339,
            other => return Err(format!("`{other}` is not a time unit (s, ms, us, date, rfc3339)")),
        })
    }
}

impl TimeUnit {
    /// Ticks per day of a numeric unit.
    pub fn per_day(self) -> Option<i64> {
        match self {
            Self::Seconds => Some(86_400),
            Self::Millis => Some(86_400_000),
            Self::Micros => Some(86_400_000_000),
            Self::Date | Self::Rfc3339 => None,
        }
    }

    /// What a value of this unit looks like, for error messages.
    pub fn expected(self) -> &'static str {
        match self {
            Self::Seconds => "an integer number of seconds since 1970-01-01",
            Self::Millis => "an integer number of milliseconds since 1970-01-01",
            Self::Micros => "an integer number of microseconds since 1970-01-01",
            Self::Date => "a date (YYYY-MM-DD)",
            Self::Rfc3339 => "an RFC 3339 time (e.g. 2009-05-04T23:08:57Z)",
        }
    }

    /// The day of a text value, or `None` when it is not of this unit or out of range.
    pub fn day_of_text(self, text: &str) -> Option<i32> {
        let text = text.trim();
        match self {
            Self::Date => NaiveDate::parse_from_str(text, "%Y-%m-%d").ok().map(epoch_day),
            Self::Rfc3339 => DateTime::parse_from_rfc3339(text).ok().map(|t| epoch_day(t.naive_utc().date())),
            _ => day_of_ticks(text.parse().ok()?, self.per_day()?),
        }
    }
}

/// The day of a count of ticks since 1970-01-01; `None` outside the dates we keep.
pub fn day_of_ticks(ticks: i64, per_day: i64) -> Option<i32> {
    i32::try_from(ticks.div_euclid(per_day)).ok().filter(|d| (MIN_DAY..=MAX_DAY).contains(d))
}

/// Days of the years 1900..=2999: anything outside is a unit mistake, not a listen.
const MIN_DAY: i32 = -25_567;
const MAX_DAY: i32 = 376_199;

pub fn epoch_day(date: NaiveDate) -> i32 {
    (date - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")).num_days() as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_to_days() {
        assert_eq!(TimeUnit::Seconds.day_of_text("874965758"), Some(10126));
        assert_eq!(TimeUnit::Millis.day_of_text("874965758000"), Some(10126));
        assert_eq!(TimeUnit::Micros.day_of_text("874965758000000"), Some(10126));
        assert_eq!(TimeUnit::Date.day_of_text("1997-09-22"), Some(10126));
        assert_eq!(TimeUnit::Rfc3339.day_of_text("1997-09-22T23:59:59+00:00"), Some(10126));
        assert_eq!(TimeUnit::Rfc3339.day_of_text("1997-09-23T01:00:00+02:00"), Some(10126), "UTC day");
        assert_eq!(TimeUnit::Seconds.day_of_text("-1"), Some(-1), "floored");
        assert_eq!(TimeUnit::Seconds.day_of_text("1e9"), None);
        assert_eq!(TimeUnit::Date.day_of_text("22/09/1997"), None);
        // Milliseconds read as seconds land beyond the year 2999.
        assert_eq!(TimeUnit::Seconds.day_of_text("874965758000"), None);
        assert!("minutes".parse::<TimeUnit>().unwrap_err().contains("s, ms, us"));
    }
}
