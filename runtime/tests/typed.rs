//! The typed request builder against the JSON binder. For every request of
//! the scenarios, the test cases and the examples, and for mutations of
//! them, both accept or both reject. An accepted request binds the same flow
//! and the same record.

use std::path::{Path, PathBuf};

use authflow_compiler::{compile, NoImports};
use authflow_runtime::typed::Input;
use authflow_runtime::value::parse_time;
use authflow_runtime::{Backend, Policy};
use serde_json::{json, Map, Value as Json};

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Lists every `policy.flow` with a `cases.json` beside it.
fn cases() -> Vec<(PathBuf, PathBuf)> {
    let mut files = Vec::new();
    for folder in ["tests/scenarios", "tests/cases", "examples"] {
        let Ok(entries) = std::fs::read_dir(repository().join(folder)) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            let policy = entry.path().join("policy.flow");
            let cases = entry.path().join("cases.json");
            if policy.exists() && cases.exists() {
                files.push((policy, cases));
            }
        }
    }
    files.sort();
    files
}

fn load(path: &Path) -> Policy {
    let text = std::fs::read_to_string(path).expect("read policy");
    let program = compile("policy.flow", &text, &mut NoImports)
        .program
        .unwrap_or_else(|| panic!("{} does not compile", path.display()));
    Policy::with_backend(program, Backend::Bytecode).expect("verifies")
}

/// Texts of one JSON array, or `None` when an element is not a string.
fn texts(items: &[Json]) -> Option<Vec<&str>> {
    items.iter().map(Json::as_str).collect()
}

/// Binds a request through JSON and returns the flow and the record.
fn bind_json(policy: &Policy, request: &Json, now: i64) -> Result<(usize, Vec<u64>), String> {
    let state = policy.start(request, now).map_err(|e| e.field)?;
    let facts = policy.facts(&state).map_err(|e| e.to_string())?;
    let mut scratch = policy.scratch();
    let _strings = policy.bind(&facts, &mut scratch);
    Ok((facts.request.flow, scratch.record))
}

/// Binds the same request with the typed builder. Returns `None` when the
/// request has a shape that the builder's inputs cannot express.
fn bind_typed(
    policy: &Policy,
    request: &Json,
    now: i64,
) -> Option<Result<(usize, Vec<u64>), String>> {
    let map = request.as_object()?;
    let now = match map.get("now") {
        Some(text) => parse_time(text.as_str()?).ok()?,
        None => now,
    };
    if map.keys().any(|key| {
        ![
            "flow",
            "event",
            "principal",
            "context",
            "session",
            "switches",
            "now",
        ]
        .contains(&key.as_str())
    }) {
        return None;
    }
    // Arrays of strings live here while the builder borrows them.
    let empty = Map::new();
    let principal = map.get("principal")?.as_object()?;
    let context = match map.get("context") {
        Some(context) => context.as_object()?,
        None => &empty,
    };
    let switches = match map.get("switches") {
        Some(switches) => switches.as_object()?,
        None => &empty,
    };
    let mut arrays: Vec<(String, Vec<&str>)> = Vec::new();
    for (scope, object) in [("p", principal), ("c", context), ("s", switches)] {
        for (key, value) in object {
            if let Json::Array(items) = value {
                arrays.push((format!("{scope}.{key}"), texts(items)?));
            }
        }
    }
    let mut scratch = policy.scratch();
    let mut builder = policy.request(&mut scratch, now);
    if let Some(flow) = map.get("flow") {
        builder.flow(flow.as_str()?);
    }
    if let Some(event) = map.get("event") {
        builder.event(event.as_str()?);
    }
    builder.principal(
        principal.get("kind")?.as_str()?,
        principal.get("id")?.as_str()?,
    );
    let enrolled;
    if let Some(list) = principal.get("enrolled") {
        enrolled = texts(list.as_array()?)?;
        builder.enrolled(&enrolled);
    }
    for (key, value) in principal {
        if !["kind", "id", "enrolled"].contains(&key.as_str()) {
            builder.principal_attribute(key, input(&arrays, "p", key, value)?);
        }
    }
    for (key, value) in context {
        builder.context(key, input(&arrays, "c", key, value)?);
    }
    for (key, value) in switches {
        builder.switch(key, input(&arrays, "s", key, value)?);
    }
    if let Some(session) = map.get("session") {
        let session = session.as_object()?;
        if session
            .keys()
            .any(|key| !["started_at", "last_active_at", "factors"].contains(&key.as_str()))
        {
            return None;
        }
        if let Some(at) = session.get("started_at") {
            builder.session_started(parse_time(at.as_str()?).ok()?);
        }
        if let Some(at) = session.get("last_active_at") {
            builder.last_active(parse_time(at.as_str()?).ok()?);
        }
        for entry in session
            .get("factors")
            .map_or(Some(&[][..]), |f| f.as_array().map(Vec::as_slice))?
        {
            let entry = entry.as_object()?;
            if entry.len() != 2 {
                return None;
            }
            builder.session_factor(
                entry.get("factor")?.as_str()?,
                parse_time(entry.get("at")?.as_str()?).ok()?,
            );
        }
    }
    let result = builder.finish().map_err(|e| e.field);
    Some(result.map(|flow| (flow, scratch.record.clone())))
}

