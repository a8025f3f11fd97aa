//! Time on the command line: durations (`90m`, `12h`, `30d`, `2w`) and UTC
//! instants (`2027-03-31T00:00:00Z`, or a date `2027-03-31` for its
//! midnight), in milliseconds since the Unix epoch, without a date crate.

use quorate_node::home::duration::HumanDuration;

/// Milliseconds in a day (UTC days have no leap seconds in Unix time).
pub(crate) const DAY_MS: u64 = 86_400_000;

pub(crate) use quorate_contracts::{civil_from_days, rfc3339_ms};

/// A valid date from 1970-01-01 on as days since then (Hinnant's
/// `days_from_civil`, the inverse of [`civil_from_days`]).
fn days_from_civil(year: u64, month: u64, day: u64) -> u64 {
    let y = if month <= 2 { year - 1 } else { year };
    let (era, yoe) = (y / 400, y % 400);
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: u64, month: u64) -> u64 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A duration: an integer and a unit, `s`, `m`, `h`, `d` or `w` (the
/// config's units, [`HumanDuration`], plus weeks), in ms.
pub(crate) fn parse_duration_ms(text: &str) -> Result<u64, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "no unit: add s, m, h, d or w (e.g. {text}d for {text} days)"
        ));
    }
    let ms = match text.strip_suffix('w') {
        Some(weeks) if !weeks.is_empty() && weeks.bytes().all(|b| b.is_ascii_digit()) => weeks
            .parse::<u64>()
            .ok()
            .and_then(|weeks| weeks.checked_mul(7 * DAY_MS)),
        _ => text
            .parse::<HumanDuration>()
            .ok()
            .and_then(|HumanDuration(d)| u64::try_from(d.as_millis()).ok()),
    };
    ms.ok_or_else(|| {
        "write an integer and a unit, s, m, h, d or w (e.g. 90m, 12h, 30d, 2w)".to_owned()
    })
}

/// A UTC instant, `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (RFC 3339), or a date
/// `YYYY-MM-DD` for its midnight UTC, in ms since the Unix epoch.
pub(crate) fn parse_instant_ms(text: &str) -> Result<u64, String> {
    let bad = || "write a UTC time as 2027-03-31T00:00:00Z, or a date as 2027-03-31".to_owned();
    let (date, time) = match text.split_once(['T', 't']) {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let [year, month, day] = fields(date, '-', [4, 2, 2]).ok_or_else(bad)?;
    if year < 1970 {
        return Err("the year is before 1970".to_owned());
    }
    if !(1..=12).contains(&month) || !(1..=days_in_month(year, month)).contains(&day) {
        return Err(format!("{date} is not a calendar date"));
    }
    let mut ms = days_from_civil(year, month, day) * DAY_MS;
    if let Some(time) = time {
        let Some(time) = time.strip_suffix(['Z', 'z']) else {
            return Err(if time.contains(['+', '-']) {
                "write the time in UTC, ending in Z".to_owned()
            } else {
                bad()
            });
        };
        let (hms, fraction) = match time.split_once('.') {
            Some((hms, fraction)) => (hms, Some(fraction)),
            None => (time, None),
        };
        let [hour, minute, second] = fields(hms, ':', [2, 2, 2]).ok_or_else(bad)?;
        if hour > 23 || minute > 59 || second > 59 {
            return Err(format!("{hms} is not a time of day"));
        }
        ms += (hour * 3600 + minute * 60 + second) * 1000;
        if let Some(fraction) = fraction {
            // Up to nanoseconds, as RFC 3339 allows; kept to the millisecond.
            if fraction.is_empty()
                || fraction.len() > 9
                || !fraction.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(bad());
            }
            let millis = format!("{fraction:0<3}");
            ms += millis[..3].parse::<u64>().map_err(|_| bad())?;
        }
    }
    Ok(ms)
}

