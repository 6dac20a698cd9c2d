//! The JSON forms of dates, times and timestamps (ISO 8601 / RFC 3339, proleptic Gregorian,
//! UTC), through `chrono`: counts since the epoch or since midnight to and from text at a fixed
//! number of fraction digits per unit.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Timelike as _, Utc};

/// Units of a count since the epoch or since midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    Millis,
    Micros,
    Nanos,
}

impl Unit {
    fn per_second(self) -> i64 {
        match self {
            Unit::Millis => 1_000,
            Unit::Micros => 1_000_000,
            Unit::Nanos => 1_000_000_000,
        }
    }

    fn nanos(self) -> i64 {
        1_000_000_000 / self.per_second()
    }

    fn seconds_format(self) -> SecondsFormat {
        match self {
            Unit::Millis => SecondsFormat::Millis,
            Unit::Micros => SecondsFormat::Micros,
            Unit::Nanos => SecondsFormat::Nanos,
        }
    }

    fn naive_format(self) -> &'static str {
        match self {
            Unit::Millis => "%Y-%m-%dT%H:%M:%S%.3f",
            Unit::Micros => "%Y-%m-%dT%H:%M:%S%.6f",
            Unit::Nanos => "%Y-%m-%dT%H:%M:%S%.9f",
        }
    }

    fn time_format(self) -> &'static str {
        match self {
            Unit::Millis => "%H:%M:%S%.3f",
            Unit::Micros => "%H:%M:%S%.6f",
            Unit::Nanos => "%H:%M:%S%.9f",
        }
    }
}

fn epoch() -> NaiveDate {
    DateTime::<Utc>::UNIX_EPOCH.date_naive()
}

/// `YYYY-MM-DD` of a count of days since 1970-01-01; outside chrono's range, the count itself
/// (which the encoder accepts back as a count).
pub(crate) fn format_date(days: i64) -> String {
    let delta = chrono::Days::new(days.unsigned_abs());
    let date = if days >= 0 {
        epoch().checked_add_days(delta)
    } else {
        epoch().checked_sub_days(delta)
    };
    date.map_or_else(
        || days.to_string(),
        |date| date.format("%Y-%m-%d").to_string(),
    )
}

/// `HH:MM:SS.fff` (3, 6 or 9 fraction digits by unit) of a count since midnight.
pub(crate) fn format_time(count: i64, unit: Unit) -> String {
    let seconds = count.div_euclid(unit.per_second());
    let nanos = count.rem_euclid(unit.per_second()) * unit.nanos();
    u32::try_from(seconds)
        .ok()
        .and_then(|s| NaiveTime::from_num_seconds_from_midnight_opt(s, nanos as u32))
        .map_or_else(
            || count.to_string(),
            |time| time.format(unit.time_format()).to_string(),
        )
}

/// `YYYY-MM-DDTHH:MM:SS.fffZ` (or without the `Z` when `utc` is false: a local timestamp).
pub(crate) fn format_timestamp(count: i64, unit: Unit, utc: bool) -> String {
    let instant = match unit {
        Unit::Millis => DateTime::from_timestamp_millis(count),
        Unit::Micros => DateTime::from_timestamp_micros(count),
        Unit::Nanos => Some(DateTime::from_timestamp_nanos(count)),
    };
    match instant {
        Some(instant) if utc => instant.to_rfc3339_opts(unit.seconds_format(), true),
        Some(instant) => instant.naive_utc().format(unit.naive_format()).to_string(),
        None => count.to_string(),
    }
}

/// Parses `YYYY-MM-DD` into days since the epoch.
pub(crate) fn parse_date(text: &str) -> Option<i64> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    // chrono accepts `2024-1-31`; the JSON form is always two-digit months and days.
    if !text.ends_with(&date.format("-%m-%d").to_string()) {
        return None;
    }
    Some(date.signed_duration_since(epoch()).num_days())
}

