//! The runs log and the live-state files: what each stage did, written by every stage
//! ([`crate::metrics::run`]) and read by `s3s-status`. [`RunRecord`] is the one type both sides
//! use; members it does not know (from other versions) are kept.
//!
//! Where: the state directory is `S3S_STATE_DIR`, else systemd's `$STATE_DIRECTORY` (its first
//! entry), else `$XDG_STATE_HOME/s3s`, else `~/.local/state/s3s`. In it, `runs.log` (one JSON
//! line per finished run, rotated to `runs.log.1` above a size) and `live/<tool>-<pid>.json`
//! (one per running stage, rewritten as it runs, removed at exit).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The runs log is rotated (to `runs.log.1`, replacing it) once it is larger than this;
/// `S3S_RUNS_LOG_MAX_BYTES` overrides it.
pub const RUNS_LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// One stage's run: a line of the runs log (finished: `end`, `exit`, `outcome`) or a live-state
/// file (running: `updated`, and where its metrics are served).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub tool: String,
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub pid: u64,
    /// The parent process: the stages of one shell pipeline share it (`s3s-status` groups by it
    /// when there is no pipeline id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u64>,
    /// `S3S_PIPELINE`.
    #[serde(default)]
    pub pipeline: Option<String>,
    /// RFC 3339 UTC, milliseconds.
    pub start: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Live state: when it was last rewritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<String>,
    #[serde(default)]
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<u64>,
    /// `ok`, `broken-pipe`, `failed`, `error`, `usage`, `panic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Live state: where `--metrics-addr` is served, and `--metrics-file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_file: Option<String>,
    /// Every metric series of the stage: counters and gauges as numbers, histograms as
    /// `{"count": N, "sum": S}`; extra labels in the name (`name{k=v}`).
    #[serde(default)]
    pub counters: Map<String, Value>,
    /// Set by `s3s-status` on live records: whether the process still runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alive: Option<bool>,
    /// Members this version does not know, kept as they came.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RunRecord {
    /// When it started (ms since the epoch), 0 when unreadable.
    pub fn start_ms(&self) -> i64 {
        crate::clock::parse_ms(self.start.as_bytes()).unwrap_or(0)
    }

    /// When it ended, else its start.
    pub fn end_ms(&self) -> i64 {
        self.end.as_deref().and_then(|e| crate::clock::parse_ms(e.as_bytes())).unwrap_or_else(|| self.start_ms())
    }

    /// A counter (summed over its label values), 0 when absent.
    pub fn counter(&self, name: &str) -> u64 {
        self.counters
            .iter()
            .filter(|(k, _)| *k == name || k.strip_prefix(name).is_some_and(|rest| rest.starts_with('{')))
            .filter_map(|(_, v)| v.as_u64())
            .sum()
    }

    /// A histogram's (count, sum), zeros when absent.
    pub fn histogram(&self, name: &str) -> (u64, f64) {
        let h = self.counters.get(name);
        let count = h.and_then(|h| h.get("count")).and_then(Value::as_u64).unwrap_or(0);
        let sum = h.and_then(|h| h.get("sum")).and_then(Value::as_f64).unwrap_or(0.0);
        (count, sum)
    }
}

/// The state directory (see the module docs).
pub fn state_dir() -> PathBuf {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("S3S_STATE_DIR") {
        return d.into();
    }
    if let Some(d) = var("STATE_DIRECTORY") {
        let s = d.to_string_lossy().into_owned();
        return s.split(':').next().unwrap_or(&s).into();
    }
    if let Some(d) = var("XDG_STATE_HOME") {
        return PathBuf::from(d).join("s3s");
    }
    let home = var("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/state/s3s")
}

/// The runs log in `dir`.
pub fn runs_log(dir: &Path) -> PathBuf {
    dir.join("runs.log")
}

/// The directory of live-state files in `dir`.
pub fn live_dir(dir: &Path) -> PathBuf {
    dir.join("live")
}

/// Append one record to the runs log in `dir`, rotating it first when it is larger than `max`
/// bytes.
///
/// Safe with many processes: the line goes out in one `write(2)` on an `O_APPEND` descriptor
/// (so lines never interleave); rotation (rename to `runs.log.1`) happens under an exclusive
/// `flock` of `runs.lock`, re-checking the size under the lock so only one process rotates.
pub fn append(dir: &Path, record: &RunRecord, max: u64) -> io::Result<()> {
    let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
    line.push(b'\n');
    fs::create_dir_all(dir)?;
    let path = runs_log(dir);
    let open = || OpenOptions::new().create(true).append(true).open(&path);
    let mut f = open()?;
    if f.metadata()?.len() > max {
        let lock = OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("runs.lock"))?;
        lock.lock()?;
        if fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > max {
            fs::rename(&path, dir.join("runs.log.1"))?;
        }
        f = open()?;
        drop(lock);
    }
    // One write call: regular files take an O_APPEND write whole.
    let n = f.write(&line)?;
    if n != line.len() {
        return Err(io::Error::other(format!("short append ({n} of {} bytes)", line.len())));
    }
    Ok(())
}

