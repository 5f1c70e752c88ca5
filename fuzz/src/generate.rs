//! A generator of small well-typed policies over one fixed schema, with
//! requests and events that fit the schema, for the `eval_differential`
//! target. Every generated choice is an index into a fixed table or a typed
//! expression tree, so the rendered text type-checks unless the checker
//! rejects a combination of steps. The target skips those.
//!
//! A case has a main flow and up to two helper flows without `on`. A flow
//! may `run` only the helpers declared after it, so `run` never forms a
//! cycle.

use std::fmt::Write;

use arbitrary::Arbitrary;
use authflow_runtime::value::format_time;
use serde_json::{json, Map, Value as Json};

use crate::DEFAULT_NOW;

/// The declarations every generated policy starts with. Some constants are
/// only read by some generated flows, so the checker may warn that they are
/// unused. Warnings do not stop compilation.
const SCHEMA: &str = r#"policy "generated" version "1"

enum Zone { internal, partner, public }
enum Tier { gold, silver, bronze }

principal human {
  roles: Set<String>
  risk: Int
  zone: Zone
  owner: String?
  tier: Tier?
  zones: Set<Zone>
  limit: Int?
  expires: Time?
  home: Ip?
}

context {
  ip: Ip
  resource: String
  tags: Set<String>
  score: Int
  opened: Time
  grace: Duration?
}

const corporate = {cidr("10.0.0.0/8"), cidr("2001:db8::/32")}
const privileged = {"admin", "sre"}
const ports = {22, 443, -1}
const windows = {30m, 1h}
const stamps = {time("2026-12-04T10:00:00Z"), time("2026-12-31T00:00:00Z")}
const flags = {true}
const hosts = {ip("10.1.2.3"), ip("::1")}
const int_max = 9223372036854775807
const int_min = -9223372036854775807 - 1
const forever = 106751991d
const deadline = time("2026-12-31T00:00:00Z")

switch lockdown: Bool = false
switch max_risk: Int = 80
switch floor: Zone = internal
switch ttl: Duration = 1h
switch cutoff: Time = time("2026-12-05T00:00:00Z")
switch label: String = "x"
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
const TIERS: [&str; 3] = ["gold", "silver", "bronze"];
const ROLES: [&str; 4] = ["admin", "sre", "dev", "guest"];
const TAGS: [&str; 3] = ["admin", "ops", "x"];
const OWNERS: [&str; 3] = ["o-1", "o-2", "u-1"];
const LABELS: [&str; 2] = ["x", "y"];
const IPS: [&str; 5] = [
    "10.1.2.3",
    "192.0.2.7",
    "2001:db8::5",
    "::ffff:10.9.9.9",
    "::1",
];
const CIDRS: [&str; 4] = [
    "10.0.0.0/8",
    "192.0.2.0/24",
    "2001:db8::/32",
    "::ffff:0:0/96",
];
const RESOURCES: [&str; 3] = ["mail", "admin_console", "billing"];
/// Roles that `approve` steps list.
const APPROVER_ROLES: [&str; 3] = ["manager", "hr", "security"];
/// Roles of `approval` events: the listed ones and one that no step lists.
const EVENT_ROLES: [&str; 4] = ["manager", "hr", "security", "auditor"];
/// Approver ids; the principal's own id is among them, and its approvals are
/// ignored by `approve` steps.
const APPROVERS: [&str; 3] = ["u-1", "m-7", "h-3"];
const REASONS: [&str; 3] = ["risk too high", "blocked zone", "lockdown"];
const OBLIGATIONS: [&str; 3] = ["notify", "review", "revoke_sessions"];
const EXCEPTIONS: [&str; 3] = ["break_glass", "incident", "audit"];
const ATTRIBUTE_KEYS: [&str; 4] = ["a", "b", "c", "d"];
/// Fixed values of `allow with` and `emit with` records: request attributes
/// of every type, constant sets of every element type, switches and `none`.
const ATTRIBUTE_VALUES: [&str; 38] = [
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
    "principal.tier",
    "principal.zones",
    "principal.limit",
    "principal.expires",
    "principal.home",
    "principal.enrolled",
    "principal.id",
    "context.grace",
    "context.opened",
    "context.score",
    "privileged",
    "ports",
    "windows",
    "stamps",
    "flags",
    "hosts",
    "corporate",
    "{internal, public}",
    "{gold}",
    "{password, totp}",
    "{}",
    "none",
    "ttl",
    "floor",
    "cutoff",
    "label",
    "principal.owner ?? label",
    "principal.home ?? ip(\"::1\")",
];
/// Integer literals near the bounds of `i64`, so that arithmetic saturates.
const EXTREME_INTS: [&str; 7] = [
    "int_max",
    "int_min",
    "9223372036854775807",
    "(-9223372036854775807)",
    "(int_max - 1)",
    "(int_min + 1)",
    "4611686018427387904",
];
const DURATIONS: [&str; 9] = [
    "0s",
    "1us",
    "15m",
    "1h",
    "8h",
    "30d",
    "(-1h)",
    "forever",
    "(-forever)",
];
/// Set expressions of type `Set<Zone>` for tests on `principal.zones`.
const ZONE_SETS: [&str; 3] = ["{internal}", "{partner, public}", "principal.zones"];
/// Set expressions of type `Set<String>` for tests on `context.tags`. The
/// other side of a test between two string sets must be a constant.
const TAG_SETS: [&str; 3] = ["privileged", "{\"ops\"}", "{\"x\", \"admin\"}"];
/// Integers near the bounds of `i64` for requests, updates and switches.
const EXTREME_VALUES: [i64; 5] = [i64::MAX, i64::MIN, i64::MAX - 1, i64::MIN + 1, 1 << 62];
/// Times that relative offsets cannot express: the ends of the RFC 3339
/// range and offsets other than `Z`, which move the UTC hour and weekday.
const FIXED_TIMES: [&str; 5] = [
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "2026-12-04T23:30:00-05:00",
    "2026-12-06T00:30:00+14:00",
    "1970-01-01T00:00:00Z",
];
const DURATION_VALUES: [&str; 7] = [
    "0s",
    "90m",
    "-15m",
    "106751991d",
    "-106751991d",
    "1us",
    "12h",
];

