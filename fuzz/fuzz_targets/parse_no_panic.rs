//! Arbitrary bytes, read as lossy UTF-8, through the compiler front end: it
//! never panics and ends in a checked program or in errors.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    authflow_fuzz::check_parse(&String::from_utf8_lossy(data));
});
