//! `--where` predicates on the parsed fields of `line` records (`s3s-filter --where`), and the
//! lookup of a field by name in a record's raw `fields` object (also used by the publishers'
//! `--key-field`).
//!
//! A predicate is `FIELD OP VALUE` with OP one of `=`, `!=`, `>=`, `<=`, `>`, `<`, `~` (regex
//! match) and `!~` (no match). FIELD is a member of the record's `fields` object; quoted (`'a b'`
//! or `"a=b"`) when it holds a character of an operator. A dotted name that is not itself a member
//! reaches into nested objects (`userIdentity.type` in a CloudTrail event).
//!
//! Hot path: the fields are never built into a tree. One walk over the top level of the raw
//! `fields` bytes finds every member the predicates name (a duplicate of one is refused, as the
//! record scanner refuses duplicate envelope members); string values are compared as they are
//! unless they hold escapes, numbers are read from their digits.

use regex::bytes::{Regex, RegexBuilder};

use crate::scan::{self, Raw, ScanError};

/// The member `name` of the raw JSON object `obj`: the member of that exact name, else, for a
/// dotted name, the path through nested objects (`a.b.c`: member `a.b.c`, else `a` then `b.c`,
/// else `a.b` then `c`). Positions are relative to `obj`.
pub fn lookup(obj: &[u8], name: &[u8], key_buf: &mut Vec<u8>) -> Result<Option<Raw>, ScanError> {
    if let Some(v) = scan::object_member(obj, name, key_buf)? {
        return Ok(Some(v));
    }
    nested(obj, name, key_buf)
}

/// The dotted-path part of [`lookup`] (the exact member is known to be missing).
fn nested(obj: &[u8], name: &[u8], key_buf: &mut Vec<u8>) -> Result<Option<Raw>, ScanError> {
    for (i, _) in name.iter().enumerate().filter(|(_, b)| **b == b'.') {
        let (head, rest) = (&name[..i], &name[i + 1..]);
        if let Some(v) = scan::object_member(obj, head, key_buf)?
            && obj[v.start] == b'{'
            && let Some(inner) = lookup(&obj[v.start..v.end], rest, key_buf)?
        {
            return Ok(Some(Raw { start: v.start + inner.start, end: v.start + inner.end, ..inner }));
        }
    }
    Ok(None)
}

/// A comparison.
#[derive(Debug)]
enum Op {
    Eq(Operand),
    Ne(Operand),
    Lt(Bound),
    Le(Bound),
    Gt(Bound),
    Ge(Bound),
    Match(Regex),
    NoMatch(Regex),
}

/// The right-hand side of an ordering: a number, or a time (RFC 3339, compared as a time:
/// `@timestamp>=2019-12-04T21:00:00Z`).
#[derive(Debug, Clone, Copy)]
enum Bound {
    Num(f64),
    /// Milliseconds since the epoch.
    Time(i64),
}

/// The right-hand side of `=` and `!=`: its text, and its number when it is one.
#[derive(Debug)]
struct Operand {
    text: Vec<u8>,
    num: Option<f64>,
}

/// One `--where` expression.
#[derive(Debug)]
struct Predicate {
    /// The field's name (quotes removed).
    name: Vec<u8>,
    op: Op,
}

/// Every `--where` of a run: all must hold.
#[derive(Debug, Default)]
pub struct Where {
    preds: Vec<Predicate>,
    /// Per predicate, the value found in the current record (reused).
    found: Vec<Option<Raw>>,
    /// A predicate whose member was seen twice in the current record.
    dup: Option<usize>,
    key_buf: Vec<u8>,
    scratch: Vec<u8>,
}

/// Why a record could not be tested.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WhereError {
    /// A member a predicate reads is in `fields` twice.
    #[error("duplicate {0:?} member in \"fields\"")]
    Duplicate(String),
    #[error("{0}")]
    Scan(#[from] ScanError),
}

const OPERATORS: &[(&str, u8)] = &[("!=", 1), ("!~", 2), (">=", 3), ("<=", 4), ("=", 5), (">", 6), ("<", 7), ("~", 8)];

/// Split `FIELD OP VALUE`.
fn split(expr: &str) -> Result<(String, u8, &str), String> {
    let (name, rest) = match expr.as_bytes().first() {
        Some(&q @ (b'\'' | b'"')) => match expr[1..].find(q as char) {
            Some(end) => (expr[1..1 + end].to_string(), &expr[end + 2..]),
            None => return Err(format!("{expr:?}: unterminated quote")),
        },
        _ => {
            let at = expr.find(['=', '!', '<', '>', '~']).unwrap_or(expr.len());
            (expr[..at].trim().to_string(), &expr[at..])
        }
    };
    if name.is_empty() {
        return Err(format!("{expr:?}: no field name"));
    }
    let rest = rest.trim_start();
    for (op, code) in OPERATORS {
        if let Some(value) = rest.strip_prefix(op) {
            return Ok((name, *code, value));
        }
    }
    Err(format!("{expr:?}: want FIELD=VALUE, FIELD!=VALUE, FIELD>=N, FIELD<=N, FIELD>N, FIELD<N, FIELD~REGEX or FIELD!~REGEX"))
}

