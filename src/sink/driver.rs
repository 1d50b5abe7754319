//! The driver itself: the stdin thread (read, scan, publish lines, queue the other records) and
//! the main thread (wait for the end of input, a signal or a closed stdout; drain; the final
//! accounting and the exit status). See the module docs of [`crate::sink`].

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::objects::Objects;
use super::record::{Kind, kind, scan_record};
use super::watermark::{Event, NOT_SENT, Room, STAMP_LINES, State, Watermark};
use super::{Control, Line, MAX_WINDOW, PublishError, Publisher, Reporter, Stage, Ticket, Value};
use crate::cli::Status;
use crate::io::{Input, Output, report_bad_line};
use crate::scan::Raw;
use crate::signals::Signals;

/// Dry-run descriptions are written to stderr in chunks of about this size.
const DRY_BUF: usize = 64 * 1024;

/// The stdin thread: read, scan, publish lines, queue the rest.
fn read_loop<P: Publisher>(sh: &Watermark, mut publisher: P, field: Option<Vec<u8>>, all_dry: bool) -> anyhow::Result<()> {
    let tool = sh.tool;
    let mut input = Input::stdin();
    let mut text = Vec::with_capacity(4096);
    let mut ty_scratch = Vec::new();
    let mut key_buf = Vec::new();
    let mut dry: Vec<u8> = Vec::new();
    let mut objects = Objects::new();
    let mut published = 0u64;
    // The hand-over stamp (see `Watermark::sent`) and how many more lines may use it.
    let mut stamp = 0u32;
    let mut stamp_left = 0u32;
    let bad = || {
        sh.bad.fetch_add(1, Ordering::Relaxed);
    };
    let field = field.as_deref();
    let write_dry = |dry: &mut Vec<u8>| {
        if !dry.is_empty() {
            let _ = std::io::stderr().lock().write_all(dry);
            dry.clear();
        }
    };
    loop {
        if input.is_dry() {
            sh.flush_stdout();
            write_dry(&mut dry);
            // The next line comes after a wait: read the clock again.
            stamp_left = 0;
        }
        if sh.stop.load(Ordering::Acquire) {
            break;
        }
        let Some((number, rec)) = input.next_line().context("reading stdin")? else { break };
        if sh.stop.load(Ordering::Acquire) {
            break;
        }
        if rec.is_empty() {
            continue;
        }
        let s = match scan_record(rec, field, &mut text) {
            Ok(s) => s,
            Err(e) => {
                write_dry(&mut dry);
                report_bad_line(tool, number, &e.to_string(), rec);
                objects.malformed(sh, format!("stdin line {number} malformed: {e}"));
                bad();
                continue;
            }
        };
        match kind(rec, s.ty.expect("scan_record checks type"), &mut ty_scratch) {
            Kind::Line => {
                let has_line = s.line.is_some_and(|l| l.is_string);
                if !has_line && (s.line.is_some() || s.fields.is_none()) {
                    write_dry(&mut dry);
                    let why = "line record without a string \"line\" or a \"fields\" object";
                    report_bad_line(tool, number, why, rec);
                    objects.malformed(sh, format!("stdin line {number}: {why}"));
                    bad();
                    continue;
                }
                // The field asked for: a top-level member, else a member of `fields`.
                let mut field_raw = s.field;
                if let (Some(name), None, Some(f)) = (field, field_raw, s.fields) {
                    match crate::predicate::lookup(&rec[f.start..f.end], name, &mut key_buf) {
                        Ok(v) => field_raw = v.map(|v| Raw { start: f.start + v.start, end: f.start + v.end, ..v }),
                        Err(e) => {
                            write_dry(&mut dry);
                            report_bad_line(tool, number, &e.to_string(), rec);
                            objects.malformed(sh, format!("stdin line {number} malformed: {e}"));
                            bad();
                            continue;
                        }
                    }
                }
                let value = |r: Option<Raw>| r.map(|raw| Value { rec, raw });
                let line = Line {
                    record: rec,
                    text: match (has_line, s.fields) {
                        (false, Some(f)) => &rec[f.start..f.end],
                        _ => &text[..],
                    },
                    has_line,
                    input_line: number,
                    bucket: value(s.bucket),
                    key: value(s.key),
                    file: value(s.file),
                    n: value(s.n),
                    field: value(field_raw),
                    fields: value(s.fields),
                    timestamp: value(s.timestamp),
                };
                if all_dry || s.dry_run {
                    publisher.describe(&line, &mut dry);
                    dry.push(b'\n');
                    if dry.len() >= DRY_BUF {
                        write_dry(&mut dry);
                    }
                    continue;
                }
                let slot = objects.slot_for_line(sh, rec, &s, published);
                match sh.wait_for_room(published) {
                    Room::Free => {}
                    Room::Waited => stamp_left = 0,
                    Room::Stop => break,
                }
                if stamp_left == 0 {
                    stamp = sh.stamp_now();
                    stamp_left = STAMP_LINES;
                }
                stamp_left -= 1;
                sh.sent[(published & (sh.sent.len() as u64 - 1)) as usize].store(stamp, Ordering::Relaxed);
                let ticket = Ticket::new(published, slot);
                published += 1;
                sh.published.store(published, Ordering::Release);
                match publisher.publish(&line, ticket) {
                    Ok(()) => {}
                    Err(PublishError::Rejected(why)) => sh.complete(ticket, Some(&why)),
                    Err(PublishError::Fatal(why)) => {
                        sh.complete(ticket, Some(&why));
                        write_dry(&mut dry);
                        anyhow::bail!("{why}");
                    }
                }
            }
            Kind::End => {
                let slot = objects.take(sh, rec, &s);
                sh.push(rec, published, true, slot);
            }
            Kind::Other => sh.push(rec, published, false, None),
        }
    }
    write_dry(&mut dry);
    Ok(())
}

