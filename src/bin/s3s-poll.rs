//! `s3s-poll`: parse the flags, run [`s3s::tools::poll`], exit 0/1/2 (see `s3s::cli::main`).
use s3s::tools::poll;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<poll::Args>("s3s-poll", |a| &a.common, poll::run)
}
