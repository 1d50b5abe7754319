//! Regenerate `man/*.1` from the clap definitions: `cargo run --bin s3s-mangen [DIR]`.
fn main() -> std::process::ExitCode {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "man".into());
    match s3s::man::write_all(std::path::Path::new(&dir)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("s3s-mangen: error: {dir}: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
