//! Arbitrary bytes as a serialized flow state against the workforce login
//! scenario policy: rejected cleanly or evaluated, never a panic.
#![no_main]

use std::sync::OnceLock;

use authflow_runtime::Policy;
use libfuzzer_sys::fuzz_target;

static POLICY: OnceLock<Policy> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let policy = POLICY.get_or_init(authflow_fuzz::scenario_policy);
    authflow_fuzz::check_state_resume(policy, data);
});