/// The count of `unit` in a time of day, refused when the text has a finer fraction than the
/// unit (never rounded).
fn count_of(time: NaiveTime, unit: Unit) -> Option<i64> {
    let nanos = i64::from(time.nanosecond());
    if nanos % unit.nanos() != 0 {
        return None;
    }
    Some(i64::from(time.num_seconds_from_midnight()) * unit.per_second() + nanos / unit.nanos())
}

/// Parses `HH:MM:SS[.fraction]` into a count of `unit` since midnight.
pub(crate) fn parse_time(text: &str, unit: Unit) -> Option<i64> {
    let time = NaiveTime::parse_from_str(text, "%H:%M:%S%.f").ok()?;
    // chrono reads a leap second (`23:59:60`) as a second of 1 000 000 000+ nanoseconds.
    if time.nanosecond() >= 1_000_000_000 {
        return None;
    }
    count_of(time, unit)
}

/// Parses an RFC 3339 timestamp (`Z` or `±HH:MM` offset; `utc` true) or a local one (no zone;
/// `utc` false) into a count of `unit` since the epoch.
pub(crate) fn parse_timestamp(text: &str, unit: Unit, utc: bool) -> Option<i64> {
    let naive = if utc {
        DateTime::parse_from_rfc3339(text).ok()?.naive_utc()
    } else {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
            .ok()?
    };
    let days = naive.date().signed_duration_since(epoch()).num_days();
    let in_day = count_of(naive.time(), unit)?;
    days.checked_mul(86_400 * unit.per_second())?
        .checked_add(in_day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(-1), "1969-12-31");
        assert_eq!(format_date(19_753), "2024-01-31");
        assert_eq!(parse_date("2024-01-31"), Some(19_753));
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2024-02-29"), Some(19_782));
        assert_eq!(parse_date("2024-1-31"), None);
        let far = parse_date("+12000-01-01").expect("an expanded year");
        assert_eq!(format_date(far), "+12000-01-01");
        assert_eq!(format_date(i64::MAX), i64::MAX.to_string(), "out of range");
    }

    #[test]
    fn times() {
        assert_eq!(format_time(45_296_789, Unit::Millis), "12:34:56.789");
        assert_eq!(format_time(1, Unit::Micros), "00:00:00.000001");
        assert_eq!(parse_time("12:34:56.789", Unit::Millis), Some(45_296_789));
        assert_eq!(parse_time("12:34:56.7", Unit::Millis), Some(45_296_700));
        assert_eq!(parse_time("12:34:56", Unit::Micros), Some(45_296_000_000));
        assert_eq!(
            parse_time("12:34:56.7891", Unit::Millis),
            None,
            "no rounding"
        );
        assert_eq!(parse_time("24:00:00", Unit::Millis), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            format_timestamp(0, Unit::Millis, true),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            format_timestamp(-1, Unit::Millis, true),
            "1969-12-31T23:59:59.999Z"
        );
        assert_eq!(
            format_timestamp(1_706_704_496_789_012, Unit::Micros, true),
            "2024-01-31T12:34:56.789012Z"
        );
        assert_eq!(
            format_timestamp(1_706_704_496_000_000_001, Unit::Nanos, false),
            "2024-01-31T12:34:56.000000001"
        );
        assert_eq!(
            parse_timestamp("2024-01-31T12:34:56.789Z", Unit::Millis, true),
            Some(1_706_704_496_789)
        );
        assert_eq!(
            parse_timestamp("2024-01-31T13:34:56.789+01:00", Unit::Millis, true),
            Some(1_706_704_496_789)
        );
        assert_eq!(
            parse_timestamp("1969-12-31T23:59:59.999Z", Unit::Millis, true),
            Some(-1)
        );
        assert_eq!(
            parse_timestamp("2024-01-31T12:34:56", Unit::Millis, false),
            Some(1_706_704_496_000)
        );
        assert_eq!(
            parse_timestamp("2024-01-31T12:34:56", Unit::Millis, true),
            None
        );
        assert_eq!(parse_timestamp("garbage", Unit::Millis, true), None);
    }
}