/// Nesting limits: deeper expressions render as a fixed leaf, deeper blocks
/// as nothing.
const MAX_EXPR_DEPTH: usize = 4;
const MAX_BLOCK_DEPTH: usize = 3;
/// Helper flows a case declares at most, besides the main flow.
const MAX_HELPERS: usize = 2;

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

/// Lists the factors of `mask`, or `password` when it selects none.
fn factor_list(mask: u16) -> String {
    let factors = subset(&FACTORS, mask & 0x7fff);
    if factors.is_empty() {
        "password".to_string()
    } else {
        factors.join(", ")
    }
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

/// An `Int` expression over the schema.
#[derive(Arbitrary, Clone, Debug)]
pub enum IntExpr {
    Literal(i8),
    Extreme(u8),
    Risk,
    Score,
    /// `principal.limit` with a default: a literal or, when `true`, `int_max`.
    Limit(bool),
    MaxRisk,
    /// The length of one of the schema's sets.
    Len(u8),
    Hour(Box<TimeExpr>),
    Weekday(Box<TimeExpr>),
    Failures(u8),
    Aal,
    Add(Box<IntExpr>, Box<IntExpr>),
    Sub(Box<IntExpr>, Box<IntExpr>),
    Neg(Box<IntExpr>),
}

impl IntExpr {
    fn render(&self, depth: usize) -> String {
        if depth > MAX_EXPR_DEPTH {
            return "principal.risk".into();
        }
        match self {
            IntExpr::Literal(value) if *value < 0 => format!("({value})"),
            IntExpr::Literal(value) => value.to_string(),
            IntExpr::Extreme(index) => pick(&EXTREME_INTS, *index).into(),
            IntExpr::Risk => "principal.risk".into(),
            IntExpr::Score => "context.score".into(),
            IntExpr::Limit(true) => "(principal.limit ?? int_max)".into(),
            IntExpr::Limit(false) => "(principal.limit ?? 10)".into(),
            IntExpr::MaxRisk => "max_risk".into(),
            IntExpr::Len(set) => pick(
                &[
                    "principal.roles.len()",
                    "principal.zones.len()",
                    "context.tags.len()",
                    "principal.enrolled.len()",
                    "session.factors.len()",
                ],
                *set,
            )
            .into(),
            IntExpr::Hour(time) => format!("hour({})", time.render(depth + 1)),
            IntExpr::Weekday(time) => format!("weekday({})", time.render(depth + 1)),
            IntExpr::Failures(factor) => format!("failures({})", pick(&FACTORS, *factor)),
            IntExpr::Aal => "session.aal".into(),
            IntExpr::Add(left, right) => {
                format!("({} + {})", left.render(depth + 1), right.render(depth + 1))
            }
            IntExpr::Sub(left, right) => {
                format!("({} - {})", left.render(depth + 1), right.render(depth + 1))
            }
            IntExpr::Neg(inner) => format!("(-{})", inner.render(depth + 1)),
        }
    }
}

/// A `Time` expression over the schema.
#[derive(Arbitrary, Clone, Debug)]
pub enum TimeExpr {
    Now,
    Started,
    LastActive,
    Opened,
    /// `principal.expires` with a default: `deadline` or, when `true`, `now`.
    Expires(bool),
    Deadline,
    Cutoff,
    Plus(Box<TimeExpr>, Box<DurationExpr>),
    Minus(Box<TimeExpr>, Box<DurationExpr>),
}

impl TimeExpr {
    fn render(&self, depth: usize) -> String {
        if depth > MAX_EXPR_DEPTH {
            return "now".into();
        }
        match self {
            TimeExpr::Now => "now".into(),
            TimeExpr::Started => "session.started_at".into(),
            TimeExpr::LastActive => "session.last_active_at".into(),
            TimeExpr::Opened => "context.opened".into(),
            TimeExpr::Expires(true) => "(principal.expires ?? now)".into(),
            TimeExpr::Expires(false) => "(principal.expires ?? deadline)".into(),
            TimeExpr::Deadline => "deadline".into(),
            TimeExpr::Cutoff => "cutoff".into(),
            TimeExpr::Plus(time, duration) => {
                format!(
                    "({} + {})",
                    time.render(depth + 1),
                    duration.render(depth + 1)
                )
            }
            TimeExpr::Minus(time, duration) => {
                format!(
                    "({} - {})",
                    time.render(depth + 1),
                    duration.render(depth + 1)
                )
            }
        }
    }
}

/// A `Duration` expression over the schema.
#[derive(Arbitrary, Clone, Debug)]
pub enum DurationExpr {
    Literal(u8),
    Ttl,
    /// `context.grace ?? ttl`.
    Grace,
    Age,
    Idle,
    Between(Box<TimeExpr>, Box<TimeExpr>),
    Add(Box<DurationExpr>, Box<DurationExpr>),
    Neg(Box<DurationExpr>),
}

impl DurationExpr {
    fn render(&self, depth: usize) -> String {
        if depth > MAX_EXPR_DEPTH {
            return "1h".into();
        }
        match self {
            DurationExpr::Literal(index) => pick(&DURATIONS, *index).into(),
            DurationExpr::Ttl => "ttl".into(),
            DurationExpr::Grace => "(context.grace ?? ttl)".into(),
            DurationExpr::Age => "session.age".into(),
            DurationExpr::Idle => "session.idle".into(),
            DurationExpr::Between(later, earlier) => {
                format!(
                    "({} - {})",
                    later.render(depth + 1),
                    earlier.render(depth + 1)
                )
            }
            DurationExpr::Add(left, right) => {
                format!("({} + {})", left.render(depth + 1), right.render(depth + 1))
            }
            DurationExpr::Neg(inner) => format!("(-{})", inner.render(depth + 1)),
        }
    }
}

/// A `Bool` expression over the schema.
#[derive(Arbitrary, Clone, Debug)]
pub enum Guard {
    Constant(bool),
    Int(IntExpr, Comparison, IntExpr),
    Time(TimeExpr, Comparison, TimeExpr),
    Duration(DurationExpr, Comparison, DurationExpr),
    HasRole(u8),
    Privileged,
    Zone(u8),
    ZoneAtFloor,
    /// A membership or set test on `principal.zones`.
    Zones(u8, u8),
    /// A membership or set test on `context.tags`.
    Tags(u8, u8),
    TierAbsent,
    /// `(principal.tier ?? DEFAULT) == VALUE`.
    Tier(u8, u8),
    OwnerAbsent,
    Owner(u8),
    /// `context.ip` or the defaulted `principal.home` in a network.
    Network(bool, u8),
    IpCorporate,
    Ip(u8),
    HomeAbsent,
    GracePresent,
    Resource(u8),
    Label(u8),
    Lockdown,
    HasFactor(u8),
    Enrolled(u8),
    /// A set test between `principal.enrolled` and a factor set.
    EnrolledTest(u8, u16),
    Not(Box<Guard>),
    And(Box<Guard>, Box<Guard>),
    Or(Box<Guard>, Box<Guard>),
}

impl Guard {
    fn render(&self, depth: usize) -> String {
        if depth > MAX_EXPR_DEPTH {
            return "true".into();
        }
        match self {
            Guard::Constant(value) => value.to_string(),
            Guard::Int(left, comparison, right) => format!(
                "{} {} {}",
                left.render(depth + 1),
                comparison.operator(),
                right.render(depth + 1)
            ),
            Guard::Time(left, comparison, right) => format!(
                "{} {} {}",
                left.render(depth + 1),
                comparison.operator(),
                right.render(depth + 1)
            ),
            Guard::Duration(left, comparison, right) => format!(
                "{} {} {}",
                left.render(depth + 1),
                comparison.operator(),
                right.render(depth + 1)
            ),
            Guard::HasRole(role) => {
                format!("principal.roles.contains(\"{}\")", pick(&ROLES, *role))
            }
            Guard::Privileged => "principal.roles.contains_any(privileged)".into(),
            Guard::Zone(zone) => format!("principal.zone == {}", pick(&ZONES, *zone)),
            Guard::ZoneAtFloor => "principal.zone == floor".into(),
            Guard::Zones(test, operand) => {
                let zone = pick(&ZONES, *operand);
                let set = pick(&ZONE_SETS, *operand);
                match test % 5 {
                    0 => format!("{zone} in principal.zones"),
                    1 => "principal.zone in principal.zones".into(),
                    2 => format!("principal.zones.contains_any({set})"),
                    3 => format!("principal.zones.contains_all({set})"),
                    _ => "principal.zones.is_empty()".into(),
                }
            }
            Guard::Tags(test, operand) => {
                let tag = pick(&TAGS, *operand);
                let set = pick(&TAG_SETS, *operand);
                match test % 5 {
                    0 => format!("\"{tag}\" in context.tags"),
                    1 => format!("context.tags.contains(\"{tag}\")"),
                    2 => format!("context.tags.contains_any({set})"),
                    3 => format!("context.tags.contains_all({set})"),
                    _ => "context.tags.is_empty()".into(),
                }
            }
            Guard::TierAbsent => "principal.tier == none".into(),
            Guard::Tier(default, value) => format!(
                "(principal.tier ?? {}) == {}",
                pick(&TIERS, *default),
                pick(&TIERS, *value)
            ),
            Guard::OwnerAbsent => "principal.owner == none".into(),
            Guard::Owner(owner) => {
                format!("(principal.owner ?? \"\") == \"{}\"", pick(&OWNERS, *owner))
            }
            Guard::Network(home, cidr) => {
                let address = if *home {
                    "(principal.home ?? ip(\"192.0.2.1\"))"
                } else {
                    "context.ip"
                };
                format!("{address} in cidr(\"{}\")", pick(&CIDRS, *cidr))
            }
            Guard::IpCorporate => "context.ip in corporate".into(),
            Guard::Ip(ip) => format!("context.ip == ip(\"{}\")", pick(&IPS, *ip)),
            Guard::HomeAbsent => "principal.home == none".into(),
            Guard::GracePresent => "context.grace != none".into(),
            Guard::Resource(resource) => {
                format!("context.resource == \"{}\"", pick(&RESOURCES, *resource))
            }
            Guard::Label(label) => format!("label == \"{}\"", pick(&LABELS, *label)),
            Guard::Lockdown => "lockdown".into(),
            Guard::HasFactor(factor) => {
                format!("session.factors.contains({})", pick(&FACTORS, *factor))
            }
            Guard::Enrolled(factor) => format!("{} in principal.enrolled", pick(&FACTORS, *factor)),
            Guard::EnrolledTest(test, mask) => {
                let other = if mask & 0x8000 != 0 {
                    "session.factors".to_string()
                } else {
                    format!("{{{}}}", factor_list(*mask))
                };
                match test % 3 {
                    0 => format!("principal.enrolled.contains_any({other})"),
                    1 => format!("principal.enrolled.contains_all({other})"),
                    _ => "principal.enrolled.is_empty()".into(),
                }
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
        match self {
            Requirement::Factor(factor) => pick(&FACTORS, *factor).to_string(),
            Requirement::Any(mask) => format!("any({})", factor_list(*mask)),
            Requirement::All(mask) => format!("all({})", factor_list(*mask)),
            Requirement::Level(level) => format!("aal{}", level % 3 + 1),
        }
    }
}

/// The factors of an `enroll` step, which takes no assurance level.
#[derive(Arbitrary, Clone, Debug)]
pub enum Enrolment {
    Factor(u8),
    Any(u16),
    All(u16),
}

impl Enrolment {
    fn render(&self) -> String {
        match self {
            Enrolment::Factor(factor) => pick(&FACTORS, *factor).to_string(),
            Enrolment::Any(mask) => format!("any({})", factor_list(*mask)),
            Enrolment::All(mask) => format!("all({})", factor_list(*mask)),
        }
    }
}

/// The duration after `within`.
#[derive(Arbitrary, Clone, Debug)]
pub enum Within {
    Minutes(u8),
    Hours(u8),
    Expr(DurationExpr),
}

impl Within {
    fn render(&self) -> String {
        match self {
            Within::Minutes(minutes) => format!(" within {minutes}m"),
            Within::Hours(hours) => format!(" within {hours}h"),
            Within::Expr(duration) => format!(" within {}", duration.render(1)),
        }
    }
}

/// The count after `attempts`.
#[derive(Arbitrary, Clone, Debug)]
pub enum Attempts {
    Count(u8),
    Expr(IntExpr),
}

impl Attempts {
    fn render(&self) -> String {
        match self {
            Attempts::Count(count) => format!(" attempts {}", count % 6),
            Attempts::Expr(count) => format!(" attempts {}", count.render(1)),
        }
    }
}

/// A value of a `with { ... }` record.
#[derive(Arbitrary, Clone, Debug)]
pub enum RecordValue {
    Fixed(u8),
    Int(IntExpr),
    Time(TimeExpr),
    Duration(DurationExpr),
    Bool(Guard),
}

impl RecordValue {
    fn render(&self) -> String {
        match self {
            RecordValue::Fixed(index) => pick(&ATTRIBUTE_VALUES, *index).into(),
            RecordValue::Int(value) => value.render(1),
            RecordValue::Time(value) => value.render(1),
            RecordValue::Duration(value) => value.render(1),
            RecordValue::Bool(value) => value.render(1),
        }
    }
}

/// A `with { ... }` record: up to four distinct keys.
#[derive(Arbitrary, Clone, Debug)]
pub struct Record(Vec<RecordValue>);

impl Record {
    fn render(&self) -> String {
        let fields: Vec<String> = self
            .0
            .iter()
            .take(ATTRIBUTE_KEYS.len())
            .enumerate()
            .map(|(i, value)| format!("{}: {}", ATTRIBUTE_KEYS[i], value.render()))
            .collect();
        if fields.is_empty() {
            String::new()
        } else {
            format!(" with {{ {} }}", fields.join(", "))
        }
    }
}

/// The enum value a `match` step branches on.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Scrutinee {
    Zone,
    Floor,
    /// `principal.tier` with a default.
    Tier(u8),
}

impl Scrutinee {
    fn render(self) -> (String, &'static [&'static str]) {
        match self {
            Scrutinee::Zone => ("principal.zone".into(), &ZONES),
            Scrutinee::Floor => ("floor".into(), &ZONES),
            Scrutinee::Tier(default) => (
                format!("(principal.tier ?? {})", pick(&TIERS, default)),
                &TIERS,
            ),
        }
    }
}

#[derive(Arbitrary, Clone, Debug)]
pub enum Step {
    DenyWhen(u8, Guard),
    Require {
        requirement: Requirement,
        within: Option<Within>,
        attempts: Option<Attempts>,
    },
    Enroll(Enrolment),
    Approve {
        roles: u8,
        within: Option<Within>,
    },
    Emit(u8, Record),
    If {
        arms: Vec<(Guard, Block)>,
        otherwise: Option<Block>,
    },
    /// A `match` with one arm per enum value, in an order rotated by
    /// `rotation`. Values without a block get an empty one.
    Match {
        scrutinee: Scrutinee,
        rotation: u8,
        arms: Vec<Block>,
    },
    /// An exception path. A body that would fall through ends in `deny`, so
    /// every path through it decides.
    Exception {
        name: u8,
        guard: Guard,
        body: Block,
    },
    /// `run` of a helper declared after the flow being rendered, or nothing
    /// when there is none.
    Run(u8),
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

/// The position of a rendered block: its nesting depth, the index of its
/// flow (0 for `main`, then the helpers) and the number of flows.
#[derive(Clone, Copy)]
struct Place {
    depth: usize,
    flow: usize,
    flows: usize,
}

impl Place {
    fn indent(self) -> String {
        "  ".repeat(self.depth + 1)
    }

    fn nested(self) -> Place {
        Place {
            depth: self.depth + 1,
            ..self
        }
    }
}

/// Tests whether flow text reads no principal attribute but `id` and
/// `enrolled`, the two that a `for any` flow can read.
fn reads_only_any_attributes(text: &str) -> bool {
    text.match_indices("principal.").all(|(at, prefix)| {
        let rest = &text[at + prefix.len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        name == "id" || name == "enrolled"
    })
}

fn flow_name(index: usize) -> String {
    if index == 0 {
        "main".into()
    } else {
        format!("sub{index}")
    }
}

impl Block {
    fn render(&self, place: Place, out: &mut String) {
        if place.depth > MAX_BLOCK_DEPTH {
            return;
        }
        self.render_steps(place, out);
        self.render_ending(place, out);
    }

    fn render_steps(&self, place: Place, out: &mut String) {
        for step in self.steps.iter().take(8) {
            step.render(place, out);
        }
    }

    fn render_ending(&self, place: Place, out: &mut String) {
        let indent = place.indent();
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
    fn render(&self, place: Place, out: &mut String) {
        let indent = place.indent();
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
                within,
                attempts,
            } => {
                let _ = write!(out, "{indent}require {}", requirement.render());
                if let Some(within) = within {
                    out.push_str(&within.render());
                }
                if let Some(attempts) = attempts {
                    out.push_str(&attempts.render());
                }
                out.push('\n');
            }
            Step::Enroll(enrolment) => {
                let _ = writeln!(out, "{indent}enroll {}", enrolment.render());
            }
            Step::Approve { roles, within } => {
                let mut listed = subset(&APPROVER_ROLES, u16::from(*roles));
                if listed.is_empty() {
                    listed.push(APPROVER_ROLES[0]);
                }
                let _ = write!(out, "{indent}approve by {}", listed.join(", "));
                if let Some(within) = within {
                    out.push_str(&within.render());
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
                if place.depth >= MAX_BLOCK_DEPTH || arms.is_empty() {
                    return;
                }
                for (i, (guard, block)) in arms.iter().take(3).enumerate() {
                    let keyword = if i == 0 {
                        indent.clone() + "if"
                    } else {
                        " else if".into()
                    };
                    let _ = writeln!(out, "{keyword} {} {{", guard.render(0));
                    block.render(place.nested(), out);
                    let _ = write!(out, "{indent}}}");
                }
                if let Some(block) = otherwise {
                    out.push_str(" else {\n");
                    block.render(place.nested(), out);
                    let _ = write!(out, "{indent}}}");
                }
                out.push('\n');
            }
            Step::Match {
                scrutinee,
                rotation,
                arms,
            } => {
                if place.depth >= MAX_BLOCK_DEPTH {
                    return;
                }
                let (value, variants) = scrutinee.render();
                let _ = writeln!(out, "{indent}match {value} {{");
                let empty = Block {
                    steps: Vec::new(),
                    ending: Ending::FallThrough,
                };
                for i in 0..variants.len() {
                    let variant = variants[(i + usize::from(*rotation)) % variants.len()];
                    let block = arms.get(i).unwrap_or(&empty);
                    let _ = writeln!(out, "{indent}  {variant} => {{");
                    block.render(place.nested().nested(), out);
                    let _ = writeln!(out, "{indent}  }}");
                }
                let _ = writeln!(out, "{indent}}}");
            }
            Step::Exception { name, guard, body } => {
                if place.depth >= MAX_BLOCK_DEPTH {
                    return;
                }
                let _ = writeln!(
                    out,
                    "{indent}exception \"{}\" when {} {{",
                    pick(&EXCEPTIONS, *name),
                    guard.render(0)
                );
                let inner = place.nested();
                body.render_steps(inner, out);
                match body.ending {
                    Ending::FallThrough => {
                        let _ = writeln!(out, "{}deny \"exception\"", inner.indent());
                    }
                    _ => body.render_ending(inner, out),
                }
                let _ = writeln!(out, "{indent}}}");
            }
            Step::Run(target) => {
                let later = place.flows - place.flow - 1;
                if later == 0 {
                    return;
                }
                let index = place.flow + 1 + usize::from(*target) % later;
                let _ = writeln!(out, "{indent}run {}", flow_name(index));
            }
        }
    }
}

/// An optional request attribute: left out, `null` or a value.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Optional<T> {
    Absent,
    Null,
    Present(T),
}

impl<T: Copy> Optional<T> {
    /// Inserts the attribute into `object` unless it is left out.
    fn insert(self, object: &mut Map<String, Json>, key: &str, value: impl Fn(T) -> Json) {
        match self {
            Optional::Absent => {}
            Optional::Null => {
                object.insert(key.into(), Json::Null);
            }
            Optional::Present(inner) => {
                object.insert(key.into(), value(inner));
            }
        }
    }
}

/// An `Int` value of a request, an update or a switch.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum IntValue {
    Small(i8),
    Extreme(u8),
}

impl IntValue {
    fn json(self) -> Json {
        match self {
            IntValue::Small(value) => json!(value),
            IntValue::Extreme(index) => json!(pick(&EXTREME_VALUES, index)),
        }
    }
}

/// A `Time` value: seconds from [`DEFAULT_NOW`] or a fixed time.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum TimeValue {
    Offset(i32),
    Fixed(u8),
}

