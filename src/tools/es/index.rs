//! Index names with strftime-style date patterns (`cdn-%Y.%m.%d`), formatted per line in UTC
//! from the line's event time, with a cache so that most lines reuse the previous name.

use crate::cli::UsageError;

/// One piece of an index pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Conv(char),
}

/// An index name with strftime-style date patterns, formatted per line with a cache keyed by
/// the finest unit it uses (a day for `%Y.%m.%d`), so most lines reuse the previous name.
#[derive(Debug, Clone)]
pub(super) struct IndexPattern {
    pieces: Vec<Piece>,
    /// Seconds per distinct name (0: a fixed name).
    unit: i64,
    cache: Option<(i64, String)>,
}

impl IndexPattern {
    pub(super) fn parse(s: &str) -> Result<IndexPattern, UsageError> {
        if s.is_empty() {
            return Err(UsageError("the index name is empty".into()));
        }
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut unit = 0i64;
        let mut chars = s.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                if c.is_ascii_uppercase() || "\\/*?\"<>| ,#:".contains(c) {
                    return Err(UsageError(format!(
                        "index {s:?}: {c:?} is not allowed in an index name (lowercase, no \\ / * ? \" < > | , # : or space)"
                    )));
                }
                lit.push(c);
                continue;
            }
            let conv =
                chars.next().ok_or_else(|| UsageError(format!("index {s:?}: a lone % at the end (%% for a percent sign)")))?;
            let u = match conv {
                '%' => {
                    lit.push('%');
                    continue;
                }
                'Y' | 'y' | 'm' | 'd' | 'j' | 'G' | 'V' => 86_400,
                'H' => 3600,
                'M' => 60,
                'S' => 1,
                other => {
                    return Err(UsageError(format!(
                        "index {s:?}: %{other} is not supported (use %Y %y %m %d %j %H %M %S %G %V %%)"
                    )));
                }
            };
            unit = if unit == 0 { u } else { unit.min(u) };
            if !lit.is_empty() {
                pieces.push(Piece::Lit(std::mem::take(&mut lit)));
            }
            pieces.push(Piece::Conv(conv));
        }
        if !lit.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        if let Some(Piece::Lit(first)) = pieces.first()
            && (first.starts_with(['-', '_', '+']) || first == "." || first == "..")
        {
            return Err(UsageError(format!("index {s:?}: must not start with -, _ or +, nor be . or ..")));
        }
        Ok(IndexPattern { pieces, unit, cache: None })
    }

    /// The index name for a time (seconds since the epoch, UTC).
    pub(super) fn name(&mut self, secs: i64) -> &str {
        let key = if self.unit == 0 { 0 } else { secs.div_euclid(self.unit) };
        if self.cache.as_ref().is_none_or(|(k, _)| *k != key) {
            self.cache = Some((key, self.format(secs)));
        }
        &self.cache.as_ref().expect("just set").1
    }

    fn format(&self, secs: i64) -> String {
        use std::fmt::Write as _;
        let t = crate::clock::utc(secs);
        let y = t.year();
        let (iso_year, iso_week, _) = t.date().to_iso_week_date();
        let mut out = String::new();
        for p in &self.pieces {
            let _ = match p {
                Piece::Lit(s) => write!(out, "{s}"),
                Piece::Conv('Y') => write!(out, "{y:04}"),
                Piece::Conv('y') => write!(out, "{:02}", y.rem_euclid(100)),
                Piece::Conv('m') => write!(out, "{:02}", t.month() as u8),
                Piece::Conv('d') => write!(out, "{:02}", t.day()),
                Piece::Conv('j') => write!(out, "{:03}", t.ordinal()),
                Piece::Conv('H') => write!(out, "{:02}", t.hour()),
                Piece::Conv('M') => write!(out, "{:02}", t.minute()),
                Piece::Conv('S') => write!(out, "{:02}", t.second()),
                Piece::Conv('G') => write!(out, "{iso_year:04}"),
                Piece::Conv('V') => write!(out, "{iso_week:02}"),
                Piece::Conv(_) => Ok(()),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(date: &str) -> i64 {
        crate::clock::parse_ms(date.as_bytes()).unwrap() / 1000
    }

    #[test]
    fn index_patterns() {
        let t = 1_795_885_200; // 2026-11-28T17:00:00Z, a Saturday of ISO week 48
        let mut p = IndexPattern::parse("logs-%Y.%m.%d").unwrap();
        assert_eq!(p.name(t), "logs-2026.11.28");
        assert_eq!(p.name(t + 3600), "logs-2026.11.28");
        assert_eq!(p.name(t + 7 * 3600), "logs-2026.11.29");
        let mut p = IndexPattern::parse("w-%G.%V-%j-%y-%H%M%S-100%%").unwrap();
        assert_eq!(p.name(t), "w-2026.48-332-26-170000-100%");
        // 2027-01-01 is a Friday: ISO week 53 of 2026.
        assert_eq!(IndexPattern::parse("%G-%V").unwrap().name(at("2027-01-01T00:00:00Z")), "2026-53");
        assert_eq!(IndexPattern::parse("%G-%V").unwrap().name(at("2024-12-30T00:00:00Z")), "2025-01");
        assert_eq!(IndexPattern::parse("fixed").unwrap().name(t), "fixed");
        for bad in ["Logs", "a b", "x%", "%q", "_x", "a,b", ""] {
            assert!(IndexPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
