//! Helpers shared by the integration tests.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Path of one of the package's binaries, built by cargo for this test run.
pub fn bin(name: &str) -> PathBuf {
    // Cargo sets CARGO_BIN_EXE_<name> for integration tests; look it up at run time so every
    // test can name a binary by string.
    let exe = std::env::current_exe().expect("test exe path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join(name)
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Run a shell pipeline from the repository root with the package's binaries first on PATH;
/// returns (exit code, stdout, stderr).
pub fn sh(script: &str) -> (i32, String, String) {
    let path = format!("{}:{}", bin("s3s-cat").parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail\n{script}"))
        .current_dir(root())
        .env("PATH", path)
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Like [`sh`], in a process group of its own (so `kill -9 0` kills just the script's group).
pub fn sh_group(script: &str) -> (i32, String, String) {
    sh(&format!("setsid bash -c {}; exit $?", shell_quote(script)))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
