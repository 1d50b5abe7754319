//! Fuzz target `notify`: see `check_notify` in fuzz/checks.rs for the properties it asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check_notify(data));
