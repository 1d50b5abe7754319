//! `s3s-filter`: grep's habits on `line` records; every other record passes through.

use std::borrow::Cow;

use anyhow::Context;
use clap::Parser;
use regex::bytes::{Regex, RegexBuilder};

use crate::cli::{Common, Status, UsageError};
use crate::io::{Input, Output, report_bad_line};
use crate::predicate::{Where, WhereError};
use crate::scan;
use crate::shutdown::{DrainArgs, Shutdown};

const TOOL: &str = "s3s-filter";

/// Keep, drop or rewrite `line` records by regular expression, as grep would, and by their
/// parsed fields.
///
/// A `line` record is kept when any `-e` REGEX matches its text (all lines, when no -e is given)
/// and every --where EXPR holds for its `fields` (see s3s-parse); `-v` keeps the others instead.
/// Kept lines are rewritten by each `--replace` in turn. Every other record (`object`, `end`,
/// types it does not know) passes through unchanged and in order. Kept records are written byte
/// for byte as they came, unless a replacement changed them.
///
/// Regular expressions are those of the Rust `regex` crate: linear time, no backreferences, no
/// catastrophic backtracking. The text matched is the line itself (JSON escapes decoded: a tab is
/// `\t` in the regex); a record without `line` (s3s-parse --drop-line) is matched by its
/// `fields` object's JSON text, and --replace leaves it as it is.
///
/// --where EXPR tests one member of the record's `fields` object: FIELD=VALUE and FIELD!=VALUE
/// (a string's text, or a number's value when VALUE is a number: sc-status=200 matches 200 and
/// 200.0), FIELD>=N, FIELD<=N, FIELD>N, FIELD<N (numbers, and strings that hold one; times
/// when N is RFC 3339 text: `@timestamp>=2019-12-04T21:00:00Z`, where FIELD @timestamp is the
/// record's own unless `fields` has such a member), FIELD~REGEX and FIELD!~REGEX (a string's text, else the value's JSON text). VALUE is all that
/// follows the operator. Quote FIELD when it holds one of = ! < > ~ ('"a=b"=1'); a dotted FIELD
/// that is not itself a member reaches into nested objects (userIdentity.type). A record without
/// that field (or without `fields`) fails the test, whatever the operator: `FIELD!=VALUE` keeps
/// only the lines that have FIELD with another value (null counts as a value: `q=null`).
/// A record whose `fields` holds a tested member twice is malformed (below).
///
/// A malformed input line is reported on stderr with its number and skipped;
/// the exit status is then 1, and the `end` record of the object it is charged to (the object
/// of the last line before it whose `end` has not passed, else the next object named) is not
/// forwarded, so that object's message is not deleted (see s3s(7)). SIGTERM/SIGINT/SIGHUP: it
/// goes on until its input ends (upstream stops), for at most --drain-timeout, then exits 0.
#[derive(Debug, Parser)]
// -v is grep's --invert-match here, not --verbose (which keeps its long form).
#[command(mut_arg("verbose", |a| a.short(None)))]
#[command(
    name = "s3s-filter",
    version,
    after_long_help = "EXAMPLES:
    s3s-cat s3://logs/cf.gz | s3s-filter -e '\\t5[0-9][0-9]\\t'
    s3s-filter -e GET -e HEAD -i
    s3s-filter -v -e '^#'
    s3s-filter --replace '(\\d+\\.\\d+\\.\\d+)\\.\\d+' '$1.0'     # mask the last octet of IPs
    s3s-parse | s3s-filter --where 'sc-status>=500'                  # parsed fields
    s3s-filter --where 'cs-method=GET' --where 'cs(User-Agent)~(?i)bot'
    s3s-filter --where 'eventSource=s3.amazonaws.com' --where 'userIdentity.type!=AWSService'
    s3s-filter --where '@timestamp>=2019-12-04T21:00:00Z' --where '@timestamp<2019-12-04T22:00:00Z'
    jq -c 'select(.type != \"line\" or (.line | test(\"GET\")))'   # the same contract, with jq

ENVIRONMENT:
    S3S_LOG sets the log filter.