impl TimeValue {
    fn json(self) -> Json {
        match self {
            TimeValue::Offset(seconds) => {
                json!(format_time(DEFAULT_NOW + i64::from(seconds) * SECOND))
            }
            TimeValue::Fixed(index) => json!(pick(&FIXED_TIMES, index)),
        }
    }
}

fn duration_json(index: u8) -> Json {
    json!(pick(&DURATION_VALUES, index))
}

/// A principal's attributes as the request gives them.
#[derive(Arbitrary, Clone, Debug)]
pub struct Attributes {
    pub roles: u8,
    pub risk: IntValue,
    pub zone: u8,
    pub owner: Option<u8>,
    pub tier: Optional<u8>,
    pub zones: u8,
    pub limit: Optional<IntValue>,
    pub expires: Optional<TimeValue>,
    pub home: Optional<u8>,
}

/// The request's context attributes.
#[derive(Arbitrary, Clone, Debug)]
pub struct Context {
    pub ip: u8,
    pub resource: u8,
    pub tags: u8,
    pub score: IntValue,
    pub opened: TimeValue,
    pub grace: Optional<u8>,
}

/// Switch values a request sets. `None` leaves a switch at its default.
#[derive(Arbitrary, Clone, Debug)]
pub struct Switches {
    pub lockdown: Option<bool>,
    pub max_risk: Option<IntValue>,
    pub floor: Option<u8>,
    pub ttl: Option<u8>,
    pub cutoff: Option<TimeValue>,
    pub label: Option<u8>,
}

