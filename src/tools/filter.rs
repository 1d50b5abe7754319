//! `s3s-filter`: grep's habits on `line` records; every other record passes through.

use std::borrow::Cow;

use clap::Parser;
use regex::bytes::{Regex, RegexBuilder};

use crate::cli::{Common, Status, UsageError};
use crate::io::{Input, Output, report_bad_line};
use crate::scan;
use crate::shutdown::{DrainArgs, Shutdown};

const TOOL: &str = "s3s-filter";

/// Keep, drop or rewrite `line` records by regular expression, as grep would.
///
/// A `line` record is kept when any `-e` REGEX matches its text (all lines, when no -e is given);
/// `-v` keeps the others instead. Kept lines are rewritten by each `--replace` in turn. Every
/// other record (`object`, `end`, types it does not know) passes through unchanged and in order.
/// Kept records are written byte for byte as they came, unless a replacement changed them.
///
/// Regular expressions are those of the Rust `regex` crate: linear time, no backreferences, no
/// catastrophic backtracking. The text matched is the line itself (JSON escapes decoded: a tab is
/// `\t` in the regex). A malformed input line is reported on stderr with its number and skipped;
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
    jq -c 'select(.type != \"line\" or (.line | test(\"GET\")))'   # the same contract, with jq

ENVIRONMENT:
    S3S_LOG sets the log filter.

EXIT STATUS:
    0 success (also when stdout was closed early), 1 malformed input lines were skipped,
    2 usage error (e.g. an invalid regex)."
)]
pub struct Args {
    /// Keep lines matching REGEX (repeatable: any match keeps the line).
    #[arg(short = 'e', long = "regexp", value_name = "REGEX")]
    pub regexps: Vec<String>,

    /// Invert: keep the lines no REGEX matches.
    #[arg(short = 'v', long)]
    pub invert_match: bool,

    /// Case-insensitive matching (for -e and --replace).
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
}

impl Filter {
    pub fn new(args: &Args) -> Result<Filter, UsageError> {
        let build = |pattern: &str| {
            RegexBuilder::new(pattern)
                .case_insensitive(args.ignore_case)
                .build()
                .map_err(|e| UsageError(format!("invalid regex: {e}")))
        };
        if args.regexps.is_empty() && args.replace.is_empty() {
            return Err(UsageError("give at least one -e REGEX or --replace REGEX REPLACEMENT".into()));
        }
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
        Ok(Filter { keep, invert: args.invert_match, replace })
    }

