//! Invariant proofs and semantic diffs by SAT: the shipped examples prove,
//! a weak policy yields a counterexample that the engine reproduces, and a
//! changed risk limit shows up as one class of newly denied inputs.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use authflow_compiler::check::Checked;
use authflow_compiler::prove::{check_invariants, diff, Change, Verdict};
use authflow_compiler::{build_program, check_source, NoImports};
use authflow_runtime::program::{Decision, Program};
use authflow_runtime::Policy;
use serde_json::Value;

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_path_buf()
}

/// Compiles without proving invariants: these tests call the prover themselves.
fn compile_text(name: &str, text: &str) -> (Checked, Program) {
    let mut compilation = check_source(name, text, &mut NoImports);
    compilation.program = build_program(&compilation);
    let errors: Vec<String> = compilation
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{d:?}"))
        .collect();
    assert!(errors.is_empty(), "{name} does not compile: {errors:?}");
    (
        compilation.checked.expect("a checked program"),
        compilation.program.expect("a compiled program"),
    )
}

/// Runs a request and its events through the engine; returns the final
/// outcome and the factors verified by then.
fn evaluate(program: &Program, request: &Value, events: &[Value]) -> (Decision, u64) {
    let policy = Policy::new(program.clone()).expect("a valid program");
    let mut state = policy
        .start(request, 0)
        .expect("the engine accepts the request");
    for event in events {
        state = policy
            .resume(&state, event)
            .expect("the engine accepts the event");
    }
    let outcome = policy.evaluate(&state, false).expect("an outcome");
    let facts = policy.facts(&state).expect("facts");
    (outcome.decision, facts.verified)
}

#[test]
fn example_invariants_are_proved() {
    let examples = repository_root().join("examples");
    let mut policies: Vec<PathBuf> = fs::read_dir(&examples)
        .expect("the examples folder")
        .map(|entry| entry.expect("a folder entry").path().join("policy.flow"))
        .filter(|path| path.exists())
        .collect();
    policies.sort();
    assert!(!policies.is_empty());
    let mut proved = 0;
    for path in policies {
        let text = fs::read_to_string(&path).expect("a readable policy");
        let (checked, program) = compile_text(&path.display().to_string(), &text);
        let started = Instant::now();
        let results = check_invariants(&checked, &program);
        eprintln!(
            "{}: {} invariants in {:?}",
            path.display(),
            results.len(),
            started.elapsed()
        );
        for result in results {
            assert_eq!(
                result.verdict,
                Verdict::Proved,
                "{}: invariant `{}`",
                path.display(),
                result.name
            );
            proved += 1;
        }
    }
    assert!(proved >= 5, "only {proved} invariants were checked");
}

const PHISHING: &str = r#"
principal human { roles: Set<String> }
context { resource: String }
flow admin for human on login {
  require REQUIREMENT
  allow
}
invariant "phishing resistant" {
  flow admin
  allow implies session.factors.contains_any({passkey, security_key, piv, webauthn})
}
"#;

#[test]
fn weak_requirement_is_violated() {
    let text = PHISHING.replace("REQUIREMENT", "any(passkey, password)");
    let (checked, program) = compile_text("weak.flow", &text);
    let results = check_invariants(&checked, &program);
    assert_eq!(results.len(), 1);
    let Verdict::Violated { request, events } = &results[0].verdict else {
        panic!("expected a violation, got {:?}", results[0].verdict);
    };
    eprintln!("request: {request}\nevents: {events:?}");
    let (decision, verified) = evaluate(&program, request, events);
    assert_eq!(decision, Decision::Allow);
    assert_eq!(
        authflow_runtime::factor::names_of(verified),
        ["password"],
        "the counterexample should verify only password"
    );
}

#[test]
fn phishing_resistant_requirement_is_proved() {
    let text = PHISHING.replace("REQUIREMENT", "any(passkey, security_key)");
    let (checked, program) = compile_text("strong.flow", &text);
    let results = check_invariants(&checked, &program);
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].verdict, Verdict::Proved);
}

