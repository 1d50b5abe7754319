use s3s::tools::syslog;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<syslog::Args>("s3s-syslog", |a| &a.common, syslog::run)
}
