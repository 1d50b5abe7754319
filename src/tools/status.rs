//! `s3s-status`: what the stages did lately and what the running ones are doing, from the runs
//! log and the live-state files every stage keeps in the state directory (see `crate::metrics`).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::{Map, Value, json};

use crate::cli::Status;
use crate::clock::rfc3339_ms;
use crate::metrics::{human_bytes, human_count};
use crate::runs::{self, RunRecord};

/// Show the last runs of the s3s stages, grouped per pipeline, and the stages running now.
///
/// Every stage (s3s-poll, s3s-cat, s3s-filter, the publishers, s3s-ack) appends one JSON line to
/// `runs.log` in the state directory when it exits, whatever the way: tool, host, pid, pipeline
/// id (`S3S_PIPELINE`), start, end, exit status and its counters. The log is rotated to
/// `runs.log.1` above 10 MiB; both are read. While it runs, a stage also keeps
/// `live/<tool>-<pid>.json` there, rewritten every --metrics-interval (5 s) with its counters
/// so far, and removed at exit; a file whose process is gone (killed with SIGKILL, say) is shown
/// as `gone`.
///
/// Stages are grouped into pipeline runs: those with the same `S3S_PIPELINE` (or, without it,
/// the same parent process, i.e. the same shell pipeline) whose run times overlap. Each row says
/// when the pipeline started, how long it took, its stages, the SQS messages received and
/// deleted, objects read, lines in (read) and out (kept by the filters), records published,
/// errors (malformed input lines, unreadable objects, failed deliveries and deletes, SQS receive
/// errors, messages not understood) and the worst exit status, with the stage that had it.
///
/// The state directory is `S3S_STATE_DIR`, else systemd's `$STATE_DIRECTORY`, else
/// `$XDG_STATE_HOME/s3s`, else `~/.local/state/s3s`.
#[derive(Debug, Parser)]
#[command(
    name = "s3s-status",
    version,
    after_long_help = "EXAMPLES:
    s3s-status                          # running stages, then the last 20 pipeline runs
    s3s-status -n 5 --stages            # the last 5, each stage on a line of its own
    s3s-status --pipeline cdn --json | jq '.pipelines[-1].totals'
    S3S_PIPELINE=cdn s3s-poll --once | s3s-cat | s3s-ack; s3s-status --pipeline cdn

ENVIRONMENT:
    S3S_STATE_DIR, STATE_DIRECTORY, XDG_STATE_HOME, HOME locate the state directory.

EXIT STATUS:
    0 shown (also when there is nothing to show), 1 the state directory could not be read,
    2 usage error."
)]
pub struct Args {
    /// How many pipeline runs to show (the most recent).
    #[arg(short = 'n', long = "last", value_name = "N", default_value_t = 20)]
    pub last: usize,

    /// Only the runs of pipeline ID (`S3S_PIPELINE`).
    #[arg(short, long, value_name = "ID")]
    pub pipeline: Option<String>,

    /// Also list every stage of each pipeline run.
    #[arg(short, long)]
    pub stages: bool,

    /// One JSON document for scripts: {"state_dir", "running": [...], "pipelines": [...]}, each
    /// pipeline with its totals and its stages' records as logged.
    #[arg(long)]
    pub json: bool,

