//! A generator of small well-typed policies over one fixed schema, with
//! requests and events that fit the schema, for the `eval_differential`
//! target. Every generated choice is an index into a fixed table, so the
//! rendered text type-checks unless the checker rejects a combination of
//! steps (an unreachable step, for example); the target skips those.

use std::fmt::Write;

use arbitrary::Arbitrary;
use authflow_runtime::value::format_time;
use serde_json::{json, Map, Value as Json};

use crate::DEFAULT_NOW;

/// The declarations every generated policy starts with.
const SCHEMA: &str = r#"policy "generated" version "1"

enum Zone { internal, partner, public }

principal human {
  roles: Set<String>
  risk: Int
  zone: Zone
  owner: String?
}

context {
  ip: Ip
  resource: String
}

const corporate = {cidr("10.0.0.0/8"), cidr("2001:db8::/32")}
const privileged = {"admin", "sre"}

switch lockdown: Bool = false
switch max_risk: Int = 80
"#;

const FACTORS: [&str; 15] = [
    "password",
    "recovery_code",
    "sms",
    "push",
    "totp",
    "hardware_otp",
    "webauthn",
    "passkey",
    "security_key",
    "piv",
    "email",
    "client_cert",
    "api_key",
    "workload_token",
    "federated",
];
const ZONES: [&str; 3] = ["internal", "partner", "public"];
const ROLES: [&str; 4] = ["admin", "sre", "dev", "guest"];
const OWNERS: [&str; 3] = ["o-1", "o-2", "u-1"];
const IPS: [&str; 4] = ["10.1.2.3", "192.0.2.7", "2001:db8::5", "::ffff:10.9.9.9"];
const RESOURCES: [&str; 3] = ["mail", "admin_console", "billing"];
const APPROVER_ROLES: [&str; 3] = ["manager", "hr", "security"];
/// Approver ids; the principal's own id is among them, and its approvals are
/// ignored by `approve` steps.
const APPROVERS: [&str; 3] = ["u-1", "m-7", "h-3"];
const REASONS: [&str; 3] = ["risk too high", "blocked zone", "lockdown"];
const OBLIGATIONS: [&str; 3] = ["notify", "review", "revoke_sessions"];
const ATTRIBUTE_KEYS: [&str; 4] = ["a", "b", "c", "d"];
/// Values of `allow with` and `emit with` records, one of each type the
/// schema offers.
const ATTRIBUTE_VALUES: [&str; 10] = [
    "8h",
    "principal.risk",
    "principal.zone",
    "principal.owner",
    "context.resource",
    "context.ip",
    "session.aal",
    "session.factors",
    "now",
    "principal.roles.len()",
];

/// Nesting limits: deeper guards render as `true`, deeper blocks as nothing.
const MAX_GUARD_DEPTH: usize = 4;
const MAX_BLOCK_DEPTH: usize = 3;

fn pick<T: Copy>(table: &[T], index: u8) -> T {
    table[index as usize % table.len()]
}

/// The table entries whose bit is set in `mask`, in table order.
fn subset<'t>(table: &[&'t str], mask: u16) -> Vec<&'t str> {
    table
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, name)| *name)
        .collect()
}

#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Comparison {
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    Equal,
    NotEqual,
}

impl Comparison {
    fn operator(self) -> &'static str {
        match self {
            Comparison::Less => "<",
            Comparison::LessEqual => "<=",
            Comparison::Greater => ">",
            Comparison::GreaterEqual => ">=",
            Comparison::Equal => "==",
            Comparison::NotEqual => "!=",
        }
    }
}

/// A `Bool` expression over the schema.
#[derive(Arbitrary, Clone, Debug)]
pub enum Guard {
    Constant(bool),
    Risk(Comparison, i8),
    RiskAboveSwitch,
    HasRole(u8),
    Privileged,
    RoleCount(Comparison, u8),
    Zone(u8),
    OwnerAbsent,
    Owner(u8),
    IpCorporate,
    Ip(u8),
    Resource(u8),
    Lockdown,
    HasFactor(u8),
    Enrolled(u8),
    Aal(Comparison, u8),
    Failures(u8, Comparison, u8),
    SessionAge(Comparison, u16),
    Not(Box<Guard>),
    And(Box<Guard>, Box<Guard>),
    Or(Box<Guard>, Box<Guard>),
}

