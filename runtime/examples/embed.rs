//! Embedding authflow in a service: compile a policy once at start-up, start
//! a login flow from a typed request, store the flow state between HTTP
//! round trips, resume it with each event, and read the outcome and trace.
//!
//! Run with `cargo run --example embed -p authflow-runtime`.

use authflow_compiler::{compile, NoImports};
use authflow_runtime::program::{out, Decision, Verdict};
use authflow_runtime::typed::Input;
use authflow_runtime::value::parse_time;
use authflow_runtime::{FlowState, Policy};
use serde::Serialize;
use serde_json::json;

/// The request shape this service sends; any `Serialize` type works.
#[derive(Serialize)]
struct LoginRequest<'a> {
    event: &'a str,
    principal: Principal<'a>,
    context: Context<'a>,
    now: &'a str,
}

#[derive(Serialize)]
struct Principal<'a> {
    kind: &'a str,
    id: &'a str,
    roles: Vec<&'a str>,
    department: &'a str,
    employment: &'a str,
}

#[derive(Serialize)]
struct Context<'a> {
    resource: &'a str,
    ip: &'a str,
    risk: i64,
    device_trusted: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Start-up: compile (or load a `.flowc` with `Policy::load`) and verify.
    let source = include_str!("../../examples/workforce-login/policy.flow");
    let compilation = compile("workforce-login.flow", source, &mut NoImports);
    let program = compilation.program.ok_or("the policy has compile errors")?;
    let policy = Policy::new(program)?;
    println!("loaded policy {}", policy.digest());

    // First request: the flow starts and asks for a password.
    let request = LoginRequest {
        event: "login",
        principal: Principal {
            kind: "human",
            id: "u-42",
            roles: vec!["dev"],
            department: "eng",
            employment: "employee",
        },
        context: Context {
            resource: "mail",
            ip: "10.1.2.3",
            risk: 12,
            device_trusted: true,
        },
        now: "2026-12-04T10:00:00Z",
    };
    let state = policy.start_typed(&request, 0)?;
    let outcome = policy.evaluate(&state, false)?;
    println!("after request: {}", serde_json::to_string(&outcome)?);

    // The host stores the state (a cookie, a database row) as plain JSON.
    let stored = serde_json::to_string(&state)?;

    // Later round trips: load the state, resume with the verified factor.
    let events = [
        json!({ "factor_verified": { "factor": "password", "at": "2026-12-04T10:00:09Z" } }),
        json!({ "factor_verified": { "factor": "totp", "at": "2026-12-04T10:00:31Z" } }),
    ];
    let mut state: FlowState = serde_json::from_str(&stored)?;
    for event in &events {
        state = policy.resume(&state, event)?;
        let outcome = policy.evaluate(&state, true)?;
        println!("after event: {}", outcome.decision.name());
        if outcome.decision.is_final() {
            let trace = outcome.trace.as_ref().ok_or("trace requested")?;
            for step in &trace.steps {
                println!("  line {:>3}  {:<60} {}", step.line, step.step, step.result);
            }
            println!(
                "attributes: {}",
                serde_json::to_string(&outcome.attributes)?
            );
        }
    }

    // The hot path of a stateless check: bind borrowed values into reused
    // buffers and run the decision kernel, with no JSON and no allocation.
    let mut scratch = policy.scratch();
    let now = parse_time("2026-12-04T10:05:00Z")?;
    let mut request = policy.request(&mut scratch, now);
    request
        .event("login")
        .principal("human", "u-42")
        .principal_attribute("roles", Input::Texts(&["dev"]))
        .principal_attribute("department", Input::Text("eng"))
        .principal_attribute("employment", Input::Text("employee"))
        .context("resource", Input::Text("mail"))
        .context("ip", Input::Text("10.1.2.3"))
        .context("risk", Input::Int(12))
        .context("device_trusted", Input::Bool(true))
        .session_factor("password", now)
        .session_factor("totp", now);
    let flow = request.finish()?;
    policy.decide(flow, &mut scratch);
    let decision = Verdict(scratch.outcome[out::VERDICT as usize]).decision();
    println!(
        "typed request: {}",
        decision.map_or("invalid", Decision::name)
    );
    Ok(())
}
