//! Arbitrary bytes as a request (the first line) and events (one per
//! further line) against the workforce login scenario policy.
#![no_main]

use std::sync::OnceLock;

use authflow_runtime::Policy;
use libfuzzer_sys::fuzz_target;

static POLICY: OnceLock<Policy> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let policy = POLICY.get_or_init(authflow_fuzz::scenario_policy);
    authflow_fuzz::check_input_binding(policy, data);
});
