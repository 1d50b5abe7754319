//! Fuzz target `scan`: see `check_scan` in fuzz/checks.rs for the properties it asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_scan(data));