/// Every record of the runs log (the rotated part first); lines that are not records (a torn
/// write after a crash, junk) are skipped.
pub fn read(dir: &Path) -> io::Result<Vec<RunRecord>> {
    read_counting(dir).map(|(runs, _)| runs)
}

/// Like [`read`], and how many non-empty lines were skipped as not run records: not JSON, not a
/// record, or one without a stage name or a readable start time (it would show as a run in
/// 1970). Read line by line: memory is that of the records, not of the file.
pub fn read_counting(dir: &Path) -> io::Result<(Vec<RunRecord>, u64)> {
    let mut runs = Vec::new();
    let mut skipped = 0;
    for_each_line(dir, |_, text| match parse_record(text) {
        Some(r) => runs.push(r),
        None => skipped += 1,
    })?;
    Ok((runs, skipped))
}

/// The run record on a line of the runs log, if it is one (see [`read_counting`]).
pub fn parse_record(text: &[u8]) -> Option<RunRecord> {
    serde_json::from_slice::<RunRecord>(text)
        .ok()
        .filter(|r| r.tool.starts_with("s3s-") && crate::clock::parse_ms(r.start.as_bytes()).is_some())
}

/// What grouping runs into pipelines needs of a record, read without its counters and other
/// members: `s3s-status` reads a large log in two passes, these first, then whole records only
/// for the runs it shows (memory is that of the shown runs, not of the log).
#[derive(Debug, Deserialize)]
pub struct RunKey<'a> {
    #[serde(borrow)]
    pub tool: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub host: std::borrow::Cow<'a, str>,
    #[serde(default)]
    pub pid: u64,
    #[serde(default)]
    pub ppid: Option<u64>,
    #[serde(default, borrow)]
    pub pipeline: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    pub start: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    pub end: Option<std::borrow::Cow<'a, str>>,
}

impl RunKey<'_> {
    /// The key of a line that [`parse_record`] would take, else `None`.
    pub fn parse(text: &[u8]) -> Option<RunKey<'_>> {
        // A line is taken only when it is a whole record: the cheap read must not accept what
        // the full one refuses (or the second pass would miss a run).
        let k: RunKey<'_> = serde_json::from_slice(text).ok()?;
        (k.tool.starts_with("s3s-") && crate::clock::parse_ms(k.start.as_bytes()).is_some()).then_some(k)
    }

    pub fn start_ms(&self) -> i64 {
        crate::clock::parse_ms(self.start.as_bytes()).unwrap_or(0)
    }

    pub fn end_ms(&self) -> i64 {
        self.end.as_deref().and_then(|e| crate::clock::parse_ms(e.as_bytes())).unwrap_or_else(|| self.start_ms())
    }
}

/// Longer lines of the runs log are read cut (a record is a few kB).
const MAX_LINE: usize = 1 << 20;

/// Call `f(index, line)` for every non-blank line of the runs log (the rotated part first),
/// without its newline; `index` counts those lines from 0, so a second pass over an unchanged
/// log sees the same indexes.
pub fn for_each_line(dir: &Path, mut f: impl FnMut(u64, &[u8])) -> io::Result<()> {
    use std::io::BufRead;
    let mut index = 0;
    for name in ["runs.log.1", "runs.log"] {
        let file = match fs::File::open(dir.join(name)) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let mut reader = io::BufReader::with_capacity(256 * 1024, file);
        let mut line = Vec::new();
        let mut emit = |line: &[u8]| {
            if !line.iter().all(u8::is_ascii_whitespace) {
                f(index, line);
                index += 1;
            }
        };
        loop {
            let buf = reader.fill_buf()?;
            if buf.is_empty() {
                emit(&line);
                break;
            }
            // A line longer than any record is kept cut (it then reads as junk): a log of
            // random bytes with no newline does not take its size in memory.
            let (take, used, done) = match memchr::memchr(b'\n', buf) {
                Some(p) => (p, p + 1, true),
                None => (buf.len(), buf.len(), false),
            };
            let room = MAX_LINE.saturating_sub(line.len());
            line.extend_from_slice(&buf[..take.min(room)]);
            reader.consume(used);
            if done {
                emit(&line);
                line.clear();
            }
        }
    }
    Ok(())
}

/// The live-state records in `dir` (unreadable files skipped), in no particular order.
pub fn read_live(dir: &Path) -> Vec<RunRecord> {
    let Ok(entries) = fs::read_dir(live_dir(dir)) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| fs::read(&p).ok().and_then(|t| serde_json::from_slice(&t).ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_unknown_members() {
        let line = r#"{"tool":"s3s-cat","host":"h","pid":7,"ppid":1,"pipeline":null,"start":"2026-11-28T17:00:00.000Z","end":"2026-11-28T17:00:01.500Z","seconds":1.5,"exit":0,"outcome":"ok","counters":{"s3s_lines_read_total":3,"s3s_x{reason=a}":2,"s3s_x{reason=b}":1},"future":[1]}"#;
        let r: RunRecord = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), line);
        assert_eq!((r.start_ms(), r.end_ms()), (1_795_885_200_000, 1_795_885_201_500));
        assert_eq!((r.counter("s3s_lines_read_total"), r.counter("s3s_x")), (3, 3));
    }
}
