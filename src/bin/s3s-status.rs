//! `s3s-status`: parse the flags, run [`s3s::tools::status`], exit 0/1/2 (see `s3s::cli::main`).
use s3s::tools::status;
fn main() -> std::process::ExitCode {
    s3s::cli::main_untracked::<status::Args>("s3s-status", status::run)
}
