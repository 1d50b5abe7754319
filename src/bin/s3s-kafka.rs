use s3s::tools::kafka;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<kafka::Args>("s3s-kafka", |a| &a.common, kafka::run)
}