/// Run a publishing stage: `start` builds the publisher (given the [`Reporter`] its delivery
/// reports go to) and its [`Control`]; the driver does the rest (see the module docs).
pub fn run<P, F>(stage: Stage<'_>, start: F) -> anyhow::Result<Status>
where
    P: Publisher,
    F: FnOnce(Reporter) -> anyhow::Result<(P, Arc<dyn Control>)>,
{
    let Stage { tool, args, field, hold } = stage;
    let window = args.max_in_flight.clamp(1, MAX_WINDOW);
    let ring = window.next_power_of_two();
    let (events, rx) = mpsc::channel();
    let shared = Arc::new(Watermark {
        tool,
        state: Mutex::new(State {
            out: Output::stdout(),
            done: vec![false; ring as usize].into_boxed_slice(),
            mask: ring - 1,
            wm: 0,
            pending: VecDeque::new(),
            pending_bytes: 0,
            slots: Vec::new(),
            free_slots: Vec::new(),
            wake_at: None,
            wake_on_pending: false,
            draining: false,
            closed: false,
            poisoned: false,
            failed_lines: 0,
            withheld: 0,
            forwarded: 0,
            last_stamp: NOT_SENT,
        }),
        cv: Condvar::new(),
        window,
        wm: AtomicU64::new(0),
        published: AtomicU64::new(0),
        bad: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        events: events.clone(),
        sent: (0..ring).map(|_| AtomicU32::new(NOT_SENT)).collect(),
        epoch: Instant::now(),
        hold: if args.dry_run { None } else { hold },
    });
    let (publisher, control) = start(Reporter(shared.clone()))?;
    let sig = Signals::install().context("installing signal handlers")?;
    let mut seen = 0;

    let reader = {
        let sh = shared.clone();
        let field = field.map(String::into_bytes);
        let all_dry = args.dry_run;
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                let result = read_loop(&sh, publisher, field, all_dry);
                let _ = sh.events.send(Event::InputDone(result));
            })
            .context("starting the stdin thread")?
    };
    drop(events);

    // Wait for the end of input, a signal or a closed stdout; flush stdout now and then so that
    // forwarded records never sit in the buffer while deliveries trickle in.
    let input_result = loop {
        if sig.count() > seen {
            seen = sig.count();
            tracing::info!("{}: stop reading, drain what is in flight", sig.last());
            break None;
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::InputDone(r)) => break Some(r),
            Ok(Event::Stdout(e)) => return stdout_failed(&shared, &*control, e),
            Err(mpsc::RecvTimeoutError::Timeout) if reader.is_finished() => match rx.try_recv() {
                Ok(Event::InputDone(r)) => break Some(r),
                // The stdin thread ended without saying why (a panic).
                _ => break Some(Err(anyhow::anyhow!("the stdin thread died"))),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => shared.flush_stdout(),
            Err(mpsc::RecvTimeoutError::Disconnected) => break None,
        }
    };
    // Signals so far started the drain; only a later one may cut it short.
    let seen = sig.count().max(seen);
    shared.stop.store(true, Ordering::Release);
    {
        let _st = shared.lock();
        shared.cv.notify_all();
    }
    if input_result.is_some() {
        let _ = reader.join();
    }

    // Drain: wait for every published line's report, at most --drain-timeout.
    let drain_timeout = args.drain.drain_timeout;
    let deadline = Instant::now() + drain_timeout;
    let mut publisher_idle = false;
    loop {
        {
            let mut st = shared.lock();
            if st.wm >= shared.published.load(Ordering::Acquire) {
                break;
            }
            if publisher_idle {
                // The publisher holds nothing, but its last reports are still being handed over.
                st.draining = true;
                let _ = shared.cv.wait_timeout(st, Duration::from_millis(20));
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if sig.count() >= 2 && sig.count() > seen {
            // A second signal cuts the drain short (a first one only asks for the drain, which
            // the end of input already started: under systemd it comes with the end of input).
            tracing::warn!("{}: drain cut short", sig.last());
            break;
        }
        if let Ok(Event::Stdout(e)) = rx.try_recv() {
            return stdout_failed(&shared, &*control, e);
        }
        publisher_idle = control.flush((deadline - now).min(Duration::from_millis(100)));
    }

    // Final accounting: whatever still waits is withheld; nothing is written after this.
    let mut st = shared.lock();
    let unconfirmed = shared.published.load(Ordering::Acquire).saturating_sub(st.wm);
    let waiting = st.pending.len();
    for p in &st.pending {
        if let Some(h) = &p.held {
            h.release(&p.rec);
        }
    }
    st.pending.clear();
    if let Some(h) = &shared.hold {
        h.stop();
    }
    shared.flush(&mut st);
    st.closed = true;
    let (failed_lines, withheld, forwarded) = (st.failed_lines, st.withheld, st.forwarded);
    drop(st);
    if let Ok(Event::Stdout(e)) = rx.try_recv() {
        return stdout_failed(&shared, &*control, e);
    }
    if unconfirmed > 0 {
        control.abort();
        eprintln!(
            "{tool}: {unconfirmed} line{} unconfirmed after the {:?} drain timeout; {waiting} record{} behind them withheld",
            if unconfirmed == 1 { "" } else { "s" },
            drain_timeout,
            if waiting == 1 { "" } else { "s" },
        );
    }
    if failed_lines > 0 {
        eprintln!(
            "{tool}: {failed_lines} line{} failed delivery; {withheld} end record{} withheld",
            if failed_lines == 1 { "" } else { "s" },
            if withheld == 1 { "" } else { "s" },
        );
    }
    tracing::info!(
        "{} lines published, {forwarded} records forwarded, {failed_lines} failed, {withheld} withheld",
        shared.published.load(Ordering::Relaxed)
    );
    match input_result {
        Some(Err(e)) if crate::cli::is_broken_pipe(&e) => return Ok(Status::Ok),
        Some(Err(e)) => return Err(e),
        _ => {}
    }
    let bad = shared.bad.load(Ordering::Relaxed);
    let clean = bad == 0 && failed_lines == 0 && withheld == 0 && unconfirmed == 0 && waiting == 0;
    Ok(if clean { Status::Ok } else { Status::Failed })
}

/// Writing stdout failed: publish nothing more and abandon what is in flight. A closed pipe
/// ends quietly with status 0 (rule 5 of `man/s3s.7`); any other error is an error.
fn stdout_failed(shared: &Watermark, control: &dyn Control, e: std::io::Error) -> anyhow::Result<Status> {
    shared.stop.store(true, Ordering::Release);
    {
        let mut st = shared.lock();
        st.closed = true;
        shared.cv.notify_all();
    }
    if let Some(h) = &shared.hold {
        h.stop();
    }
    control.abort();
    if e.kind() == std::io::ErrorKind::BrokenPipe { Ok(Status::Ok) } else { Err(anyhow::Error::new(e).context("writing stdout")) }
}
