use s3s::tools::ack;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<ack::Args>("s3s-ack", |a| &a.common, ack::run)
}