/// Three `sep`-separated runs of exactly `widths` ASCII digits.
fn fields(text: &str, sep: char, widths: [usize; 3]) -> Option<[u64; 3]> {
    let mut parts = text.split(sep);
    let mut out = [0; 3];
    for (value, width) in out.iter_mut().zip(widths) {
        let part = parts.next()?;
        if part.len() != width || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *value = part.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_each_unit() {
        for (text, ms) in [
            ("45s", 45_000),
            ("90m", 5_400_000),
            ("12h", 43_200_000),
            ("30d", 30 * DAY_MS),
            ("2w", 14 * DAY_MS),
            ("0m", 0),
        ] {
            assert_eq!(parse_duration_ms(text), Ok(ms), "{text}");
        }
    }

    #[test]
    fn a_bare_integer_names_the_units() {
        let e = parse_duration_ms("30").unwrap_err();
        assert!(e.contains("s, m, h, d or w") && e.contains("30d"), "{e}");
    }

    #[test]
    fn other_durations_are_refused() {
        for bad in [
            "",
            "d",
            "w",
            "1.5d",
            "-1d",
            "1 d",
            "1y",
            "1W",
            "+2w",
            "3000000000000000w",
            "99999999999999999999h",
        ] {
            let e = parse_duration_ms(bad).unwrap_err();
            assert!(e.contains("s, m, h, d or w"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn instants_and_dates() {
        for (text, ms) in [
            ("1970-01-01", 0),
            ("1970-01-01T00:00:00Z", 0),
            ("2027-03-31", 1_806_451_200_000),
            ("2027-03-31T00:00:00Z", 1_806_451_200_000),
            ("2027-03-31t00:00:00z", 1_806_451_200_000),
            ("2000-02-29T00:00:00Z", 951_782_400_000),
            ("2026-11-30T23:59:59Z", 1_796_083_199_000),
            ("2026-11-30T23:59:59.5Z", 1_796_083_199_500),
            ("2026-11-30T23:59:59.123456789Z", 1_796_083_199_123),
            ("9999-12-31T23:59:59Z", 253_402_300_799_000),
        ] {
            assert_eq!(parse_instant_ms(text), Ok(ms), "{text}");
            assert_eq!(parse_instant_ms(&rfc3339_ms(ms)), Ok(ms), "{text}");
        }
        assert_eq!(rfc3339_ms(1_806_451_200_000), "2027-03-31T00:00:00Z");
        assert_eq!(rfc3339_ms(1_796_083_199_500), "2026-11-30T23:59:59.500Z");
    }

    #[test]
    fn days_round_trip_through_the_calendar() {
        // Every day from 1970 to past 2400 (leap centuries included).
        for days in 0..160_000 {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=days_in_month(y, m)).contains(&d), "{days}");
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn each_bad_instant_says_what_is_wrong() {
        for (bad, says) in [
            ("", "2027-03-31T00:00:00Z"),
            ("2027-3-31", "2027-03-31T00:00:00Z"),
            ("27-03-31", "2027-03-31T00:00:00Z"),
            ("2027-03-31T00:00Z", "2027-03-31T00:00:00Z"),
            ("2027-03-31T00:00:00", "2027-03-31T00:00:00Z"),
            ("2027-03-31 00:00:00Z", "2027-03-31T00:00:00Z"),
            ("2027-03-31T00:00:00.Z", "2027-03-31T00:00:00Z"),
            ("2027-03-31T00:00:00.1234567890Z", "2027-03-31T00:00:00Z"),
            ("2027-03-31T00:00:00+02:00", "in UTC"),
            ("2027-03-31T00:00:00-00:00", "in UTC"),
            ("1969-12-31", "before 1970"),
            ("2027-02-29", "not a calendar date"),
            ("2027-13-01", "not a calendar date"),
            ("2027-04-31", "not a calendar date"),
            ("2027-03-00", "not a calendar date"),
            ("2027-03-31T24:00:00Z", "not a time of day"),
            ("2027-03-31T23:60:00Z", "not a time of day"),
            ("2027-03-31T23:59:60Z", "not a time of day"),
            ("２０２７-03-31", "2027-03-31T00:00:00Z"),
        ] {
            let e = parse_instant_ms(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }
}
