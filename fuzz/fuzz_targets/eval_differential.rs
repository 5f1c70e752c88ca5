//! Generated well-typed policies, requests and events evaluated by the
//! bytecode kernel and the native kernel, whose outcomes and traces are
//! byte-identical, and by the reference evaluator over the checked program,
//! which gives the same outcomes and trace steps.
#![no_main]

use authflow_fuzz::generate::Case;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|case: Case| {
    let Some(built) = authflow_fuzz::build(&case.policy()) else {
        return;
    };
    authflow_fuzz::check_backends_agree(&built, &case.request_json(), &case.events_json());
});
