use s3s::tools::es;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<es::Args>("s3s-es", |a| &a.common, es::run)
}
