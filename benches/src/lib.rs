//! Generators of synthetic policies and inputs for the benchmarks.

use std::fmt::Write;

/// Generates a policy with `flows` flows, each with a mix of every step kind, for
/// compile-speed measurements.
pub fn policy_with_flows(flows: usize) -> String {
    let mut text = String::from(
        "policy \"generated\" version \"1\"\n\n\
         enum Zone { internal, partner, public }\n\n\
         principal human {\n  roles: Set<String>\n  zone: Zone\n  owner: String?\n}\n\n\
         context {\n  resource: String\n  risk: Int\n  ip: Ip\n  device_trusted: Bool\n}\n\n\
         const privileged = {\"admin\", \"sre\"}\n\
         const office = {cidr(\"10.0.0.0/8\"), cidr(\"2001:db8::/32\")}\n\
         switch elevated: Bool = false\n\n",
    );
    for i in 0..flows {
        let _ = write!(
            text,
            "flow flow_{i} for human on event_{i} {{\n\
             \x20 deny \"risk {i}\" when context.risk >= {limit}\n\
             \x20 require password attempts 5\n\
             \x20 if context.resource == \"resource_{i}\" and principal.roles.contains_any(privileged) {{\n\
             \x20   require aal3 within 15m\n\
             \x20 }} else if elevated or not (context.ip in office) {{\n\
             \x20   require any(passkey, security_key)\n\
             \x20 }} else {{\n\
             \x20   require aal2\n\
             \x20 }}\n\
             \x20 match principal.zone {{\n\
             \x20   internal => {{ emit \"audit_{i}\" }}\n\
             \x20   partner => {{ approve by owner within 1d }}\n\
             \x20   public => {{ deny \"public {i}\" }}\n\
             \x20 }}\n\
             \x20 allow with {{ ttl: 8h, owner: principal.owner ?? \"none\" }}\n\
             }}\n\n",
            limit = 50 + i % 50,
        );
    }
    text
}

/// Generates a policy with one flow of `guards` `deny ... when` guards, each over a
/// different comparison, then a final allow.
pub fn policy_with_guards(guards: usize) -> String {
    let mut text = String::from(
        "principal human {\n  roles: Set<String>\n}\n\ncontext {\n  risk: Int\n  resource: String\n}\n\n\
         flow guarded for human on login {\n",
    );
    for i in 0..guards {
        let _ = writeln!(
            text,
            "  deny \"rule {i}\" when context.risk == {risk} and (context.resource == \"r{i}\" or principal.roles.contains(\"g{i}\"))",
            risk = 1000 + i,
        );
    }
    text.push_str("  require password\n  allow with { rules: ");
    let _ = write!(text, "{guards}");
    text.push_str(" }\n}\n");
    text
}

/// A request for the workforce login policy of the scenarios.
pub const WORKFORCE_REQUEST: &str = r#"{"flow": "workforce_login", "principal": {"kind": "human", "id": "u-100", "roles": ["admin", "dev"], "employment": "employee"}, "context": {"resource": "admin_console", "risk": 10, "device_trusted": true}, "session": {"started_at": "2026-12-04T09:00:00Z", "factors": [{"factor": "password", "at": "2026-12-04T09:00:00Z"}, {"factor": "totp", "at": "2026-12-04T09:00:05Z"}]}, "now": "2026-12-04T10:00:00Z"}"#;

/// A request for [`policy_with_guards`] that passes every guard.
pub const GUARDED_REQUEST: &str = r#"{"flow": "guarded", "principal": {"kind": "human", "id": "u-1", "roles": ["dev"]}, "context": {"risk": 5, "resource": "mail"}, "session": {"factors": [{"factor": "password", "at": "2026-12-04T09:59:00Z"}]}, "now": "2026-12-04T10:00:00Z"}"#;

/// The workforce login policy of the acceptance scenarios.
pub const WORKFORCE_POLICY: &str =
    include_str!("../../tests/scenarios/01-workforce-login/policy.flow");

/// Generates a policy of `flows` flows with `guards` `deny ... when` guards each, and
/// one invariant per flow, for the governance benchmarks.
pub fn policy_with_guarded_flows(flows: usize, guards: usize) -> String {
    let mut text = String::from(
        "principal human {\n  roles: Set<String>\n}\n\ncontext {\n  risk: Int\n  resource: String\n}\n\n",
    );
    for flow in 0..flows {
        let _ = writeln!(text, "flow guarded_{flow} for human on event_{flow} {{");
        for guard in 0..guards {
            let _ = writeln!(
                text,
                "  deny \"rule {guard}\" when context.risk == {risk} and (context.resource == \"r{guard}\" or principal.roles.contains(\"g{guard}\"))",
                risk = 1000 + guard,
            );
        }
        text.push_str("  require aal2\n  allow\n}\n\n");
        let _ = writeln!(
            text,
            "invariant \"flow {flow} allows only at aal2\" {{\n  flow guarded_{flow}\n  allow implies session.aal >= 2\n}}\n"
        );
    }
    text
}