/// The request's session: when it started, the factors it verified then,
/// and when it was last active.
#[derive(Arbitrary, Clone, Debug)]
pub struct Session {
    /// Seconds before `now` that the session started.
    pub seconds_before: u16,
    pub factors: u16,
    /// Seconds after the start of the last activity, capped at `now`.
    pub active_after: Option<u16>,
}

#[derive(Arbitrary, Clone, Debug)]
pub struct Request {
    pub principal: Attributes,
    pub enrolled: u16,
    pub context: Context,
    pub switches: Switches,
    pub session: Option<Session>,
}

/// The attributes an `update` event replaces. `None` leaves one unchanged,
/// and `Some(None)` makes an optional attribute absent.
#[derive(Arbitrary, Clone, Debug)]
pub struct Update {
    pub risk: Option<IntValue>,
    pub roles: Option<u8>,
    pub zone: Option<u8>,
    pub owner: Option<Option<u8>>,
    pub tier: Option<Option<u8>>,
    pub zones: Option<u8>,
    pub limit: Option<Option<IntValue>>,
    pub expires: Option<Option<TimeValue>>,
    pub home: Option<Option<u8>>,
    pub ip: Option<u8>,
    pub resource: Option<u8>,
    pub tags: Option<u8>,
    pub score: Option<IntValue>,
    pub opened: Option<TimeValue>,
    pub grace: Option<Option<u8>>,
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
    Update(Box<Update>),
}

