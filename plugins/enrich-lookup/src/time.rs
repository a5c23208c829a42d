//! RFC 3339 timestamps from Unix nanoseconds, without a date crate.

/// Formats `nanos` since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, milliseconds
/// truncated). Every u64 falls before the year 2555, so the year always has four digits.
#[must_use]
pub fn rfc3339_millis(nanos: u64) -> [u8; 24] {
    let secs = nanos / 1_000_000_000;
    let millis = (nanos / 1_000_000) % 1000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let in_day = secs % 86_400;
    let mut out = *b"0000-00-00T00:00:00.000Z";
    put(&mut out[0..4], year);
    put(&mut out[5..7], month);
    put(&mut out[8..10], day);
    put(&mut out[11..13], in_day / 3600);
    put(&mut out[14..16], in_day / 60 % 60);
    put(&mut out[17..19], in_day % 60);
    put(&mut out[20..23], millis);
    out
}

/// Writes `value`'s last `dst.len()` decimal digits into `dst`.
fn put(dst: &mut [u8], mut value: u64) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Year, month (1-12) and day (1-31) of the day `days` after 1970-01-01, in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::{civil_from_days, rfc3339_millis};

    fn fmt(nanos: u64) -> String {
        String::from_utf8(rfc3339_millis(nanos).to_vec()).unwrap()
    }

    #[test]
    fn known_instants() {
        assert_eq!(fmt(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt(999_999), "1970-01-01T00:00:00.000Z");
        assert_eq!(fmt(1_000_000), "1970-01-01T00:00:00.001Z");
        assert_eq!(fmt(86_399_999_999_999), "1970-01-01T23:59:59.999Z");
        assert_eq!(fmt(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(fmt(951_868_799_999_000_000), "2000-02-29T23:59:59.999Z");
        assert_eq!(fmt(1_714_566_896_789_000_000), "2024-05-01T12:34:56.789Z");
        assert_eq!(fmt(4_107_542_400_000_000_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(fmt(u64::MAX), "2554-07-21T23:34:33.709Z");
    }

    #[test]
    fn every_day_through_2560() {
        let mut days = 0;
        for year in 1970u64..2560 {
            for month in 1..=12 {
                let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100))
                    || year.is_multiple_of(400);
                let length = match month {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                for day in 1..=length {
                    assert_eq!(civil_from_days(days), (year, month, day), "day {days}");
                    days += 1;
                }
            }
        }
        assert_eq!(civil_from_days(19_844), (2024, 5, 1));
    }
}
