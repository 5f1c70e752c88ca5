//! Replays the fuzz seed corpora (`fuzz/seeds/TARGET/`) and any saved crash
//! inputs (`fuzz/artifacts/TARGET/`) through the properties the fuzz targets
//! check, so that `cargo test` keeps them as regression tests.
//!
//! The property functions are copies of those in `fuzz/src/lib.rs`: the
//! fuzz crate is a workspace of its own, and this crate cannot depend on it.
//! A change to a property there needs the same change here.
//!
//! NOTE: `eval_differential` inputs are decoded by the `arbitrary` crate,
//! which this crate does not depend on, so they are not replayed here. Run
//! `cargo fuzz run eval_differential fuzz/seeds/eval_differential -- -runs=0`
//! to replay them.

use std::path::{Path, PathBuf};

use authflow_compiler::{build_program, check_source, format::format_source, NoImports};
use authflow_runtime::program::Program;
use authflow_runtime::{FlowState, Policy};

/// The evaluation time of a request without `now`: 2026-12-04T10:00:00Z in
/// microseconds since the Unix epoch.
const DEFAULT_NOW: i64 = 1_796_378_400_000_000;

const SCENARIO_POLICY: &str = include_str!("../scenarios/01-workforce-login/policy.flow");

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("fuzz")
}

/// Lists every file of `fuzz/seeds/TARGET/` and `fuzz/artifacts/TARGET/`,
/// sorted.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for folder in ["seeds", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(folder).join(target)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            if entry.path().is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

/// Runs `check` on every input of `target`, naming the file that fails.
fn replay(target: &str, minimum: usize, check: impl Fn(&[u8])) {
    let files = inputs(target);
    assert!(
        files.len() >= minimum,
        "expected at least {minimum} seeds for {target}, found {}",
        files.len()
    );
    for file in files {
        let data = std::fs::read(&file).expect("read fuzz input");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        if result.is_err() {
            panic!("{target}: property failed on {}", file.display());
        }
    }
}

fn build(text: &str) -> Option<Program> {
    let compilation = check_source("input.flow", text, &mut NoImports);
    build_program(&compilation)
}

fn scenario_policy() -> Policy {
    let program = build(SCENARIO_POLICY).expect("the scenario policy compiles");
    Policy::new(program).expect("the scenario program verifies")
}

fn check_parse(text: &str) {
    let compilation = check_source("input.flow", text, &mut NoImports);
    assert_eq!(compilation.checked.is_some(), !compilation.has_errors());
}

fn check_format_roundtrip(text: &str) {
    let Ok(formatted) = format_source(text) else {
        return;
    };
    let again = format_source(&formatted).expect("the formatted text parses");
    assert_eq!(again, formatted, "formatting is not idempotent");
    let Some(original) = build(text) else {
        return;
    };
    let reformatted = build(&formatted).expect("the formatted text compiles");
    assert_eq!(original.digest(), reformatted.digest());
}

fn assert_evaluates(policy: &Policy, state: &FlowState) {
    let outcome = policy
        .evaluate(state, true)
        .expect("an accepted state evaluates");
    let all = policy
        .evaluate_all(state, true)
        .expect("evaluate_all accepts it too");
    assert_eq!(all.len(), state.events.len() + 1);
    assert_eq!(all.last(), Some(&outcome));
}

fn check_input_binding(policy: &Policy, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let request_text = lines.next().unwrap_or("");
    let Ok(mut state) = policy.start_json(request_text, DEFAULT_NOW) else {
        return;
    };
    assert_evaluates(policy, &state);
    for line in lines {
        let Ok(event) = authflow_runtime::json::parse(line) else {
            continue;
        };
        match policy.resume(&state, &event) {
            Ok(next) => {
                assert_eq!(next.events.len(), state.events.len() + 1);
                state = next;
                assert_evaluates(policy, &state);
            }
            Err(_) => {
                let mut rejected = state.clone();
                rejected.events.push(event);
                assert!(policy.evaluate(&rejected, false).is_err());
            }
        }
    }
}

fn check_state_resume(policy: &Policy, data: &[u8]) {
    let Ok(state) = serde_json::from_slice::<FlowState>(data) else {
        return;
    };
    check_state(policy, &state);
    let mut repaired = state;
    repaired.policy = policy.digest().to_string();
    if let Ok(started) = policy.start(&repaired.request, DEFAULT_NOW) {
        repaired.instance = started.instance;
    }
    check_state(policy, &repaired);
}

fn check_state(policy: &Policy, state: &FlowState) {
    let single = policy.evaluate(state, true);
    let all = policy.evaluate_all(state, true);
    match (&single, &all) {
        (Ok(outcome), Ok(all)) => {
            assert_eq!(all.len(), state.events.len() + 1);
            assert_eq!(all.last(), Some(outcome));
        }
        (Err(_), Err(_)) => {}
        _ => panic!("evaluate and evaluate_all disagree on validity"),
    }
    let event = serde_json::json!({
        "factor_verified": { "factor": "password", "at": "9999-12-31T23:59:59Z" }
    });
    if let Ok(next) = policy.resume(state, &event) {
        assert!(
            single.is_ok(),
            "resume extended a state that does not evaluate"
        );
        assert_evaluates(policy, &next);
    }
    if let Ok(migrated) = policy.migrate(state) {
        assert_evaluates(policy, &migrated);
    }
}

#[test]
fn parse_seeds_check() {
    replay("parse_no_panic", 1, |data| {
        check_parse(&String::from_utf8_lossy(data));
    });
}

#[test]
fn format_seeds_roundtrip() {
    replay("format_roundtrip", 1, |data| {
        check_format_roundtrip(&String::from_utf8_lossy(data));
    });
}

#[test]
fn input_binding_seeds_evaluate() {
    let policy = scenario_policy();
    replay("input_binding", 1, |data| {
        check_input_binding(&policy, data)
    });
}

#[test]
fn state_seeds_resume() {
    let policy = scenario_policy();
    replay("state_resume", 1, |data| check_state_resume(&policy, data));
}

#[test]
fn scenario_seeds_are_accepted() {
    // The state seeds reach the evaluator only while they fit the scenario
    // policy, so a schema change that invalidates all of them must fail here.
    let policy = scenario_policy();
    let mut accepted = 0;
    for file in inputs("state_resume") {
        let data = std::fs::read(&file).expect("read seed");
        let state: FlowState = serde_json::from_slice(&data).expect("seed is a flow state");
        let mut repaired = state;
        repaired.policy = policy.digest().to_string();
        if policy.evaluate(&repaired, false).is_ok() {
            accepted += 1;
        }
    }
    assert!(
        accepted > 0,
        "no state seed evaluates under the scenario policy"
    );
}
