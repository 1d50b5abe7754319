//! `s3s-es`: parse the flags, run [`s3s::tools::es`], exit 0/1/2 (see `s3s::cli::main`).
use s3s::tools::es;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<es::Args>("s3s-es", |a| &a.common, es::run)
}
