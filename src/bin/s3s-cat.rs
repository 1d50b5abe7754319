//! `s3s-cat`: parse the flags, run [`s3s::tools::cat`], exit 0/1/2 (see `s3s::cli::main`).
use s3s::tools::cat;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<cat::Args>("s3s-cat", |a| &a.common, cat::run)
}
