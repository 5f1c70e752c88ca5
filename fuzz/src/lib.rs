//! Properties checked by the fuzz targets in `fuzz_targets/`, one function
//! per target, plus the generator of well-typed policies that
//! `eval_differential` uses.
//!
//! `tests/tests/fuzz_corpus.rs` in the main workspace replays the seed
//! corpora through copies of the byte-input properties, because the main
//! workspace cannot depend on this crate. A change to a property here needs
//! the same change there.

use authflow_compiler::{
    build_program, check_source, format::format_source, reference, Compilation, NoImports,
};
use authflow_runtime::program::Program;
use authflow_runtime::{Backend, FlowState, Outcome, Policy};
use serde_json::Value as Json;

pub mod generate;

/// The policy that `input_binding` and `state_resume` evaluate against.
pub const SCENARIO_POLICY: &str =
    include_str!("../../tests/scenarios/01-workforce-login/policy.flow");

/// The evaluation time of a request without `now`: 2026-12-04T10:00:00Z in
/// microseconds since the Unix epoch.
pub const DEFAULT_NOW: i64 = 1_796_378_400_000_000;

/// A policy compiled without proving its invariants.
pub struct Built {
    /// The front end's result: the sources and the checked program, which
    /// the reference evaluator walks.
    pub compilation: Compilation,
    /// The bytecode program lowered from the checked program.
    pub program: Program,
}

/// Compiles `text` without proving its invariants, as the fuzz targets do:
/// the front end, then lowering and emission. Returns `None` when the text
/// has compile errors.
pub fn build(text: &str) -> Option<Built> {
    let compilation = check_source("input.flow", text, &mut NoImports);
    let program = build_program(&compilation)?;
    Some(Built {
        compilation,
        program,
    })
}

/// Compiles [`SCENARIO_POLICY`] for the bytecode kernel.
///
/// # Panics
///
/// Panics when the scenario policy no longer compiles.
pub fn scenario_policy() -> Policy {
    let built = build(SCENARIO_POLICY).expect("the scenario policy compiles");
    Policy::new(built.program).expect("the scenario program verifies")
}

/// Checks that the front end ends every text in a checked program or in
/// errors, never both and never neither. A panic anywhere fails the target.
pub fn check_parse(text: &str) {
    let compilation = check_source("input.flow", text, &mut NoImports);
    assert_eq!(
        compilation.checked.is_some(),
        !compilation.has_errors(),
        "check_source returned a checked program together with errors, or neither"
    );
}

/// Checks the formatter on a text that parses: its output parses, formatting
/// it again changes nothing, and when the original compiles the formatted
/// text compiles to the same digest.
pub fn check_format_roundtrip(text: &str) {
    let Ok(formatted) = format_source(text) else {
        return;
    };
    let again = match format_source(&formatted) {
        Ok(again) => again,
        Err(diagnostics) => panic!(
            "the formatted text does not parse: {:?}\n--- formatted ---\n{formatted}",
            diagnostics.first().map(|d| &d.message)
        ),
    };
    assert_eq!(again, formatted, "formatting is not idempotent");
    let Some(original) = build(text) else {
        return;
    };
    let Some(reformatted) = build(&formatted) else {
        panic!("the original compiles but the formatted text does not:\n{formatted}");
    };
    assert_eq!(
        original.program.digest(),
        reformatted.program.digest(),
        "formatting changed the compiled digest"
    );
}

/// Checks the input binder on bytes read as lines: the first line is the
/// request, every further line an event. A rejected request or event
/// produces no state, a state that contains a rejected event does not
/// evaluate, and every accepted state evaluates.
pub fn check_input_binding(policy: &Policy, data: &[u8]) {
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
                assert!(
                    policy.evaluate(&rejected, false).is_err(),
                    "resume rejected an event that evaluate accepts"
                );
            }
        }
    }
}

