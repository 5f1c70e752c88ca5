//! Audit traces, replay and stored flow state, through the real binary.

mod common;

use std::path::PathBuf;

use serde_json::Value;

const POLICY: &str = "tests/scenarios/01-workforce-login/policy.flow";

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("authflow-trace-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path.display().to_string()
}

const REQUEST: &str = r#"{"flow": "workforce_login", "principal": {"kind": "human", "id": "u-1", "roles": ["admin"], "employment": "employee"}, "context": {"resource": "admin_console", "risk": 10, "device_trusted": true}, "now": "2026-12-04T10:00:00Z"}"#;
const PASSWORD: &str =
    r#"{"factor_verified": {"factor": "password", "at": "2026-12-04T10:00:10Z"}}"#;
const KEY: &str =
    r#"{"factor_verified": {"factor": "security_key", "at": "2026-12-04T10:00:20Z"}}"#;

fn traced_run(dir: &std::path::Path) -> String {
    let request = write(dir, "request.json", REQUEST);
    let password = write(dir, "password.json", PASSWORD);
    let key = write(dir, "key.json", KEY);
    let output = common::authflow(&[
        "eval", POLICY, "--input", &request, "--event", &password, "--event", &key, "--trace",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    common::stdout(&output)
}

#[test]
fn trace_is_byte_identical_across_runs() {
    let dir = scratch("identical");
    let first = traced_run(&dir);
    let second = traced_run(&dir);
    assert_eq!(first, second);
    let last: Value =
        serde_json::from_str(first.lines().last().expect("three outcomes")).expect("JSON");
    assert_eq!(last["decision"], "allow");
    let steps = last["trace"]["steps"].as_array().expect("steps");
    assert!(
        steps.iter().any(|s| s["step"] == "require aal3"),
        "{steps:?}"
    );
    assert_eq!(
        last["trace"]["input"]["events"].as_array().map(Vec::len),
        Some(2)
    );
}

#[test]
fn replay_confirms_unmodified_trace() {
    let dir = scratch("confirm");
    let recorded = traced_run(&dir);
    let trace = write(&dir, "trace.jsonl", &recorded);
    let output = common::authflow(&["replay", POLICY, &trace]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}{}",
        common::stdout(&output),
        common::stderr(&output)
    );
    assert!(common::stdout(&output).contains("3 outcomes confirmed"));
}

#[test]
fn replay_rejects_changed_guard_value() {
    let dir = scratch("tampered");
    let recorded = traced_run(&dir);
    let mut last: Value =
        serde_json::from_str(recorded.lines().last().expect("outcomes")).expect("JSON");
    let guard = &mut last["trace"]["steps"][0]["guards"][0];
    let flipped = !guard.as_bool().expect("a guard value");
    *guard = Value::Bool(flipped);
    let trace = write(&dir, "trace.json", &last.to_string());
    let output = common::authflow(&["replay", POLICY, &trace]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        common::stdout(&output).contains("steps[0].guards[0]"),
        "{}",
        common::stdout(&output)
    );
}

#[test]
fn stored_state_resumes_with_later_event() {
    let dir = scratch("resume");
    let request = write(&dir, "request.json", REQUEST);
    let password = write(&dir, "password.json", PASSWORD);
    let key = write(&dir, "key.json", KEY);
    let state = dir.join("state.json").display().to_string();
    let output = common::authflow(&[
        "eval",
        POLICY,
        "--input",
        &request,
        "--event",
        &password,
        "--state-out",
        &state,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let output = common::authflow(&["resume", POLICY, "--state", &state, "--event", &key]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let outcome: Value = serde_json::from_str(common::stdout(&output).trim()).expect("one outcome");
    assert_eq!(outcome["decision"], "allow");
}

#[test]
fn stored_state_under_other_policy_is_rejected() {
    let dir = scratch("mismatch");
    let request = write(&dir, "request.json", REQUEST);
    let state = dir.join("state.json").display().to_string();
    let output = common::authflow(&["eval", POLICY, "--input", &request, "--state-out", &state]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let changed = std::fs::read_to_string(common::root().join(POLICY))
        .expect("policy")
        .replace(">= 90", ">= 80");
    let other = write(&dir, "policy.flow", &changed);
    let output = common::authflow(&["resume", &other, "--state", &state]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        common::stderr(&output).contains("another"),
        "{}",
        common::stderr(&output)
    );
    let output = common::authflow(&["resume", &other, "--state", &state, "--migrate"]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
}

#[test]
fn bytecode_evaluates_like_source() {
    let dir = scratch("bytecode");
    let compiled = dir.join("policy.flowc").display().to_string();
    let output = common::authflow(&["build", POLICY, "-o", &compiled]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let request = write(&dir, "request.json", REQUEST);
    let password = write(&dir, "password.json", PASSWORD);
    let from_source = common::authflow(&[
        "eval", POLICY, "--input", &request, "--event", &password, "--trace",
    ]);
    let from_bytecode = common::authflow(&[
        "eval", &compiled, "--input", &request, "--event", &password, "--trace",
    ]);
    assert_eq!(common::stdout(&from_source), common::stdout(&from_bytecode));
}

#[test]
fn tampered_bytecode_is_rejected() {
    let dir = scratch("tampered-bytecode");
    let compiled = dir.join("policy.flowc");
    let output = common::authflow(&["build", POLICY, "-o", &compiled.display().to_string()]);
    assert_eq!(output.status.code(), Some(0));
    let text = std::fs::read_to_string(&compiled)
        .expect("bytecode")
        .replacen("risk too high", "risk too low", 1);
    std::fs::write(&compiled, text).expect("write");
    let request = write(&dir, "request.json", REQUEST);
    let output = common::authflow(&["eval", &compiled.display().to_string(), "--input", &request]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        common::stderr(&output).contains("digest mismatch"),
        "{}",
        common::stderr(&output)
    );
}

#[test]
fn emit_prints_each_stage() {
    for stage in ["ast", "ir", "bytecode"] {
        let output = common::authflow(&["build", POLICY, "--emit", stage]);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{stage}: {}",
            common::stderr(&output)
        );
        assert!(
            !common::stdout(&output).trim().is_empty(),
            "{stage} printed nothing"
        );
    }
}

#[test]
fn trace_shows_deciding_step_and_guards() {
    let dir = scratch("deciding");
    let risky = REQUEST.replace("\"risk\": 10", "\"risk\": 95");
    let request = write(&dir, "request.json", &risky);
    let output = common::authflow(&["eval", POLICY, "--input", &request, "--trace"]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let outcome: Value = serde_json::from_str(common::stdout(&output).trim()).expect("one outcome");
    let steps = outcome["trace"]["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert_eq!(steps[0]["line"], 24);
    assert_eq!(
        steps[0]["step"],
        "deny \"risk too high\" when context.risk >= 90"
    );
    assert_eq!(steps[0]["guards"], serde_json::json!([true]));
    assert_eq!(steps[0]["result"], "deny");
}

#[test]
fn trace_records_selected_arm() {
    let dir = scratch("arm");
    let request = write(&dir, "request.json", REQUEST);
    let output = common::authflow(&["eval", POLICY, "--input", &request, "--trace"]);
    let outcome: Value = serde_json::from_str(common::stdout(&output).trim()).expect("one outcome");
    let steps = outcome["trace"]["steps"].as_array().expect("steps");
    // The password challenge decides before the `if`, so the `if` is not reached.
    assert_eq!(steps.len(), 2, "{steps:?}");
    assert_eq!(steps[1]["step"], "require password attempts 5");
    assert_eq!(steps[1]["result"], "challenge");
    let password = write(&dir, "password.json", PASSWORD);
    let output = common::authflow(&[
        "eval", POLICY, "--input", &request, "--event", &password, "--trace",
    ]);
    let last: Value = serde_json::from_str(
        common::stdout(&output)
            .lines()
            .last()
            .expect("two outcomes"),
    )
    .expect("JSON");
    let steps = last["trace"]["steps"].as_array().expect("steps");
    let branch = steps
        .iter()
        .find(|s| s["step"].as_str().is_some_and(|t| t.starts_with("if ")))
        .expect("the if step");
    assert_eq!(branch["arm"], 1);
    assert_eq!(branch["guards"], serde_json::json!([true, false]));
}

#[test]
fn altered_state_request_is_rejected() {
    let dir = scratch("altered");
    let request = write(&dir, "request.json", REQUEST);
    let state_path = dir.join("state.json");
    let output = common::authflow(&[
        "eval",
        POLICY,
        "--input",
        &request,
        "--state-out",
        &state_path.display().to_string(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let mut state: Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).expect("state")).expect("JSON");
    state["request"]["principal"]["id"] = Value::from("admin");
    std::fs::write(&state_path, state.to_string()).expect("write state");
    let output = common::authflow(&[
        "resume",
        POLICY,
        "--state",
        &state_path.display().to_string(),
    ]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        common::stderr(&output).contains("instance"),
        "{}",
        common::stderr(&output)
    );
    assert!(common::stdout(&output).is_empty());
}

#[test]
fn unwritable_state_file_prints_no_outcome() {
    let dir = scratch("unwritable");
    let request = write(&dir, "request.json", REQUEST);
    let missing = dir.join("no/such/folder/state.json").display().to_string();
    let output = common::authflow(&["eval", POLICY, "--input", &request, "--state-out", &missing]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        common::stdout(&output).is_empty(),
        "{}",
        common::stdout(&output)
    );
}

#[test]
fn candidate_replay_counts_changed_decisions() {
    let dir = scratch("candidate");
    let mut recorded = String::new();
    for risk in [10, 85, 95] {
        let request = write(
            &dir,
            &format!("r{risk}.json"),
            &REQUEST.replace("\"risk\": 10", &format!("\"risk\": {risk}")),
        );
        let output = common::authflow(&["eval", POLICY, "--input", &request, "--trace"]);
        assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
        recorded.push_str(&common::stdout(&output));
    }
    let traces = write(&dir, "traces.jsonl", &recorded);
    let lowered = std::fs::read_to_string(common::root().join(POLICY))
        .expect("policy")
        .replace(">= 90", ">= 80");
    let candidate = write(&dir, "candidate.flow", &lowered);
    let output = common::authflow(&["replay", "--candidate", &candidate, &traces]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let report = common::stdout(&output);
    assert!(report.contains("3 recorded outcomes replayed"), "{report}");
    assert!(report.contains("2 unchanged, 1 changed"), "{report}");
    assert!(
        report.contains("challenge [\"password\"] → deny \"risk too high\""),
        "{report}"
    );
}

#[test]
fn explain_names_the_deciding_guard() {
    let dir = scratch("explain");
    let risky = REQUEST.replace("\"risk\": 10", "\"risk\": 95");
    let request = write(&dir, "request.json", &risky);
    let output = common::authflow(&["eval", POLICY, "--input", &request, "--trace"]);
    let traces = write(&dir, "trace.jsonl", &common::stdout(&output));
    let output = common::authflow(&["explain", POLICY, &traces]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let text = common::stdout(&output);
    assert!(text.contains("decided deny \"risk too high\""), "{text}");
    assert!(
        text.contains("line   24  deny \"risk too high\" when context.risk >= 90 [true] → deny"),
        "{text}"
    );
    assert!(
        text.contains("would change it: `context.risk >= 90` being false"),
        "{text}"
    );
}

#[test]
fn violated_invariant_counterexample_reproduces() {
    let dir = scratch("invariant");
    let weak = "principal human { roles: Set<String> }\ncontext { resource: String }\n\
                flow admin for human on login {\n  require any(passkey, password)\n  allow\n}\n\
                invariant \"phishing resistant\" {\n  flow admin\n  \
                allow implies session.factors.contains_any({passkey, security_key, piv, webauthn})\n}\n";
    let policy = write(&dir, "weak.flow", weak);
    let output = common::authflow(&["check", &policy]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = common::stderr(&output);
    assert!(
        stderr.contains("invariant `phishing resistant` does not hold"),
        "{stderr}"
    );
    let field = |prefix: &str| -> Vec<String> {
        stderr
            .lines()
            .filter_map(|l| l.trim().strip_prefix(prefix).map(str::to_string))
            .collect()
    };
    let request = write(&dir, "request.json", &field("request: ")[0]);
    let mut args = vec![
        "eval".to_string(),
        policy.clone(),
        "--input".to_string(),
        request,
    ];
    for (i, event) in field("event: ").iter().enumerate() {
        args.push("--event".to_string());
        args.push(write(&dir, &format!("event{i}.json"), event));
    }
    // The weak policy itself fails to compile, so evaluate under the flow
    // without its invariant: the counterexample must allow there.
    let without_invariant = weak.split("invariant").next().unwrap_or_default();
    args[1] = write(&dir, "weak-flow.flow", without_invariant);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = common::authflow(&args);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let last: Value =
        serde_json::from_str(common::stdout(&output).lines().last().expect("outcomes"))
            .expect("JSON");
    assert_eq!(last["decision"], "allow");
    let fixed = weak.replace("any(passkey, password)", "any(passkey, security_key)");
    let output = common::authflow(&["check", &write(&dir, "fixed.flow", &fixed)]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
}

#[test]
fn diff_reports_lowered_threshold_only() {
    let dir = scratch("diff");
    let lowered = std::fs::read_to_string(common::root().join(POLICY))
        .expect("policy")
        .replace(">= 90", ">= 80");
    let candidate = write(&dir, "lowered.flow", &lowered);
    let output = common::authflow(&["diff", POLICY, &candidate]);
    assert_eq!(output.status.code(), Some(1), "{}", common::stderr(&output));
    let report = common::stdout(&output);
    for line in report.lines().filter(|l| l.starts_with("flow ")) {
        assert!(line.contains("NewlyDenied"), "{line}");
    }
    let bands: Vec<&str> = report
        .lines()
        .filter(|l| l.trim().starts_with("where "))
        .collect();
    assert!(!bands.is_empty(), "{report}");
    for band in bands {
        assert_eq!(
            band.trim(),
            "where context.risk in 80..89 (other inputs as in the example)"
        );
    }
    for request in report
        .lines()
        .filter_map(|l| l.trim().strip_prefix("example request: "))
    {
        let request: Value = serde_json::from_str(request).expect("JSON request");
        let risk = request["context"]["risk"].as_i64().expect("risk");
        assert!((80..90).contains(&risk), "risk {risk} outside 80..89");
    }
    let output = common::authflow(&["diff", POLICY, POLICY]);
    assert_eq!(output.status.code(), Some(0));
    assert!(common::stdout(&output).contains("no difference"));
}

#[test]
fn backends_print_identical_outcomes() {
    let dir = scratch("backends");
    let request = write(&dir, "request.json", REQUEST);
    let password = write(&dir, "password.json", PASSWORD);
    let key = write(&dir, "key.json", KEY);
    let run = |backend: &str| {
        let output = common::authflow(&[
            "eval",
            POLICY,
            "--input",
            &request,
            "--event",
            &password,
            "--event",
            &key,
            "--trace",
            "--backend",
            backend,
        ]);
        assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
        common::stdout(&output)
    };
    assert_eq!(run("native"), run("bytecode"));
}

#[test]
fn diff_reports_route_changes() {
    let dir = scratch("diff-routes");
    let old = "policy \"r\" version \"1\"\nprincipal human {}\n\
        flow lockdown for human on login {\n  deny \"sign-in disabled\"\n}\n\
        flow open for human on ping {\n  allow\n}\n";
    let swapped = old
        .replace("lockdown for human on login", "lockdown for human on ping")
        .replace("open for human on ping", "open for human on login");
    let output = common::authflow(&[
        "diff",
        &write(&dir, "old.flow", old),
        &write(&dir, "swapped.flow", &swapped),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", common::stderr(&output));
    let report = common::stdout(&output);
    assert!(
        report.contains("route: event `login` for kind `human`: flow `lockdown` → flow `open`"),
        "{report}"
    );
    assert!(
        report.contains("route: event `ping` for kind `human`: flow `open` → flow `lockdown`"),
        "{report}"
    );

    // Traffic recorded under the old routes, replayed under the swapped ones.
    let old_path = write(&dir, "old.flow", old);
    let request = write(
        &dir,
        "login.json",
        r#"{"event": "login", "principal": {"kind": "human", "id": "u-1"}, "now": "2026-12-04T10:00:00Z"}"#,
    );
    let output = common::authflow(&["eval", &old_path, "--input", &request, "--trace"]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let traces = write(&dir, "traces.jsonl", &common::stdout(&output));
    let swapped_path = write(&dir, "swapped.flow", &swapped);
    let output = common::authflow(&["replay", "--candidate", &swapped_path, &traces]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let report = common::stdout(&output);
    assert!(report.contains("0 unchanged, 1 changed"), "{report}");
    assert!(report.contains("→ allow"), "{report}");

    let added = format!("{old}flow recover for human {{\n  allow\n}}\n");
    let output = common::authflow(&[
        "diff",
        &write(&dir, "old.flow", old),
        &write(&dir, "added.flow", &added),
    ]);
    assert_eq!(output.status.code(), Some(1), "{}", common::stderr(&output));
    assert!(
        common::stdout(&output)
            .contains("route: requests for kind `human` may now name flow `recover`"),
        "{}",
        common::stdout(&output)
    );
}

/// Two versions that cannot be compared exit with 2, not with the 1 that
/// means they differ.
#[test]
fn diff_of_incomparable_policies_exits_2() {
    let dir = scratch("diff-incomparable");
    let old = "policy \"c\" version \"1\"\nprincipal human {}\ncontext {\n  risk: Int\n}\n\
        flow login for human on login {\n  deny \"risky\" when context.risk > 50\n  allow\n}\n";
    let renamed = old.replace("risk", "score");
    let output = common::authflow(&[
        "diff",
        &write(&dir, "old.flow", old),
        &write(&dir, "renamed.flow", &renamed),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", common::stdout(&output));
    assert!(
        common::stderr(&output).contains("cannot compare"),
        "{}",
        common::stderr(&output)
    );
}
