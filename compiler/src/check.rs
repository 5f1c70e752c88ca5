//! Type checking: resolves every name in flows, constants, switches, tests
//! and invariants against the scope, computes types, evaluates constants at
//! compile time, and produces the checked program that lowering consumes.
//!
//! Also reports the warnings that help authors: arms that can never be
//! selected, steps after a step that always decides, flows that can end
//! without a decision, and unused constants and switches.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use authflow_runtime::factor::Factor;
use authflow_runtime::value::{parse_cidr, parse_ip, parse_time};

use crate::ast::{self, BinaryOp, ExprKind, StepKind, UnaryOp};
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::resolve::{resolve_type, Scope};
use crate::span::{FileId, Span};
use crate::types::{ConstValue, Type};

mod declarations;
mod expr;
mod steps;
mod structure;
mod test_blocks;
mod warnings;

// ---------------------------------------------------------------------------
// The checked program
// ---------------------------------------------------------------------------

/// A value read from the request, the evidence, the switches or the clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// A principal attribute by name; its type fixes the record slot.
    Principal(String),
    Context(String),
    Switch(u32),
    Now,
    SessionFactors,
    SessionAal,
    SessionAge,
    SessionIdle,
    SessionStartedAt,
    SessionLastActiveAt,
    Failures(Factor),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTest {
    ContainsAny,
    ContainsAll,
}

#[derive(Clone, Debug)]
pub struct TExpr {
    pub kind: TKind,
    pub ty: Type,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum TKind {
    Const(ConstValue),
    Input(Input),
    Not(Box<TExpr>),
    Neg(Box<TExpr>),
    And(Box<TExpr>, Box<TExpr>),
    Or(Box<TExpr>, Box<TExpr>),
    Compare(Compare, Box<TExpr>, Box<TExpr>),
    /// `x == none` (or `!=` when `negated`).
    IsNone {
        operand: Box<TExpr>,
        negated: bool,
    },
    Coalesce(Box<TExpr>, Box<TExpr>),
    Add(Box<TExpr>, Box<TExpr>),
    Sub(Box<TExpr>, Box<TExpr>),
    /// `element in set`, `ip in cidr`, `ip in set_of_cidrs`.
    Member {
        element: Box<TExpr>,
        container: Box<TExpr>,
    },
    SetTest {
        test: SetTest,
        set: Box<TExpr>,
        other: Box<TExpr>,
    },
    IsEmpty(Box<TExpr>),
    Len(Box<TExpr>),
    Hour(Box<TExpr>),
    Weekday(Box<TExpr>),
    Error,
}

impl TExpr {
    fn error(span: Span) -> TExpr {
        TExpr {
            kind: TKind::Error,
            ty: Type::Error,
            span,
        }
    }

    fn constant(value: ConstValue, ty: Type, span: Span) -> TExpr {
        TExpr {
            kind: TKind::Const(value),
            ty,
            span,
        }
    }

    pub fn as_const(&self) -> Option<&ConstValue> {
        match &self.kind {
            TKind::Const(value) => Some(value),
            _ => None,
        }
    }
}

/// The demand of a `require` step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requirement {
    /// One factor, or any of the factors in the bitset.
    Any(u64),
    /// Every factor in the bitset.
    All(u64),
    /// An 800-63B assurance level, 1 to 3.
    Level(u8),
}

#[derive(Clone, Debug)]
pub struct TStep {
    pub kind: TStepKind,
    pub span: Span,
    /// The step's head in canonical form, for traces.
    pub text: String,
}

#[derive(Clone, Debug)]
pub enum TStepKind {
    Allow {
        attributes: Vec<(String, TExpr)>,
    },
    Deny {
        reason: String,
        when: Option<TExpr>,
    },
    Require {
        requirement: Requirement,
        within: Option<TExpr>,
        attempts: Option<TExpr>,
    },
    Enroll {
        requirement: Requirement,
    },
    Approve {
        roles: Vec<String>,
        within: Option<TExpr>,
    },
    Emit {
        name: String,
        attributes: Vec<(String, TExpr)>,
    },
    /// `if` chains, and `match` after conversion: each arm's guard is
    /// evaluated; the first true one selects its arm.
    If {
        arms: Vec<(TExpr, Vec<TStep>)>,
        otherwise: Option<Vec<TStep>>,
    },
    Exception {
        name: String,
        when: TExpr,
        body: Vec<TStep>,
    },
    Run {
        flow: u32,
    },
}

#[derive(Clone, Debug)]
pub struct CheckedKind {
    pub name: String,
    pub attributes: Vec<(String, Type)>,
}

