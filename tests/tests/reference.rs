//! Runs the reference evaluator (`authflow_compiler::reference`) beside the
//! engine, on both kernels, for every request and event of the acceptance
//! scenarios, the project cases, the examples and the `test` blocks of their
//! policies. Every evaluation must give the same outcome and trace steps.

use std::fs;
use std::path::{Path, PathBuf};

use authflow_compiler::check::{CheckedTest, Clock, TestEvent, TestStep};
use authflow_compiler::{build_program, check_source, reference, Compilation, NoImports};
use authflow_runtime::program::Program;
use authflow_runtime::value::format_time;
use authflow_runtime::{Backend, FlowState, Outcome, Policy};
use serde_json::{json, Map, Value};

/// The evaluation time of a request without `now`: 2026-12-04T10:00:00Z in
/// microseconds since the Unix epoch.
const DEFAULT_NOW: i64 = 1_796_378_400_000_000;

/// The principal id and approver that `authflow test` uses when a test
/// gives none (see `compiler/src/testing.rs`).
const TEST_PRINCIPAL_ID: &str = "test-principal";
const TEST_APPROVER: &str = "test-approver";

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_path_buf()
}

/// Lists the subfolders of `relative`, sorted.
fn folders(relative: &str) -> Vec<PathBuf> {
    let mut folders: Vec<PathBuf> = fs::read_dir(repository_root().join(relative))
        .unwrap_or_else(|error| panic!("{relative}: {error}"))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_dir())
        .collect();
    folders.sort();
    folders
}

/// Compiles a policy file without proving its invariants.
fn compile(path: &Path) -> (Compilation, Program) {
    let text = fs::read_to_string(path).unwrap_or_else(|error| panic!("{path:?}: {error}"));
    compile_text(&path.display().to_string(), &text)
}

/// Compiles policy text named `name` without proving its invariants.
fn compile_text(name: &str, text: &str) -> (Compilation, Program) {
    let compilation = check_source(name, text, &mut NoImports);
    let errors: Vec<&str> = compilation
        .diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.message.as_str())
        .collect();
    assert!(errors.is_empty(), "{name}: {errors:?}");
    let program = build_program(&compilation).expect("a checked policy lowers");
    (compilation, program)
}

/// Counts what one comparison covered.
#[derive(Default)]
struct Tally {
    evaluations: usize,
    failures: Vec<String>,
}

/// Evaluates a request and its events with the engine on both kernels and
/// with the reference evaluator, after the request and after every event.
/// A request the engine rejects is skipped, and so are the events from the
/// first rejected one on, because invalid input has no outcome to compare.
fn compare(
    compilation: &Compilation,
    program: &Program,
    request: &Value,
    events: &[Value],
    label: &str,
    tally: &mut Tally,
) {
    for backend in [Backend::Bytecode, Backend::Native] {
        let policy = Policy::with_backend(program.clone(), backend).expect("the program verifies");
        let Ok(mut state) = policy.start(request, DEFAULT_NOW) else {
            return;
        };
        for event in events {
            match policy.resume(&state, event) {
                Ok(next) => state = next,
                Err(_) => break,
            }
        }
        let outcomes = policy
            .evaluate_all(&state, true)
            .expect("an accepted state evaluates");
        for (applied, engine) in outcomes.into_iter().enumerate() {
            let prefix = FlowState {
                events: state.events[..applied].to_vec(),
                ..state.clone()
            };
            let facts = policy.facts(&prefix).expect("the prefix evaluates");
            let place = format!("{label}, {backend:?}, after {applied} events");
            tally.evaluations += 1;
            match reference::evaluate(compilation, program, &facts) {
                Ok(evaluation) => {
                    if let Some(difference) = difference(engine, &evaluation) {
                        tally.failures.push(format!("{place}: {difference}"));
                    }
                }
                Err(error) => tally
                    .failures
                    .push(format!("{place}: the reference evaluator failed: {error}")),
            }
        }
    }
}

