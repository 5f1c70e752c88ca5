//! Replays the fuzz seed corpora (`fuzz/seeds/TARGET/`) and any saved crash
//! inputs (`fuzz/artifacts/TARGET/`) through the properties the fuzz targets
//! check, so that `cargo test` keeps them as regression tests.
//!
//! The property functions are copies of those in `fuzz/src/lib.rs`: the
//! fuzz crate is a workspace of its own, and this crate cannot depend on it.
//! A change to a property there needs the same change here. The policy
//! generator of `eval_differential` is compiled in from its source file, so
//! the seeds decode to the same cases as in the fuzz target.

use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use authflow_compiler::{
    build_program, check_source, format::format_source, reference, Compilation, NoImports,
};
use authflow_runtime::program::Program;
use authflow_runtime::{Backend, FlowState, Outcome, Policy};
use serde_json::Value as Json;

/// The generator of `eval_differential` cases. It reads `crate::DEFAULT_NOW`,
/// which this file defines as the fuzz crate does.
#[path = "../../fuzz/src/generate.rs"]
mod generate;

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

struct Built {
    compilation: Compilation,
    program: Program,
}

fn build(text: &str) -> Option<Built> {
    let compilation = check_source("input.flow", text, &mut NoImports);
    let program = build_program(&compilation)?;
    Some(Built {
        compilation,
        program,
    })
}

fn scenario_policy() -> Policy {
    let built = build(SCENARIO_POLICY).expect("the scenario policy compiles");
    Policy::new(built.program).expect("the scenario program verifies")
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
    assert_eq!(original.program.digest(), reformatted.program.digest());
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
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(state) = FlowState::from_json(json) else {
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

struct BackendRun {
    log: String,
    evaluated: Option<(Policy, FlowState, Vec<Outcome>)>,
}

fn run_backend(program: &Program, backend: Backend, request: &Json, events: &[Json]) -> BackendRun {
    let mut policy = Policy::with_backend(program.clone(), backend).expect("the program verifies");
    // Generated requests may name a flow that another flow runs.
    policy.reach_all_flows();
    let mut log = Vec::new();
    let mut state = match policy.start(request, DEFAULT_NOW) {
        Ok(state) => state,
        Err(error) => {
            return BackendRun {
                log: format!("start rejected: {error}"),
                evaluated: None,
            }
        }
    };
    for event in events {
        match policy.resume(&state, event) {
            Ok(next) => state = next,
            Err(error) => log.push(format!("resume rejected: {error}")),
        }
    }
    let outcomes = policy
        .evaluate_all(&state, true)
        .expect("an accepted state evaluates");
    for outcome in &outcomes {
        log.push(serde_json::to_string(outcome).expect("outcomes serialize"));
    }
    BackendRun {
        log: log.join("\n"),
        evaluated: Some((policy, state, outcomes)),
    }
}

fn check_reference_agrees(built: &Built, backend: Backend, run: &BackendRun) {
    let Some((policy, state, outcomes)) = &run.evaluated else {
        return;
    };
    for (applied, outcome) in outcomes.iter().enumerate() {
        let prefix = FlowState {
            events: state.events[..applied].to_vec(),
            ..state.clone()
        };
        let facts = policy
            .facts(&prefix)
            .expect("a prefix of an accepted state binds");
        let evaluation = reference::evaluate(&built.compilation, &built.program, &facts)
            .unwrap_or_else(|error| panic!("the reference evaluator failed: {error}"));
        let mut kernel = outcome.clone();
        let steps = kernel.trace.take().map(|trace| trace.steps);
        assert_eq!(
            kernel, evaluation.outcome,
            "{backend:?} and the reference decide differently after {applied} events"
        );
        assert_eq!(
            steps,
            Some(evaluation.steps),
            "{backend:?} and the reference trace differently after {applied} events"
        );
    }
}

fn check_backends_agree(built: &Built, request: &Json, events: &[Json]) {
    if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        authflow_runtime::native::compile(&built.program)
            .expect("the native backend compiles a verified program");
    }
    let bytecode = run_backend(&built.program, Backend::Bytecode, request, events);
    let native = run_backend(&built.program, Backend::Native, request, events);
    assert_eq!(
        bytecode.log, native.log,
        "the bytecode and native kernels disagree"
    );
    check_reference_agrees(built, Backend::Bytecode, &bytecode);
    check_reference_agrees(built, Backend::Native, &native);
}

/// Decodes fuzz bytes as the `eval_differential` target does, skipping the
/// inputs that libfuzzer-sys skips, and checks the case. Returns whether the
/// generated policy compiled, so that the case reached the evaluators.
fn check_eval_differential(data: &[u8]) -> bool {
    if data.len() < generate::Case::size_hint(0).0 {
        return false;
    }
    let Ok(case) = generate::Case::arbitrary_take_rest(Unstructured::new(data)) else {
        return false;
    };
    let Some(built) = build(&case.policy()) else {
        return false;
    };
    check_backends_agree(&built, &case.request_json(), &case.events_json());
    true
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
fn eval_differential_seeds_agree() {
    let evaluated = std::cell::Cell::new(0);
    replay("eval_differential", 1, |data| {
        if check_eval_differential(data) {
            evaluated.set(evaluated.get() + 1);
        }
    });
    assert!(
        evaluated.get() > 0,
        "no eval_differential seed generates a policy that compiles"
    );
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