    /// The state directory [default: see above].
    #[arg(long, value_name = "DIR", env = "S3S_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

/// The live-state records of the stages running now (and of those that died without a record,
/// marked `"alive": false`), by start time.
pub fn read_live(dir: &Path) -> Vec<RunRecord> {
    let this_host = crate::host::name().unwrap_or_default();
    let mut live = runs::read_live(dir);
    for m in &mut live {
        let alive = Path::new(&format!("/proc/{}", m.pid)).exists() && (m.host.is_empty() || m.host == this_host);
        m.alive = Some(alive);
    }
    live.sort_by_key(|m| (m.start_ms(), m.pid));
    live
}

const ERROR_COUNTERS: &[&str] = &[
    "s3s_invalid_input_lines_total",
    "s3s_object_errors_total",
    "s3s_delivery_failures_total",
    "s3s_sqs_delete_failures_total",
    "s3s_sqs_receive_errors_total",
    "s3s_sqs_messages_left_total{reason=not_understood}",
];

fn errors(m: &RunRecord) -> u64 {
    ERROR_COUNTERS.iter().map(|n| m.counter(n)).sum()
}

/// The order stages come in a pipeline, for display.
fn stage_rank(tool: &str) -> u8 {
    match tool {
        "s3s-poll" => 0,
        "s3s-cat" => 1,
        "s3s-filter" => 2,
        "s3s-ack" => 9,
        _ => 5,
    }
}

/// One pipeline run: stages that share a pipeline id (or a parent process) and overlap in time.
struct Group {
    key: String,
    pipeline: Option<String>,
    start: i64,
    end: i64,
    stages: Vec<RunRecord>,
}

impl Group {
    fn totals(&self) -> Map<String, Value> {
        let sum = |name: &str| self.stages.iter().map(|s| s.counter(name)).sum::<u64>();
        let has = |t: &str| self.stages.iter().any(|s| s.tool == t);
        let lines_in = sum("s3s_lines_read_total");
        let filters: Vec<u64> =
            self.stages.iter().filter(|s| s.tool == "s3s-filter").map(|s| s.counter("s3s_lines_kept_total")).collect();
        let lines_out = filters.iter().copied().min().unwrap_or(lines_in);
        let (exit, outcome, worst) = self
            .stages
            .iter()
            .map(|s| (s.exit.unwrap_or(0), s.outcome.as_deref().unwrap_or("?"), s.tool.as_str()))
            .max_by_key(|(e, _, _)| *e)
            .unwrap_or((0, "ok", ""));
        let mut t = Map::new();
        t.insert("messages_received".into(), sum("s3s_sqs_messages_received_total").into());
        t.insert("messages_deleted".into(), sum("s3s_sqs_messages_deleted_total").into());
        t.insert(
            "objects".into(),
            if has("s3s-cat") { sum("s3s_objects_read_total") } else { sum("s3s_objects_announced_total") }.into(),
        );
        t.insert("lines_in".into(), lines_in.into());
        t.insert("lines_out".into(), lines_out.into());
        t.insert("published".into(), sum("s3s_records_published_total").into());
        t.insert("errors".into(), self.stages.iter().map(errors).sum::<u64>().into());
        t.insert("exit".into(), exit.into());
        t.insert("outcome".into(), outcome.into());
        if exit != 0 {
            t.insert("failed_stage".into(), worst.into());
        }
        t
    }

    fn to_json(&self) -> Value {
        json!({
            "pipeline": self.pipeline,
            "start": rfc3339_ms(self.start),
            "end": rfc3339_ms(self.end),
            "seconds": (self.end - self.start) as f64 / 1000.0,
            "totals": self.totals(),
            "stages": self.stages,
        })
    }
}

/// Group records into pipeline runs, by start time.
fn group(mut runs: Vec<RunRecord>) -> Vec<Group> {
    runs.sort_by_key(RunRecord::start_ms);
    let mut groups: Vec<Group> = Vec::new();
    // The open group of each key (the last one started).
    let mut open: BTreeMap<String, usize> = BTreeMap::new();
    for r in runs {
        let pipeline = r.pipeline.clone();
        let key = group_key(pipeline.as_deref(), &r.host, r.ppid, r.pid);
        let (s, e) = (r.start_ms(), r.end_ms());
        // Overlapping (with a second's slack: stages start one after another).
        if let Some(&i) = open.get(&key)
            && s <= groups[i].end + 1000
        {
            let g = &mut groups[i];
            g.end = g.end.max(e);
            g.stages.push(r);
            continue;
        }
        open.insert(key.clone(), groups.len());
        groups.push(Group { key, pipeline, start: s, end: e, stages: vec![r] });
    }
    for g in &mut groups {
        g.stages.sort_by_key(|s| (stage_rank(&s.tool), s.start_ms()));
    }
    groups
}

/// The grouping key of a run (see [`group`]).
fn group_key(pipeline: Option<&str>, host: &str, ppid: Option<u64>, pid: u64) -> String {
    match (pipeline, ppid) {
        (Some(p), _) => format!("p:{p}"),
        (None, Some(pp)) => format!("pp:{host}:{pp}"),
        (None, None) => format!("pid:{host}:{pid}"),
    }
}

/// The records of the last `last` pipeline runs (of `pipeline`, if given), and how many lines
/// of the log are not run records. Two passes: the first reads only what grouping needs of each
/// record (times and the key, interned), the second reads whole records only for the runs shown.
/// Memory is then that of the shown runs and a few dozen bytes per record, not of the log (a
/// 1 GB log took 11 GB when every record was read whole; issue 12).
fn read_shown(dir: &std::path::Path, pipeline: Option<&str>, last: usize) -> std::io::Result<(Vec<RunRecord>, u64)> {
    let mut keys: HashMap<String, u32> = HashMap::new();
    // (start, end, key, line index) of every wanted record.
    let mut light: Vec<(i64, i64, u32, u64)> = Vec::new();
    let mut skipped = 0;
    runs::for_each_line(dir, |index, text| {
        let Some(k) = runs::RunKey::parse(text) else {
            skipped += 1;
            return;
        };
        if pipeline.is_some_and(|p| k.pipeline.as_deref() != Some(p)) {
            return;
        }
        let key = group_key(k.pipeline.as_deref(), &k.host, k.ppid, k.pid);
        let n = keys.len() as u32;
        let id = *keys.entry(key).or_insert(n);
        light.push((k.start_ms(), k.end_ms(), id, index));
    })?;
    drop(keys);
    // The same grouping as `group`, on the light records: which group each one joins.
    light.sort_by_key(|r| r.0);
    let mut group_of = Vec::with_capacity(light.len());
    let mut ends: Vec<i64> = Vec::new();
    let mut open: HashMap<u32, usize> = HashMap::new();
    for &(s, e, id, _) in &light {
        if let Some(&g) = open.get(&id)
            && s <= ends[g] + 1000
        {
            ends[g] = ends[g].max(e);
            group_of.push(g);
            continue;
        }
        open.insert(id, ends.len());
        group_of.push(ends.len());
        ends.push(e);
    }
    let first_shown = ends.len().saturating_sub(last);
    let mut shown: Vec<u64> = light.iter().zip(&group_of).filter(|(_, g)| **g >= first_shown).map(|(r, _)| r.3).collect();
    drop(light);
    shown.sort_unstable();
    let mut runs = Vec::with_capacity(shown.len());
    runs::for_each_line(dir, |index, text| {
        if shown.binary_search(&index).is_ok()
            && let Some(r) = runs::parse_record(text)
        {
            runs.push(r);
        }
    })?;
    Ok((runs, skipped))
}

/// `1.2s`, `3m04s`, `2h03m`.
fn took(ms: i64) -> String {
    let s = ms as f64 / 1000.0;
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!("{}h{:02}m", (s / 3600.0) as u64, ((s % 3600.0) / 60.0) as u64)
    }
}

