//! `s3s-parse`: parse the flags, run [`s3s::tools::parse`], exit 0/1/2 (see `s3s::cli::main`).
use s3s::tools::parse;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<parse::Args>("s3s-parse", |a| &a.common, parse::run)
}