EXIT STATUS:
    0 success (also when stdout was closed early), 1 malformed input lines were skipped,
    2 usage error (e.g. an invalid regex or --where expression)."
)]
pub struct Args {
    /// Keep lines matching REGEX (repeatable: any match keeps the line).
    #[arg(short = 'e', long = "regexp", value_name = "REGEX")]
    pub regexps: Vec<String>,

    /// Keep lines whose parsed fields pass EXPR: FIELD=VALUE, FIELD!=VALUE, FIELD>=N, FIELD<=N,
    /// FIELD>N, FIELD<N (N a number or an RFC 3339 time), FIELD~REGEX, FIELD!~REGEX (repeatable:
    /// all must hold; with -e, both).
    #[arg(short = 'w', long = "where", value_name = "EXPR")]
    pub wheres: Vec<String>,

    /// Invert: keep the lines that -e and --where do not keep.
    #[arg(short = 'v', long)]
    pub invert_match: bool,

    /// Case-insensitive matching (for -e, --replace and the regexes of --where).
    #[arg(short = 'i', long)]
    pub ignore_case: bool,

    /// Rewrite kept lines: every match of REGEX becomes REPLACEMENT (`$1`, `${name}` for groups).
    /// Repeatable; applied in order.
    #[arg(long, num_args = 2, value_names = ["REGEX", "REPLACEMENT"])]
    pub replace: Vec<String>,

    #[command(flatten)]
    pub drain: DrainArgs,

    #[command(flatten)]
    pub common: Common,
}

/// The compiled filter.
pub struct Filter {
    keep: Option<Regex>,
    invert: bool,
    replace: Vec<(Regex, Vec<u8>)>,
    wheres: Where,
}

impl Filter {
    pub fn new(args: &Args) -> Result<Filter, UsageError> {
        let build = |pattern: &str| {
            RegexBuilder::new(pattern)
                .case_insensitive(args.ignore_case)
                .build()
                .map_err(|e| UsageError(format!("invalid regex: {e}")))
        };
        if args.regexps.is_empty() && args.replace.is_empty() && args.wheres.is_empty() {
            return Err(UsageError("give at least one -e REGEX, --where EXPR or --replace REGEX REPLACEMENT".into()));
        }
        let wheres = Where::new(&args.wheres, args.ignore_case).map_err(|e| UsageError(format!("--where {e}")))?;
        let keep = match args.regexps.as_slice() {
            [] => None,
            [one] => Some(build(one)?),
            many => {
                // Each compiled alone first, so an error names the pattern it is in.
                for p in many {
                    build(p)?;
                }
                let joined: Vec<String> = many.iter().map(|p| format!("(?:{p})")).collect();
                Some(build(&joined.join("|"))?)
            }
        };
        let replace = args
            .replace
            .chunks(2)
            .map(|pair| Ok((build(&pair[0])?, pair[1].as_bytes().to_vec())))
            .collect::<Result<_, UsageError>>()?;
        Ok(Filter { keep, invert: args.invert_match, replace, wheres })
    }

    /// Does a line with this text stay? `rec` and `fields` are for --where: the record and its
    /// scanned members (`fields`, whose members [`Where::see`] was shown, and `@timestamp`).
    #[inline]
    pub fn keeps(&mut self, text: &[u8], rec: &[u8], fields: &scan::Fields) -> Result<bool, WhereError> {
        let matched = match &self.keep {
            None => true,
            Some(re) => re.is_match(text),
        };
        let holds = !matched || self.wheres.is_empty() || self.wheres.finish(rec, fields.fields, fields.timestamp)?;
        Ok((matched && holds) != self.invert)
    }

    /// The line's text is read (by -e or --replace); --where alone needs only the fields.
    fn reads_text(&self) -> bool {
        self.keep.is_some() || !self.replace.is_empty()
    }

    /// `text` after every replacement, borrowed when nothing changed.
    pub fn rewrite<'a>(&self, text: &'a [u8]) -> Cow<'a, [u8]> {
        let mut cur = Cow::Borrowed(text);
        for (re, with) in &self.replace {
            if let Cow::Owned(new) = re.replace_all(&cur, with.as_slice()) {
                cur = Cow::Owned(new);
            }
        }
        cur
    }
}

