//! `s3s-kafka`: parse the flags, run [`s3s::tools::kafka`], exit 0/1/2 (see `s3s::cli::main`).
use s3s::tools::kafka;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<kafka::Args>("s3s-kafka", |a| &a.common, kafka::run)
}