/// `2026-11-28 17:00:01` (UTC).
fn when(ms: i64) -> String {
    let t = rfc3339_ms(ms);
    t.get(..19).map(|s| s.replace('T', " ")).unwrap_or(t)
}

fn short(tool: &str) -> &str {
    tool.strip_prefix("s3s-").unwrap_or(tool)
}

/// What one stage did, in a few words.
fn stage_summary(m: &RunRecord) -> String {
    let c = |n: &str| m.counter(n);
    let n = |n: &str| human_count(m.counter(n) as f64);
    let mut s = match m.tool.as_str() {
        "s3s-poll" => format!(
            "{} messages, {} objects, lag {}",
            c("s3s_sqs_messages_received_total"),
            c("s3s_objects_announced_total"),
            mean(m, "s3s_notification_lag_seconds")
        ),
        "s3s-cat" => format!(
            "{} objects, {} lines, {} read",
            c("s3s_objects_read_total"),
            n("s3s_lines_read_total"),
            human_bytes(c("s3s_read_bytes_total"))
        ),
        "s3s-filter" => format!("{} kept, {} dropped", n("s3s_lines_kept_total"), n("s3s_lines_dropped_total")),
        "s3s-ack" => {
            let inflight = m.counters.get("s3s_sqs_messages_in_flight").and_then(Value::as_u64).unwrap_or(0);
            format!(
                "{} deleted, {} failed, {} in flight",
                c("s3s_sqs_messages_deleted_total"),
                c("s3s_sqs_delete_failures_total"),
                inflight
            )
        }
        _ => format!(
            "{} published, {} retries, {} failed",
            n("s3s_records_published_total"),
            c("s3s_publish_retries_total"),
            c("s3s_delivery_failures_total")
        ),
    };
    let e = errors(m);
    if e > 0 {
        s.push_str(&format!(", {e} errors"));
    }
    s
}

/// A histogram's mean, `-` when empty.
fn mean(m: &RunRecord, name: &str) -> String {
    let (count, sum) = m.histogram(name);
    if count == 0 { "-".into() } else { format!("{:.1}s", sum / count as f64) }
}

fn exit_text(m: &RunRecord) -> String {
    match m.exit {
        Some(0) => match m.outcome.as_deref() {
            Some("broken-pipe") => "0 (pipe closed)".into(),
            _ => "0".into(),
        },
        Some(e) => format!("{e} ({})", m.outcome.as_deref().unwrap_or("?")),
        None => "-".into(),
    }
}

