//! Output values in the compiled program: sets without outcome words are
//! carried as constants, and `Program::verify` checks how every output is
//! stored.

use authflow_compiler::{compile, NoImports};
use authflow_runtime::program::{Output, Program, ValueType};
use authflow_runtime::{Backend, Policy};
use serde_json::{json, Value};

const POLICY: &str = r#"
principal human {}

enum Tier { gold, silver }

const limits: Set<Int> = {10, 9, 100}
const hosts = {ip("10.0.0.1"), ip("::1")}
const tiers: Set<Tier> = {silver, gold}

flow grant for human {
  emit "audit" with { limits: limits }
  allow with { limits: limits, hosts: hosts, tiers: tiers, ttl: 8h }
}
"#;

fn program(source: &str) -> Program {
    compile("policy.flow", source, &mut NoImports)
        .program
        .expect("the policy compiles")
}

/// Returns every output of every site and emit of the program.
fn outputs(program: &mut Program) -> Vec<&mut Output> {
    program
        .flows
        .iter_mut()
        .flat_map(|flow| {
            let sites = flow.sites.iter_mut().flat_map(|s| s.attributes.iter_mut());
            let emits = flow.emits.iter_mut().flat_map(|e| e.attributes.iter_mut());
            sites.chain(emits)
        })
        .collect()
}

fn output<'p>(program: &'p mut Program, name: &str) -> &'p mut Output {
    outputs(program)
        .into_iter()
        .find(|output| output.name == name)
        .unwrap_or_else(|| panic!("no output `{name}`"))
}

#[test]
fn constant_sets_render_on_both_kernels() {
    let request = json!({
        "flow": "grant",
        "principal": { "kind": "human", "id": "u-1" },
        "now": "2026-12-04T10:00:00Z",
    });
    for backend in [Backend::Bytecode, Backend::Native] {
        let policy = Policy::with_backend(program(POLICY), backend).expect("the program verifies");
        let state = policy.start(&request, 0).expect("a valid request");
        let outcome = policy.evaluate(&state, false).expect("an outcome");
        let attributes = &outcome.attributes;
        assert_eq!(attributes.get("limits"), Some(&json!([9, 10, 100])));
        assert_eq!(attributes.get("hosts"), Some(&json!(["::1", "10.0.0.1"])));
        assert_eq!(attributes.get("tiers"), Some(&json!(["gold", "silver"])));
        assert_eq!(attributes.get("ttl"), Some(&json!("8h")));
        let audit = &outcome.obligations[0].attributes;
        assert_eq!(audit.get("limits"), Some(&json!([9, 10, 100])));
    }
}

#[test]
fn bare_none_prints_null() {
    let source = r#"
principal human { owner: String? }
const nothing = none
flow grant for human {
  emit "audit" with { missing: none }
  allow with { missing: none, nothing: nothing, owner: principal.owner }
}
"#;
    let request = json!({
        "flow": "grant",
        "principal": { "kind": "human", "id": "u-1" },
        "now": "2026-12-04T10:00:00Z",
    });
    for backend in [Backend::Bytecode, Backend::Native] {
        let policy = Policy::with_backend(program(source), backend).expect("the program verifies");
        let state = policy.start(&request, 0).expect("a valid request");
        let outcome = policy.evaluate(&state, false).expect("an outcome");
        assert_eq!(outcome.attributes.get("missing"), Some(&Value::Null));
        assert_eq!(outcome.attributes.get("nothing"), Some(&Value::Null));
        assert_eq!(outcome.attributes.get("owner"), Some(&Value::Null));
        let audit = &outcome.obligations[0].attributes;
        assert_eq!(audit.get("missing"), Some(&Value::Null));
    }
}

#[test]
fn outputs_without_words_carry_values() {
    let mut program = program(POLICY);
    for output in outputs(&mut program) {
        assert_eq!(
            output.value.is_some(),
            !output.ty.has_words(),
            "output `{}` of type {:?}",
            output.name,
            output.ty
        );
    }
    assert_eq!(
        output(&mut program, "hosts").ty,
        ValueType::Set(Box::new(ValueType::Ip))
    );
}

#[test]
fn digest_ignores_absent_values() {
    let source = r#"
principal human {}
flow grant for human {
  allow with { ttl: 8h, tiers: {"a", "b"} }
}
"#;
    let program = program(source);
    let serialized = serde_json::to_value(&program).expect("the program serializes");
    let sites = &serialized["flows"][0]["sites"];
    let attributes: Vec<&Value> = sites
        .as_array()
        .expect("sites are an array")
        .iter()
        .flat_map(|site| site["attributes"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(attributes.len(), 2);
    for attribute in attributes {
        assert!(attribute.get("value").is_none(), "{attribute}");
    }
}

#[test]
fn constant_outputs_survive_serialization() {
    let first = program(POLICY);
    let second = program(POLICY);
    assert_eq!(first.digest(), second.digest());

    let bytes = serde_json::to_vec(&first).expect("the program serializes");
    let loaded: Program = serde_json::from_slice(&bytes).expect("the program deserializes");
    assert_eq!(loaded, first);
    assert_eq!(loaded.digest(), first.digest());
    assert_eq!(loaded.verify(), Ok(()));
}

#[test]
fn verify_rejects_missing_constant_value() {
    let mut program = program(POLICY);
    output(&mut program, "hosts").value = None;
    let error = program
        .verify()
        .expect_err("a set of addresses has no words");
    assert!(error.contains("`hosts` has no constant value"), "{error}");
}

#[test]
fn verify_rejects_value_beside_words() {
    let mut program = program(POLICY);
    output(&mut program, "ttl").value = Some(json!("8h"));
    let error = program.verify().expect_err("a duration is held in words");
    assert!(error.contains("`ttl` gives a constant value"), "{error}");
}

#[test]
fn verify_rejects_unknown_output_enum() {
    let mut program = program(POLICY);
    output(&mut program, "tiers").ty = ValueType::Set(Box::new(ValueType::Enum(7)));
    let error = program.verify().expect_err("enum 7 is not declared");
    assert!(error.contains("`tiers` names enum 7"), "{error}");
}
