//! This machine's name, read one way (the `hostname` crate: gethostname(2)) for every stage:
//! the runs log, `s3s-status`, syslog's HOSTNAME and GELF's `host`.

/// The host name, or `None` when the system has none to give.
pub fn name() -> Option<String> {
    let h = hostname::get().ok()?.to_string_lossy().trim().to_string();
    (!h.is_empty()).then_some(h)
}