#[derive(Clone, Debug)]
pub struct CheckedSwitch {
    pub name: String,
    pub ty: Type,
    pub default: ConstValue,
}

#[derive(Clone, Debug)]
pub struct CheckedFlow {
    pub name: String,
    /// Indexes of the principal kinds the flow accepts.
    pub kinds: Vec<u32>,
    pub any_kind: bool,
    pub event: Option<String>,
    /// Whether a request may name the flow: it has an event, or it is
    /// declared in the root file and no flow runs it.
    pub entry: bool,
    pub body: Vec<TStep>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct CheckedInvariant {
    pub name: String,
    pub flow: u32,
    pub when: Option<TExpr>,
    pub decision: String,
    pub implies: TExpr,
    pub span: Span,
}

/// The resolved and typed program.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    pub policy: Option<(String, Option<String>)>,
    /// Enum names and their variants.
    pub enums: Vec<(String, Vec<String>)>,
    pub kinds: Vec<CheckedKind>,
    pub context: Vec<(String, Type)>,
    pub switches: Vec<CheckedSwitch>,
    pub constants: Vec<(String, ConstValue)>,
    pub flows: Vec<CheckedFlow>,
    pub tests: Vec<CheckedTest>,
    pub invariants: Vec<CheckedInvariant>,
}

/// A `test` block with its values as JSON input.
#[derive(Clone, Debug)]
pub struct CheckedTest {
    pub name: String,
    pub steps: Vec<(TestStep, Span)>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum TestStep {
    Flow(String),
    Principal {
        kind: String,
        values: Vec<(String, serde_json::Value)>,
    },
    Context(Vec<(String, serde_json::Value)>),
    Session(Vec<(String, serde_json::Value)>),
    Switches(Vec<(String, serde_json::Value)>),
    At(Clock),
    Event(TestEvent),
    Expect {
        decision: String,
        detail: Option<Expected>,
    },
}

/// A change of a test's clock, in microseconds.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    Set(i64),
    Advance(i64),
}

#[derive(Clone, Debug)]
pub enum TestEvent {
    Verify(String),
    Fail(String),
    Enroll(String),
    Approval {
        role: String,
        approver: Option<String>,
        granted: bool,
    },
    Update {
        context: Vec<(String, serde_json::Value)>,
        principal: Vec<(String, serde_json::Value)>,
        switches: Vec<(String, serde_json::Value)>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    Reason(String),
    /// Options or awaited roles, sorted.
    Names(Vec<String>),
}

impl Checked {
    pub fn enum_names(&self) -> Vec<String> {
        self.enums.iter().map(|(name, _)| name.clone()).collect()
    }

    pub fn enum_variants(&self) -> Vec<Vec<String>> {
        self.enums
            .iter()
            .map(|(_, variants)| variants.clone())
            .collect()
    }

    pub fn flow(&self, name: &str) -> Option<&CheckedFlow> {
        self.flows.iter().find(|flow| flow.name == name)
    }
}

// ---------------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------------

/// The place an expression is checked in, which fixes the names it may use.
#[derive(Clone, Debug)]
enum Env {
    /// A constant or switch default: compile-time values only.
    Constant,
    /// A flow body or invariant for these principal kinds; `any` for a
    /// `for any` flow, which reads only the built-in principal attributes
    /// because importers may declare kinds it cannot know.
    Flow { kinds: Vec<u32>, any: bool },
}

#[derive(Clone)]
enum ConstState {
    Pending,
    InProgress,
    Done(ConstValue, Type),
}

struct Checker<'s, 'a> {
    scope: &'s Scope<'a>,
    sources: &'s [&'s str],
    diagnostics: &'s mut Vec<Diagnostic>,
    enum_names: Vec<String>,
    consts: Vec<ConstState>,
    used_consts: HashSet<u32>,
    used_switches: HashSet<u32>,
    /// Whether each flow reached by `run` always decides, by flow index, so
    /// that nested `run` steps are followed once per flow, not once per path.
    run_terminates: RefCell<HashMap<u32, bool>>,
    /// How many times a termination walk stopped at a `run` cycle.
    cycle_cuts: Cell<u32>,
}

/// Checks every declaration in `scope`. `sources` holds the text of each
/// file by [`FileId`]; warnings compare guards by their source text.
pub fn check(scope: &Scope<'_>, sources: &[&str], diagnostics: &mut Vec<Diagnostic>) -> Checked {
    let mut checker = Checker {
        scope,
        sources,
        diagnostics,
        enum_names: scope.enum_names(),
        consts: vec![ConstState::Pending; scope.consts.len()],
        used_consts: HashSet::new(),
        used_switches: HashSet::new(),
        run_terminates: RefCell::new(HashMap::new()),
        cycle_cuts: Cell::new(0),
    };
    checker.program()
}

