//! The trace guards and arms of every kind of step, as the JSON output
//! section of docs/language.md lists them, on both kernels and in the
//! reference evaluator.

use authflow_compiler::{build_program, check_source, reference, NoImports};
use authflow_runtime::outcome::TraceEntry;
use authflow_runtime::{Backend, FlowState, Policy};
use serde_json::{json, Value};

const POLICY: &str = r#"
enum Tier { gold, silver, bronze }

principal human { tier: Tier }

context { risk: Int }

flow traced for human {
  if context.risk > 50 {
    deny "risk too high"
  }
  match principal.tier {
    gold => { emit "gold" }
    silver => { emit "silver" }
    bronze => { emit "bronze" }
  }
  enroll totp
  exception "break_glass" when context.risk < 0 {
    allow
  }
  run checks
  require password attempts 3
  approve by manager within 1d
  allow
}

flow checks for human {
  deny "blocked" when context.risk > 90
}
"#;

/// Evaluates the request and events on both kernels and with the reference
/// evaluator, checks that all three trace the same steps, and returns them.
fn trace(tier: &str, events: &[Value]) -> Vec<TraceEntry> {
    let compilation = check_source("policy.flow", POLICY, &mut NoImports);
    let program = build_program(&compilation).expect("the policy compiles");
    let request = json!({
        "flow": "traced",
        "principal": { "kind": "human", "id": "u-1", "tier": tier, "enrolled": ["totp"] },
        "context": { "risk": 10 },
        "session": { "factors": [{ "factor": "password", "at": "2026-12-04T10:00:00Z" }] },
        "now": "2026-12-04T10:00:00Z",
    });
    let mut traces = Vec::new();
    for backend in [Backend::Bytecode, Backend::Native] {
        let policy = Policy::with_backend(program.clone(), backend).expect("the program verifies");
        let state = FlowState {
            events: events.to_vec(),
            ..policy.start(&request, 0).expect("a valid request")
        };
        let outcome = policy.evaluate(&state, true).expect("an outcome");
        traces.push(outcome.trace.expect("a trace").steps);
        let facts = policy.facts(&state).expect("valid events");
        let evaluation =
            reference::evaluate(&compilation, &program, &facts).expect("the reference evaluates");
        traces.push(evaluation.steps);
    }
    for other in &traces[1..] {
        assert_eq!(other, &traces[0]);
    }
    traces.swap_remove(0)
}

fn step<'t>(steps: &'t [TraceEntry], prefix: &str) -> &'t TraceEntry {
    steps
        .iter()
        .find(|entry| entry.step.starts_with(prefix))
        .unwrap_or_else(|| panic!("no traced step starts with `{prefix}`: {steps:?}"))
}

#[test]
fn if_without_else_traces_else() {
    let steps = trace("gold", &[]);
    let branch = step(&steps, "if ");
    assert_eq!(branch.guards, [false]);
    assert_eq!(branch.arm, Some(json!("else")));
    assert_eq!(branch.result, "continue");
}

#[test]
fn match_numbers_all_but_last() {
    let gold = trace("gold", &[]);
    let branch = step(&gold, "match ");
    assert_eq!(branch.guards, [true, false]);
    assert_eq!(branch.arm, Some(json!(1)));

    let silver = trace("silver", &[]);
    let branch = step(&silver, "match ");
    assert_eq!(branch.guards, [false, true]);
    assert_eq!(branch.arm, Some(json!(2)));

    let bronze = trace("bronze", &[]);
    let branch = step(&bronze, "match ");
    assert_eq!(branch.guards, [false, false]);
    assert_eq!(branch.arm, Some(json!("else")));
    assert_eq!(branch.result, "continue");
    assert_eq!(step(&bronze, "emit ").step, "emit \"bronze\"");
}

#[test]
fn step_guards_follow_docs() {
    let steps = trace("gold", &[]);
    assert_eq!(step(&steps, "enroll ").guards, [true]);
    assert_eq!(step(&steps, "exception ").guards, [false]);
    assert_eq!(step(&steps, "deny \"blocked\"").guards, [false]);
    assert_eq!(step(&steps, "require ").guards, [true, false]);

    let approve = step(&steps, "approve ");
    assert_eq!(approve.guards, [false, false, false]);
    assert_eq!(approve.result, "pending");

    for bare in ["emit ", "run "] {
        let entry = step(&steps, bare);
        assert!(entry.guards.is_empty(), "{entry:?}");
        assert_eq!(entry.arm, None);
        assert_eq!(entry.result, "continue");
    }
}

#[test]
fn approve_guards_after_events() {
    let approval = |granted: bool, at: &str| json!({ "approval": { "role": "manager", "approver": "m-1", "granted": granted, "at": at } });

    let granted = trace("gold", &[approval(true, "2026-12-04T11:00:00Z")]);
    let approve = step(&granted, "approve ");
    assert_eq!(approve.guards, [true, false, false]);
    assert_eq!(approve.result, "continue");
    assert_eq!(step(&granted, "allow").guards, Vec::<bool>::new());

    let refused = trace("gold", &[approval(false, "2026-12-04T11:00:00Z")]);
    let approve = step(&refused, "approve ");
    assert_eq!(approve.guards, [false, true, false]);
    assert_eq!(approve.result, "deny");

    let late = trace("gold", &[approval(true, "2026-12-06T10:00:00Z")]);
    let approve = step(&late, "approve ");
    assert_eq!(approve.guards, [false, false, true]);
    assert_eq!(approve.result, "deny");
}