/// Checks that `state` evaluates, alone and event by event, to the same
/// final outcome.
fn assert_evaluates(policy: &Policy, state: &FlowState) {
    let outcome = match policy.evaluate(state, true) {
        Ok(outcome) => outcome,
        Err(error) => panic!("an accepted state does not evaluate: {error}"),
    };
    let all = match policy.evaluate_all(state, true) {
        Ok(all) => all,
        Err(error) => panic!("evaluate accepts a state that evaluate_all rejects: {error}"),
    };
    assert_eq!(all.len(), state.events.len() + 1);
    assert_eq!(
        all.last(),
        Some(&outcome),
        "evaluate_all ends in another outcome"
    );
}

/// Checks a flow state read from arbitrary bytes: it is either rejected or
/// evaluates. The state is tried as given and again with its policy digest
/// and instance id repaired, so that mutated requests and events get past
/// those two checks.
pub fn check_state_resume(policy: &Policy, data: &[u8]) {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(state) = FlowState::from_json(json) else {
        return;
    };
    check_state(policy, &state);
    let mut repaired = state;
    repaired.policy = policy.digest().to_string();
    // With `now` present, `start` keeps the request as it is, so its
    // instance id is the one `evaluate` expects.
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
            assert_eq!(
                all.last(),
                Some(outcome),
                "evaluate_all ends in another outcome"
            );
        }
        (Err(_), Err(_)) => {}
        _ => panic!(
            "evaluate and evaluate_all disagree on validity: {:?} / {:?}",
            single.as_ref().err(),
            all.as_ref().err()
        ),
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

/// One backend's run of a request and its events.
struct BackendRun {
    /// The rejections and the serialized outcomes, one per line, so that two
    /// runs compare byte for byte.
    log: String,
    /// The policy, the state of the accepted request and events, and the
    /// outcome after the request and after each event. `None` when the
    /// request was rejected.
    evaluated: Option<(Policy, FlowState, Vec<Outcome>)>,
}

/// Runs a request and its events on one backend. Events that `resume`
/// rejects are logged and left out of the state.
fn run_backend(program: &Program, backend: Backend, request: &Json, events: &[Json]) -> BackendRun {
    let mut policy = match Policy::with_backend(program.clone(), backend) {
        Ok(policy) => policy,
        Err(error) => panic!("a compiled program does not verify: {error}"),
    };
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
    let outcomes = match policy.evaluate_all(&state, true) {
        Ok(outcomes) => outcomes,
        Err(error) => panic!("an accepted state does not evaluate: {error}"),
    };
    for outcome in &outcomes {
        log.push(serde_json::to_string(outcome).expect("outcomes serialize"));
    }
    BackendRun {
        log: log.join("\n"),
        evaluated: Some((policy, state, outcomes)),
    }
}

/// Checks that the reference evaluator, walking the checked program, gives
/// each outcome of a backend run, trace steps included, after the request
/// and after every event.
fn check_reference_agrees(built: &Built, backend: Backend, run: &BackendRun) {
    let Some((policy, state, outcomes)) = &run.evaluated else {
        return;
    };
    for (applied, outcome) in outcomes.iter().enumerate() {
        let prefix = FlowState {
            events: state.events[..applied].to_vec(),
            ..state.clone()
        };
        let facts = match policy.facts(&prefix) {
            Ok(facts) => facts,
            Err(error) => panic!("a prefix of an accepted state does not bind: {error}"),
        };
        let evaluation = match reference::evaluate(&built.compilation, &built.program, &facts) {
            Ok(evaluation) => evaluation,
            Err(error) => panic!("the reference evaluator failed after {applied} events: {error}"),
        };
        let mut kernel = outcome.clone();
        let steps = kernel.trace.take().map(|trace| trace.steps);
        assert_eq!(
            kernel, evaluation.outcome,
            "the {backend:?} kernel and the reference evaluator decide differently after {applied} events"
        );
        assert_eq!(
            steps,
            Some(evaluation.steps),
            "the {backend:?} kernel and the reference evaluator trace differently after {applied} events"
        );
    }
}

/// Checks that the bytecode kernel and the native kernel give byte-identical
/// outcomes and traces for one program, request and event list, and that
/// the reference evaluator gives the same outcomes and trace steps.
pub fn check_backends_agree(built: &Built, request: &Json, events: &[Json]) {
    if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
        if let Err(error) = authflow_runtime::native::compile(&built.program) {
            panic!("the native backend cannot compile a verified program: {error}");
        }
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