/// Describes how the engine's outcome differs from the reference's, if it does.
fn difference(mut engine: Outcome, reference: &reference::Evaluation) -> Option<String> {
    let steps = engine
        .trace
        .take()
        .map(|trace| trace.steps)
        .unwrap_or_default();
    if engine != reference.outcome {
        return Some(format!(
            "outcomes differ\n  engine:    {}\n  reference: {}",
            serde_json::to_string(&engine).unwrap_or_default(),
            serde_json::to_string(&reference.outcome).unwrap_or_default()
        ));
    }
    if steps.len() != reference.steps.len() {
        return Some(format!(
            "the engine traced {} steps, the reference {}\n  engine:    {steps:?}\n  reference: {:?}",
            steps.len(),
            reference.steps.len(),
            reference.steps
        ));
    }
    let (position, (ours, theirs)) = steps
        .iter()
        .zip(&reference.steps)
        .enumerate()
        .find(|(_, (ours, theirs))| ours != theirs)?;
    Some(format!(
        "trace step {position} differs\n  engine:    {ours:?}\n  reference: {theirs:?}"
    ))
}

/// Compares every case of a `cases.json` folder and returns the case count.
fn compare_cases(folder: &Path, tally: &mut Tally) -> usize {
    let spec_path = folder.join("cases.json");
    let Ok(text) = fs::read_to_string(&spec_path) else {
        return 0;
    };
    let (compilation, program) = compile(&folder.join("policy.flow"));
    let spec: Value = serde_json::from_str(&text).expect("cases.json is JSON");
    let cases = spec["cases"].as_array().cloned().unwrap_or_default();
    for case in &cases {
        // A request given as a string is raw text, often deliberately invalid.
        let request = match &case["request"] {
            Value::String(raw) => match authflow_runtime::json::parse(raw) {
                Ok(request) => request,
                Err(_) => continue,
            },
            other => other.clone(),
        };
        let events = case["events"].as_array().cloned().unwrap_or_default();
        let label = format!(
            "{} / {}",
            folder.display(),
            case["name"].as_str().unwrap_or("?")
        );
        compare(&compilation, &program, &request, &events, &label, tally);
    }
    compare_policy_tests(&compilation, &program, &folder.display().to_string(), tally);
    cases.len()
}

/// Builds the request and events of a `test` block as `authflow test` sends
/// them. Returns `None` for a test that makes no request or describes the
/// request after making it.
fn test_inputs(test: &CheckedTest) -> Option<(Value, Vec<Value>)> {
    let mut clock = 0i64;
    let mut flow = None;
    let mut principal: Option<Map<String, Value>> = None;
    let mut context = Map::new();
    let mut session = Map::new();
    let mut switches = Map::new();
    let mut request: Option<Value> = None;
    let mut events = Vec::new();
    let object = |values: &[(String, Value)]| values.iter().cloned().collect::<Map<_, _>>();
    for (step, _) in &test.steps {
        let describes = matches!(
            step,
            TestStep::Flow(_)
                | TestStep::Principal { .. }
                | TestStep::Context(_)
                | TestStep::Session(_)
                | TestStep::Switches(_)
        );
        if describes && request.is_some() {
            return None;
        }
        match step {
            TestStep::Flow(name) => flow = Some(name.clone()),
            TestStep::Principal { kind, values } => {
                let mut record = object(values);
                record.insert("kind".into(), Value::from(kind.as_str()));
                record
                    .entry("id")
                    .or_insert_with(|| Value::from(TEST_PRINCIPAL_ID));
                principal = Some(record);
            }
            TestStep::Context(values) => context = object(values),
            TestStep::Session(values) => session = object(values),
            TestStep::Switches(values) => switches = object(values),
            TestStep::At(Clock::Set(time)) => clock = *time,
            TestStep::At(Clock::Advance(duration)) => clock = clock.saturating_add(*duration),
            TestStep::Event(_) | TestStep::Expect { .. } => {}
        }
        if matches!(step, TestStep::Event(_) | TestStep::Expect { .. }) && request.is_none() {
            let mut built = json!({
                "flow": flow.clone()?,
                "principal": principal.clone()?,
                "context": context.clone(),
                "switches": switches.clone(),
                "now": format_time(clock),
            });
            if !session.is_empty() {
                let mut session = session.clone();
                let started = session
                    .get("started_at")
                    .cloned()
                    .unwrap_or_else(|| Value::from(format_time(clock)));
                if let Some(Value::Array(factors)) = session.remove("factors") {
                    let verified: Vec<Value> = factors
                        .into_iter()
                        .map(|factor| json!({ "factor": factor, "at": started }))
                        .collect();
                    session.insert("factors".into(), Value::Array(verified));
                }
                built["session"] = Value::Object(session);
            }
            request = Some(built);
        }
        if let TestStep::Event(event) = step {
            events.push(test_event(event, clock));
        }
    }
    Some((request?, events))
}

