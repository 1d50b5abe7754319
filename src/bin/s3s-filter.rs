use s3s::tools::filter;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<filter::Args>("s3s-filter", |a| &a.common, filter::run)
}