impl Where {
    /// Compile the `--where` expressions (`ignore_case` for the regexes).
    pub fn new(exprs: &[String], ignore_case: bool) -> Result<Where, String> {
        let mut preds = Vec::with_capacity(exprs.len());
        for expr in exprs {
            let (name, code, value) = split(expr)?;
            let number = || {
                value.trim().parse::<f64>().ok().filter(|n| n.is_finite()).ok_or_else(|| format!("{expr:?}: {value:?} is not a number"))
            };
            let bound = || match number() {
                Ok(n) => Ok(Bound::Num(n)),
                Err(_) => crate::clock::parse_ms(value.trim().as_bytes())
                    .map(Bound::Time)
                    .ok_or_else(|| format!("{expr:?}: {value:?} is neither a number nor an RFC 3339 time")),
            };
            let regex = || {
                RegexBuilder::new(value).case_insensitive(ignore_case).build().map_err(|e| format!("{expr:?}: invalid regex: {e}"))
            };
            let operand = || Operand { text: value.as_bytes().to_vec(), num: number().ok() };
            let op = match code {
                1 => Op::Ne(operand()),
                2 => Op::NoMatch(regex()?),
                3 => Op::Ge(bound()?),
                4 => Op::Le(bound()?),
                5 => Op::Eq(operand()),
                6 => Op::Gt(bound()?),
                7 => Op::Lt(bound()?),
                _ => Op::Match(regex()?),
            };
            preds.push(Predicate { name: name.into_bytes(), op });
        }
        let found = vec![None; preds.len()];
        Ok(Where { preds, found, dup: None, key_buf: Vec::new(), scratch: Vec::new() })
    }

    /// No predicate at all.
    pub fn is_empty(&self) -> bool {
        self.preds.is_empty()
    }

    /// Does every predicate hold for the raw `fields` object `obj`? `None` (a record without
    /// fields): none holds. A field that is missing makes its predicate false, whatever its
    /// operator (`!=` too). (The stage itself collects the members while the record scanner
    /// checks them: [`Where::begin`], [`Where::see`], [`Where::finish`].)
    pub fn holds(&mut self, obj: Option<&[u8]>) -> Result<bool, WhereError> {
        let Some(obj) = obj else { return Ok(false) };
        self.begin();
        let mut key_buf = std::mem::take(&mut self.key_buf);
        let walked = scan::object_members(obj, &mut key_buf, |k, v| {
            self.see(k, v);
            true
        });
        self.key_buf = key_buf;
        walked?;
        let whole = Raw { start: 0, end: obj.len(), is_string: false, escaped: false };
        self.finish(obj, Some(whole), None)
    }

    /// A new record: forget the members seen.
    #[inline]
    pub fn begin(&mut self) {
        self.found.iter_mut().for_each(|f| *f = None);
        self.dup = None;
    }

    /// A member of the record's `fields` (`v`'s positions in the bytes later given to
    /// [`Where::finish`]).
    #[inline]
    pub fn see(&mut self, k: &[u8], v: Raw) {
        for (i, p) in self.preds.iter().enumerate() {
            if p.name == k {
                if self.found[i].is_some() {
                    self.dup.get_or_insert(i);
                }
                self.found[i] = Some(v);
            }
        }
    }

