//! Generated well-typed policies, requests and events evaluated by the
//! bytecode kernel and the native kernel: outcomes and traces are
//! byte-identical.
#![no_main]

use authflow_fuzz::generate::Case;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|case: Case| {
    let Some(program) = authflow_fuzz::build(&case.policy()) else {
        return;
    };
    authflow_fuzz::check_backends_agree(&program, &case.request_json(), &case.events_json());
});
