//! Folding of approval events into facts: which roles a flow lists, and
//! how separation of duties treats grants for roles the flow never lists.

use authflow_compiler::{compile, NoImports};
use authflow_runtime::bind::Facts;
use authflow_runtime::{FlowState, Policy};
use serde_json::{json, Value};

const POLICY: &str = include_str!("../cases/approval-flows/policy.flow");

fn policy() -> Policy {
    let program = compile("policy.flow", POLICY, &mut NoImports)
        .program
        .expect("the policy compiles");
    Policy::new(program).expect("the program verifies")
}

fn approval(role: &str, approver: &str, at: &str) -> Value {
    json!({ "approval": { "role": role, "approver": approver, "granted": true, "at": at } })
}

/// Folds `events` into the facts of a request for `flow`.
fn facts(policy: &Policy, flow: &str, events: &[Value]) -> Facts {
    let request = json!({
        "flow": flow,
        "principal": { "kind": "human", "id": "u-1" },
        "now": "2026-12-04T10:00:00Z",
    });
    let state = FlowState {
        events: events.to_vec(),
        ..policy.start(&request, 0).expect("a valid request")
    };
    policy.facts(&state).expect("valid events")
}

/// Returns the names of the roles that the facts mark as listed.
fn listed(policy: &Policy, facts: &Facts) -> Vec<String> {
    let roles = &policy.program().roles;
    roles
        .iter()
        .zip(&facts.listed)
        .filter(|(_, &listed)| listed)
        .map(|(role, _)| role.clone())
        .collect()
}

fn role_index(policy: &Policy, role: &str) -> usize {
    policy
        .program()
        .roles
        .iter()
        .position(|known| known == role)
        .unwrap_or_else(|| panic!("no role `{role}`"))
}

#[test]
fn listed_roles_follow_the_flow() {
    let policy = policy();
    let manager = facts(&policy, "manager_review", &[]);
    assert_eq!(listed(&policy, &manager), ["manager"]);
    let security = facts(&policy, "security_review", &[]);
    assert_eq!(listed(&policy, &security), ["security"]);
    let both = facts(&policy, "both_reviews", &[]);
    assert_eq!(listed(&policy, &both), ["manager", "security"]);
}

#[test]
fn unlisted_grant_keeps_approver_free() {
    let policy = policy();
    let events = [
        approval("security", "m-7", "2026-12-04T11:00:00Z"),
        approval("manager", "m-7", "2026-12-04T11:01:00Z"),
    ];
    let facts = facts(&policy, "manager_review", &events);
    let manager = facts.roles[role_index(&policy, "manager")];
    assert!(manager.granted);
    assert!(!manager.refused);
    assert!(!facts.roles[role_index(&policy, "security")].granted);
    assert_eq!(
        facts.approvers,
        [("m-7".to_string(), role_index(&policy, "manager"))]
    );
}

#[test]
fn listed_grant_uses_up_approver() {
    let policy = policy();
    let events = [
        approval("security", "m-7", "2026-12-04T11:00:00Z"),
        approval("manager", "m-7", "2026-12-04T11:01:00Z"),
    ];
    let facts = facts(&policy, "both_reviews", &events);
    assert!(facts.roles[role_index(&policy, "security")].granted);
    assert!(!facts.roles[role_index(&policy, "manager")].granted);
    assert_eq!(
        facts.approvers,
        [("m-7".to_string(), role_index(&policy, "security"))]
    );
}

#[test]
fn unlisted_refusal_is_ignored() {
    let policy = policy();
    let refusal = json!({ "approval": {
        "role": "security",
        "approver": "s-1",
        "granted": false,
        "at": "2026-12-04T11:00:00Z",
    } });
    let facts = facts(&policy, "manager_review", &[refusal]);
    assert!(!facts.roles[role_index(&policy, "security")].refused);
}
