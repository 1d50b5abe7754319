//! Fuzz target `decode`: see `check_decode` in fuzz/checks.rs for the properties it asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_decode(data));
