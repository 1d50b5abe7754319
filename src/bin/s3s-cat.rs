use s3s::tools::cat;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<cat::Args>("s3s-cat", |a| &a.common, cat::run)
}
