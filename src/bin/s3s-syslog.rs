//! `s3s-syslog`: parse the flags, run [`s3s::tools::syslog`], exit 0/1/2 (see `s3s::cli::main`).
use s3s::tools::syslog;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<syslog::Args>("s3s-syslog", |a| &a.common, syslog::run)
}