/// The time between an event and the one before it.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum Delay {
    Seconds(u16),
    Days(u8),
}

impl Delay {
    fn microseconds(self) -> i64 {
        match self {
            Delay::Seconds(seconds) => i64::from(seconds) * SECOND,
            Delay::Days(days) => i64::from(days % 8) * 86_400 * SECOND,
        }
    }
}

/// An event and the time since the previous one, so event times never
/// decrease.
#[derive(Arbitrary, Clone, Debug)]
pub struct TimedEvent {
    pub delay: Delay,
    pub event: Event,
}

/// One differential case: the main flow, the helper flows it may `run`, a
/// request and its events.
#[derive(Arbitrary, Clone, Debug)]
pub struct Case {
    pub flow: Block,
    pub helpers: Vec<Block>,
    pub request: Request,
    pub events: Vec<TimedEvent>,
}

const SECOND: i64 = 1_000_000;

fn roles_json(mask: u8) -> Json {
    json!(subset(&ROLES, u16::from(mask)))
}

fn zones_json(mask: u8) -> Json {
    json!(subset(&ZONES, u16::from(mask)))
}

fn tags_json(mask: u8) -> Json {
    json!(subset(&TAGS, u16::from(mask)))
}

fn owner_json(owner: Option<u8>) -> Json {
    owner.map_or(Json::Null, |owner| json!(pick(&OWNERS, owner)))
}

