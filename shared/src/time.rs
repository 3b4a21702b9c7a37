//! Timestamps without a clock: the adapter reads the host's time and passes
//! it in, so the cores stay deterministic under test.

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with
/// milliseconds: `2026-11-28T18:30:05.123Z`. Times before 1970 print as 1970.
pub fn rfc3339_millis(unix_ms: i64) -> String {
    let unix_ms = unix_ms.max(0);
    let secs = unix_ms / 1000;
    let millis = unix_ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Milliseconds since the Unix epoch of a UTC civil time, or `None` when a
/// field is out of range (month 1-12, day valid for the month, hour 0-23,
/// minute 0-59, second 0-60; a leap second counts as the next second).
pub fn unix_millis_from_civil(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Option<i64> {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let max_day = *month_days.get(usize::try_from(month).ok()?.checked_sub(1)?)?;
    if day == 0 || day > max_day || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    secs.checked_mul(1000)
}

/// Day count since 1970-01-01 of a proleptic Gregorian date (Howard
/// Hinnant's `days_from_civil`, the inverse of [`civil_from_days`]).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_millis(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_795_890_605_123),
            "2026-11-28T18:30:05.123Z"
        );
        assert_eq!(
            rfc3339_millis(4_102_444_799_999),
            "2099-12-31T23:59:59.999Z"
        );
        assert_eq!(rfc3339_millis(-5), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn civil_times_round_trip() {
        let cases = [
            ((1970, 1, 1, 0, 0, 0), Some(0)),
            ((2000, 2, 29, 0, 0, 0), Some(951_782_400_000)),
            ((2026, 11, 28, 18, 30, 5), Some(1_795_890_605_000)),
            ((2099, 12, 31, 23, 59, 59), Some(4_102_444_799_000)),
            ((1950, 1, 1, 0, 0, 0), Some(-631_152_000_000)),
            ((2001, 2, 29, 0, 0, 0), None),
            ((2000, 13, 1, 0, 0, 0), None),
            ((2000, 0, 1, 0, 0, 0), None),
            ((2000, 1, 1, 24, 0, 0), None),
        ];
        for ((y, mo, d, h, mi, s), want) in cases {
            assert_eq!(
                unix_millis_from_civil(y, mo, d, h, mi, s),
                want,
                "{y}-{mo}-{d}"
            );
        }
        for days in [0_i64, 59, 11_016, 20_000, 47_481] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
