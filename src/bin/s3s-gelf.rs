use s3s::tools::gelf;
fn main() -> std::process::ExitCode {
    s3s::cli::main::<gelf::Args>("s3s-gelf", |a| &a.common, gelf::run)
}
