//! s3s: stream the text inside S3 objects through Unix pipe stages.
//!
//! Every stage is a tiny binary in `src/bin/` whose logic lives in [`tools`]; the pieces the
//! stages share (the NDJSON envelope, stdin/stdout framing, decompression, AWS setup, the CLI
//! conventions) are the modules below. The envelope contract is documented in `man/s3s.7`.

pub mod aws;
pub mod cli;
pub mod decode;
pub mod envelope;
pub mod io;
pub mod lease;
pub mod man;
pub mod metrics;
pub mod notify;
pub mod s3;
pub mod scan;
pub mod shutdown;
pub mod sink;
pub mod tools;
pub mod transport;