/// What became of one record.
enum Outcome {
    /// Another type, passed through.
    Passed,
    /// A `line` the filter kept (written, rewritten when asked).
    Kept,
    /// A `line` the filter dropped.
    Dropped,
    /// Not a record (or one --where cannot test): reported, skipped.
    Bad(&'static str, Option<scan::ScanError>, Option<WhereError>),
    /// The `end` of an object a malformed line was charged to: not forwarded.
    Withheld(u64),
}

/// Which objects malformed lines are charged to: see the rule in s3s(7), "Malformed records".
/// An object is the raw bytes of its bucket, key and file.
#[derive(Default)]
struct Charges {
    /// The object of the last line record, while its `end` has not passed.
    cur: [Vec<u8>; 3],
    open: bool,
    /// A malformed line seen while no object was open, for the next one.
    pending: Option<u64>,
    /// Objects whose `end` is withheld, with the first malformed line's number.
    tainted: std::collections::HashMap<Vec<u8>, u64>,
}

fn object_id(parts: [&[u8]; 3]) -> Vec<u8> {
    let mut id = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in parts {
        id.extend_from_slice(p);
        id.push(0);
    }
    id
}

/// `a == b`, inline: the names compared per line are short, and a call into libc's `bcmp`
/// (three per line) cost 13% of this stage's time in `perf` (issue 16).
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut ac, mut bc) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ac).zip(&mut bc) {
        let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().expect("chunks of 8"));
        if word(x) != word(y) {
            return false;
        }
    }
    ac.remainder().iter().zip(bc.remainder()).all(|(x, y)| x == y)
}

impl Charges {
    /// Is `parts` the open object?
    #[inline(always)]
    fn is_current(&self, parts: [&[u8]; 3]) -> bool {
        self.open
            && same_bytes(&self.cur[2], parts[2])
            && same_bytes(&self.cur[1], parts[1])
            && same_bytes(&self.cur[0], parts[0])
    }

    /// A line record of this object.
    #[inline]
    fn line_of(&mut self, parts: [&[u8]; 3]) {
        if self.is_current(parts) {
            return;
        }
        for (dst, src) in self.cur.iter_mut().zip(parts) {
            dst.clear();
            dst.extend_from_slice(src);
        }
        self.open = true;
        if let Some(n) = self.pending.take() {
            self.tainted.entry(object_id(parts)).or_insert(n);
        }
    }

    /// Input line `n` is malformed.
    fn bad(&mut self, n: u64) {
        if self.open {
            let cur = [&self.cur[0][..], &self.cur[1][..], &self.cur[2][..]];
            self.tainted.entry(object_id(cur)).or_insert(n);
        } else {
            self.pending.get_or_insert(n);
        }
    }

    /// The `end` of this object: the first malformed line charged to it, if any.
    fn end_of(&mut self, parts: [&[u8]; 3]) -> Option<u64> {
        if self.is_current(parts) {
            self.open = false;
        }
        if self.pending.is_none() && self.tainted.is_empty() {
            return None;
        }
        let id = object_id(parts);
        if let Some(n) = self.pending.take() {
            self.tainted.entry(id.clone()).or_insert(n);
        }
        self.tainted.remove(&id)
    }
}

