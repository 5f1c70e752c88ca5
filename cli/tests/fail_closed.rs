//! Requests that try to skip a check or reach past what proofs cover, each
//! rejected with exit status 3 and a message naming the field.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A policy whose entry flow runs a building block after its own check,
/// plus a library flow imported from the standard library.
const POLICY: &str = r#"policy "routes" version "1"

import std.step_up

principal human {
  suspended: Bool
}

flow sign_in for human on login {
  deny "suspended" when principal.suspended
  run second_factor
}

flow second_factor for human {
  require password
  allow
}

flow standalone for human {
  require password
  allow
}

test "the building block on its own" {
  flow second_factor
  principal human { id: "u-1", suspended: true }
  session { factors: {password} }
  at time("2026-12-04T10:00:00Z")
  expect allow
}
"#;

struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!(
            "authflow-fail-closed-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        std::fs::write(dir.join("policy.flow"), POLICY).expect("write policy");
        Scratch { dir }
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write file");
        path.display().to_string()
    }

    fn policy(&self) -> String {
        self.dir.join("policy.flow").display().to_string()
    }

    /// Evaluates `request` and returns the exit status, stdout and stderr.
    fn eval(&self, request: &str) -> (Option<i32>, String, String) {
        let input = self.file("request.json", request);
        let output = common::authflow(&["eval", &self.policy(), "--input", &input]);
        (
            output.status.code(),
            common::stdout(&output),
            common::stderr(&output),
        )
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn request(flow: &str, session: &str) -> String {
    format!(
        r#"{{"flow": "{flow}", "principal": {{"kind": "human", "id": "u-1", "suspended": true}},
            "session": {session}, "now": "2026-12-04T10:00:00Z"}}"#
    )
}

const PASSWORD_SESSION: &str =
    r#"{"factors": [{"factor": "password", "at": "2026-12-04T09:59:00Z"}]}"#;