fn test_event(event: &TestEvent, clock: i64) -> Value {
    let at = format_time(clock);
    match event {
        TestEvent::Verify(factor) => json!({ "factor_verified": { "factor": factor, "at": at } }),
        TestEvent::Fail(factor) => json!({ "factor_failed": { "factor": factor, "at": at } }),
        TestEvent::Enroll(factor) => json!({ "factor_enrolled": { "factor": factor, "at": at } }),
        TestEvent::Approval {
            role,
            approver,
            granted,
        } => json!({ "approval": {
            "role": role,
            "approver": approver.as_deref().unwrap_or(TEST_APPROVER),
            "granted": granted,
            "at": at,
        } }),
        TestEvent::Update {
            context,
            principal,
            switches,
        } => {
            let mut update = Map::new();
            if !switches.is_empty() {
                update.insert(
                    "switches".into(),
                    Value::Object(switches.iter().cloned().collect()),
                );
            }
            if !context.is_empty() {
                update.insert(
                    "context".into(),
                    Value::Object(context.iter().cloned().collect()),
                );
            }
            if !principal.is_empty() {
                update.insert(
                    "principal".into(),
                    Value::Object(principal.iter().cloned().collect()),
                );
            }
            update.insert("at".into(), Value::from(at));
            json!({ "update": update })
        }
    }
}

/// Compares the request and events of every `test` block of a policy.
fn compare_policy_tests(
    compilation: &Compilation,
    program: &Program,
    origin: &str,
    tally: &mut Tally,
) {
    let checked = compilation.checked.as_ref().expect("a checked policy");
    for test in &checked.tests {
        if let Some((request, events)) = test_inputs(test) {
            let label = format!("{origin} / test {:?}", test.name);
            compare(compilation, program, &request, &events, &label, tally);
        }
    }
}

fn assert_agreement(tally: &Tally, minimum: usize) {
    assert!(
        tally.failures.is_empty(),
        "{} of {} evaluations differ:\n{}",
        tally.failures.len(),
        tally.evaluations,
        tally.failures.join("\n")
    );
    assert!(
        tally.evaluations >= minimum,
        "only {} evaluations were compared, expected at least {minimum}",
        tally.evaluations
    );
}

#[test]
fn scenarios_agree() {
    let mut tally = Tally::default();
    let mut cases = 0;
    for folder in folders("tests/scenarios") {
        cases += compare_cases(&folder, &mut tally);
    }
    assert!(cases >= 50, "only {cases} scenario cases found");
    assert_agreement(&tally, 500);
}

#[test]
fn project_cases_agree() {
    let mut tally = Tally::default();
    let mut cases = 0;
    for folder in folders("tests/cases") {
        cases += compare_cases(&folder, &mut tally);
    }
    assert!(cases >= 3, "only {cases} project cases found");
    assert_agreement(&tally, 10);
}

/// Runs each example request with every event of its folder in order, and
/// with each event alone.
#[test]
fn examples_agree() {
    let mut tally = Tally::default();
    let mut requests = 0;
    for folder in folders("examples") {
        let policy_path = folder.join("policy.flow");
        if !policy_path.exists() {
            continue;
        }
        let (compilation, program) = compile(&policy_path);
        let mut files: Vec<PathBuf> = fs::read_dir(&folder)
            .expect("an example folder")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .collect();
        files.sort();
        let mut events: Vec<Value> = Vec::new();
        if let Ok(entries) = fs::read_dir(folder.join("events")) {
            let mut paths: Vec<PathBuf> =
                entries.filter_map(Result::ok).map(|e| e.path()).collect();
            paths.sort();
            for path in paths {
                let text = fs::read_to_string(&path).expect("an event file");
                events.push(serde_json::from_str(&text).expect("an event is JSON"));
            }
        }
        for path in files {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if !(name.starts_with("request") && name.ends_with(".json")) {
                continue;
            }
            requests += 1;
            let text = fs::read_to_string(&path).expect("a request file");
            let request: Value = serde_json::from_str(&text).expect("a request is JSON");
            let label = path.display().to_string();
            compare(
                &compilation,
                &program,
                &request,
                &events,
                &label,
                &mut tally,
            );
            for (i, event) in events.iter().enumerate() {
                let single = std::slice::from_ref(event);
                let label = format!("{label} with event {i} alone");
                compare(&compilation, &program, &request, single, &label, &mut tally);
            }
        }
        compare_policy_tests(
            &compilation,
            &program,
            &folder.display().to_string(),
            &mut tally,
        );
    }
    assert!(requests >= 10, "only {requests} example requests found");
    assert_agreement(&tally, 100);
}