/// Lay out rows in columns separated by two spaces; numbers (all but the first `left` columns)
/// right-aligned.
fn table(rows: &[Vec<String>], left: usize) -> String {
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i > 0 {
                line.push_str("  ");
            }
            if i < left || i + 1 == r.len() {
                line.push_str(cell);
                if i + 1 < r.len() {
                    line.push_str(&" ".repeat(pad));
                }
            } else {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Run `s3s-status`.
pub fn run(args: Args) -> anyhow::Result<Status> {
    use anyhow::Context;
    let dir = args.state_dir.clone().unwrap_or_else(runs::state_dir);
    let (runs, skipped) = read_shown(&dir, args.pipeline.as_deref(), args.last)
        .with_context(|| format!("reading the runs log in {}", dir.display()))?;
    if skipped > 0 {
        eprintln!("s3s-status: warning: {skipped} line(s) of the runs log in {} are not run records (skipped)", dir.display());
    }
    let mut live = read_live(&dir);
    let wanted = |m: &RunRecord| args.pipeline.as_deref().is_none_or(|p| m.pipeline.as_deref() == Some(p));
    live.retain(|m| wanted(m));
    let mut groups = group(runs.into_iter().filter(|m| wanted(m)).collect());
    let skip = groups.len().saturating_sub(args.last);
    groups.drain(..skip);
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = json!({
            "state_dir": dir.display().to_string(),
            "running": live,
            "pipelines": groups.iter().map(Group::to_json).collect::<Vec<_>>(),
        });
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(Status::Ok);
    }
    if !live.is_empty() {
        let mut rows = vec![["TOOL", "PID", "PIPELINE", "STARTED", "UPDATED", "STATE", "COUNTERS"].map(String::from).to_vec()];
        for m in &live {
            let updated = m.updated.as_deref().and_then(|u| crate::clock::parse_ms(u.as_bytes())).map_or("-".into(), when);
            let state = match &m.metrics_addr {
                _ if m.alive != Some(true) => "gone (no summary: killed?)".to_string(),
                Some(a) => format!("running (http://{a}/metrics)"),
                None => "running".to_string(),
            };
            rows.push(vec![
                m.tool.clone(),
                m.pid.to_string(),
                m.pipeline.as_deref().unwrap_or("-").to_string(),
                when(m.start_ms()),
                updated,
                state,
                stage_summary(m),
            ]);
        }
        writeln!(out, "Running:")?;
        out.write_all(table(&rows, 7).as_bytes())?;
        writeln!(out)?;
    }
    if groups.is_empty() {
        writeln!(out, "No runs recorded in {}.", runs::runs_log(&dir).display())?;
        return Ok(Status::Ok);
    }
    let mut rows = vec![
        [
            "STARTED (UTC)",
            "TOOK",
            "PIPELINE",
            "STAGES",
            "MSGS",
            "DELETED",
            "OBJECTS",
            "LINES IN",
            "LINES OUT",
            "PUBLISHED",
            "ERRORS",
            "EXIT",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut stage_rows: Vec<Vec<Vec<String>>> = Vec::new();
    for g in &groups {
        let t = g.totals();
        let num = |k: &str| human_count(t.get(k).and_then(Value::as_u64).unwrap_or(0) as f64);
        let exit = match t.get("failed_stage").and_then(Value::as_str) {
            Some(s) => format!("{} ({} {})", t["exit"], short(s), t["outcome"].as_str().unwrap_or("?")),
            None => "0".into(),
        };
        rows.push(vec![
            when(g.start),
            took(g.end - g.start),
            g.pipeline.clone().unwrap_or_else(|| "-".into()),
            g.stages.iter().map(|s| short(&s.tool)).collect::<Vec<_>>().join("|"),
            num("messages_received"),
            num("messages_deleted"),
            num("objects"),
            num("lines_in"),
            num("lines_out"),
            num("published"),
            num("errors"),
            exit,
        ]);
        stage_rows.push(
            g.stages
                .iter()
                .map(|s| {
                    vec![
                        format!("  {}", s.tool),
                        format!("pid {}", s.pid),
                        took(s.end_ms() - s.start_ms()),
                        format!("exit {}", exit_text(s)),
                        stage_summary(s),
                    ]
                })
                .collect(),
        );
        let _ = &g.key;
    }
    writeln!(out, "Last runs:")?;
    if !args.stages {
        out.write_all(table(&rows, 4).as_bytes())?;
        return Ok(Status::Ok);
    }
    // With --stages: the pipeline table, each row followed by its stages.
    let text = table(&rows, 4);
    let mut lines = text.lines();
    writeln!(out, "{}", lines.next().unwrap_or(""))?;
    for (line, stages) in lines.zip(&stage_rows) {
        writeln!(out, "{line}")?;
        out.write_all(table(stages, 5).as_bytes())?;
    }
    Ok(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn durations_read_well() {
        assert_eq!(took(1234), "1.2s");
        assert_eq!(took(184_000), "3m04s");
        assert_eq!(took(7_380_000), "2h03m");
    }
}