#[test]
fn routing_rejects_run_target_flow() {
    let scratch = Scratch::new("run-target");
    let (status, stdout, stderr) = scratch.eval(&request("second_factor", PASSWORD_SESSION));
    assert_eq!(status, Some(3), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("flow") && stderr.contains("reached only with `run`"),
        "{stderr}"
    );

    // The entry flow applies its own check before the building block.
    let (status, stdout, stderr) = scratch.eval(&request("sign_in", PASSWORD_SESSION));
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stdout.contains(r#""decision":"deny""#), "{stdout}");
}

#[test]
fn routing_rejects_library_flow() {
    let scratch = Scratch::new("library");
    let (status, stdout, stderr) = scratch.eval(&request("step_up_aal2", PASSWORD_SESSION));
    assert_eq!(status, Some(3), "{stdout}{stderr}");
    assert!(stderr.contains("reached only with `run`"), "{stderr}");
}

#[test]
fn routing_accepts_unrun_root_flow() {
    let scratch = Scratch::new("standalone");
    let (status, stdout, stderr) = scratch.eval(&request("standalone", PASSWORD_SESSION));
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stdout.contains(r#""decision":"allow""#), "{stdout}");
}

#[test]
fn test_blocks_reach_building_blocks() {
    let scratch = Scratch::new("tests");
    let output = common::authflow(&["test", &scratch.policy()]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    assert!(common::stdout(&output).contains("ok   the building block on its own"));
}

#[test]
fn session_rejects_factor_before_start() {
    let scratch = Scratch::new("session-start");
    let session = r#"{"started_at": "2026-12-04T09:00:00Z",
        "factors": [{"factor": "password", "at": "2026-12-04T08:59:59Z"}]}"#;
    let (status, stdout, stderr) = scratch.eval(&request("standalone", session));
    assert_eq!(status, Some(3), "{stdout}{stderr}");
    assert!(stderr.contains("session.factors[0].at"), "{stderr}");
}

#[test]
fn session_start_defaults_to_earliest_factor() {
    let policy = r#"policy "age" version "1"
principal human {}
flow sign_in for human on login {
  deny "session too old" when session.age > 12h
  deny "idle too long" when session.idle > 1h
  require password
  allow
}
"#;
    let scratch = Scratch::new("session-age");
    let path = scratch.file("age.flow", policy);
    let request = scratch.file(
        "old.json",
        r#"{"event": "login", "principal": {"kind": "human", "id": "u-1"},
            "session": {"factors": [{"factor": "password", "at": "2025-01-01T00:00:00Z"}]},
            "now": "2026-12-04T10:00:00Z"}"#,
    );
    let output = common::authflow(&["eval", &path, "--input", &request]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    assert!(
        common::stdout(&output).contains("session too old"),
        "{}",
        common::stdout(&output)
    );

    // A recent factor is recent activity, so the session is not idle.
    let request = scratch.file(
        "recent.json",
        r#"{"event": "login", "principal": {"kind": "human", "id": "u-1"},
            "session": {"factors": [{"factor": "totp", "at": "2026-12-04T01:00:00Z"},
                                    {"factor": "password", "at": "2026-12-04T09:59:00Z"}]},
            "now": "2026-12-04T10:00:00Z"}"#,
    );
    let output = common::authflow(&["eval", &path, "--input", &request]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    assert!(
        common::stdout(&output).contains(r#""decision":"allow""#),
        "{}",
        common::stdout(&output)
    );
}

#[test]
fn time_past_year_9999_rejected() {
    let scratch = Scratch::new("time-range");
    let text = r#"{"flow": "standalone", "principal": {"kind": "human", "id": "u-1", "suspended": false},
        "now": "9999-12-31T23:59:59-23:00"}"#;
    let (status, stdout, stderr) = scratch.eval(text);
    assert_eq!(status, Some(3), "{stdout}{stderr}");
    assert!(stderr.contains("out of range"), "{stderr}");
}

#[test]
fn set_over_proof_bound_rejected() {
    let policy = r#"policy "sets" version "1"
principal human { roles: Set<String> }
flow sign_in for human on login {
  if principal.roles.len() >= 3 { allow }
  deny "few roles"
}
"#;
    let scratch = Scratch::new("set-size");
    let path = scratch.file("sets.flow", policy);
    let roles: Vec<String> = (0..65_536).map(|i| format!("\"r{i}\"")).collect();
    let request = scratch.file(
        "big.json",
        &format!(
            r#"{{"event": "login", "principal": {{"kind": "human", "id": "u-1", "roles": [{}]}}, "now": "2026-12-04T10:00:00Z"}}"#,
            roles.join(",")
        ),
    );
    let output = common::authflow(&["eval", &path, "--input", &request]);
    assert_eq!(output.status.code(), Some(3), "{}", common::stdout(&output));
    let stderr = common::stderr(&output);
    assert!(
        stderr.contains("principal.roles") && stderr.contains("65535"),
        "{stderr}"
    );
}

#[test]
fn closed_stderr_keeps_exit_status() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_authflow"))
        .args(["check", "tests/imports/missing.flow"])
        .current_dir(common::root())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("authflow runs");
    // Close the read end before the program writes its diagnostics.
    drop(child.stderr.take());
    let status = child.wait().expect("authflow exits");
    assert_eq!(
        status.code(),
        Some(1),
        "a broken pipe on stderr changed the exit status"
    );
}

#[test]
fn ids_with_invisible_characters_rejected() {
    let scratch = Scratch::new("ids");
    for id in [
        "",
        " ",
        "u-1 ",
        " u-1",
        "u-1\\u200b",
        "u\\u00ad-1",
        "u-1\\n",
        "u\\u00a01",
        "u1\\u034f",
        "u1\\ufe0f",
        "\\u3164",
        "\\u2800",
        "\\u0301",
        "jose\\u0301",
    ] {
        let text = format!(
            r#"{{"flow": "standalone", "principal": {{"kind": "human", "id": "{id}", "suspended": false}},
                "now": "2026-12-04T10:00:00Z"}}"#
        );
        let (status, stdout, stderr) = scratch.eval(&text);
        assert_eq!(status, Some(3), "id {id:?}: {stdout}{stderr}");
        assert!(stderr.contains("principal.id"), "id {id:?}: {stderr}");
    }
    // Letters of any script are ids like any other.
    let text = r#"{"flow": "standalone", "principal": {"kind": "human", "id": "usuário-1", "suspended": false},
        "session": {"factors": [{"factor": "password", "at": "2026-12-04T09:59:00Z"}]},
        "now": "2026-12-04T10:00:00Z"}"#;
    let (status, stdout, stderr) = scratch.eval(text);
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stdout.contains(r#""decision":"allow""#), "{stdout}");
}

#[test]
fn state_as_array_rejected() {
    let scratch = Scratch::new("state-array");
    let input = scratch.file("request.json", &request("standalone", PASSWORD_SESSION));
    let state = scratch.dir.join("state.json").display().to_string();
    let output = common::authflow(&[
        "eval",
        &scratch.policy(),
        "--input",
        &input,
        "--state-out",
        &state,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));

    let stored: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state written"))
            .expect("state is JSON");
    let fields = ["policy", "flow", "instance", "request", "events"];
    let array: Vec<serde_json::Value> = fields.iter().map(|f| stored[*f].clone()).collect();
    let array_state = scratch.file("array.json", &serde_json::Value::from(array).to_string());
    let output = common::authflow(&["resume", &scratch.policy(), "--state", &array_state]);
    assert_eq!(output.status.code(), Some(3), "{}", common::stdout(&output));
    assert!(
        common::stderr(&output).contains("a flow state is a JSON object"),
        "{}",
        common::stderr(&output)
    );
}

