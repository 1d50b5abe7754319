//! One module per stage: each holds the stage's clap `Args` and its `run`.

pub mod cat;
pub mod filter;

/// Every stage's clap command, by binary name: used by the man-page generator and its test.
pub fn commands() -> Vec<(&'static str, clap::Command)> {
    use clap::CommandFactory;
    vec![
        ("s3s-cat", cat::Args::command()),
        ("s3s-filter", filter::Args::command()),
    ]
}
