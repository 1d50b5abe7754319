//! `s3s-filter`: parse the flags, run [`s3s::tools::filter`], exit 0/1/2 (see `s3s::cli::main`).
use s3s::tools::filter;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<filter::Args>("s3s-filter", |a| &a.common, filter::run)
}