#[test]
fn input_not_utf8_is_invalid_input() {
    let scratch = Scratch::new("utf8");
    let path = scratch.dir.join("latin1.json");
    std::fs::write(&path, b"{\"flow\": \"standalone\xe9\"}").expect("write input");
    let output = common::authflow(&[
        "eval",
        &scratch.policy(),
        "--input",
        &path.display().to_string(),
    ]);
    assert_eq!(output.status.code(), Some(3), "{}", common::stderr(&output));
    assert!(common::stderr(&output).contains("not valid UTF-8"));

    let missing = scratch.dir.join("missing.json").display().to_string();
    let output = common::authflow(&["eval", &scratch.policy(), "--input", &missing]);
    assert_eq!(output.status.code(), Some(2), "{}", common::stderr(&output));
}

/// Forty levels of flows that each run the next level twice: 2^40 inlined
/// steps. The checker must report the expansion from per-flow counts
/// instead of walking every path, which would not finish.
#[test]
fn nested_runs_report_expansion_quickly() {
    let mut policy = String::from(
        "policy \"nested\" version \"1\"\nprincipal human {}\nflow f0 for human on login {\n  run f1\n  run f1\n}\n",
    );
    for level in 1..40 {
        let body = if level < 39 {
            format!("  run f{next}\n  run f{next}\n", next = level + 1)
        } else {
            "  require password\n".to_string()
        };
        policy.push_str(&format!(
            "flow f{level} for human {{\n  deny \"late\" when session.age > {level}s\n{body}}}\n"
        ));
    }
    let scratch = Scratch::new("nested-runs");
    let path = scratch.file("nested.flow", &policy);
    let output = common::authflow(&["check", &path]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = common::stderr(&output);
    assert!(stderr.contains("flow `f0` expands to"), "{stderr}");
}

/// A flow over the step limit that runs no other flow is reported by its
/// own size, without blaming `run`.
#[test]
fn oversized_flow_without_runs_reports_its_size() {
    let mut policy =
        String::from("policy \"big\" version \"1\"\nprincipal human {}\ncontext {\n  risk: Int\n}\nflow big for human on login {\n  if context.risk > 5 {\n");
    for i in 0..20_001 {
        policy.push_str(&format!("    deny \"rule {i}\" when context.risk == {i}\n"));
    }
    policy.push_str("  }\n  allow\n}\n");
    let scratch = Scratch::new("oversized-flow");
    let path = scratch.file("big.flow", &policy);
    let output = common::authflow(&["check", &path]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = common::stderr(&output);
    assert!(stderr.contains("flow `big` has 20003 steps"), "{stderr}");
    assert!(!stderr.contains("through `run`"), "{stderr}");
}

/// An operator's switch change reaches a flow that started before it: the
/// host appends an `update` event that sets the switch.
#[test]
fn switch_update_reaches_flow_in_progress() {
    let policy = r#"policy "lockdown" version "1"
principal human {}
switch lockdown: Bool = false
flow grant for human on access {
  deny "lockdown in effect" when lockdown
  approve by manager within 3d
  allow
}
"#;
    let scratch = Scratch::new("switch-update");
    let path = scratch.file("lockdown.flow", policy);
    let request = scratch.file(
        "request.json",
        r#"{"event": "access", "principal": {"kind": "human", "id": "u-1"}, "now": "2026-12-04T10:00:00Z"}"#,
    );
    let lockdown = scratch.file(
        "lockdown.json",
        r#"{"update": {"switches": {"lockdown": true}, "at": "2026-12-04T11:00:00Z"}}"#,
    );
    let approval = scratch.file(
        "approval.json",
        r#"{"approval": {"role": "manager", "approver": "m-1", "granted": true, "at": "2026-12-04T12:00:00Z"}}"#,
    );
    let output = common::authflow(&[
        "eval", &path, "--input", &request, "--event", &lockdown, "--event", &approval,
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", common::stderr(&output));
    let outcomes: Vec<String> = common::stdout(&output).lines().map(String::from).collect();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    assert!(
        outcomes[0].contains(r#""decision":"pending""#),
        "{}",
        outcomes[0]
    );
    assert!(
        outcomes[1].contains("lockdown in effect"),
        "{}",
        outcomes[1]
    );
    assert!(
        outcomes[2].contains("lockdown in effect"),
        "{}",
        outcomes[2]
    );

    let unknown = scratch.file(
        "unknown.json",
        r#"{"update": {"switches": {"lockdwn": true}, "at": "2026-12-04T11:00:00Z"}}"#,
    );
    let output = common::authflow(&["eval", &path, "--input", &request, "--event", &unknown]);
    assert_eq!(output.status.code(), Some(3));
    assert!(
        common::stderr(&output).contains("events[0].update.switches.lockdwn"),
        "{}",
        common::stderr(&output)
    );
}