impl Guard {
    fn render(&self, depth: usize) -> String {
        if depth > MAX_GUARD_DEPTH {
            return "true".into();
        }
        match self {
            Guard::Constant(value) => value.to_string(),
            Guard::Risk(comparison, value) => {
                format!("principal.risk {} {value}", comparison.operator())
            }
            Guard::RiskAboveSwitch => "principal.risk > max_risk".into(),
            Guard::HasRole(role) => {
                format!("principal.roles.contains(\"{}\")", pick(&ROLES, *role))
            }
            Guard::Privileged => "principal.roles.contains_any(privileged)".into(),
            Guard::RoleCount(comparison, count) => format!(
                "principal.roles.len() {} {}",
                comparison.operator(),
                count % 5
            ),
            Guard::Zone(zone) => format!("principal.zone == {}", pick(&ZONES, *zone)),
            Guard::OwnerAbsent => "principal.owner == none".into(),
            Guard::Owner(owner) => {
                format!("(principal.owner ?? \"\") == \"{}\"", pick(&OWNERS, *owner))
            }
            Guard::IpCorporate => "context.ip in corporate".into(),
            Guard::Ip(ip) => format!("context.ip == ip(\"{}\")", pick(&IPS, *ip)),
            Guard::Resource(resource) => {
                format!("context.resource == \"{}\"", pick(&RESOURCES, *resource))
            }
            Guard::Lockdown => "lockdown".into(),
            Guard::HasFactor(factor) => {
                format!("session.factors.contains({})", pick(&FACTORS, *factor))
            }
            Guard::Enrolled(factor) => format!("{} in principal.enrolled", pick(&FACTORS, *factor)),
            Guard::Aal(comparison, level) => {
                format!("session.aal {} {}", comparison.operator(), level % 4)
            }
            Guard::Failures(factor, comparison, count) => format!(
                "failures({}) {} {}",
                pick(&FACTORS, *factor),
                comparison.operator(),
                count % 4
            ),
            Guard::SessionAge(comparison, seconds) => {
                format!("session.age {} {seconds}s", comparison.operator())
            }
            Guard::Not(inner) => format!("not ({})", inner.render(depth + 1)),
            Guard::And(left, right) => format!(
                "({}) and ({})",
                left.render(depth + 1),
                right.render(depth + 1)
            ),
            Guard::Or(left, right) => format!(
                "({}) or ({})",
                left.render(depth + 1),
                right.render(depth + 1)
            ),
        }
    }
}

#[derive(Arbitrary, Clone, Debug)]
pub enum Requirement {
    Factor(u8),
    Any(u16),
    All(u16),
    Level(u8),
}

impl Requirement {
    fn render(&self) -> String {
        let listed = |mask: u16| {
            let factors = subset(&FACTORS, mask & 0x7fff);
            if factors.is_empty() {
                "password".to_string()
            } else {
                factors.join(", ")
            }
        };
        match self {
            Requirement::Factor(factor) => pick(&FACTORS, *factor).to_string(),
            Requirement::Any(mask) => format!("any({})", listed(*mask)),
            Requirement::All(mask) => format!("all({})", listed(*mask)),
            Requirement::Level(level) => format!("aal{}", level % 3 + 1),
        }
    }
}

/// A `with { ... }` record: up to four distinct keys.
#[derive(Arbitrary, Clone, Debug)]
pub struct Record(Vec<u8>);

impl Record {
    fn render(&self) -> String {
        let fields: Vec<String> = self
            .0
            .iter()
            .take(ATTRIBUTE_KEYS.len())
            .enumerate()
            .map(|(i, value)| format!("{}: {}", ATTRIBUTE_KEYS[i], pick(&ATTRIBUTE_VALUES, *value)))
            .collect();
        if fields.is_empty() {
            String::new()
        } else {
            format!(" with {{ {} }}", fields.join(", "))
        }
    }
}

#[derive(Arbitrary, Clone, Debug)]
pub enum Step {
    DenyWhen(u8, Guard),
    Require {
        requirement: Requirement,
        within_minutes: Option<u8>,
        attempts: Option<u8>,
    },
    Approve {
        roles: u8,
        within_hours: Option<u8>,
    },
    Emit(u8, Record),
    If {
        arms: Vec<(Guard, Block)>,
        otherwise: Option<Block>,
    },
}

/// How a block ends after its steps.
#[derive(Arbitrary, Clone, Debug)]
pub enum Ending {
    FallThrough,
    Allow(Record),
    Deny(u8),
}

