use s3s::tools::poll;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<poll::Args>("s3s-poll", |a| &a.common, poll::run)
}