fn optional_json<T>(value: Option<T>, render: impl Fn(T) -> Json) -> Json {
    value.map_or(Json::Null, render)
}

impl Case {
    /// Renders the policy text: the fixed schema, the main flow and the
    /// helper flows. A helper is declared `for any` when its steps read no
    /// principal attribute but `id` and `enrolled` and it runs only
    /// `for any` helpers, because the checker rejects anything else in such
    /// a flow. Every other flow is `for human`.
    pub fn policy(&self) -> String {
        let helpers = &self.helpers[..self.helpers.len().min(MAX_HELPERS)];
        let flows = helpers.len() + 1;
        let blocks: Vec<&Block> = std::iter::once(&self.flow).chain(helpers).collect();
        // Helpers render last to first, so the kinds of the helpers each one
        // may run are known when it renders.
        let mut rendered = vec![(String::new(), false); flows];
        for index in (0..flows).rev() {
            let mut body = String::new();
            let place = Place {
                depth: 0,
                flow: index,
                flows,
            };
            blocks[index].render(place, &mut body);
            let runs_only_any = (index + 1..flows).all(|later| {
                rendered[later].1 || !body.contains(&format!("run {}\n", flow_name(later)))
            });
            let for_any = index > 0 && runs_only_any && reads_only_any_attributes(&body);
            rendered[index] = (body, for_any);
        }
        let mut text = String::from(SCHEMA);
        for (index, (body, for_any)) in rendered.iter().enumerate() {
            let kinds = if *for_any { "any" } else { "human" };
            let route = if index == 0 { " on login" } else { "" };
            let _ = writeln!(text, "\nflow {} for {kinds}{route} {{", flow_name(index));
            text.push_str(body);
            text.push_str("}\n");
        }
        text
    }

