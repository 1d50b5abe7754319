//! Wall-clock time, the one place it is read, formatted and parsed: milliseconds since the epoch,
//! RFC 3339 in UTC (runs log, documents, GELF), and the lenient ISO 8601 reading that event times
//! in records get (S3 event times, `@timestamp` fields, the runs log).
//!
//! Calendar arithmetic is the `time` crate's; the parser below only picks the digits out of the
//! text, so that a per-line caller (s3s-es reads each line's event time) pays no allocation.

use std::time::{SystemTime, UNIX_EPOCH};

use time::{Date, Month, OffsetDateTime};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The UTC date and time of `secs` since the epoch (clamped to the years `time` supports).
pub fn utc(secs: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs).unwrap_or(if secs < 0 {
        OffsetDateTime::UNIX_EPOCH
    } else {
        Date::MAX.midnight().assume_utc()
    })
}

/// Append `YYYY-MM-DDTHH:MM:SS.mmmZ` for `ms` milliseconds since the epoch.
pub fn write_rfc3339_ms(ms: i64, out: &mut Vec<u8>) {
    use std::io::Write as _;
    let t = utc(ms.div_euclid(1000));
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        ms.rem_euclid(1000)
    );
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for `ms` milliseconds since the epoch.
pub fn rfc3339_ms(ms: i64) -> String {
    let mut out = Vec::with_capacity(24);
    write_rfc3339_ms(ms, &mut out);
    String::from_utf8(out).expect("ASCII")
}

/// Milliseconds since the epoch of an ISO 8601 / RFC 3339 date-time:
/// `YYYY-MM-DD[T ]HH:MM:SS[.frac]` then `Z`, `±HH:MM`, `±HHMM`, `±HH` or nothing (UTC).
/// Fractions finer than a millisecond are cut off.
pub fn parse_ms(s: &[u8]) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let b = s.get(r)?;
        b.iter().try_fold(0i64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
    };
    if s.len() < 19 || s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b't' | b' ') || s[13] != b':' || s[16] != b':' {
        return None;
    }
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let month = Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = Date::from_calendar_date(y as i32, month, u8::try_from(d).ok()?).ok()?;
    let mut i = 19;
    let mut millis = 0i64;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 3 {
                millis = millis * 10 + i64::from(s[i] - b'0');
            }
            i += 1;
        }
        match i - start {
            0 => return None,
            1 => millis *= 100,
            2 => millis *= 10,
            _ => {}
        }
    }
    let offset = match s.get(i) {
        None => 0,
        Some(b'Z' | b'z') if i + 1 == s.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let (oh, om) = match s.len() - i {
                6 if s[i + 3] == b':' => (num(i + 1..i + 3)?, num(i + 4..i + 6)?),
                5 => (num(i + 1..i + 3)?, num(i + 3..i + 5)?),
                3 => (num(i + 1..i + 3)?, 0),
                _ => return None,
            };
            let o = oh * 3600 + om * 60;
            if sign == b'-' { -o } else { o }
        }
        _ => return None,
    };
    let days = i64::from(date.to_julian_day()) - i64::from(UNIX_EPOCH_JULIAN_DAY);
    Some((days * 86_400 + h * 3600 + mi * 60 + se - offset) * 1000 + millis)
}

/// The Julian day number of 1970-01-01.
pub const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        let ms = 1_795_885_200_123; // 2026-11-28T17:00:00.123Z
        assert_eq!(rfc3339_ms(ms), "2026-11-28T17:00:00.123Z");
        assert_eq!(parse_ms(b"2026-11-28T17:00:00.123Z"), Some(ms));
        assert_eq!(parse_ms(b"2026-11-28T17:00:00Z"), Some(ms - 123));
        assert_eq!(parse_ms(b"2026-11-28T17:00:00.1Z"), Some(ms - 23));
        assert_eq!(parse_ms(b"2026-11-28T17:00:00.123456Z"), Some(ms));
        assert_eq!(parse_ms(b"2026-11-28 17:00:00"), Some(ms - 123));
        assert_eq!(parse_ms(b"2026-11-28T19:00:00+02:00"), Some(ms - 123));
        assert_eq!(parse_ms(b"2026-11-28T12:00:00-0500"), Some(ms - 123));
        assert_eq!(parse_ms(b"2026-11-28T17:00:00Zx"), None);
        assert_eq!(parse_ms(b"2026-13-28T17:00:00Z"), None);
        assert_eq!(parse_ms(b"2026-02-30T17:00:00Z"), None);
        assert_eq!(parse_ms(b"yesterday"), None);
        assert_eq!(rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(parse_ms(b"1969-12-31T23:59:59.999Z"), Some(-1));
    }
}