#[derive(Arbitrary, Clone, Debug)]
pub struct Block {
    pub steps: Vec<Step>,
    pub ending: Ending,
}

impl Block {
    fn render(&self, depth: usize, out: &mut String) {
        let indent = "  ".repeat(depth + 1);
        if depth > MAX_BLOCK_DEPTH {
            return;
        }
        for step in self.steps.iter().take(8) {
            step.render(depth, out);
        }
        match &self.ending {
            Ending::FallThrough => {}
            Ending::Allow(record) => {
                let _ = writeln!(out, "{indent}allow{}", record.render());
            }
            Ending::Deny(reason) => {
                let _ = writeln!(out, "{indent}deny \"{}\"", pick(&REASONS, *reason));
            }
        }
    }
}

impl Step {
    fn render(&self, depth: usize, out: &mut String) {
        let indent = "  ".repeat(depth + 1);
        match self {
            Step::DenyWhen(reason, guard) => {
                let _ = writeln!(
                    out,
                    "{indent}deny \"{}\" when {}",
                    pick(&REASONS, *reason),
                    guard.render(0)
                );
            }
            Step::Require {
                requirement,
                within_minutes,
                attempts,
            } => {
                let _ = write!(out, "{indent}require {}", requirement.render());
                if let Some(minutes) = within_minutes {
                    let _ = write!(out, " within {minutes}m");
                }
                if let Some(attempts) = attempts {
                    let _ = write!(out, " attempts {}", attempts % 6);
                }
                out.push('\n');
            }
            Step::Approve {
                roles,
                within_hours,
            } => {
                let mut listed = subset(&APPROVER_ROLES, u16::from(*roles));
                if listed.is_empty() {
                    listed.push(APPROVER_ROLES[0]);
                }
                let _ = write!(out, "{indent}approve by {}", listed.join(", "));
                if let Some(hours) = within_hours {
                    let _ = write!(out, " within {hours}h");
                }
                out.push('\n');
            }
            Step::Emit(name, record) => {
                let _ = writeln!(
                    out,
                    "{indent}emit \"{}\"{}",
                    pick(&OBLIGATIONS, *name),
                    record.render()
                );
            }
            Step::If { arms, otherwise } => {
                if depth >= MAX_BLOCK_DEPTH || arms.is_empty() {
                    return;
                }
                for (i, (guard, block)) in arms.iter().take(3).enumerate() {
                    let keyword = if i == 0 {
                        indent.clone() + "if"
                    } else {
                        " else if".into()
                    };
                    let _ = writeln!(out, "{keyword} {} {{", guard.render(0));
                    block.render(depth + 1, out);
                    let _ = write!(out, "{indent}}}");
                }
                if let Some(block) = otherwise {
                    out.push_str(" else {\n");
                    block.render(depth + 1, out);
                    let _ = write!(out, "{indent}}}");
                }
                out.push('\n');
            }
        }
    }
}

/// A principal's attributes as the request and `update` events give them.
#[derive(Arbitrary, Clone, Debug)]
pub struct Attributes {
    pub roles: u8,
    pub risk: i8,
    pub zone: u8,
    pub owner: Option<u8>,
}

#[derive(Arbitrary, Clone, Debug)]
pub struct Request {
    pub principal: Attributes,
    pub enrolled: u16,
    pub ip: u8,
    pub resource: u8,
    pub lockdown: Option<bool>,
    pub max_risk: Option<i8>,
    /// Seconds before `now` that the session started, and the factors it
    /// verified then.
    pub session: Option<(u16, u16)>,
}

#[derive(Arbitrary, Clone, Debug)]
pub enum Event {
    Verified(u8),
    Failed(u8),
    Enrolled(u8),
    Approval {
        role: u8,
        approver: u8,
        granted: bool,
    },
    Update {
        risk: Option<i8>,
        roles: Option<u8>,
        zone: Option<u8>,
        owner: Option<Option<u8>>,
        ip: Option<u8>,
        resource: Option<u8>,
    },
}

/// An event and the seconds since the previous one, so event times never
/// decrease.
#[derive(Arbitrary, Clone, Debug)]
pub struct TimedEvent {
    pub delay_seconds: u16,
    pub event: Event,
}

/// One differential case: a flow, a request and its events.
#[derive(Arbitrary, Clone, Debug)]
pub struct Case {
    pub flow: Block,
    pub request: Request,
    pub events: Vec<TimedEvent>,
}

const SECOND: i64 = 1_000_000;

