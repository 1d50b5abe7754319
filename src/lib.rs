//! s3s: stream the text inside S3 objects through Unix pipe stages.
//!
//! Every stage is a tiny binary in `src/bin/` whose logic lives in [`tools`]. Below the tools,
//! in layers (a module imports only from its own layer or those below it):
//!
//! - the publishers' driver and toolkit ([`sink`]), object bodies to lines ([`decode`]), AWS
//!   access ([`aws`]: clients, S3 bodies, SQS visibility leases), SQS bodies ([`notify`]);
//! - the contract and its framing: the NDJSON envelope ([`envelope`], `man/s3s.7`), the record
//!   scanner ([`scan`]) and the lookup of parsed fields ([`predicate`]: `--where`), stdin/stdout
//!   ([`io`]), the runs log ([`runs`]);
//! - what every stage shares: CLI conventions and exit codes ([`cli`]), metrics ([`metrics`]),
//!   signals and draining ([`signals`], [`shutdown`]), time ([`clock`]), durations
//!   ([`duration`]), backoff ([`backoff`]), dead-letter files ([`dead_letter`]), the host name
//!   ([`host`]), man pages ([`man`]).

pub mod aws;
pub mod backoff;
pub mod cli;
pub mod clock;
pub mod cloudtrail;
pub mod dead_letter;
pub mod decode;
pub mod duration;
pub mod envelope;
pub mod formats;
pub mod host;
pub mod io;
pub mod man;
pub mod metrics;
pub mod notify;
pub mod predicate;
pub mod runs;
pub mod scan;
pub mod shutdown;
pub mod signals;
pub mod simd;
pub mod sink;
pub mod tools;
