//! Dead-letter files, one writer for every stage that has one (`--dead-letter FILE` of s3s-es,
//! s3s-gelf and s3s-poll): records that can never be delivered are appended as NDJSON and synced
//! before the caller counts them as handled, so that acknowledging their SQS message loses
//! nothing. Each append is one `write(2)` on an `O_APPEND` descriptor: whole lines, even with
//! several processes writing the same file.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cli::UsageError;

/// An open dead-letter file.
#[derive(Debug)]
pub struct DeadLetter {
    path: PathBuf,
    file: Mutex<File>,
}

impl DeadLetter {
    /// Open (create) `path` for appending; a failure is a usage error naming `flag` and the file.
    pub fn open(flag: &str, path: &Path) -> Result<DeadLetter, UsageError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| UsageError(format!("{flag} {}: {e}", path.display())))?;
        Ok(DeadLetter { path: path.to_path_buf(), file: Mutex::new(file) })
    }

    /// Append `records` (whole lines, each ending in `\n`) in one write, and sync them to disk.
    pub fn append(&self, records: &[u8]) -> io::Result<()> {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // A regular file takes an O_APPEND write whole (write_all only loops on a full disk).
        f.write_all(records)?;
        f.sync_data()
    }

    /// The file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