#[test]
fn invariant_literal_outside_pool_is_handled() {
    // "vip" appears only in the invariant, so it has no pool id.
    let text = r#"
principal human { roles: Set<String> }
context { resource: String }
flow admin for human on login {
  deny "blocked" when context.resource == "vault"
  require password
  allow
}
invariant "vault is never allowed" {
  flow admin
  when context.resource == "vault"
  allow implies false
}
invariant "vip has no special path" {
  flow admin
  when principal.roles.contains("vip") and context.resource != "vault"
  allow implies session.factors.contains(password)
}
invariant "vip is denied" {
  flow admin
  when principal.roles.contains("vip")
  allow implies false
}
"#;
    let (checked, program) = compile_text("literals.flow", text);
    let results = check_invariants(&checked, &program);
    assert_eq!(results[0].verdict, Verdict::Proved, "{}", results[0].name);
    assert_eq!(results[1].verdict, Verdict::Proved, "{}", results[1].name);
    let Verdict::Violated { request, events } = &results[2].verdict else {
        panic!("expected a violation, got {:?}", results[2].verdict);
    };
    let roles = &request["principal"]["roles"];
    assert!(
        roles
            .as_array()
            .is_some_and(|r| r.contains(&Value::from("vip"))),
        "roles: {roles}"
    );
    let (decision, _) = evaluate(&program, request, events);
    assert_eq!(decision, Decision::Allow);
}

fn scenario_policy() -> String {
    let path = repository_root().join("tests/scenarios/01-workforce-login/policy.flow");
    fs::read_to_string(path).expect("the workforce scenario policy")
}

#[test]
fn lowered_risk_limit_is_newly_denied() {
    let text = scenario_policy();
    assert!(text.contains("risk >= 90"));
    let (_, old) = compile_text("old.flow", &text);
    let (_, new) = compile_text("new.flow", &text.replace("risk >= 90", "risk >= 80"));
    let started = Instant::now();
    let regions = diff(&old, &new, "workforce_login").expect("comparable programs");
    eprintln!("diff in {:?}: {regions:#?}", started.elapsed());
    assert!(!regions.is_empty());
    for region in &regions {
        assert_eq!(region.change, Change::NewlyDenied, "{region:?}");
        assert_eq!(region.new, Decision::Deny);
        let risk = region.request["context"]["risk"]
            .as_i64()
            .expect("an integer risk");
        assert!((80..90).contains(&risk), "risk {risk}");
        let (before, _) = evaluate(&old, &region.request, &region.events);
        let (after, _) = evaluate(&new, &region.request, &region.events);
        assert_eq!(before, region.old);
        assert_eq!(after, Decision::Deny);
    }
}

#[test]
fn reformatted_policy_has_no_difference() {
    let text = scenario_policy();
    let (_, old) = compile_text("old.flow", &text);
    let same = diff(&old, &old, "workforce_login").expect("comparable programs");
    assert!(same.is_empty(), "{same:?}");
    let reformatted = format!(
        "// A copy with extra comments and blank lines.\n\n{}",
        text.replace("\n  require", "\n\n  // step\n  require")
    );
    let (_, new) = compile_text("reformatted.flow", &reformatted);
    let regions = diff(&old, &new, "workforce_login").expect("comparable programs");
    assert!(regions.is_empty(), "{regions:?}");
}

#[test]
fn diff_rejects_different_schemas() {
    let text = scenario_policy();
    let (_, old) = compile_text("old.flow", &text);
    let (_, new) = compile_text(
        "new.flow",
        &text.replace(
            "device_trusted: Bool",
            "device_trusted: Bool\n  country: String",
        ),
    );
    let error = diff(&old, &new, "workforce_login").expect_err("different contexts");
    assert!(error.contains("context"), "{error}");
}

#[test]
fn weakened_example_is_violated() {
    let path = repository_root().join("examples/workforce-login/policy.flow");
    let text = fs::read_to_string(path).expect("the workforce example");
    assert!(text.contains("require aal3 attempts 5"));
    let weakened = text.replace("require aal3 attempts 5", "require aal2 attempts 5");
    let (checked, program) = compile_text("weakened.flow", &weakened);
    let results = check_invariants(&checked, &program);
    let result = results
        .iter()
        .find(|r| r.name == "admin console sessions reach aal3")
        .expect("the aal3 invariant");
    let Verdict::Violated { request, events } = &result.verdict else {
        panic!("expected a violation, got {:?}", result.verdict);
    };
    assert_eq!(request["context"]["resource"], "admin_console");
    let (decision, verified) = evaluate(&program, request, events);
    assert_eq!(decision, Decision::Allow);
    assert!(authflow_runtime::factor::assurance_level(verified) < 3);
}
