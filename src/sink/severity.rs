//! Syslog severities by name or number: s3s-syslog's `--severity` and per-record
//! `--severity-field`, and s3s-gelf's `--level` (GELF's level is a syslog severity).

/// Parse a severity name (syslog's and a few common spellings) or number into 0-7.
pub fn parse_severity(s: &str) -> Result<u8, String> {
    severity_of(s.as_bytes())
        .ok_or_else(|| format!("unknown severity {s:?} (emerg, alert, crit, err, warning, notice, info, debug or 0-7)"))
}

pub fn severity_of(s: &[u8]) -> Option<u8> {
    let mut low = [0u8; 16];
    if s.is_empty() || s.len() > low.len() {
        return None;
    }
    for (d, c) in low.iter_mut().zip(s) {
        *d = c.to_ascii_lowercase();
    }
    Some(match &low[..s.len()] {
        b"0" | b"emerg" | b"emergency" | b"panic" => 0,
        b"1" | b"alert" => 1,
        b"2" | b"crit" | b"critical" | b"fatal" => 2,
        b"3" | b"err" | b"error" => 3,
        b"4" | b"warning" | b"warn" => 4,
        b"5" | b"notice" => 5,
        b"6" | b"info" | b"informational" => 6,
        b"7" | b"debug" | b"trace" => 7,
        _ => return None,
    })
}
