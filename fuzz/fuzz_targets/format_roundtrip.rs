//! The formatter on every input that parses: the output parses, formatting
//! is idempotent, and a compiling policy keeps its digest.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    authflow_fuzz::check_format_roundtrip(&String::from_utf8_lossy(data));
});
