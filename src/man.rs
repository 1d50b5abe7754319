//! Man pages and shell completions rendered from the same clap definitions the binaries parse
//! with, so the files in `man/` and `completions/` cannot drift from the flags (a test
//! regenerates and compares them, and the Debian package installs them from there).
//!
//! Every file comes from [`crate::tools::commands`]: a stage listed there gets its page and its
//! bash, zsh and fish completions from `cargo run --release --bin s3s-mangen`, with no edit here.

use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// The shells completions are written for, with the directory (under `completions/`) and the
/// file name each one's loader looks for: bash-completion loads `completions/<command>` on
/// first use, zsh's compinit `_<command>` from `$fpath`, fish `<command>.fish`.
pub const SHELLS: [(Shell, &str); 3] = [(Shell::Bash, "bash"), (Shell::Zsh, "zsh"), (Shell::Fish, "fish")];

/// The roff text of one stage's man page.
pub fn render(cmd: clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .date("2026-11-28")
        .source(concat!("s3s ", env!("CARGO_PKG_VERSION")))
        .manual("s3s manual")
        .render(&mut out)
        .expect("rendering to memory cannot fail");
    out
}

/// The file name `shell` loads the completions of `name` from.
pub fn completion_file(shell: Shell, name: &str) -> String {
    match shell {
        Shell::Zsh => format!("_{name}"),
        Shell::Fish => format!("{name}.fish"),
        _ => name.to_string(),
    }
}

/// The completion script of one stage for one shell.
pub fn completion(shell: Shell, name: &str, mut cmd: clap::Command) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    out
}

/// Every generated file, as (path relative to the repository root, contents):
/// `man/<stage>.1` and `completions/<shell>/<file>` for each stage.
pub fn generated() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    for (name, cmd) in crate::tools::commands() {
        files.push((Path::new("man").join(format!("{name}.1")), render(cmd.clone())));
        for (shell, dir) in SHELLS {
            files.push((
                Path::new("completions").join(dir).join(completion_file(shell, name)),
                completion(shell, name, cmd.clone()),
            ));
        }
    }
    files
}

/// Write every generated file under `root` (the repository root), and remove generated files
/// of stages that are gone (`man/*.1` and `completions/*/*` not in [`generated`]); `man/s3s.7`
/// is hand-written and left alone. Returns the paths written.
pub fn write_all(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let files = generated();
    for dir in std::iter::once("man".to_string()).chain(SHELLS.iter().map(|(_, d)| format!("completions/{d}"))) {
        std::fs::create_dir_all(root.join(&dir))?;
        for stale in stale_files(root, &files, Path::new(&dir))? {
            std::fs::remove_file(root.join(stale))?;
        }
    }
    for (path, text) in &files {
        std::fs::write(root.join(path), text)?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

/// Generated-looking files in `dir` (relative to `root`) that `files` does not produce: the
/// page or completions of a stage that was removed or renamed.
pub fn stale_files(root: &Path, files: &[(PathBuf, Vec<u8>)], dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut stale = Vec::new();
    let entries = match std::fs::read_dir(root.join(dir)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(stale),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let rel = dir.join(entry?.file_name());
        let generated_kind = dir != Path::new("man") || rel.extension().is_some_and(|x| x == "1");
        if generated_kind && !files.iter().any(|(p, _)| *p == rel) {
            stale.push(rel);
        }
    }
    stale.sort();
    Ok(stale)
}