    /// Every member seen: does every predicate hold? `fields` is the record's `fields` object
    /// in `rec` (`None`: the record has none, and no predicate holds); `timestamp` its
    /// `@timestamp`, which FIELD `@timestamp` names when `fields` has no member of that name.
    pub fn finish(&mut self, rec: &[u8], fields: Option<Raw>, timestamp: Option<Raw>) -> Result<bool, WhereError> {
        let Some(f) = fields else { return Ok(false) };
        if let Some(i) = self.dup {
            return Err(WhereError::Duplicate(String::from_utf8_lossy(&self.preds[i].name).into_owned()));
        }
        for i in 0..self.preds.len() {
            let ok = match self.found[i] {
                Some(v) => test(&self.preds[i].op, rec, v, &mut self.scratch),
                None if self.preds[i].name == b"@timestamp" => {
                    timestamp.is_some_and(|t| test(&self.preds[i].op, rec, t, &mut self.scratch))
                }
                None if self.preds[i].name.contains(&b'.') => {
                    let obj = &rec[f.start..f.end];
                    match nested(obj, &self.preds[i].name, &mut self.key_buf)? {
                        Some(v) => test(&self.preds[i].op, obj, v, &mut self.scratch),
                        None => false,
                    }
                }
                None => false,
            };
            if !ok {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The value as text: a string's content (decoded when it has escapes), else its JSON text.
#[inline]
fn text<'a>(obj: &'a [u8], v: Raw, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if v.is_string && v.escaped {
        scratch.clear();
        scan::unescape_into(v.content(obj), scratch);
        scratch
    } else {
        v.content(obj)
    }
}

/// The value as a number: a JSON number, or a string holding one.
#[inline]
fn number(obj: &[u8], v: Raw, scratch: &mut Vec<u8>) -> Option<f64> {
    let t = if v.is_string { text(obj, v, scratch) } else { &obj[v.start..v.end] };
    parse_number(t)
}

/// Digits (with a sign) the quick way, anything else through `str::parse`.
#[inline]
fn parse_number(t: &[u8]) -> Option<f64> {
    let (neg, digits) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        _ => (false, t),
    };
    if !digits.is_empty() && digits.len() <= 15 && digits.iter().all(u8::is_ascii_digit) {
        let n = digits.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')) as f64;
        return Some(if neg { -n } else { n });
    }
    std::str::from_utf8(t).ok()?.trim().parse::<f64>().ok().filter(|n| !n.is_nan())
}

/// How the value compares with the bound: as numbers, or as times (a string that is RFC 3339
/// text); `None` when it is neither.
#[inline]
fn order(obj: &[u8], v: Raw, b: Bound, scratch: &mut Vec<u8>) -> Option<std::cmp::Ordering> {
    match b {
        Bound::Num(n) => number(obj, v, scratch)?.partial_cmp(&n),
        Bound::Time(t) if v.is_string => Some(crate::clock::parse_ms(text(obj, v, scratch))?.cmp(&t)),
        Bound::Time(_) => None,
    }
}

#[inline]
fn test(op: &Op, obj: &[u8], v: Raw, scratch: &mut Vec<u8>) -> bool {
    let is_number = !v.is_string && matches!(obj[v.start], b'-' | b'0'..=b'9');
    let equal = |o: &Operand, scratch: &mut Vec<u8>| match o.num {
        Some(n) if is_number => parse_number(&obj[v.start..v.end]) == Some(n),
        _ => text(obj, v, scratch) == &o.text[..],
    };
    match op {
        Op::Eq(o) => equal(o, scratch),
        Op::Ne(o) => !equal(o, scratch),
        Op::Lt(b) => order(obj, v, *b, scratch).is_some_and(std::cmp::Ordering::is_lt),
        Op::Le(b) => order(obj, v, *b, scratch).is_some_and(std::cmp::Ordering::is_le),
        Op::Gt(b) => order(obj, v, *b, scratch).is_some_and(std::cmp::Ordering::is_gt),
        Op::Ge(b) => order(obj, v, *b, scratch).is_some_and(std::cmp::Ordering::is_ge),
        Op::Match(re) => re.is_match(text(obj, v, scratch)),
        Op::NoMatch(re) => !re.is_match(text(obj, v, scratch)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holds(exprs: &[&str], obj: &str) -> Result<bool, WhereError> {
        let exprs: Vec<String> = exprs.iter().map(|s| s.to_string()).collect();
        Where::new(&exprs, false).unwrap().holds(Some(obj.as_bytes()))
    }

    const CF: &str = r#"{"sc-status":503,"sc-bytes":392,"c-ip":"192.0.2.100","cs-method":"GET","cs(User-Agent)":"Mozilla/5.0 (bot)","q":null,"t":"a\tb","s":"200","f":-1.5e2,"ok":true,"n":{"a":{"b":"deep"}},"x.y":1}"#;

    #[test]
    fn operators() {
        assert_eq!(holds(&["sc-status>=500"], CF), Ok(true));
        assert_eq!(holds(&["sc-status>503"], CF), Ok(false));
        assert_eq!(holds(&["sc-status<=503", "sc-status<504", "sc-status>502"], CF), Ok(true));
        assert_eq!(holds(&["sc-status=503"], CF), Ok(true));
        assert_eq!(holds(&["sc-status=503.0"], CF), Ok(true));
        assert_eq!(holds(&["sc-status!=503"], CF), Ok(false));
        assert_eq!(holds(&["sc-status!=200"], CF), Ok(true));
        assert_eq!(holds(&["c-ip=192.0.2.100", "cs-method=GET"], CF), Ok(true));
        assert_eq!(holds(&["cs-method=get"], CF), Ok(false));
        assert_eq!(holds(&["cs(User-Agent)~bot"], CF), Ok(true));
        assert_eq!(holds(&["'cs(User-Agent)'~^Mozilla"], CF), Ok(true));
        assert_eq!(holds(&["cs(User-Agent)!~bot"], CF), Ok(false));
        assert_eq!(holds(&["t=a\tb"], CF), Ok(true));
        assert_eq!(holds(&["s>=200", "s=200"], CF), Ok(true));
        assert_eq!(holds(&["f<-100"], CF), Ok(true));
        assert_eq!(holds(&["q=null", "ok=true"], CF), Ok(true));
        assert_eq!(holds(&["c-ip>1"], CF), Ok(false));
        // Missing fields match nothing, != included.
        assert_eq!(holds(&["missing!=1"], CF), Ok(false));
        assert_eq!(holds(&["missing~."], CF), Ok(false));
        // Dotted names: an exact member first, else the path.
        assert_eq!(holds(&["n.a.b=deep"], CF), Ok(true));
        assert_eq!(holds(&["x.y=1"], CF), Ok(true));
        assert_eq!(holds(&["n.a.c=deep"], CF), Ok(false));
        assert!(matches!(holds(&["a=1"], r#"{"a":1,"a":2}"#), Err(WhereError::Duplicate(_))));
        assert_eq!(holds(&["b=1"], r#"{"a":1,"a":2,"b":1}"#), Ok(true));
        assert_eq!(Where::new(&["a=1".into()], false).unwrap().holds(None), Ok(false));
        // Times: an RFC 3339 bound compares times (fractions and offsets read, not the text).
        let t = r#"{"t":"2019-12-04T21:02:31.5Z","u":"2019-12-04T22:02:31+01:00","n":5}"#;
        assert_eq!(holds(&["t>2019-12-04T21:02:31Z", "t<2019-12-04T21:02:32Z"], t), Ok(true));
        assert_eq!(holds(&["u>=2019-12-04T21:02:31Z", "u<=2019-12-04T21:02:31Z"], t), Ok(true));
        assert_eq!(holds(&["n>=2019-12-04T21:02:31Z"], t), Ok(false));
        assert_eq!(holds(&["n<2019-12-04T21:02:31Z"], t), Ok(false));
    }

    #[test]
    fn the_records_timestamp() {
        let rec = br#"{"@timestamp":"2019-12-04T21:02:31Z","fields":{"a":1}}"#;
        let at = |pat: &[u8]| rec.windows(pat.len()).position(|w| w == pat).unwrap();
        let f = Raw { start: at(b"{\"a\""), end: rec.len() - 1, is_string: false, escaped: false };
        let ts = Raw { start: at(b"\"2019"), end: at(b",\"fields"), is_string: true, escaped: false };
        let one = Raw { start: at(b"1}"), end: at(b"1}") + 1, is_string: false, escaped: false };
        assert_eq!(&rec[f.start..f.end], br#"{"a":1}"#);
        let mut w = Where::new(&["@timestamp>=2019-12-04T21:00:00Z".into(), "a=1".into()], false).unwrap();
        w.begin();
        w.see(b"a", one);
        assert_eq!(w.finish(rec, Some(f), Some(ts)), Ok(true));
        w.begin();
        w.see(b"a", one);
        assert_eq!(w.finish(rec, Some(f), None), Ok(false));
        let mut w = Where::new(&["@timestamp<2019-12-04T21:00:00Z".into()], false).unwrap();
        w.begin();
        assert_eq!(w.finish(rec, Some(f), Some(ts)), Ok(false));
    }

    #[test]
    fn parse_errors() {
        for bad in ["", "=1", "a", "a>x", "a~(", "'a=1", "a>=", "\"\"=1", "a<2019-13-01T00:00:00Z"] {
            assert!(Where::new(&[bad.to_string()], false).is_err(), "{bad}");
        }
        let w = Where::new(&["\"a=b\"=c".to_string(), "x y = z".to_string()], false).unwrap();
        assert_eq!(w.preds[0].name, b"a=b");
        assert_eq!(w.preds[1].name, b"x y");
        assert!(matches!(&w.preds[1].op, Op::Eq(o) if o.text == b" z"));
    }

    #[test]
    fn lookups() {
        let mut kb = Vec::new();
        let obj = br#"{"a":{"b":1},"c\u0020d":"e"}"#;
        let v = lookup(obj, b"a.b", &mut kb).unwrap().unwrap();
        assert_eq!(&obj[v.start..v.end], b"1");
        let v = lookup(obj, b"c d", &mut kb).unwrap().unwrap();
        assert_eq!(v.content(obj), b"e");
        assert_eq!(lookup(obj, b"z", &mut kb).unwrap(), None);
    }
}
