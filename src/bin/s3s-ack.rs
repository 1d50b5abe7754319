//! `s3s-ack`: parse the flags, run [`s3s::tools::ack`], exit 0/1/2 (see `s3s::cli::main`).
use s3s::tools::ack;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<ack::Args>("s3s-ack", |a| &a.common, ack::run)
}