/// Generates a flow of 50 deciding sites, more than one block of the
/// lowering's site selection, spread over nested `if` blocks with
/// requirements and approvals.
fn long_flow() -> String {
    use std::fmt::Write;
    let mut text = String::from(
        "policy \"long\" version \"1\"\n\nprincipal human {\n  roles: Set<String>\n}\n\n\
         context {\n  risk: Int\n  resource: String\n}\n\nflow long for human on login {\n",
    );
    let deny = |text: &mut String, indent: &str, range: std::ops::Range<u32>| {
        for i in range {
            let _ = writeln!(text, "{indent}deny \"rule {i}\" when context.risk == {i}");
        }
    };
    deny(&mut text, "  ", 1..21);
    text.push_str("  if context.resource == \"a\" {\n");
    deny(&mut text, "    ", 21..31);
    text.push_str(
        "    if context.risk >= 40 {\n      require webauthn\n      approve by manager\n    } else {\n      require any(totp, webauthn)\n    }\n",
    );
    deny(&mut text, "    ", 31..36);
    text.push_str("    allow\n  } else if context.resource == \"b\" {\n    require password\n");
    deny(&mut text, "    ", 36..46);
    text.push_str("    approve by security\n    allow\n  }\n  require password\n  allow\n}\n");
    text
}

#[test]
fn long_flow_agrees() {
    let (compilation, program) = compile_text("long.flow", &long_flow());
    assert!(program.flows[0].sites.len() > 40, "too few sites");

    let mut tally = Tally::default();
    let mut reasons = std::collections::BTreeSet::new();
    let policy = Policy::new(program.clone()).expect("the program verifies");
    let factor_sets: [&[&str]; 3] = [&[], &["password", "totp"], &["password", "webauthn"]];
    for risk in 0..=50 {
        for resource in ["a", "b", "c"] {
            for factors in factor_sets {
                let factors: Vec<Value> = factors
                    .iter()
                    .map(|f| json!({"factor": f, "at": "2026-12-04T09:59:00Z"}))
                    .collect();
                let request = json!({
                    "flow": "long",
                    "principal": {"kind": "human", "id": "u-1", "roles": []},
                    "context": {"risk": risk, "resource": resource},
                    "session": {"factors": factors},
                    "now": "2026-12-04T10:00:00Z",
                });
                let approvals: Vec<Value> = ["manager", "security"]
                    .iter()
                    .map(|role| {
                        json!({"approval": {"role": role, "approver": "m-1", "granted": true, "at": "2026-12-04T10:00:00Z"}})
                    })
                    .collect();
                let label = format!(
                    "risk {risk}, resource {resource}, {} factors",
                    factors.len()
                );
                compare(
                    &compilation,
                    &program,
                    &request,
                    &approvals,
                    &label,
                    &mut tally,
                );
                let state = policy
                    .start(&request, DEFAULT_NOW)
                    .expect("a valid request");
                let outcome = policy.evaluate(&state, false).expect("evaluates");
                reasons.insert(format!("{:?} {:?}", outcome.decision, outcome.reason));
            }
        }
    }
    assert_agreement(&tally, 1000);
    // Every deny rule, and the challenge, pending and allow outcomes.
    assert!(
        reasons.len() >= 48,
        "only {} distinct outcomes: {reasons:?}",
        reasons.len()
    );
}
