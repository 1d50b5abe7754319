//! The one integration-test binary (one link step instead of one per file).
//!
//! - `golden`: trycmd cases under `tests/cmd/<tool>/` (stdin, args, expected stdout/stderr/exit).
//! - `pipes`: behaviour a golden file cannot show (closed pipes, jq in place of a stage).
//! - `reliability`: hostile input and timing: decompression bombs, huge lines, signals mid-record.
//! - `fuzz_seeds`: the fuzz targets' properties (fuzz/checks.rs) over the committed seeds, on stable.
//! - `package`: man pages and completions in sync with the flags; the Debian package of
//!   `scripts/package` installed, verified, removed and purged in a scratch dpkg root.
//! - `scale`: three instances of the systemd unit's pipeline on one queue (scaling out).
//! - `kafka`: s3s-kafka against the local tansu broker (`S3S_KAFKA_BROKERS`, `S3S_TANSU`).
//! - `secure`: TLS, SASL, MSK IAM and SigV4 through stand-ins of the tests' own (scripts/receivers/).
//! - `fields`: parsed fields (`fields`, `@timestamp`) through s3s-filter --where and the publishers.
//! - `sqs`, `aws`: against the real local servers started by `scripts/services` (S3/SQS on moto,
//!   Kafka on tansu). They read the endpoints from the environment (`scripts/test` sets it); without it they
//!   fail with a message saying how to start the servers, never silently pass.

mod aws;
mod es;
mod fields;
mod fuzz_seeds;
mod gelf;
mod golden;
#[cfg(feature = "kafka")]
mod kafka;
mod metrics;
mod ops;
mod package;
mod parse;
mod pipes;
mod reliability;
#[cfg(feature = "kafka")]
mod scale;
mod secure;
mod sqs;
mod support;
mod syslog;
