use s3s::tools::status;
fn main() -> std::process::ExitCode {
    s3s::cli::main_untracked::<status::Args>("s3s-status", status::run)
}
