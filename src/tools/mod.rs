//! One module per stage: each holds the stage's clap `Args` and its `run`.

pub mod ack;
pub mod cat;
pub mod es;
pub mod filter;
pub mod gelf;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod parse;
pub mod poll;
pub mod status;
pub mod syslog;

/// Every stage's clap command, by binary name: used by the man-page generator and its test.
pub fn commands() -> Vec<(&'static str, clap::Command)> {
    use clap::CommandFactory;
    #[allow(unused_mut)]
    let mut commands = vec![
        ("s3s-cat", cat::Args::command()),
        ("s3s-filter", filter::Args::command()),
        ("s3s-parse", parse::Args::command()),
        ("s3s-poll", poll::Args::command()),
        ("s3s-ack", ack::Args::command()),
        ("s3s-status", status::Args::command()),
        ("s3s-es", es::Args::command()),
        ("s3s-syslog", syslog::Args::command()),
        ("s3s-gelf", gelf::Args::command()),
    ];
    #[cfg(feature = "kafka")]
    commands.push(("s3s-kafka", kafka::Args::command()));
    commands
}
