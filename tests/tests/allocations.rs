//! The decision kernel allocates nothing: binding writes into a reused
//! record and the kernel into reused registers and outcome words.

use authflow_compiler::{compile, NoImports};
use authflow_runtime::Policy;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

const REQUEST: &str = r#"{"flow": "workforce_login", "principal": {"kind": "human", "id": "u-1", "roles": ["admin"], "employment": "employee"}, "context": {"resource": "admin_console", "risk": 10, "device_trusted": true}, "session": {"factors": [{"factor": "password", "at": "2026-12-04T09:59:00Z"}]}, "now": "2026-12-04T10:00:00Z"}"#;

#[test]
fn kernel_allocates_nothing() {
    let source = include_str!("../scenarios/01-workforce-login/policy.flow");
    let policy = Policy::new(
        compile("policy.flow", source, &mut NoImports)
            .program
            .expect("compiles"),
    )
    .expect("verifies");
    let state = policy.start_json(REQUEST, 0).expect("valid request");
    let facts = policy.facts(&state).expect("valid state");
    let mut scratch = policy.scratch();
    let _strings = policy.bind(&facts, &mut scratch);

    let _profiler = dhat::Profiler::builder().testing().build();
    let before = dhat::HeapStats::get().total_blocks;
    for _ in 0..100 {
        policy.decide(facts.request.flow, &mut scratch);
    }
    let after = dhat::HeapStats::get().total_blocks;
    dhat::assert_eq!(after - before, 0);
}
