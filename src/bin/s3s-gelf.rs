//! `s3s-gelf`: parse the flags, run [`s3s::tools::gelf`], exit 0/1/2 (see `s3s::cli::main`).
use s3s::tools::gelf;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<gelf::Args>("s3s-gelf", |a| &a.common, gelf::run)
}