    /// Renders the request as JSON, made at [`DEFAULT_NOW`].
    pub fn request_json(&self) -> Json {
        let request = &self.request;
        let attributes = &request.principal;
        let context = &request.context;
        let mut principal = Map::new();
        principal.insert("kind".into(), json!("human"));
        principal.insert("id".into(), json!("u-1"));
        principal.insert("roles".into(), roles_json(attributes.roles));
        principal.insert("risk".into(), attributes.risk.json());
        principal.insert("zone".into(), json!(pick(&ZONES, attributes.zone)));
        principal.insert("owner".into(), owner_json(attributes.owner));
        attributes
            .tier
            .insert(&mut principal, "tier", |tier| json!(pick(&TIERS, tier)));
        principal.insert("zones".into(), zones_json(attributes.zones));
        attributes
            .limit
            .insert(&mut principal, "limit", IntValue::json);
        attributes
            .expires
            .insert(&mut principal, "expires", TimeValue::json);
        attributes
            .home
            .insert(&mut principal, "home", |ip| json!(pick(&IPS, ip)));
        principal.insert(
            "enrolled".into(),
            json!(subset(&FACTORS, request.enrolled & 0x7fff)),
        );
        let mut context_json = Map::new();
        context_json.insert("ip".into(), json!(pick(&IPS, context.ip)));
        context_json.insert("resource".into(), json!(pick(&RESOURCES, context.resource)));
        context_json.insert("tags".into(), tags_json(context.tags));
        context_json.insert("score".into(), context.score.json());
        context_json.insert("opened".into(), context.opened.json());
        context
            .grace
            .insert(&mut context_json, "grace", duration_json);
        let mut json = json!({
            "flow": "main",
            "principal": principal,
            "context": context_json,
            "switches": self.switches_json(),
            "now": format_time(DEFAULT_NOW),
        });
        if let Some(session) = &request.session {
            let started = DEFAULT_NOW - i64::from(session.seconds_before) * SECOND;
            let factors: Vec<Json> = subset(&FACTORS, session.factors & 0x7fff)
                .into_iter()
                .map(|factor| json!({ "factor": factor, "at": format_time(started) }))
                .collect();
            json["session"] = json!({
                "started_at": format_time(started),
                "factors": factors,
            });
            if let Some(after) = session.active_after {
                let active = (started + i64::from(after) * SECOND).min(DEFAULT_NOW);
                json["session"]["last_active_at"] = json!(format_time(active));
            }
        }
        json
    }

