//! Log timestamps to RFC 3339 UTC text (written into a buffer, no allocation): the precision
//! the format has is kept (ALB's microseconds, CloudFront's seconds).

#[inline]
fn digits(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(u8::is_ascii_digit)
}

fn num(s: &[u8]) -> i64 {
    s.iter().fold(0i64, |acc, &b| acc * 10 + i64::from(b - b'0'))
}

/// `YYYY-MM-DD`.
#[inline]
pub fn is_date(s: &[u8]) -> bool {
    s.len() == 10 && digits(&s[0..4]) && s[4] == b'-' && digits(&s[5..7]) && s[7] == b'-' && digits(&s[8..10])
}

/// `HH:MM:SS` with optional fraction `.ddd`.
#[inline]
pub fn is_clock(s: &[u8]) -> bool {
    s.len() >= 8
        && digits(&s[0..2])
        && s[2] == b':'
        && digits(&s[3..5])
        && s[5] == b':'
        && digits(&s[6..8])
        && (s.len() == 8 || (s[8] == b'.' && digits(&s[9..])))
}

/// `YYYY-MM-DDTHH:MM:SS[.fff][Z]`: ISO 8601 as AWS writes it in ALB, ELB, NLB logs and
/// CloudTrail.
pub fn is_iso(s: &[u8]) -> bool {
    let s = s.strip_suffix(b"Z").unwrap_or(s);
    s.len() >= 19 && is_date(&s[..10]) && s[10] == b'T' && is_clock(&s[11..])
}

/// An ISO 8601 UTC time (`Z` added when it has none, as NLB writes it) into `ts`.
pub fn iso(s: &[u8], ts: &mut Vec<u8>) -> bool {
    if !is_iso(s) {
        return false;
    }
    ts.extend_from_slice(s);
    if !s.ends_with(b"Z") {
        ts.push(b'Z');
    }
    true
}

/// W3C's separate `date` and `time` fields (UTC) into `ts`.
pub fn date_time(date: &[u8], time: &[u8], ts: &mut Vec<u8>) -> bool {
    if !is_date(date) || !is_clock(time) {
        return false;
    }
    ts.extend_from_slice(date);
    ts.push(b'T');
    ts.extend_from_slice(time);
    ts.push(b'Z');
    true
}

/// Seconds since the epoch (VPC flow logs' `start`) into `ts`.
pub fn epoch(s: &[u8], ts: &mut Vec<u8>) -> bool {
    if !digits(s) || s.len() > 12 {
        return false;
    }
    write_utc(num(s), ts);
    true
}

/// Apache's `06/Feb/2019:00:00:38 +0000` (S3 server access logs) into `ts`, in UTC.
pub fn clf(s: &[u8], ts: &mut Vec<u8>) -> bool {
    // dd/Mon/yyyy:HH:MM:SS +hhmm
    if s.len() != 26 || s[2] != b'/' || s[6] != b'/' || s[11] != b':' || s[20] != b' ' {
        return false;
    }
    let (day, mon, year, clock, zone) = (&s[0..2], &s[3..6], &s[7..11], &s[12..20], &s[21..26]);
    const MONTHS: [&[u8]; 12] = [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    let Some(m) = MONTHS.iter().position(|&x| x == mon) else { return false };
    if !digits(day) || !digits(year) || !is_clock(clock) || !matches!(zone[0], b'+' | b'-') || !digits(&zone[1..]) {
        return false;
    }
    let days = days_from_civil(num(year), m as i64 + 1, num(day));
    let secs = days * 86400 + num(&clock[0..2]) * 3600 + num(&clock[3..5]) * 60 + num(&clock[6..8]);
    let off = (num(&zone[1..3]) * 60 + num(&zone[3..5])) * 60;
    write_utc(if zone[0] == b'+' { secs - off } else { secs + off }, ts);
    true
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch.
pub fn write_utc(secs: i64, ts: &mut Vec<u8>) {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    let mut b = [0u8; 20];
    let put = |b: &mut [u8], v: i64| {
        let n = b.len();
        let mut v = v;
        for i in (0..n).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(&mut b[0..4], y);
    b[4] = b'-';
    put(&mut b[5..7], m);
    b[7] = b'-';
    put(&mut b[8..10], d);
    b[10] = b'T';
    put(&mut b[11..13], rem / 3600);
    b[13] = b':';
    put(&mut b[14..16], rem / 60 % 60);
    b[16] = b':';
    put(&mut b[17..19], rem % 60);
    b[19] = b'Z';
    ts.extend_from_slice(&b);
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>) -> bool) -> Option<String> {
        let mut v = Vec::new();
        f(&mut v).then(|| String::from_utf8(v).unwrap())
    }

    #[test]
    fn conversions() {
        assert_eq!(s(|t| epoch(b"1418530010", t)).as_deref(), Some("2014-12-14T04:06:50Z"));
        assert_eq!(s(|t| epoch(b"0", t)).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(s(|t| clf(b"06/Feb/2019:00:00:38 +0000", t)).as_deref(), Some("2019-02-06T00:00:38Z"));
        assert_eq!(s(|t| clf(b"01/Mar/2020:01:30:00 +0200", t)).as_deref(), Some("2020-02-29T23:30:00Z"));
        assert_eq!(s(|t| clf(b"31/Dec/2019:23:30:00 -0100", t)).as_deref(), Some("2020-01-01T00:30:00Z"));
        assert_eq!(s(|t| iso(b"2018-07-02T22:23:00.186641Z", t)).as_deref(), Some("2018-07-02T22:23:00.186641Z"));
        assert_eq!(s(|t| iso(b"2018-12-20T02:59:40", t)).as_deref(), Some("2018-12-20T02:59:40Z"));
        assert_eq!(s(|t| date_time(b"2019-12-04", b"21:02:31", t)).as_deref(), Some("2019-12-04T21:02:31Z"));
        assert_eq!(s(|t| iso(b"2018-07-02 22:23:00", t)), None);
        assert_eq!(s(|t| clf(b"06/Fab/2019:00:00:38 +0000", t)), None);
        assert_eq!(s(|t| epoch(b"-", t)), None);
    }
}
