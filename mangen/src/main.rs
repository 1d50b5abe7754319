//! Regenerate the man pages (`man/*.1`) and shell completions (`completions/{bash,zsh,fish}/`)
//! from the clap definitions: `cargo run --release --bin s3s-mangen [ROOT]` (ROOT: the repository
//! root, by default the current directory). Files of stages that are gone are removed.
//!
//! A crate of its own in the workspace (not a `[[bin]]` of `s3s`) so that the Debian package's
//! `$auto` assets, which take every binary of the `s3s` package, take the stages and only them.
fn main() -> std::process::ExitCode {
    let root = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    if !root.join("man/s3s.7").is_file() {
        eprintln!("s3s-mangen: error: {}: not the repository root (no man/s3s.7 there)", root.display());
        return std::process::ExitCode::from(2);
    }
    match s3s::man::write_all(&root) {
        Ok(files) => {
            eprintln!("s3s-mangen: {} files written under {}", files.len(), root.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("s3s-mangen: error: {}: {e}", root.display());
            std::process::ExitCode::from(1)
        }
    }
}