    fn switches_json(&self) -> Json {
        let values = &self.request.switches;
        let mut switches = Map::new();
        if let Some(lockdown) = values.lockdown {
            switches.insert("lockdown".into(), json!(lockdown));
        }
        if let Some(max_risk) = values.max_risk {
            switches.insert("max_risk".into(), max_risk.json());
        }
        if let Some(floor) = values.floor {
            switches.insert("floor".into(), json!(pick(&ZONES, floor)));
        }
        if let Some(ttl) = values.ttl {
            switches.insert("ttl".into(), duration_json(ttl));
        }
        if let Some(cutoff) = values.cutoff {
            switches.insert("cutoff".into(), cutoff.json());
        }
        if let Some(label) = values.label {
            switches.insert("label".into(), json!(pick(&LABELS, label)));
        }
        Json::Object(switches)
    }

    /// Renders the events as JSON, each `delay` after the one before.
    pub fn events_json(&self) -> Vec<Json> {
        let mut now = DEFAULT_NOW;
        let mut events = Vec::new();
        for timed in self.events.iter().take(12) {
            now += timed.delay.microseconds();
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
                    "role": pick(&EVENT_ROLES, *role),
                    "approver": pick(&APPROVERS, *approver),
                    "granted": granted,
                    "at": at,
                } }),
                Event::Update(update) => update_json(update, at),
            };
            events.push(event);
        }
        events
    }
}

/// Renders an `update` event. An update that names no attribute sets the
/// principal's risk to 0, because an empty update is invalid input.
fn update_json(update: &Update, at: String) -> Json {
    let mut principal = update_principal(update);
    let context = update_context(update);
    if principal.is_empty() && context.is_empty() {
        principal.insert("risk".into(), json!(0));
    }
    let mut json = Map::new();
    if !principal.is_empty() {
        json.insert("principal".into(), Json::Object(principal));
    }
    if !context.is_empty() {
        json.insert("context".into(), Json::Object(context));
    }
    json.insert("at".into(), json!(at));
    json!({ "update": json })
}

fn update_principal(update: &Update) -> Map<String, Json> {
    let mut principal = Map::new();
    if let Some(risk) = update.risk {
        principal.insert("risk".into(), risk.json());
    }
    if let Some(roles) = update.roles {
        principal.insert("roles".into(), roles_json(roles));
    }
    if let Some(zone) = update.zone {
        principal.insert("zone".into(), json!(pick(&ZONES, zone)));
    }
    if let Some(owner) = update.owner {
        principal.insert("owner".into(), owner_json(owner));
    }
    if let Some(tier) = update.tier {
        let tier = optional_json(tier, |tier| json!(pick(&TIERS, tier)));
        principal.insert("tier".into(), tier);
    }
    if let Some(zones) = update.zones {
        principal.insert("zones".into(), zones_json(zones));
    }
    if let Some(limit) = update.limit {
        principal.insert("limit".into(), optional_json(limit, IntValue::json));
    }
    if let Some(expires) = update.expires {
        principal.insert("expires".into(), optional_json(expires, TimeValue::json));
    }
    if let Some(home) = update.home {
        let home = optional_json(home, |ip| json!(pick(&IPS, ip)));
        principal.insert("home".into(), home);
    }
    principal
}

fn update_context(update: &Update) -> Map<String, Json> {
    let mut context = Map::new();
    if let Some(ip) = update.ip {
        context.insert("ip".into(), json!(pick(&IPS, ip)));
    }
    if let Some(resource) = update.resource {
        context.insert("resource".into(), json!(pick(&RESOURCES, resource)));
    }
    if let Some(tags) = update.tags {
        context.insert("tags".into(), tags_json(tags));
    }
    if let Some(score) = update.score {
        context.insert("score".into(), score.json());
    }
    if let Some(opened) = update.opened {
        context.insert("opened".into(), opened.json());
    }
    if let Some(grace) = update.grace {
        context.insert("grace".into(), optional_json(grace, duration_json));
    }
    context
}