    /// Does `text` stay?
    #[inline]
    pub fn keeps(&self, text: &[u8]) -> bool {
        match &self.keep {
            None => !self.invert,
            Some(re) => re.is_match(text) != self.invert,
        }
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

/// What one chunk of input came to (computed on a worker thread).
#[derive(Default)]
struct ChunkResult {
    out: Vec<u8>,
    lines: u64,
    seen: u64,
    kept: u64,
    /// (index of the line in the chunk, why, the line).
    bad: Vec<(u64, String, Vec<u8>)>,
    /// What the writer needs to charge malformed lines to objects, in input order (only where
    /// the object changes: usually one event per chunk).
    events: Vec<Ev>,
    /// The raw bucket, key and file of the object of the last line record (empty: none).
    cur: [Vec<u8>; 3],
    open: bool,
}

/// An event for [`Charges`]. An object is the raw bytes of its bucket, key and file.
enum Ev {
    /// Line records of this object follow.
    Open(Vec<u8>),
    /// `r.bad[i]` is malformed.
    Bad(usize),
    /// This object's `end` record is at `out[start..end]`.
    End(Vec<u8>, usize, usize),
}

fn object_id(parts: [&[u8]; 3]) -> Vec<u8> {
    let mut id = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for p in parts {
        id.extend_from_slice(p);
        id.push(0);
    }
    id
}

/// Which objects malformed lines were charged to (the writer thread, in input order): see the
/// rule in s3s(7), "Malformed records".
#[derive(Default)]
struct Charges {
    open: Option<Vec<u8>>,
    /// A malformed line seen while no object was open, for the next one.
    pending: Option<u64>,
    /// Objects whose `end` is withheld, with the first malformed line's number.
    tainted: std::collections::HashMap<Vec<u8>, u64>,
}

impl Charges {
    /// Apply one chunk's events; the byte ranges of `end` records to leave out of its output,
    /// with a message for each.
    fn apply(&mut self, r: &ChunkResult, first_line: u64) -> Vec<(usize, usize, String)> {
        let mut withheld = Vec::new();
        for ev in &r.events {
            match ev {
                Ev::Open(id) => {
                    if let Some(n) = self.pending.take() {
                        self.tainted.entry(id.clone()).or_insert(n);
                    }
                    self.open = Some(id.clone());
                }
                Ev::Bad(i) => {
                    let n = first_line + r.bad[*i].0 + 1;
                    match &self.open {
                        Some(o) => {
                            self.tainted.entry(o.clone()).or_insert(n);
                        }
                        None => {
                            self.pending.get_or_insert(n);
                        }
                    }
                }
                Ev::End(id, start, end) => {
                    if let Some(n) = self.pending.take() {
                        self.tainted.entry(id.clone()).or_insert(n);
                    }
                    if self.open.as_ref() == Some(id) {
                        self.open = None;
                    }
                    if let Some(n) = self.tainted.remove(id) {
                        let rec = &r.out[*start..*end - 1];
                        let why = format!(
                            "{}: end record withheld (malformed input line {n} was charged to this object)",
                            crate::sink::location(rec)
                        );
                        withheld.push((*start, *end, why));
                    }
                }
            }
        }
        withheld
    }
}

/// Filter every record of one chunk of whole lines into `r.out`.
fn filter_chunk(filter: &Filter, data: &[u8], r: &mut ChunkResult, text_buf: &mut Vec<u8>, ty_buf: &mut Vec<u8>) {
    let mut start = 0;
    while start < data.len() {
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
        let mut rec = &data[start..end];
        start = end + 1;
        let index = r.lines;
        r.lines += 1;
        if rec.last() == Some(&b'\r') {
            rec = &rec[..rec.len() - 1];
        }
        if rec.is_empty() {
            continue;
        }
        let fields = match scan::fields_decoding_line(rec, text_buf) {
            Ok(f) => f,
            Err(e) => {
                r.events.push(Ev::Bad(r.bad.len()));
                r.bad.push((index, e.to_string(), rec.to_vec()));
                continue;
            }
        };
        let raw_of = |v: Option<scan::Raw>| v.map_or(&[][..], |v| &rec[v.start..v.end]);
        let parts = [raw_of(fields.bucket), raw_of(fields.key), raw_of(fields.file)];
        let ty = scan::type_name(rec, fields.ty.expect("fields() checks type"), ty_buf);
        if ty != b"line" {
            if ty == b"end" {
                r.events.push(Ev::End(object_id(parts), r.out.len(), r.out.len() + rec.len() + 1));
                if r.open && r.cur.iter().zip(parts).all(|(a, b)| a[..] == *b) {
                    r.open = false;
                }
            }
            r.out.extend_from_slice(rec);
            r.out.push(b'\n');
            continue;
        }
        if !r.open || !r.cur.iter().zip(parts).all(|(a, b)| a[..] == *b) {
            for (dst, src) in r.cur.iter_mut().zip(parts) {
                dst.clear();
                dst.extend_from_slice(src);
            }
            r.open = true;
            r.events.push(Ev::Open(object_id(parts)));
        }
        let Some(raw) = fields.line.filter(|l| l.is_string) else {
            r.events.push(Ev::Bad(r.bad.len()));
            r.bad.push((index, "line record without a string \"line\"".into(), rec.to_vec()));
            continue;
        };
        r.seen += 1;
        let text = &text_buf[..];
        if !filter.keeps(text) {
            continue;
        }
        r.kept += 1;
        match filter.rewrite(text) {
            Cow::Borrowed(_) => r.out.extend_from_slice(rec),
            Cow::Owned(new) => {
                r.out.extend_from_slice(&rec[..raw.start]);
                scan::quote_into(&new, &mut r.out);
                r.out.extend_from_slice(&rec[raw.end..]);
            }
        }
        r.out.push(b'\n');
    }
}

/// Run `s3s-filter`.
///
/// Chunks of whole lines (cut by the stdin reader thread) are filtered on worker threads, one
/// chunk each, and written in input order by this thread: the per-line work (scan, decode,
/// regex) uses both cores when they are free, and the output is the same, byte for byte, as
/// a sequential filter's.
pub fn run(args: Args) -> anyhow::Result<Status> {
    use std::sync::{Arc, Mutex, mpsc};
    let filter = Arc::new(Filter::new(&args)?);
    // A signal changes nothing but the bound: the input ends when upstream stops.
    let shutdown = Shutdown::install(TOOL, args.drain.drain_timeout)?;
    let mut out = Output::stdout();
    let mut input = Input::stdin();
    input.stop_when(shutdown.expiry_flag());
    let recycle = input.recycler();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4);
    let (work_tx, work_rx) = mpsc::sync_channel::<(u64, Vec<u8>, usize)>(workers * 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    let (done_tx, done_rx) = mpsc::sync_channel::<(u64, ChunkResult)>(workers * 2);
    let read_error: Arc<Mutex<Option<std::io::Error>>> = Arc::default();
    // Output buffers go back to the workers once written (no fresh large allocation per chunk:
    // those are mmap'd and page-faulted anew each time).
    let (pool_tx, pool_rx) = mpsc::sync_channel::<Vec<u8>>(workers * 4);
    let pool_rx = Arc::new(Mutex::new(pool_rx));
    // The threads are not joined: when this thread returns (the end, or a closed stdout), the
    // process exits, whatever they are waiting for.
    let re = read_error.clone();
    std::thread::Builder::new().name("dispatch".into()).spawn(move || {
        let mut seq = 0u64;
        loop {
            match input.next_chunk() {
                Ok(Some((buf, len))) => {
                    if work_tx.send((seq, buf, len)).is_err() {
                        return;
                    }
                    seq += 1;
                }
                Ok(None) => return,
                Err(e) => {
                    *re.lock().expect("not poisoned") = Some(e);
                    return;
                }
            }
        }
    })?;
    for i in 0..workers {
        let (work_rx, done_tx, recycle, filter) = (work_rx.clone(), done_tx.clone(), recycle.clone(), filter.clone());
        let pool_rx = pool_rx.clone();
        std::thread::Builder::new().name(format!("filter-{i}")).spawn(move || {
            let (mut text_buf, mut ty_buf) = (Vec::with_capacity(4096), Vec::new());
            loop {
                let job = work_rx.lock().expect("not poisoned").recv();
                let Ok((seq, buf, len)) = job else { return };
                let mut out = pool_rx.lock().expect("not poisoned").try_recv().unwrap_or_default();
                out.clear();
                out.reserve(len);
                let mut r = ChunkResult { out, ..Default::default() };
                r.events.clear();
                filter_chunk(&filter, &buf[..len], &mut r, &mut text_buf, &mut ty_buf);
                let _ = recycle.try_send(buf);
                if done_tx.send((seq, r)).is_err() {
                    return;
                }
            }
        })?;
    }
    drop(done_tx);
    let (mut seen, mut kept, mut bad, mut lines) = (0u64, 0u64, 0u64, 0u64);
    let mut counted = crate::metrics::events::LinesFiltered::new();
    // Results in input order.
    let mut waiting = std::collections::BTreeMap::new();
    let mut next = 0u64;
    let mut charges = Charges::default();
    loop {
        let (seq, r) = match done_rx.try_recv() {
            Ok(x) => x,
            Err(mpsc::TryRecvError::Empty) => {
                // Nothing ready: flush, so records never wait while upstream is idle.
                out.flush()?;
                counted.emit(seen, kept);
                match recv_until_expired(&done_rx, &shutdown) {
                    Some(x) => x,
                    None => break,
                }
            }
            Err(mpsc::TryRecvError::Disconnected) => break,
        };
        waiting.insert(seq, r);
        while let Some(r) = waiting.remove(&next) {
            next += 1;
            for (index, why, rec) in &r.bad {
                report_bad_line(TOOL, lines + index + 1, why, rec);
            }
            bad += r.bad.len() as u64;
            let withheld = if r.events.is_empty() { Vec::new() } else { charges.apply(&r, lines) };
            lines += r.lines;
            seen += r.seen;
            kept += r.kept;
            let mut from = 0;
            for (start, end, why) in withheld {
                eprintln!("{TOOL}: {why}");
                out.buf().extend_from_slice(&r.out[from..start]);
                from = end;
            }
            out.buf().extend_from_slice(&r.out[from..]);
            out.record_done()?;
            let _ = pool_tx.try_send(r.out);
        }
    }
    if let Some(e) = read_error.lock().expect("not poisoned").take() {
        return Err(anyhow::Error::new(e).context("reading stdin"));
    }
    counted.emit(seen, kept);
    out.flush()?;
    tracing::info!("{seen} lines in, {kept} kept, {} dropped, {bad} malformed input lines", seen - kept);
    Ok(if bad > 0 { Status::Failed } else { Status::Ok })
}

/// The next result, or `None` once all are in or the drain expired (see [`crate::shutdown`]).
fn recv_until_expired<T>(rx: &std::sync::mpsc::Receiver<T>, shutdown: &Shutdown) -> Option<T> {
    loop {
        match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(x) => return Some(x),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if shutdown.expired() => return None,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}
