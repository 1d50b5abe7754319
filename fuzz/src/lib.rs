//! The parsers of untrusted bytes, compiled on their own for fuzzing: the very source files of
//! the `s3s` crate (by path), without the AWS SDK, librdkafka and the stages around them, so
//! that the instrumented build takes a couple of minutes instead of most of an hour (issue 12:
//! it then runs in CI). The `metrics` module below stands in for the crate's counters, which
//! are not what is fuzzed; a parser module that starts to need another module of the crate
//! fails this build, and then that module joins the list.
#![allow(dead_code, clippy::all)]

#[path = "../../src/simd.rs"]
pub mod simd;

#[path = "../../src/scan.rs"]
pub mod scan;

#[path = "../../src/io.rs"]
pub mod io;

#[path = "../../src/decode.rs"]
pub mod decode;

#[path = "../../src/notify.rs"]
pub mod notify;

#[path = "../../src/clock.rs"]
pub mod clock;

#[path = "../../src/runs.rs"]
pub mod runs;

pub mod metrics {
    pub mod events {
        pub fn invalid_input_line() {}
        pub fn bytes_read(_n: u64) {}
        pub fn lines_read(_lines: u64, _decompressed_bytes: u64) {}
    }
}