impl<'s, 'a> Checker<'s, 'a> {
    fn error(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn show(&self, ty: &Type) -> String {
        ty.display(&self.enum_names).to_string()
    }

    fn text(&self, span: Span) -> String {
        let text = self
            .sources
            .get(span.file.0 as usize)
            .and_then(|source| source.get(span.range()))
            .unwrap_or("");
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    fn program(&mut self) -> Checked {
        let scope = self.scope;
        let mut checked = Checked {
            policy: scope.policy.map(|p| (p.name.clone(), p.version.clone())),
            enums: scope
                .enums
                .iter()
                .map(|e| {
                    (
                        e.name.clone(),
                        e.variants.iter().map(|v| v.name.clone()).collect(),
                    )
                })
                .collect(),
            kinds: scope
                .kinds
                .iter()
                .map(|k| CheckedKind {
                    name: k.name.clone(),
                    attributes: k
                        .fields
                        .iter()
                        .map(|f| (f.name.clone(), f.ty.clone()))
                        .collect(),
                })
                .collect(),
            context: scope
                .context
                .iter()
                .map(|f| (f.name.clone(), f.ty.clone()))
                .collect(),
            ..Checked::default()
        };
        for index in 0..scope.consts.len() {
            let (value, _) = self.constant(index as u32);
            checked
                .constants
                .push((scope.consts[index].name.name.clone(), value));
        }
        for decl in &scope.switches {
            checked.switches.push(self.switch(decl));
        }
        let flow_kinds: Vec<(Vec<u32>, bool)> = scope
            .flows
            .iter()
            .map(|flow| self.flow_kinds(flow))
            .collect();
        for (index, decl) in scope.flows.iter().enumerate() {
            let (kinds, any_kind) = flow_kinds[index].clone();
            let env = Env::Flow {
                kinds: kinds.clone(),
                any: any_kind,
            };
            let body = self.block(&decl.body, &env, &flow_kinds);
            checked.flows.push(CheckedFlow {
                name: decl.name.name.clone(),
                kinds,
                any_kind,
                event: decl.event.as_ref().map(|e| e.name.clone()),
                entry: false,
                body,
                span: decl.name.span,
            });
        }
        self.entries(&mut checked);
        let errors_before = self.diagnostics.len();
        self.run_cycles(&checked);
        let cyclic = self.diagnostics[errors_before..]
            .iter()
            .any(|d| d.is_error());
        // The path lints follow `run` into its targets along every path, so
        // they run only when every flow's expansion is within the limit.
        let expandable = cyclic || self.expansion_limits(&checked);
        self.routes(&checked);
        for flow in &checked.flows {
            self.flow_warnings(flow, &checked, expandable);
        }
        for test in &scope.tests {
            let checked_test = self.test(test, &checked);
            checked.tests.push(checked_test);
        }
        for invariant in &scope.invariants {
            if let Some(checked_invariant) = self.invariant(invariant, &checked) {
                checked.invariants.push(checked_invariant);
            }
        }
        if !self.diagnostics.iter().any(Diagnostic::is_error) {
            // Unused names are noise while errors may be what hides their use.
            self.unused();
        }
        checked
    }
}

/// The maximum number of steps one flow may contain once every `run` is inlined; it
/// bounds the size of the compiled kernel and the cost of one evaluation.
pub const MAX_INLINED_STEPS: u64 = 20_000;

fn assurance_level_name(name: &str) -> Option<u8> {
    match name {
        "aal1" => Some(1),
        "aal2" => Some(2),
        "aal3" => Some(3),
        _ => None,
    }
}

fn children(expr: &TExpr) -> Vec<&TExpr> {
    match &expr.kind {
        TKind::Const(_) | TKind::Input(_) | TKind::Error => Vec::new(),
        TKind::Not(a)
        | TKind::Neg(a)
        | TKind::IsEmpty(a)
        | TKind::Len(a)
        | TKind::Hour(a)
        | TKind::Weekday(a) => vec![a],
        TKind::IsNone { operand, .. } => vec![operand],
        TKind::And(a, b)
        | TKind::Or(a, b)
        | TKind::Compare(_, a, b)
        | TKind::Coalesce(a, b)
        | TKind::Add(a, b)
        | TKind::Sub(a, b) => {
            vec![a, b]
        }
        TKind::Member { element, container } => vec![element, container],
        TKind::SetTest { set, other, .. } => vec![set, other],
    }
}

fn fold(expr: TExpr) -> TExpr {
    if children(&expr).iter().all(|c| c.as_const().is_some()) {
        if let Some(Ok(value)) = evaluate_const(&expr) {
            return TExpr::constant(value, expr.ty, expr.span);
        }
    }
    expr
}

/// Evaluates an expression whose operands are all constants. Returns `None`
/// when the expression is not constant, and an error message on overflow.
pub fn evaluate_const(expr: &TExpr) -> Option<Result<ConstValue, String>> {
    use ConstValue as V;
    let value = |e: &TExpr| e.as_const().cloned();
    let overflow = || Err("constant arithmetic overflows".to_string());
    Some(match &expr.kind {
        TKind::Const(v) => Ok(v.clone()),
        TKind::Not(a) => match value(a)? {
            V::Bool(b) => Ok(V::Bool(!b)),
            _ => return None,
        },
        TKind::Neg(a) => match value(a)? {
            V::Int(i) => i.checked_neg().map(V::Int).map_or_else(overflow, Ok),
            V::Duration(d) => d.checked_neg().map(V::Duration).map_or_else(overflow, Ok),
            _ => return None,
        },
        TKind::And(a, b) => match (value(a)?, value(b)?) {
            (V::Bool(x), V::Bool(y)) => Ok(V::Bool(x && y)),
            _ => return None,
        },
        TKind::Or(a, b) => match (value(a)?, value(b)?) {
            (V::Bool(x), V::Bool(y)) => Ok(V::Bool(x || y)),
            _ => return None,
        },
        TKind::Compare(op, a, b) => {
            let (x, y) = (value(a)?, value(b)?);
            Ok(V::Bool(match op {
                Compare::Eq => x == y,
                Compare::Ne => x != y,
                Compare::Lt => x < y,
                Compare::Le => x <= y,
                Compare::Gt => x > y,
                Compare::Ge => x >= y,
            }))
        }
        TKind::IsNone { operand, negated } => Ok(V::Bool((value(operand)? == V::None) != *negated)),
        TKind::Coalesce(a, b) => match value(a)? {
            V::None => Ok(value(b)?),
            v => Ok(v),
        },
        TKind::Add(a, b) | TKind::Sub(a, b) => {
            let add = matches!(expr.kind, TKind::Add(..));
            let combine = |x: i64, y: i64| {
                if add {
                    x.checked_add(y)
                } else {
                    x.checked_sub(y)
                }
            };
            match (value(a)?, value(b)?) {
                (V::Int(x), V::Int(y)) => combine(x, y).map(V::Int).map_or_else(overflow, Ok),
                (V::Duration(x), V::Duration(y)) => {
                    combine(x, y).map(V::Duration).map_or_else(overflow, Ok)
                }
                (V::Time(x), V::Duration(y)) => {
                    combine(x, y).map(V::Time).map_or_else(overflow, Ok)
                }
                (V::Time(x), V::Time(y)) => {
                    x.checked_sub(y).map(V::Duration).map_or_else(overflow, Ok)
                }
                _ => return None,
            }
        }
        TKind::Member { element, container } => {
            let element = value(element)?;
            match value(container)? {
                V::Set(elements) => Ok(V::Bool(elements.iter().any(|e| {
                    match (e, &element) {
                        (V::Cidr { network, prefix }, V::Ip(ip)) => authflow_runtime::value::Cidr {
                            network: *network,
                            prefix: *prefix,
                        }
                        .contains(*ip),
                        (e, element) => e == element,
                    }
                }))),
                V::Cidr { network, prefix } => match element {
                    V::Ip(ip) => Ok(V::Bool(
                        authflow_runtime::value::Cidr { network, prefix }.contains(ip),
                    )),
                    _ => return None,
                },
                _ => return None,
            }
        }
        TKind::SetTest { test, set, other } => match (value(set)?, value(other)?) {
            (V::Set(a), V::Set(b)) => Ok(V::Bool(match test {
                SetTest::ContainsAny => b.iter().any(|x| a.contains(x)),
                SetTest::ContainsAll => b.iter().all(|x| a.contains(x)),
            })),
            _ => return None,
        },
        TKind::IsEmpty(a) => match value(a)? {
            V::Set(a) => Ok(V::Bool(a.is_empty())),
            _ => return None,
        },
        TKind::Len(a) => match value(a)? {
            V::Set(a) => Ok(V::Int(a.len() as i64)),
            _ => return None,
        },
        TKind::Hour(a) => match value(a)? {
            V::Time(t) => Ok(V::Int(authflow_runtime::value::hour_of(t))),
            _ => return None,
        },
        TKind::Weekday(a) => match value(a)? {
            V::Time(t) => Ok(V::Int(authflow_runtime::value::weekday_of(t))),
            _ => return None,
        },
        TKind::Input(_) | TKind::Error => return None,
    })
}