/// Filter one record (without its `\n`) into `out` (which gets the `\n` too when it is kept).
#[inline]
fn filter_record(
    filter: &mut Filter,
    rec: &[u8],
    out: &mut Vec<u8>,
    charges: &mut Charges,
    text_buf: &mut Vec<u8>,
    ty_buf: &mut Vec<u8>,
) -> Outcome {
    let scanned = if filter.wheres.is_empty() {
        scan::fields_scan(rec, filter.reads_text(), text_buf)
    } else {
        // The members --where reads are picked while the scanner checks `fields`: one pass.
        let decode_line = filter.reads_text();
        filter.wheres.begin();
        let wheres = &mut filter.wheres;
        scan::fields_scan_each(rec, decode_line, text_buf, |k, v| wheres.see(k, v))
    };
    let fields = match scanned {
        Ok(f) => f,
        Err(e) => return Outcome::Bad("", Some(e), None),
    };
    let raw_of = |v: Option<scan::Raw>| v.map_or(&[][..], |v| &rec[v.start..v.end]);
    let parts = [raw_of(fields.bucket), raw_of(fields.key), raw_of(fields.file)];
    let ty = scan::type_name(rec, fields.ty.expect("fields() checks type"), ty_buf);
    if ty != b"line" {
        if ty == b"end"
            && let Some(n) = charges.end_of(parts)
        {
            return Outcome::Withheld(n);
        }
        out.extend_from_slice(rec);
        out.push(b'\n');
        return Outcome::Passed;
    }
    charges.line_of(parts);
    let obj = fields.fields.map(|f| &rec[f.start..f.end]);
    // The text -e reads: the line, else (s3s-parse --drop-line) the fields' JSON.
    let (raw, text) = match (fields.line, obj) {
        (Some(l), _) if l.is_string => (Some(l), &text_buf[..]),
        (None, Some(obj)) => (None, obj),
        _ => return Outcome::Bad("line record without a string \"line\" or a \"fields\" object", None, None),
    };
    match filter.keeps(text, rec, &fields) {
        Ok(true) => {}
        Ok(false) => return Outcome::Dropped,
        Err(e) => return Outcome::Bad("", None, Some(e)),
    }
    let Some(raw) = raw else {
        out.extend_from_slice(rec);
        out.push(b'\n');
        return Outcome::Kept;
    };
    match filter.rewrite(text) {
        Cow::Borrowed(_) => out.extend_from_slice(rec),
        Cow::Owned(new) => {
            out.extend_from_slice(&rec[..raw.start]);
            scan::quote_into(&new, out);
            out.extend_from_slice(&rec[raw.end..]);
        }
    }
    out.push(b'\n');
    Outcome::Kept
}

/// Run `s3s-filter`.
///
/// One thread reads, filters and writes, record by record, straight from the stdin buffer into
/// the stdout buffer. Worker threads were tried: in the whole loop on 2 shared cores, where
/// every core already has a stage to run, their hand-overs cost more CPU than they saved
/// (README, "Measured").
pub fn run(args: Args) -> anyhow::Result<Status> {
    let mut filter = Filter::new(&args)?;
    // A signal changes nothing but the bound: the input ends when upstream stops.
    let shutdown = Shutdown::install(TOOL, args.drain.drain_timeout)?;
    let mut out = Output::stdout();
    let mut input = Input::stdin();
    input.stop_when(shutdown.expiry_flag());
    let (mut text_buf, mut ty_buf) = (Vec::with_capacity(4096), Vec::new());
    let (mut seen, mut kept, mut bad) = (0u64, 0u64, 0u64);
    let mut counted = crate::metrics::events::LinesFiltered::new();
    let mut charges = Charges::default();
    loop {
        if input.is_dry() {
            // Nothing waiting: flush, so records never wait while upstream is idle.
            out.flush()?;
            counted.emit(seen, kept);
        }
        let Some((number, rec)) = input.next_line().context("reading stdin")? else { break };
        if rec.is_empty() {
            continue;
        }
        match filter_record(&mut filter, rec, out.buf(), &mut charges, &mut text_buf, &mut ty_buf) {
            Outcome::Passed => out.record_done()?,
            Outcome::Kept => {
                seen += 1;
                kept += 1;
                out.record_done()?;
            }
            Outcome::Dropped => seen += 1,
            Outcome::Bad(why, e, w) => {
                bad += 1;
                let why = match (e, w) {
                    (Some(e), _) => e.to_string(),
                    (_, Some(w)) => w.to_string(),
                    _ => why.to_string(),
                };
                report_bad_line(TOOL, number, &why, rec);
                charges.bad(number);
            }
            Outcome::Withheld(n) => eprintln!(
                "{TOOL}: {}: end record withheld (malformed input line {n} was charged to this object)",
                crate::sink::location(rec)
            ),
        }
    }
    counted.emit(seen, kept);
    out.flush()?;
    tracing::info!("{seen} lines in, {kept} kept, {} dropped, {bad} malformed input lines", seen - kept);
    Ok(if bad > 0 { Status::Failed } else { Status::Ok })
}