/// Converts one JSON value to a builder input. Arrays come from `arrays`,
/// by scope and key.
fn input<'x>(
    arrays: &'x [(String, Vec<&'x str>)],
    scope: &str,
    key: &str,
    value: &'x Json,
) -> Option<Input<'x>> {
    Some(match value {
        Json::Bool(b) => Input::Bool(*b),
        Json::Number(number) => Input::Int(number.as_i64()?),
        Json::String(text) => Input::Text(text),
        Json::Array(_) => {
            let name = format!("{scope}.{key}");
            let items = arrays.iter().find(|(k, _)| *k == name)?;
            Input::Texts(&items.1)
        }
        Json::Null => Input::Absent,
        Json::Object(_) => return None,
    })
}

/// Variants of a valid request: each attribute removed, set to null, to
/// another type, or to an unknown name, and an unknown attribute added.
fn mutations(request: &Json) -> Vec<Json> {
    let mut variants = Vec::new();
    for scope in ["principal", "context", "switches"] {
        let Some(object) = request.get(scope).and_then(Json::as_object) else {
            continue;
        };
        for key in object.keys() {
            for replacement in [
                None,
                Some(Json::Null),
                Some(json!(7)),
                Some(json!(true)),
                Some(json!("no-such-value")),
                Some(json!(["admin", "no-such-role"])),
                Some(json!("2026-12-04T09:00:00Z")),
                Some(json!("10.0.0.1")),
                Some(json!("15m")),
            ] {
                let mut variant = request.clone();
                let target = variant[scope].as_object_mut().expect("an object");
                match replacement {
                    Some(value) => target.insert(key.clone(), value),
                    None => target.remove(key),
                };
                variants.push(variant);
            }
        }
        let mut variant = request.clone();
        variant[scope]["undeclared_attribute"] = json!(1);
        variants.push(variant);
    }
    for (field, value) in [
        ("flow", json!("no_such_flow")),
        ("event", json!("login")),
        ("event", json!("no_such_event")),
    ] {
        let mut variant = request.clone();
        variant[field] = value;
        variants.push(variant);
    }
    let mut variant = request.clone();
    variant["principal"]["kind"] = json!("no_such_kind");
    variants.push(variant);
    let mut variant = request.clone();
    variant["principal"]["id"] = json!("");
    variants.push(variant);
    let mut variant = request.clone();
    variant["session"] = json!({
        "started_at": "2026-12-04T09:00:00Z",
        "factors": [
            {"factor": "password", "at": "2026-12-04T09:00:01Z"},
            {"factor": "webauthn", "at": "2026-12-04T09:30:00Z"},
            {"factor": "totp", "at": "2030-01-01T00:00:00Z"}
        ]
    });
    variants.push(variant);
    let mut variant = request.clone();
    variant["session"] = json!({
        "started_at": "2026-12-04T09:00:00Z",
        "last_active_at": "2026-12-04T09:10:00Z",
        "factors": [{"factor": "passkey", "at": "2026-12-04T09:05:00Z"}]
    });
    variants.push(variant);
    variants
}

#[test]
fn typed_requests_bind_like_json() {
    let now = parse_time("2026-12-04T10:00:00Z").expect("a time");
    let (mut accepted, mut rejected, mut skipped) = (0, 0, 0);
    for (policy_path, cases_path) in cases() {
        let policy = load(&policy_path);
        let text = std::fs::read_to_string(&cases_path).expect("read cases");
        let cases: Json = serde_json::from_str(&text).expect("cases are JSON");
        for case in cases["cases"].as_array().expect("a list of cases") {
            let request = &case["request"];
            let mut requests = vec![request.clone()];
            if request.is_object() {
                requests.extend(mutations(request));
            }
            for request in &requests {
                let expected = bind_json(&policy, request, now);
                let Some(actual) = bind_typed(&policy, request, now) else {
                    skipped += 1;
                    continue;
                };
                let what = format!("{} with request {request}", policy_path.display());
                match (&expected, &actual) {
                    (Ok(expected), Ok(actual)) => {
                        assert_eq!(expected, actual, "{what}: flow and record");
                        accepted += 1;
                    }
                    (Err(_), Err(_)) => rejected += 1,
                    _ => panic!("{what}: JSON gives {expected:?}, typed gives {actual:?}"),
                }
            }
        }
    }
    assert!(accepted > 300, "only {accepted} accepted requests compared");
    assert!(rejected > 300, "only {rejected} rejected requests compared");
    // Mutations of `kind` and `id`, and invalid times in the session, have
    // no typed form and are skipped.
    assert!(
        skipped < (accepted + rejected) / 2,
        "{skipped} requests skipped, {accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn builder_rejects_incomplete_routes() {
    let policy = load(&repository().join("tests/scenarios/01-workforce-login/policy.flow"));
    let mut scratch = policy.scratch();
    let mut builder = policy.request(&mut scratch, 0);
    builder.flow("workforce_login").event("login");
    assert_eq!(
        builder.finish().expect_err("no principal").field,
        "principal"
    );
    let mut builder = policy.request(&mut scratch, 0);
    builder
        .flow("workforce_login")
        .event("login")
        .principal("human", "u-1")
        .principal_attribute("roles", Input::Texts(&[]))
        .principal_attribute("employment", Input::Text("employee"))
        .context("resource", Input::Text("mail"))
        .context("risk", Input::Int(1))
        .context("device_trusted", Input::Bool(true));
    assert_eq!(builder.finish().expect_err("two routes").field, "event");
}