fn roles_json(mask: u8) -> Json {
    json!(subset(&ROLES, u16::from(mask)))
}

fn owner_json(owner: Option<u8>) -> Json {
    owner.map_or(Json::Null, |owner| json!(pick(&OWNERS, owner)))
}

impl Case {
    /// Renders the policy text: the fixed schema and one flow.
    pub fn policy(&self) -> String {
        let mut text = String::from(SCHEMA);
        text.push_str("\nflow main for human on login {\n");
        self.flow.render(0, &mut text);
        text.push_str("}\n");
        text
    }

    /// Renders the request as JSON, made at [`DEFAULT_NOW`].
    pub fn request_json(&self) -> Json {
        let request = &self.request;
        let principal = &request.principal;
        let mut switches = Map::new();
        if let Some(lockdown) = request.lockdown {
            switches.insert("lockdown".into(), json!(lockdown));
        }
        if let Some(max_risk) = request.max_risk {
            switches.insert("max_risk".into(), json!(max_risk));
        }
        let mut json = json!({
            "flow": "main",
            "principal": {
                "kind": "human",
                "id": "u-1",
                "roles": roles_json(principal.roles),
                "risk": principal.risk,
                "zone": pick(&ZONES, principal.zone),
                "owner": owner_json(principal.owner),
                "enrolled": subset(&FACTORS, request.enrolled & 0x7fff),
            },
            "context": {
                "ip": pick(&IPS, request.ip),
                "resource": pick(&RESOURCES, request.resource),
            },
            "switches": switches,
            "now": format_time(DEFAULT_NOW),
        });
        if let Some((seconds_before, factors)) = request.session {
            let started = DEFAULT_NOW - i64::from(seconds_before) * SECOND;
            let factors: Vec<Json> = subset(&FACTORS, factors & 0x7fff)
                .into_iter()
                .map(|factor| json!({ "factor": factor, "at": format_time(started) }))
                .collect();
            json["session"] = json!({
                "started_at": format_time(started),
                "factors": factors,
            });
        }
        json
    }

    /// Renders the events as JSON, each `delay_seconds` after the one before.
    pub fn events_json(&self) -> Vec<Json> {
        let mut now = DEFAULT_NOW;
        let mut events = Vec::new();
        for timed in self.events.iter().take(12) {
            now += i64::from(timed.delay_seconds) * SECOND;
            let at = format_time(now);
            let event = match &timed.event {
                Event::Verified(factor) => {
                    json!({ "factor_verified": { "factor": pick(&FACTORS, *factor), "at": at } })
                }
                Event::Failed(factor) => {
                    json!({ "factor_failed": { "factor": pick(&FACTORS, *factor), "at": at } })
                }
                Event::Enrolled(factor) => {
                    json!({ "factor_enrolled": { "factor": pick(&FACTORS, *factor), "at": at } })
                }
                Event::Approval {
                    role,
                    approver,
                    granted,
                } => json!({ "approval": {
                    "role": pick(&APPROVER_ROLES, *role),
                    "approver": pick(&APPROVERS, *approver),
                    "granted": granted,
                    "at": at,
                } }),
                Event::Update {
                    risk,
                    roles,
                    zone,
                    owner,
                    ip,
                    resource,
                } => {
                    let mut principal = Map::new();
                    let mut context = Map::new();
                    if let Some(risk) = risk {
                        principal.insert("risk".into(), json!(risk));
                    }
                    if let Some(roles) = roles {
                        principal.insert("roles".into(), roles_json(*roles));
                    }
                    if let Some(zone) = zone {
                        principal.insert("zone".into(), json!(pick(&ZONES, *zone)));
                    }
                    if let Some(owner) = owner {
                        principal.insert("owner".into(), owner_json(*owner));
                    }
                    if let Some(ip) = ip {
                        context.insert("ip".into(), json!(pick(&IPS, *ip)));
                    }
                    if let Some(resource) = resource {
                        context.insert("resource".into(), json!(pick(&RESOURCES, *resource)));
                    }
                    if principal.is_empty() && context.is_empty() {
                        principal.insert("risk".into(), json!(0));
                    }
                    let mut update = Map::new();
                    if !principal.is_empty() {
                        update.insert("principal".into(), Json::Object(principal));
                    }
                    if !context.is_empty() {
                        update.insert("context".into(), Json::Object(context));
                    }
                    update.insert("at".into(), json!(at));
                    json!({ "update": update })
                }
            };
            events.push(event);
        }
        events
    }
}
