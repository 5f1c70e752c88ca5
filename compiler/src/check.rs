//! Type checking: resolves every name in flows, constants, switches, tests
//! and invariants against the scope, computes types, evaluates constants at
//! compile time, and produces the checked program that lowering consumes.
//!
//! Also reports the warnings that help authors: arms that can never be
//! selected, steps after a step that always decides, flows that can end
//! without a decision, and unused constants and switches.

use std::collections::{HashMap, HashSet};

use authflow_runtime::factor::Factor;
use authflow_runtime::value::{parse_cidr, parse_ip, parse_time};

use crate::ast::{self, BinaryOp, ExprKind, StepKind, UnaryOp};
use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::resolve::{resolve_type, Scope};
use crate::span::{FileId, Span};
use crate::types::{ConstValue, Type};

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

/// What a `require` step demands.
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

/// Where an expression is checked, which fixes the names it may use.
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
                body,
                span: decl.name.span,
            });
        }
        let errors_before = self.diagnostics.len();
        self.run_cycles(&checked);
        let cyclic = self.diagnostics[errors_before..]
            .iter()
            .any(|d| d.is_error());
        if !cyclic {
            self.expansion_limits(&checked);
        }
        self.routes(&checked);
        for flow in &checked.flows {
            self.flow_warnings(flow, &checked);
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

    // ---- constants and switches ----

    fn constant(&mut self, index: u32) -> (ConstValue, Type) {
        match self.consts[index as usize].clone() {
            ConstState::Done(value, ty) => return (value, ty),
            ConstState::InProgress => {
                let decl = self.scope.consts[index as usize];
                self.error(
                    Diagnostic::error(
                        format!("constant `{}` refers to itself", decl.name.name),
                        decl.name.span,
                    )
                    .with_help("a constant cannot depend on its own value"),
                );
                self.consts[index as usize] = ConstState::Done(ConstValue::None, Type::Error);
                return (ConstValue::None, Type::Error);
            }
            ConstState::Pending => {}
        }
        self.consts[index as usize] = ConstState::InProgress;
        let decl = self.scope.consts[index as usize];
        let annotated = decl
            .ty
            .as_ref()
            .map(|t| resolve_type(t, self.scope, self.diagnostics));
        let expr = self.expr(&decl.value, annotated.as_ref(), &Env::Constant);
        let ty = match &annotated {
            Some(annotated) => {
                self.expect_type(&expr, annotated);
                annotated.clone()
            }
            None => expr.ty.clone(),
        };
        if matches!(ty, Type::EmptySet) {
            self.error(
                Diagnostic::error(
                    format!(
                        "the type of `{}` cannot be inferred from `{{}}`",
                        decl.name.name
                    ),
                    decl.value.span,
                )
                .with_help(format!(
                    "annotate it: `const {}: Set<String> = {{}}`",
                    decl.name.name
                )),
            );
        }
        let value = match (&expr.kind, &ty) {
            (TKind::Const(value), _) => value.clone(),
            (TKind::Error, _) | (_, Type::Error) => ConstValue::None,
            _ => {
                self.error(
                    Diagnostic::error(format!("constant `{}` is not computable at compile time", decl.name.name), decl.value.span)
                        .with_help("constants may use literals, other constants and `ip`, `cidr`, `time`; use a switch for run-time settings"),
                );
                ConstValue::None
            }
        };
        self.consts[index as usize] = ConstState::Done(value.clone(), ty.clone());
        (value, ty)
    }

    fn switch(&mut self, decl: &ast::SwitchDecl) -> CheckedSwitch {
        let ty = resolve_type(&decl.ty, self.scope, self.diagnostics);
        if !matches!(
            ty,
            Type::Bool | Type::Int | Type::String | Type::Duration | Type::Time | Type::Error
        ) && !matches!(ty, Type::Enum(_))
        {
            self.error(
                Diagnostic::error(
                    format!("a switch cannot have type `{}`", self.show(&ty)),
                    decl.ty.span,
                )
                .with_help("switches are `Bool`, `Int`, `String`, `Duration`, `Time` or an enum"),
            );
        }
        let default = self.expr(&decl.default, Some(&ty), &Env::Constant);
        self.expect_type(&default, &ty);
        let value = match default.kind {
            TKind::Const(value) => value,
            TKind::Error => ConstValue::None,
            _ => {
                self.error(
                    Diagnostic::error(
                        "a switch default must be computable at compile time",
                        decl.default.span,
                    )
                    .with_help("use a literal or a constant"),
                );
                ConstValue::None
            }
        };
        CheckedSwitch {
            name: decl.name.name.clone(),
            ty,
            default: value,
        }
    }

    fn expect_type(&mut self, expr: &TExpr, expected: &Type) -> bool {
        if expr.ty.fits(expected) {
            return true;
        }
        let message = format!(
            "expected `{}`, found `{}`",
            self.show(expected),
            self.show(&expr.ty)
        );
        self.error(
            Diagnostic::error(message, expr.span)
                .with_label(format!("this is `{}`", self.show(&expr.ty))),
        );
        false
    }

    // ---- flows ----

    fn flow_kinds(&mut self, decl: &ast::FlowDecl) -> (Vec<u32>, bool) {
        match &decl.kinds {
            ast::Kinds::Any(_) => ((0..self.scope.kinds.len() as u32).collect(), true),
            ast::Kinds::Listed(names) => {
                let mut kinds = Vec::new();
                for name in names {
                    match self.scope.kind_index.get(&name.name) {
                        Some(&index) if kinds.contains(&index) => self.error(Diagnostic::error(
                            format!("kind `{}` is listed twice", name.name),
                            name.span,
                        )),
                        Some(&index) => kinds.push(index),
                        None => {
                            let mut diagnostic = Diagnostic::error(
                                format!("unknown principal kind `{}`", name.name),
                                name.span,
                            )
                            .with_label("no `principal` declares this kind");
                            let known: Vec<&str> =
                                self.scope.kinds.iter().map(|k| k.name.as_str()).collect();
                            diagnostic = match did_you_mean(&name.name, known.iter().copied()) {
                                Some(close) => {
                                    diagnostic.with_help(format!("did you mean `{close}`?"))
                                }
                                None => diagnostic.with_help(format!(
                                    "declare it with `principal {} {{ ... }}`{}",
                                    name.name,
                                    if known.is_empty() {
                                        String::new()
                                    } else {
                                        format!(" or use one of: {}", known.join(", "))
                                    }
                                )),
                            };
                            self.error(diagnostic);
                        }
                    }
                }
                (kinds, false)
            }
        }
    }

    fn block(
        &mut self,
        block: &ast::Block,
        env: &Env,
        flow_kinds: &[(Vec<u32>, bool)],
    ) -> Vec<TStep> {
        block
            .steps
            .iter()
            .filter_map(|step| self.step(step, env, flow_kinds))
            .collect()
    }

    fn step(
        &mut self,
        step: &ast::Step,
        env: &Env,
        flow_kinds: &[(Vec<u32>, bool)],
    ) -> Option<TStep> {
        let kind = match &step.kind {
            StepKind::Allow { with } => TStepKind::Allow {
                attributes: self.record(with.as_ref(), env),
            },
            StepKind::Deny { reason, when } => {
                let when = when.as_ref().map(|w| self.condition(w, env));
                TStepKind::Deny {
                    reason: reason.clone(),
                    when,
                }
            }
            StepKind::Require {
                factors,
                within,
                attempts,
            } => {
                let requirement = self.requirement(factors, true)?;
                let within = within.as_ref().map(|w| self.typed(w, &Type::Duration, env));
                let attempts = attempts.as_ref().map(|a| self.typed(a, &Type::Int, env));
                TStepKind::Require {
                    requirement,
                    within,
                    attempts,
                }
            }
            StepKind::Enroll { factors } => TStepKind::Enroll {
                requirement: self.requirement(factors, false)?,
            },
            StepKind::Approve { roles, within } => {
                let mut names: Vec<String> = Vec::new();
                for role in roles {
                    if names.contains(&role.name) {
                        self.error(Diagnostic::error(
                            format!("role `{}` is listed twice", role.name),
                            role.span,
                        ));
                    } else {
                        names.push(role.name.clone());
                    }
                }
                let within = within.as_ref().map(|w| self.typed(w, &Type::Duration, env));
                TStepKind::Approve {
                    roles: names,
                    within,
                }
            }
            StepKind::Emit { name, with } => TStepKind::Emit {
                name: name.clone(),
                attributes: self.record(with.as_ref(), env),
            },
            StepKind::If { arms, otherwise } => {
                let arms = arms
                    .iter()
                    .map(|(guard, body)| {
                        (
                            self.condition(guard, env),
                            self.block(body, env, flow_kinds),
                        )
                    })
                    .collect();
                let otherwise = otherwise.as_ref().map(|b| self.block(b, env, flow_kinds));
                TStepKind::If { arms, otherwise }
            }
            StepKind::Match { scrutinee, arms } => {
                return self.match_step(step.span, scrutinee, arms, env, flow_kinds)
            }
            StepKind::Exception { name, when, body } => {
                let when = self.condition(when, env);
                let body = self.block(body, env, flow_kinds);
                if !self.terminates(&body, &mut Vec::new()) {
                    self.error(
                        Diagnostic::error(
                            format!("exception path `{name}` can end without a decision"),
                            step.span,
                        )
                        .with_label("some path through this block does not reach `allow` or `deny`")
                        .with_help("end every path of an exception block with `allow` or `deny`"),
                    );
                }
                TStepKind::Exception {
                    name: name.clone(),
                    when,
                    body,
                }
            }
            StepKind::Run { flow } => {
                let Some(&index) = self.scope.flow_index.get(&flow.name) else {
                    let mut diagnostic =
                        Diagnostic::error(format!("unknown flow `{}`", flow.name), flow.span)
                            .with_label("no flow has this name");
                    let names: Vec<&str> = self
                        .scope
                        .flows
                        .iter()
                        .map(|f| f.name.name.as_str())
                        .collect();
                    if let Some(close) = did_you_mean(&flow.name, names) {
                        diagnostic = diagnostic.with_help(format!("did you mean `{close}`?"));
                    }
                    self.error(diagnostic);
                    return None;
                };
                if let Env::Flow { kinds, any } = env {
                    let (target_kinds, target_any) = &flow_kinds[index as usize];
                    if *any && !*target_any {
                        self.error(
                            Diagnostic::error(format!("flow `{}` does not accept every principal kind", flow.name), flow.span)
                                .with_help(format!("a `for any` flow can only run flows declared `for any`; declare `{}` `for any` or list kinds here", flow.name)),
                        );
                    } else if let Some(missing) = kinds.iter().find(|k| !target_kinds.contains(k)) {
                        let kind_name = self.scope.kinds[*missing as usize].name.clone();
                        self.error(
                            Diagnostic::error(
                                format!(
                                    "flow `{}` does not accept principal kind `{kind_name}`",
                                    flow.name
                                ),
                                flow.span,
                            )
                            .with_help(format!(
                                "add `{kind_name}` to the `for` list of `{}`",
                                flow.name
                            )),
                        );
                    }
                }
                TStepKind::Run { flow: index }
            }
        };
        Some(TStep {
            kind,
            span: step.span,
        })
    }

    fn match_step(
        &mut self,
        span: Span,
        scrutinee: &ast::Expr,
        arms: &[ast::MatchArm],
        env: &Env,
        flow_kinds: &[(Vec<u32>, bool)],
    ) -> Option<TStep> {
        let value = self.expr(scrutinee, None, env);
        let Type::Enum(enumeration) = value.ty else {
            if !value.ty.is_error() {
                let found = self.show(&value.ty);
                self.error(
                    Diagnostic::error(
                        format!("`match` needs an enum value, found `{found}`"),
                        value.span,
                    )
                    .with_help("use `if` for other conditions"),
                );
            }
            return None;
        };
        let variants: Vec<String> = self.scope.enums[enumeration as usize]
            .variants
            .iter()
            .map(|v| v.name.clone())
            .collect();
        let mut seen: HashMap<u32, Span> = HashMap::new();
        let mut typed_arms = Vec::new();
        for arm in arms {
            let Some(variant) = variants.iter().position(|v| *v == arm.variant.name) else {
                let enum_name = self.enum_names[enumeration as usize].clone();
                let mut diagnostic = Diagnostic::error(
                    format!("`{}` is not a value of `{enum_name}`", arm.variant.name),
                    arm.variant.span,
                );
                if let Some(close) =
                    did_you_mean(&arm.variant.name, variants.iter().map(String::as_str))
                {
                    diagnostic = diagnostic.with_help(format!("did you mean `{close}`?"));
                }
                self.error(diagnostic);
                continue;
            };
            let variant = variant as u32;
            if let Some(first) = seen.get(&variant) {
                self.error(
                    Diagnostic::error(
                        format!("`{}` is matched twice", arm.variant.name),
                        arm.variant.span,
                    )
                    .with_secondary(*first, "first matched here"),
                );
                continue;
            }
            seen.insert(variant, arm.variant.span);
            let guard = TExpr {
                kind: TKind::Compare(
                    Compare::Eq,
                    Box::new(value.clone()),
                    Box::new(TExpr::constant(
                        ConstValue::Enum {
                            enumeration,
                            variant,
                        },
                        Type::Enum(enumeration),
                        arm.variant.span,
                    )),
                ),
                ty: Type::Bool,
                span: arm.variant.span,
            };
            typed_arms.push((guard, self.block(&arm.body, env, flow_kinds)));
        }
        let missing: Vec<&str> = variants
            .iter()
            .enumerate()
            .filter(|(index, _)| !seen.contains_key(&(*index as u32)))
            .map(|(_, name)| name.as_str())
            .collect();
        if !missing.is_empty() {
            let list = missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let enum_name = &self.enum_names[enumeration as usize];
            self.diagnostics.push(
                Diagnostic::error(
                    format!("`match` on `{enum_name}` does not cover {list}"),
                    value.span,
                )
                .with_label("not every value has an arm")
                .with_help(format!("add an arm for {list}")),
            );
            return None;
        }
        // Every value has an arm, so the last arm needs no guard.
        let otherwise = typed_arms.pop().map(|(_, body)| body);
        Some(TStep {
            kind: TStepKind::If {
                arms: typed_arms,
                otherwise,
            },
            span,
        })
    }

    fn requirement(&mut self, spec: &ast::FactorSpec, allow_levels: bool) -> Option<Requirement> {
        match spec {
            ast::FactorSpec::One(name) => {
                if allow_levels {
                    if let Some(level) = assurance_level_name(&name.name) {
                        return Some(Requirement::Level(level));
                    }
                }
                self.factor(name, allow_levels)
                    .map(|f| Requirement::Any(f.bit()))
            }
            ast::FactorSpec::Any(names) => Some(Requirement::Any(self.factor_set(names)?)),
            ast::FactorSpec::All(names) => Some(Requirement::All(self.factor_set(names)?)),
        }
    }

    fn factor_set(&mut self, names: &[ast::Ident]) -> Option<u64> {
        let mut bits = 0;
        let mut ok = true;
        for name in names {
            match self.factor(name, false) {
                Some(factor) if bits & factor.bit() != 0 => {
                    self.error(Diagnostic::error(
                        format!("factor `{}` is listed twice", name.name),
                        name.span,
                    ));
                }
                Some(factor) => bits |= factor.bit(),
                None => ok = false,
            }
        }
        ok.then_some(bits)
    }

    fn factor(&mut self, name: &ast::Ident, levels_allowed: bool) -> Option<Factor> {
        if let Some(factor) = Factor::from_name(&name.name) {
            return Some(factor);
        }
        let mut diagnostic =
            Diagnostic::error(format!("unknown factor `{}`", name.name), name.span)
                .with_label("not a built-in factor");
        if assurance_level_name(&name.name).is_some() {
            diagnostic =
                Diagnostic::error(format!("`{}` cannot be used here", name.name), name.span)
                    .with_help("an assurance level stands alone: `require aal2`");
        } else {
            let mut candidates: Vec<&str> = Factor::ALL.iter().map(|f| f.name()).collect();
            if levels_allowed {
                candidates.extend(["aal1", "aal2", "aal3"]);
            }
            diagnostic = match did_you_mean(&name.name, candidates.iter().copied()) {
                Some(close) => diagnostic.with_help(format!("did you mean `{close}`?")),
                None => diagnostic.with_help(format!("the factors are: {}", candidates.join(", "))),
            };
        }
        self.error(diagnostic);
        None
    }

    fn record(&mut self, record: Option<&ast::Record>, env: &Env) -> Vec<(String, TExpr)> {
        let Some(record) = record else {
            return Vec::new();
        };
        let mut entries: Vec<(String, TExpr)> = Vec::new();
        for (key, value) in &record.entries {
            let value = self.expr(value, None, env);
            if entries.iter().any(|(name, _)| *name == key.name) {
                self.error(Diagnostic::error(
                    format!("attribute `{}` is given twice", key.name),
                    key.span,
                ));
                continue;
            }
            self.check_output_type(&value);
            entries.push((key.name.clone(), value));
        }
        entries
    }

    /// Output attributes must be renderable from the bound record: a request
    /// set of strings is stored as membership bits, not as its elements.
    fn check_output_type(&mut self, value: &TExpr) {
        let inner = match &value.ty {
            Type::Optional(inner) => inner.as_ref(),
            other => other,
        };
        let unsupported = match inner {
            Type::Set(element) => **element == Type::String && value.as_const().is_none(),
            Type::NoneLiteral | Type::EmptySet => false,
            _ => false,
        };
        if unsupported {
            self.error(
                Diagnostic::error(
                    "a set of strings from the request cannot be returned as an attribute",
                    value.span,
                )
                .with_help(
                    "return a constant set, or test membership with `in` or `.contains(...)`",
                ),
            );
        }
    }

    // ---- expressions ----

    fn condition(&mut self, expr: &ast::Expr, env: &Env) -> TExpr {
        self.typed(expr, &Type::Bool, env)
    }

    fn typed(&mut self, expr: &ast::Expr, expected: &Type, env: &Env) -> TExpr {
        let typed = self.expr(expr, Some(expected), env);
        if !self.expect_type(&typed, expected) {
            return TExpr::error(typed.span);
        }
        typed
    }

    fn expr(&mut self, expr: &ast::Expr, expected: Option<&Type>, env: &Env) -> TExpr {
        let span = expr.span;
        match &expr.kind {
            ExprKind::Int(value) => TExpr::constant(ConstValue::Int(*value), Type::Int, span),
            ExprKind::Duration(value) => {
                TExpr::constant(ConstValue::Duration(*value), Type::Duration, span)
            }
            ExprKind::Str(value) => {
                TExpr::constant(ConstValue::Str(value.clone()), Type::String, span)
            }
            ExprKind::Bool(value) => TExpr::constant(ConstValue::Bool(*value), Type::Bool, span),
            ExprKind::None => TExpr::constant(ConstValue::None, Type::NoneLiteral, span),
            ExprKind::Error => TExpr::error(span),
            ExprKind::Name(name) => self.name(name, span, expected, env),
            ExprKind::Set(elements) => self.set_literal(elements, span, expected, env),
            ExprKind::Call { function, args } => self.call(function, args, span, env),
            ExprKind::Attr { base, attr } => self.attribute(base, attr, span, env),
            ExprKind::Method {
                receiver,
                method,
                args,
            } => self.method(receiver, method, args, span, env),
            ExprKind::Unary { op, operand } => self.unary(*op, operand, span, expected, env),
            ExprKind::Binary { op, left, right } => {
                self.binary(*op, left, right, span, expected, env)
            }
        }
    }

    fn name(&mut self, name: &str, span: Span, expected: Option<&Type>, env: &Env) -> TExpr {
        // A bare name that the expected type makes an enum value or factor.
        if let Some(value) = expected.and_then(|ty| self.variant(name, ty, span)) {
            return value;
        }
        if let Some(&index) = self.scope.const_index.get(name) {
            self.used_consts.insert(index);
            let (value, ty) = self.constant(index);
            return if ty.is_error() {
                TExpr::error(span)
            } else {
                TExpr::constant(value, ty, span)
            };
        }
        if let Some(&index) = self.scope.switch_index.get(name) {
            self.used_switches.insert(index);
            if matches!(env, Env::Constant) {
                self.error(
                    Diagnostic::error(
                        format!("switch `{name}` cannot be used in a constant"),
                        span,
                    )
                    .with_help("switches are set at run time; constants are fixed at compile time"),
                );
                return TExpr::error(span);
            }
            let ty = resolve_type(
                &self.scope.switches[index as usize].ty,
                self.scope,
                &mut Vec::new(),
            );
            return TExpr {
                kind: TKind::Input(Input::Switch(index)),
                ty,
                span,
            };
        }
        match name {
            "now" if matches!(env, Env::Flow { .. }) => {
                return TExpr {
                    kind: TKind::Input(Input::Now),
                    ty: Type::Time,
                    span,
                };
            }
            "principal" | "context" | "session" => {
                self.error(
                    Diagnostic::error(format!("`{name}` needs an attribute"), span)
                        .with_help(format!("write `{name}.NAME`")),
                );
                return TExpr::error(span);
            }
            "now" => {
                self.error(
                    Diagnostic::error("`now` cannot be used in a constant", span)
                        .with_help("`now` is the evaluation time; compare it inside a flow"),
                );
                return TExpr::error(span);
            }
            _ => {}
        }
        // Without an expected type, a name that is exactly one enum value
        // or a factor still has one meaning.
        if let Some(value) = self.unique_variant(name, span) {
            return value;
        }
        let mut candidates: Vec<&str> = self
            .scope
            .consts
            .iter()
            .map(|c| c.name.name.as_str())
            .collect();
        candidates.extend(self.scope.switches.iter().map(|s| s.name.name.as_str()));
        candidates.push("now");
        let variants = expected
            .map(|ty| self.variant_names(ty))
            .unwrap_or_default();
        candidates.extend(variants.iter().map(String::as_str));
        let mut diagnostic =
            Diagnostic::error(format!("unknown name `{name}`"), span).with_label("not declared");
        if let Some(close) = did_you_mean(name, candidates) {
            diagnostic = diagnostic.with_help(format!("did you mean `{close}`?"));
        }
        self.error(diagnostic);
        TExpr::error(span)
    }

    fn variant_names(&self, ty: &Type) -> Vec<String> {
        match ty {
            Type::Factor => Factor::ALL.iter().map(|f| f.name().to_string()).collect(),
            Type::Enum(index) => self.scope.enums[*index as usize]
                .variants
                .iter()
                .map(|v| v.name.clone())
                .collect(),
            Type::Optional(inner) => self.variant_names(inner),
            _ => Vec::new(),
        }
    }

    fn variant(&self, name: &str, expected: &Type, span: Span) -> Option<TExpr> {
        match expected {
            Type::Factor => Factor::from_name(name)
                .map(|f| TExpr::constant(ConstValue::Factor(f as u8), Type::Factor, span)),
            Type::Enum(index) => {
                let variant = self.scope.enums[*index as usize]
                    .variants
                    .iter()
                    .position(|v| v.name == name)?;
                Some(TExpr::constant(
                    ConstValue::Enum {
                        enumeration: *index,
                        variant: variant as u32,
                    },
                    Type::Enum(*index),
                    span,
                ))
            }
            Type::Optional(inner) => self.variant(name, inner, span),
            _ => None,
        }
    }

    fn unique_variant(&self, name: &str, span: Span) -> Option<TExpr> {
        let mut found: Vec<TExpr> = Vec::new();
        if let Some(value) = self.variant(name, &Type::Factor, span) {
            found.push(value);
        }
        for index in 0..self.scope.enums.len() {
            if let Some(value) = self.variant(name, &Type::Enum(index as u32), span) {
                found.push(value);
            }
        }
        if found.len() == 1 {
            found.pop()
        } else {
            None
        }
    }

    fn set_literal(
        &mut self,
        elements: &[ast::Expr],
        span: Span,
        expected: Option<&Type>,
        env: &Env,
    ) -> TExpr {
        let expected_element = expected.and_then(|ty| match ty {
            Type::Set(element) => Some(element.as_ref().clone()),
            Type::Optional(inner) => inner.element().cloned(),
            _ => None,
        });
        let mut element_type = expected_element.clone();
        let mut values = Vec::new();
        let mut failed = false;
        for element in elements {
            let typed = self.expr(element, element_type.as_ref(), env);
            if typed.ty.is_error() {
                failed = true;
                continue;
            }
            match &element_type {
                Some(ty) if !typed.ty.fits(ty) => {
                    let message = format!(
                        "set elements must all be `{}`, found `{}`",
                        self.show(ty),
                        self.show(&typed.ty)
                    );
                    self.error(Diagnostic::error(message, typed.span));
                    failed = true;
                    continue;
                }
                Some(_) => {}
                None => element_type = Some(typed.ty.clone()),
            }
            match typed.kind {
                TKind::Const(value) => values.push(value),
                _ => {
                    self.error(
                        Diagnostic::error("set elements must be constants", typed.span)
                            .with_help("compare the value with `==` and combine with `or`"),
                    );
                    failed = true;
                }
            }
        }
        if failed {
            return TExpr::error(span);
        }
        if let Some(Type::Set(_) | Type::Optional(_) | Type::NoneLiteral | Type::EmptySet) =
            &element_type
        {
            self.error(Diagnostic::error(
                "set elements cannot be sets or optionals",
                span,
            ));
            return TExpr::error(span);
        }
        let ty = match element_type {
            Some(element) => Type::set_of(element),
            None => Type::EmptySet,
        };
        TExpr::constant(ConstValue::set(values), ty, span)
    }

    fn literal_argument(
        &mut self,
        function: &ast::Ident,
        args: &[ast::Expr],
        env: &Env,
    ) -> Option<(String, Span)> {
        if args.len() != 1 {
            self.error(
                Diagnostic::error(
                    format!(
                        "`{}` takes one argument, found {}",
                        function.name,
                        args.len()
                    ),
                    function.span,
                )
                .with_help(format!("write `{}(\"...\")`", function.name)),
            );
            return None;
        }
        let argument = self.expr(&args[0], Some(&Type::String), env);
        match argument.kind {
            TKind::Const(ConstValue::Str(text)) => Some((text, argument.span)),
            TKind::Error => None,
            _ => {
                self.error(
                    Diagnostic::error(
                        format!("`{}` needs a string known at compile time", function.name),
                        argument.span,
                    )
                    .with_help("pass a string literal or a string constant"),
                );
                None
            }
        }
    }

    fn call(&mut self, function: &ast::Ident, args: &[ast::Expr], span: Span, env: &Env) -> TExpr {
        let parsed = match function.name.as_str() {
            "ip" => self
                .literal_argument(function, args, env)
                .map(|(text, at)| (parse_ip(&text).map(ConstValue::Ip), Type::Ip, at)),
            "cidr" => self
                .literal_argument(function, args, env)
                .map(|(text, at)| (parse_cidr(&text).map(ConstValue::cidr), Type::Cidr, at)),
            "time" => self
                .literal_argument(function, args, env)
                .map(|(text, at)| (parse_time(&text).map(ConstValue::Time), Type::Time, at)),
            "hour" | "weekday" => return self.calendar(function, args, span, env),
            "failures" => return self.failures(function, args, span, env),
            other => {
                let mut diagnostic =
                    Diagnostic::error(format!("unknown function `{other}`"), function.span);
                if let Some(close) =
                    did_you_mean(other, ["ip", "cidr", "time", "hour", "weekday", "failures"])
                {
                    diagnostic = diagnostic.with_help(format!("did you mean `{close}`?"));
                }
                self.error(diagnostic);
                return TExpr::error(span);
            }
        };
        match parsed {
            Some((Ok(value), ty, _)) => TExpr::constant(value, ty, span),
            Some((Err(message), _, at)) => {
                self.error(Diagnostic::error(message, at).with_label("invalid literal"));
                TExpr::error(span)
            }
            None => TExpr::error(span),
        }
    }

    fn calendar(
        &mut self,
        function: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
        env: &Env,
    ) -> TExpr {
        if args.len() != 1 {
            self.error(Diagnostic::error(
                format!("`{}` takes one `Time` argument", function.name),
                function.span,
            ));
            return TExpr::error(span);
        }
        let time = self.typed(&args[0], &Type::Time, env);
        if time.ty.is_error() {
            return TExpr::error(span);
        }
        let kind = if function.name == "hour" {
            TKind::Hour(Box::new(time))
        } else {
            TKind::Weekday(Box::new(time))
        };
        fold(TExpr {
            kind,
            ty: Type::Int,
            span,
        })
    }

    fn failures(
        &mut self,
        function: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
        env: &Env,
    ) -> TExpr {
        if matches!(env, Env::Constant) {
            self.error(Diagnostic::error(
                "`failures` cannot be used in a constant",
                span,
            ));
            return TExpr::error(span);
        }
        let factor = match args {
            [ast::Expr {
                kind: ExprKind::Name(name),
                span: at,
            }] => self.factor(
                &ast::Ident {
                    name: name.clone(),
                    span: *at,
                },
                false,
            ),
            _ => {
                self.error(
                    Diagnostic::error("`failures` takes one factor", function.span)
                        .with_help("write `failures(password)`"),
                );
                None
            }
        };
        match factor {
            Some(factor) => TExpr {
                kind: TKind::Input(Input::Failures(factor)),
                ty: Type::Int,
                span,
            },
            None => TExpr::error(span),
        }
    }

    fn attribute(&mut self, base: &ast::Expr, attr: &ast::Ident, span: Span, env: &Env) -> TExpr {
        let ExprKind::Name(root) = &base.kind else {
            let typed = self.expr(base, None, env);
            if !typed.ty.is_error() {
                let shown = self.show(&typed.ty);
                self.error(Diagnostic::error(
                    format!("`{shown}` has no attribute `{}`", attr.name),
                    attr.span,
                ));
            }
            return TExpr::error(span);
        };
        let kinds = match env {
            Env::Flow { any: true, .. } if root == "principal" => Vec::new(),
            Env::Flow { kinds, .. }
                if matches!(root.as_str(), "principal" | "context" | "session") =>
            {
                kinds.clone()
            }
            Env::Constant if matches!(root.as_str(), "principal" | "context" | "session") => {
                self.error(
                    Diagnostic::error(format!("`{root}` cannot be used in a constant"), base.span)
                        .with_help(
                            "constants are fixed at compile time; read the request inside a flow",
                        ),
                );
                return TExpr::error(span);
            }
            _ => {
                let typed = self.expr(base, None, env);
                if !typed.ty.is_error() {
                    let shown = self.show(&typed.ty);
                    self.error(Diagnostic::error(
                        format!("`{shown}` has no attribute `{}`", attr.name),
                        attr.span,
                    ));
                }
                return TExpr::error(span);
            }
        };
        match root.as_str() {
            "principal" => self.principal_attribute(&kinds, attr, span),
            "context" => match self.scope.context.iter().find(|f| f.name == attr.name) {
                Some(field) => TExpr {
                    kind: TKind::Input(Input::Context(attr.name.clone())),
                    ty: field.ty.clone(),
                    span,
                },
                None => {
                    let names: Vec<&str> =
                        self.scope.context.iter().map(|f| f.name.as_str()).collect();
                    self.unknown_attribute("context", &names, attr)
                }
            },
            _ => {
                let (input, ty) = match attr.name.as_str() {
                    "factors" => (Input::SessionFactors, Type::set_of(Type::Factor)),
                    "aal" => (Input::SessionAal, Type::Int),
                    "age" => (Input::SessionAge, Type::Duration),
                    "idle" => (Input::SessionIdle, Type::Duration),
                    "started_at" => (Input::SessionStartedAt, Type::Time),
                    "last_active_at" => (Input::SessionLastActiveAt, Type::Time),
                    _ => {
                        let names = [
                            "factors",
                            "aal",
                            "age",
                            "idle",
                            "started_at",
                            "last_active_at",
                        ];
                        return self.unknown_attribute("session", &names, attr);
                    }
                };
                TExpr {
                    kind: TKind::Input(input),
                    ty,
                    span,
                }
            }
        }
    }

    fn principal_attribute(&mut self, kinds: &[u32], attr: &ast::Ident, span: Span) -> TExpr {
        if kinds.is_empty() {
            let builtin = crate::resolve::builtin_principal_fields(span);
            return match builtin.iter().find(|f| f.name == attr.name) {
                Some(field) => TExpr {
                    kind: TKind::Input(Input::Principal(attr.name.clone())),
                    ty: field.ty.clone(),
                    span,
                },
                None => {
                    let mut diagnostic = Diagnostic::error(
                        format!(
                            "`principal.{}` cannot be read in a `for any` flow",
                            attr.name
                        ),
                        attr.span,
                    );
                    diagnostic = diagnostic.with_help("a `for any` flow reads only `principal.id` and `principal.enrolled`; list the kinds after `for` to read their attributes");
                    self.error(diagnostic);
                    TExpr::error(attr.span)
                }
            };
        }
        let mut ty: Option<Type> = None;
        for &kind in kinds {
            let symbol = &self.scope.kinds[kind as usize];
            match symbol.field(&attr.name) {
                None => {
                    let names: Vec<&str> = symbol.fields.iter().map(|f| f.name.as_str()).collect();
                    let kind_name = symbol.name.clone();
                    return self.unknown_attribute(&kind_name, &names, attr);
                }
                Some(field) => match &ty {
                    Some(previous) if *previous != field.ty => {
                        let message = format!(
                            "`principal.{}` has different types for the kinds of this flow (`{}` and `{}`)",
                            attr.name,
                            self.show(previous),
                            self.show(&field.ty)
                        );
                        self.error(
                            Diagnostic::error(message, attr.span)
                                .with_help("declare the attribute with one type on every kind"),
                        );
                        return TExpr::error(span);
                    }
                    _ => ty = Some(field.ty.clone()),
                },
            }
        }
        TExpr {
            kind: TKind::Input(Input::Principal(attr.name.clone())),
            ty: ty.unwrap_or(Type::Error),
            span,
        }
    }

    fn unknown_attribute(&mut self, owner: &str, names: &[&str], attr: &ast::Ident) -> TExpr {
        let mut diagnostic = Diagnostic::error(
            format!("`{owner}` has no attribute `{}`", attr.name),
            attr.span,
        )
        .with_label("unknown attribute");
        diagnostic = match did_you_mean(&attr.name, names.iter().copied()) {
            Some(close) => diagnostic.with_help(format!("did you mean `{close}`?")),
            None if names.is_empty() => {
                diagnostic.with_help(format!("`{owner}` declares no attributes"))
            }
            None => diagnostic.with_help(format!("the attributes are: {}", names.join(", "))),
        };
        self.error(diagnostic);
        TExpr::error(attr.span)
    }

    fn method(
        &mut self,
        receiver: &ast::Expr,
        method: &ast::Ident,
        args: &[ast::Expr],
        span: Span,
        env: &Env,
    ) -> TExpr {
        let set = self.expr(receiver, None, env);
        if set.ty.is_error() {
            return TExpr::error(span);
        }
        let Some(element) = set.ty.element().cloned() else {
            let shown = self.show(&set.ty);
            let mut diagnostic = Diagnostic::error(
                format!("`{shown}` has no method `{}`", method.name),
                method.span,
            );
            if let Type::Optional(_) = set.ty {
                diagnostic = diagnostic.with_help("give the optional a default with `??` first");
            }
            self.error(diagnostic);
            return TExpr::error(span);
        };
        let arity = |checker: &mut Self, count: usize| {
            if args.len() != count {
                checker.error(Diagnostic::error(
                    format!(
                        "`{}` takes {count} argument{}, found {}",
                        method.name,
                        if count == 1 { "" } else { "s" },
                        args.len()
                    ),
                    method.span,
                ));
                return false;
            }
            true
        };
        let kind = match method.name.as_str() {
            "contains" => {
                if !arity(self, 1) {
                    return TExpr::error(span);
                }
                let value = self.typed(&args[0], &element, env);
                if value.ty.is_error() {
                    return TExpr::error(span);
                }
                TKind::Member {
                    element: Box::new(value),
                    container: Box::new(set),
                }
            }
            "contains_any" | "contains_all" => {
                if !arity(self, 1) {
                    return TExpr::error(span);
                }
                let other = self.typed(&args[0], &set.ty, env);
                if other.ty.is_error() {
                    return TExpr::error(span);
                }
                if element == Type::String && set.as_const().is_none() && other.as_const().is_none()
                {
                    self.error(
                        Diagnostic::error(
                            "two sets of strings from the request cannot be compared",
                            span,
                        )
                        .with_help("compare a request set with a constant set"),
                    );
                    return TExpr::error(span);
                }
                let test = if method.name == "contains_any" {
                    SetTest::ContainsAny
                } else {
                    SetTest::ContainsAll
                };
                TKind::SetTest {
                    test,
                    set: Box::new(set),
                    other: Box::new(other),
                }
            }
            "is_empty" if arity(self, 0) => TKind::IsEmpty(Box::new(set)),
            "len" if arity(self, 0) => TKind::Len(Box::new(set)),
            "is_empty" | "len" => return TExpr::error(span),
            other => {
                let mut diagnostic =
                    Diagnostic::error(format!("sets have no method `{other}`"), method.span);
                if let Some(close) = did_you_mean(
                    other,
                    [
                        "contains",
                        "contains_any",
                        "contains_all",
                        "is_empty",
                        "len",
                    ],
                ) {
                    diagnostic = diagnostic.with_help(format!("did you mean `{close}`?"));
                }
                self.error(diagnostic);
                return TExpr::error(span);
            }
        };
        let ty = if matches!(kind, TKind::Len(_)) {
            Type::Int
        } else {
            Type::Bool
        };
        self.folded(TExpr { kind, ty, span })
    }

    fn unary(
        &mut self,
        op: UnaryOp,
        operand: &ast::Expr,
        span: Span,
        expected: Option<&Type>,
        env: &Env,
    ) -> TExpr {
        match op {
            UnaryOp::Not => {
                let operand = self.typed(operand, &Type::Bool, env);
                if operand.ty.is_error() {
                    return TExpr::error(span);
                }
                self.folded(TExpr {
                    kind: TKind::Not(Box::new(operand)),
                    ty: Type::Bool,
                    span,
                })
            }
            UnaryOp::Neg => {
                let operand = self.expr(operand, expected, env);
                match operand.ty {
                    Type::Int | Type::Duration => {
                        let ty = operand.ty.clone();
                        self.folded(TExpr {
                            kind: TKind::Neg(Box::new(operand)),
                            ty,
                            span,
                        })
                    }
                    Type::Error => TExpr::error(span),
                    _ => {
                        let shown = self.show(&operand.ty);
                        self.error(Diagnostic::error(
                            format!("cannot negate `{shown}`"),
                            operand.span,
                        ));
                        TExpr::error(span)
                    }
                }
            }
        }
    }

    /// Types both operands of a binary operator. When the left operand is a
    /// bare name that only the other side can give a meaning to (an enum
    /// value or factor), the right operand is typed first.
    fn operands(
        &mut self,
        left: &ast::Expr,
        right: &ast::Expr,
        env: &Env,
        element_of_right: bool,
    ) -> (TExpr, TExpr) {
        let left_is_bare = matches!(&left.kind, ExprKind::Name(name) if !self.is_value_name(name));
        if left_is_bare {
            let right = self.expr(right, None, env);
            let expected = if element_of_right {
                right.ty.element().cloned()
            } else {
                Some(right.ty.clone())
            };
            let left = self.expr(left, expected.as_ref(), env);
            return (left, right);
        }
        let left = self.expr(left, None, env);
        let expected = if element_of_right {
            Some(match &left.ty {
                Type::Ip => Type::set_of(Type::Cidr),
                other => Type::set_of(other.clone()),
            })
        } else {
            Some(left.ty.clone())
        };
        let right = self.expr(right, expected.as_ref(), env);
        (left, right)
    }

    fn is_value_name(&self, name: &str) -> bool {
        self.scope.const_index.contains_key(name)
            || self.scope.switch_index.contains_key(name)
            || matches!(name, "now" | "principal" | "context" | "session")
    }

    fn binary(
        &mut self,
        op: BinaryOp,
        left: &ast::Expr,
        right: &ast::Expr,
        span: Span,
        expected: Option<&Type>,
        env: &Env,
    ) -> TExpr {
        match op {
            BinaryOp::And | BinaryOp::Or => {
                let left = self.typed(left, &Type::Bool, env);
                let right = self.typed(right, &Type::Bool, env);
                if left.ty.is_error() || right.ty.is_error() {
                    return TExpr::error(span);
                }
                let kind = if op == BinaryOp::And {
                    TKind::And(Box::new(left), Box::new(right))
                } else {
                    TKind::Or(Box::new(left), Box::new(right))
                };
                self.folded(TExpr {
                    kind,
                    ty: Type::Bool,
                    span,
                })
            }
            BinaryOp::Coalesce => self.coalesce(left, right, span, expected, env),
            BinaryOp::In => {
                let (element, container) = self.operands(left, right, env, true);
                self.membership(element, container, span)
            }
            BinaryOp::Add | BinaryOp::Sub => {
                let (left, right) = self.operands(left, right, env, false);
                self.arithmetic(op, left, right, span)
            }
            _ => {
                let (left, right) = self.operands(left, right, env, false);
                self.comparison(op, left, right, span)
            }
        }
    }

    fn coalesce(
        &mut self,
        left: &ast::Expr,
        right: &ast::Expr,
        span: Span,
        expected: Option<&Type>,
        env: &Env,
    ) -> TExpr {
        let expected_optional = expected.map(|ty| Type::optional(ty.clone()));
        let left = self.expr(left, expected_optional.as_ref(), env);
        let inner = match &left.ty {
            Type::Optional(inner) => inner.as_ref().clone(),
            Type::Error => return TExpr::error(span),
            other => {
                let shown = self.show(other);
                self.error(
                    Diagnostic::error(
                        format!("`??` needs an optional value on the left, found `{shown}`"),
                        left.span,
                    )
                    .with_help("remove the `??` default: this value is always present"),
                );
                return TExpr::error(span);
            }
        };
        let right = self.expr(right, Some(&inner), env);
        if right.ty.is_error() {
            return TExpr::error(span);
        }
        let ty = match &right.ty {
            Type::Optional(other) if **other == inner => right.ty.clone(),
            actual if actual.fits(&inner) => inner.clone(),
            actual => {
                let message = format!(
                    "the default of `??` must be `{}`, found `{}`",
                    self.show(&inner),
                    self.show(actual)
                );
                self.error(Diagnostic::error(message, right.span));
                return TExpr::error(span);
            }
        };
        self.folded(TExpr {
            kind: TKind::Coalesce(Box::new(left), Box::new(right)),
            ty,
            span,
        })
    }

    fn optional_misuse(&mut self, operand: &TExpr, op: &str) -> bool {
        if let Type::Optional(inner) = &operand.ty {
            let shown = self.show(inner);
            let text = self.text(operand.span);
            self.error(
                Diagnostic::error(
                    format!(
                        "`{text}` is optional (`{shown}?`) and cannot be used with `{op}` directly"
                    ),
                    operand.span,
                )
                .with_label("may be absent")
                .with_help(format!(
                    "compare it with `none`, or give a default: `({text} ?? ...)`"
                )),
            );
            return true;
        }
        false
    }

    fn comparison(&mut self, op: BinaryOp, left: TExpr, right: TExpr, span: Span) -> TExpr {
        if left.ty.is_error() || right.ty.is_error() {
            return TExpr::error(span);
        }
        let equality = matches!(op, BinaryOp::Eq | BinaryOp::Ne);
        if equality {
            let (value, none) = match (&left.ty, &right.ty) {
                (_, Type::NoneLiteral) => (left.clone(), true),
                (Type::NoneLiteral, _) => (right.clone(), true),
                _ => (left.clone(), false),
            };
            if none {
                if !matches!(value.ty, Type::Optional(_)) {
                    let text = self.text(value.span);
                    self.error(
                        Diagnostic::error(format!("`{text}` is never `none`"), value.span)
                            .with_help("only optional attributes (`T?`) can be `none`"),
                    );
                    return TExpr::error(span);
                }
                let kind = TKind::IsNone {
                    operand: Box::new(value),
                    negated: op == BinaryOp::Ne,
                };
                return self.folded(TExpr {
                    kind,
                    ty: Type::Bool,
                    span,
                });
            }
        }
        if self.optional_misuse(&left, op.text()) || self.optional_misuse(&right, op.text()) {
            return TExpr::error(span);
        }
        let comparable = if equality {
            matches!(
                left.ty,
                Type::Bool
                    | Type::Int
                    | Type::String
                    | Type::Duration
                    | Type::Time
                    | Type::Ip
                    | Type::Cidr
                    | Type::Factor
                    | Type::Enum(_)
            )
        } else {
            matches!(left.ty, Type::Int | Type::Duration | Type::Time)
        };
        if left.ty != right.ty {
            let message = format!(
                "cannot compare `{}` with `{}`",
                self.show(&left.ty),
                self.show(&right.ty)
            );
            self.error(
                Diagnostic::error(message, right.span)
                    .with_label(format!("this is `{}`", self.show(&right.ty)))
                    .with_secondary(left.span, format!("this is `{}`", self.show(&left.ty))),
            );
            return TExpr::error(span);
        }
        if !comparable {
            let shown = self.show(&left.ty);
            let help = if matches!(left.ty, Type::Set(_)) {
                "compare sets with `.contains_all(...)` in both directions"
            } else {
                "`<`, `<=`, `>` and `>=` compare `Int`, `Duration` and `Time` values"
            };
            self.error(
                Diagnostic::error(
                    format!("`{}` cannot compare `{shown}` values", op.text()),
                    span,
                )
                .with_help(help),
            );
            return TExpr::error(span);
        }
        let compare = match op {
            BinaryOp::Eq => Compare::Eq,
            BinaryOp::Ne => Compare::Ne,
            BinaryOp::Lt => Compare::Lt,
            BinaryOp::Le => Compare::Le,
            BinaryOp::Gt => Compare::Gt,
            _ => Compare::Ge,
        };
        self.folded(TExpr {
            kind: TKind::Compare(compare, Box::new(left), Box::new(right)),
            ty: Type::Bool,
            span,
        })
    }

    fn membership(&mut self, element: TExpr, container: TExpr, span: Span) -> TExpr {
        if element.ty.is_error() || container.ty.is_error() {
            return TExpr::error(span);
        }
        if self.optional_misuse(&element, "in") || self.optional_misuse(&container, "in") {
            return TExpr::error(span);
        }
        let fits = match (&element.ty, &container.ty) {
            (Type::Ip, Type::Cidr) => true,
            (Type::Ip, Type::Set(inner)) if **inner == Type::Cidr => true,
            (_, Type::EmptySet) => true,
            (element_ty, Type::Set(inner)) => **inner == *element_ty,
            _ => false,
        };
        if !fits {
            let message = format!(
                "cannot test whether `{}` is in `{}`",
                self.show(&element.ty),
                self.show(&container.ty)
            );
            self.error(
                Diagnostic::error(message, span)
                    .with_help("`in` tests membership in a set of the same type, or an `Ip` in a `Cidr` or set of `Cidr`"),
            );
            return TExpr::error(span);
        }
        self.folded(TExpr {
            kind: TKind::Member {
                element: Box::new(element),
                container: Box::new(container),
            },
            ty: Type::Bool,
            span,
        })
    }

    fn arithmetic(&mut self, op: BinaryOp, left: TExpr, right: TExpr, span: Span) -> TExpr {
        if left.ty.is_error() || right.ty.is_error() {
            return TExpr::error(span);
        }
        if self.optional_misuse(&left, op.text()) || self.optional_misuse(&right, op.text()) {
            return TExpr::error(span);
        }
        let add = op == BinaryOp::Add;
        let ty = match (&left.ty, &right.ty) {
            (Type::Int, Type::Int) => Some(Type::Int),
            (Type::Duration, Type::Duration) => Some(Type::Duration),
            (Type::Time, Type::Duration) => Some(Type::Time),
            (Type::Duration, Type::Time) if add => Some(Type::Time),
            (Type::Time, Type::Time) if !add => Some(Type::Duration),
            _ => None,
        };
        let Some(ty) = ty else {
            let message = format!(
                "cannot apply `{}` to `{}` and `{}`",
                op.text(),
                self.show(&left.ty),
                self.show(&right.ty)
            );
            self.error(
                Diagnostic::error(message, span)
                    .with_help("`+` and `-` work on `Int`, `Duration`, and `Time` with `Duration`; `Time - Time` is a `Duration`"),
            );
            return TExpr::error(span);
        };
        let (left, right) = if matches!((&left.ty, &right.ty), (Type::Duration, Type::Time)) {
            (right, left)
        } else {
            (left, right)
        };
        let kind = if add {
            TKind::Add(Box::new(left), Box::new(right))
        } else {
            TKind::Sub(Box::new(left), Box::new(right))
        };
        self.folded(TExpr { kind, ty, span })
    }

    /// Folds a constant expression, reporting overflow as an error.
    fn folded(&mut self, expr: TExpr) -> TExpr {
        let span = expr.span;
        let all_const = children(&expr)
            .iter()
            .all(|child| child.as_const().is_some());
        if !all_const {
            return expr;
        }
        match evaluate_const(&expr) {
            Some(Ok(value)) => TExpr::constant(value, expr.ty, span),
            Some(Err(message)) => {
                self.error(
                    Diagnostic::error(message, span)
                        .with_help("constants are 64-bit; keep values in range"),
                );
                TExpr::error(span)
            }
            None => expr,
        }
    }

    // ---- whole-program checks ----

    fn terminates(&self, steps: &[TStep], visiting: &mut Vec<u32>) -> bool {
        steps
            .iter()
            .any(|step| self.step_terminates(step, visiting))
    }

    fn step_terminates(&self, step: &TStep, visiting: &mut Vec<u32>) -> bool {
        match &step.kind {
            TStepKind::Allow { .. } => true,
            TStepKind::Deny { when, .. } => when
                .as_ref()
                .is_none_or(|w| matches!(w.as_const(), Some(ConstValue::Bool(true)))),
            TStepKind::If { arms, otherwise } => {
                otherwise
                    .as_ref()
                    .is_some_and(|o| self.terminates(o, visiting))
                    && arms.iter().all(|(_, body)| self.terminates(body, visiting))
            }
            TStepKind::Run { flow } => {
                if visiting.contains(flow) {
                    return false;
                }
                visiting.push(*flow);
                let decl = self.scope.flows[*flow as usize];
                let result = self.ast_terminates(&decl.body, visiting);
                visiting.pop();
                result
            }
            _ => false,
        }
    }

    /// Termination on the AST, for `run` targets whose checked body may not
    /// exist yet.
    fn ast_terminates(&self, block: &ast::Block, visiting: &mut Vec<u32>) -> bool {
        block.steps.iter().any(|step| match &step.kind {
            StepKind::Allow { .. } => true,
            StepKind::Deny { when, .. } => when.is_none(),
            StepKind::If { arms, otherwise } => {
                otherwise
                    .as_ref()
                    .is_some_and(|o| self.ast_terminates(o, visiting))
                    && arms.iter().all(|(_, b)| self.ast_terminates(b, visiting))
            }
            StepKind::Match { arms, .. } => {
                !arms.is_empty()
                    && arms
                        .iter()
                        .all(|arm| self.ast_terminates(&arm.body, visiting))
            }
            StepKind::Run { flow } => {
                let Some(&index) = self.scope.flow_index.get(&flow.name) else {
                    return false;
                };
                if visiting.contains(&index) {
                    return false;
                }
                visiting.push(index);
                let result = self.ast_terminates(&self.scope.flows[index as usize].body, visiting);
                visiting.pop();
                result
            }
            _ => false,
        })
    }

    /// Reports flows whose `run` steps inline more than [`MAX_INLINED_STEPS`]
    /// steps: each `run` copies the target's steps, so sizes multiply.
    fn expansion_limits(&mut self, checked: &Checked) {
        fn size(steps: &[TStep], flows: &[CheckedFlow], memo: &mut Vec<Option<u64>>) -> u64 {
            steps.iter().fold(0u64, |total, step| {
                let own = match &step.kind {
                    TStepKind::If { arms, otherwise } => {
                        let arms_size = arms.iter().fold(0u64, |t, (_, body)| {
                            t.saturating_add(size(body, flows, memo))
                        });
                        arms_size
                            .saturating_add(otherwise.as_ref().map_or(0, |o| size(o, flows, memo)))
                    }
                    TStepKind::Exception { body, .. } => size(body, flows, memo),
                    TStepKind::Run { flow } => flow_size(*flow as usize, flows, memo),
                    _ => 0,
                };
                total.saturating_add(1).saturating_add(own)
            })
        }
        fn flow_size(index: usize, flows: &[CheckedFlow], memo: &mut Vec<Option<u64>>) -> u64 {
            if let Some(known) = memo[index] {
                return known;
            }
            memo[index] = Some(0);
            let total = size(&flows[index].body, flows, memo);
            memo[index] = Some(total);
            total
        }
        let mut memo = vec![None; checked.flows.len()];
        for (index, flow) in checked.flows.iter().enumerate() {
            let total = flow_size(index, &checked.flows, &mut memo);
            if total > MAX_INLINED_STEPS {
                self.error(
                    Diagnostic::error(
                        format!("flow `{}` expands to {total} steps through `run`; the limit is {MAX_INLINED_STEPS}", flow.name),
                        flow.span,
                    )
                    .with_label("every `run` copies the steps of its target")
                    .with_help("run shared flows once, not from several arms of every level"),
                );
            }
        }
    }

    fn run_cycles(&mut self, checked: &Checked) {
        fn runs(steps: &[TStep], out: &mut Vec<(u32, Span)>) {
            for step in steps {
                match &step.kind {
                    TStepKind::Run { flow } => out.push((*flow, step.span)),
                    TStepKind::If { arms, otherwise } => {
                        for (_, body) in arms {
                            runs(body, out);
                        }
                        if let Some(o) = otherwise {
                            runs(o, out);
                        }
                    }
                    TStepKind::Exception { body, .. } => runs(body, out),
                    _ => {}
                }
            }
        }
        let edges: Vec<Vec<(u32, Span)>> = checked
            .flows
            .iter()
            .map(|flow| {
                let mut out = Vec::new();
                runs(&flow.body, &mut out);
                out
            })
            .collect();
        // 0 = unvisited, 1 = on the stack, 2 = finished.
        let mut state = vec![0u8; edges.len()];
        let mut reported = HashSet::new();
        for start in 0..edges.len() {
            let mut path: Vec<u32> = Vec::new();
            self.visit(
                start as u32,
                &edges,
                &mut state,
                &mut path,
                &mut reported,
                checked,
            );
        }
    }

    fn visit(
        &mut self,
        node: u32,
        edges: &[Vec<(u32, Span)>],
        state: &mut [u8],
        path: &mut Vec<u32>,
        reported: &mut HashSet<Vec<u32>>,
        checked: &Checked,
    ) {
        if state[node as usize] != 0 {
            return;
        }
        state[node as usize] = 1;
        path.push(node);
        for &(target, span) in &edges[node as usize] {
            match state[target as usize] {
                1 => {
                    let start = path.iter().position(|&n| n == target).unwrap_or(0);
                    let mut cycle: Vec<u32> = path[start..].to_vec();
                    let mut key = cycle.clone();
                    key.sort_unstable();
                    if reported.insert(key) {
                        cycle.push(target);
                        let names: Vec<&str> = cycle
                            .iter()
                            .map(|&i| checked.flows[i as usize].name.as_str())
                            .collect();
                        self.error(
                            Diagnostic::error(format!("`run` cycle: {}", names.join(" → ")), span)
                                .with_label("this `run` closes the cycle")
                                .with_help(
                                    "flows cannot run themselves, directly or through other flows",
                                ),
                        );
                    }
                }
                0 => self.visit(target, edges, state, path, reported, checked),
                _ => {}
            }
        }
        path.pop();
        state[node as usize] = 2;
    }

    fn routes(&mut self, checked: &Checked) {
        let mut seen: Vec<(usize, &str)> = Vec::new();
        for (index, flow) in checked.flows.iter().enumerate() {
            let Some(event) = flow.event.as_deref() else {
                continue;
            };
            for &(other_index, other_event) in &seen {
                if other_event != event {
                    continue;
                }
                let other = &checked.flows[other_index];
                let shared: Vec<&str> = if flow.any_kind || other.any_kind {
                    vec!["any"]
                } else {
                    flow.kinds
                        .iter()
                        .filter(|k| other.kinds.contains(k))
                        .map(|&k| checked.kinds[k as usize].name.as_str())
                        .collect()
                };
                if shared.is_empty() {
                    continue;
                }
                let event_span = self.scope.flows[index]
                    .event
                    .as_ref()
                    .map(|e| e.span)
                    .unwrap_or(flow.span);
                let other_span = self.scope.flows[other_index]
                    .event
                    .as_ref()
                    .map(|e| e.span)
                    .unwrap_or(other.span);
                let who = if shared == ["any"] {
                    "the same principals".to_string()
                } else {
                    format!("`{}`", shared.join("`, `"))
                };
                self.error(
                    Diagnostic::error(
                        format!(
                            "flows `{}` and `{}` both handle event `{event}` for {who}",
                            other.name, flow.name
                        ),
                        event_span,
                    )
                    .with_label("second route")
                    .with_secondary(other_span, "first route")
                    .with_help("give each flow its own event, or merge them into one flow"),
                );
                break;
            }
            seen.push((index, event));
        }
    }

    fn flow_warnings(&mut self, flow: &CheckedFlow, checked: &Checked) {
        self.block_warnings(&flow.body);
        let index = checked
            .flows
            .iter()
            .position(|f| f.name == flow.name)
            .unwrap_or(0) as u32;
        let elevated = ELEVATED_NAME_PARTS
            .iter()
            .any(|part| flow.name.contains(part))
            || self
                .scope
                .invariants
                .iter()
                .any(|i| i.flow.name == flow.name);
        let mut path = LintPath {
            factor_required: false,
            switches: Vec::new(),
        };
        self.lint_steps(&flow.body, &mut path, elevated, checked, &mut vec![index]);
        if !self.terminates(&flow.body, &mut Vec::new()) {
            self.diagnostics.push(
                Diagnostic::warning(
                    format!("flow `{}` can end without a decision", flow.name),
                    flow.span,
                )
                .with_label("some path reaches the end of this flow")
                .with_help(
                    "such a path denies with reason \"no decision\"; end it with `allow` or `deny`",
                ),
            );
        }
    }

    /// Lints for misconfigurations seen in the field, along every path.
    fn lint_steps(
        &mut self,
        steps: &[TStep],
        path: &mut LintPath,
        elevated: bool,
        checked: &Checked,
        running: &mut Vec<u32>,
    ) {
        for step in steps {
            match &step.kind {
                TStepKind::Require {
                    requirement: Requirement::Any(bits),
                    ..
                } => {
                    path.factor_required = true;
                    let strong = bits & PHISHING_RESISTANT;
                    let weak = bits & !PHISHING_RESISTANT;
                    if elevated && strong != 0 && weak != 0 {
                        let weaker: Vec<&str> = Factor::ALL
                            .iter()
                            .filter(|f| weak & f.bit() != 0)
                            .map(|f| f.name())
                            .collect();
                        self.diagnostics.push(
                            Diagnostic::warning(
                                format!("`{}` accepts {} in place of a phishing-resistant factor", self.text(step.span), weaker.join(", ")),
                                step.span,
                            )
                            .with_label("the weaker factor satisfies the step alone")
                            .with_help("require the phishing-resistant factors on their own, or add a separate step for the weaker one"),
                        );
                    }
                }
                TStepKind::Require { .. } => path.factor_required = true,
                TStepKind::Allow { .. } if !path.factor_required && !path.switches.is_empty() => {
                    let names = path.switches.join("`, `");
                    self.diagnostics.push(
                        Diagnostic::warning(format!("switch `{names}` leads to `allow` without any factor"), step.span)
                            .with_label("no `require` on this path")
                            .with_help("an operator switch should tighten a flow; keep at least one `require` on every path it selects"),
                    );
                }
                TStepKind::If { arms, otherwise } => {
                    for (guard, body) in arms {
                        let mut inner = path.clone();
                        switch_names(guard, &self.scope.switches, &mut inner.switches);
                        self.lint_steps(body, &mut inner, elevated, checked, running);
                    }
                    if let Some(body) = otherwise {
                        let mut inner = path.clone();
                        for (guard, _) in arms {
                            switch_names(guard, &self.scope.switches, &mut inner.switches);
                        }
                        self.lint_steps(body, &mut inner, elevated, checked, running);
                    }
                }
                TStepKind::Exception { name, body, when } => {
                    let header = Span {
                        end: when.span.end,
                        ..step.span
                    };
                    let has_approval =
                        contains_step(body, &|k| matches!(k, TStepKind::Approve { .. }));
                    let has_obligation =
                        contains_step(body, &|k| matches!(k, TStepKind::Emit { .. }));
                    if !has_approval || !has_obligation {
                        let missing = match (has_approval, has_obligation) {
                            (false, false) => "no approval and no obligation",
                            (false, true) => "no approval",
                            _ => "no obligation",
                        };
                        self.diagnostics.push(
                            Diagnostic::warning(
                                format!("exception path `{name}` has {missing}"),
                                header,
                            )
                            .with_label("a break-glass path that nobody approves or reviews")
                            .with_help(
                                "add `approve by ROLE` and an `emit` that pages or opens a review",
                            ),
                        );
                    }
                    let mut inner = path.clone();
                    self.lint_steps(body, &mut inner, elevated, checked, running);
                }
                TStepKind::Run { flow } if !running.contains(flow) => {
                    running.push(*flow);
                    let body = checked.flows[*flow as usize].body.clone();
                    self.lint_steps(&body, path, elevated, checked, running);
                    running.pop();
                }
                _ => {}
            }
        }
    }

    fn block_warnings(&mut self, steps: &[TStep]) {
        let mut decided = false;
        for step in steps {
            if decided {
                self.diagnostics.push(
                    Diagnostic::warning("unreachable step", step.span)
                        .with_label("an earlier step in this block always decides")
                        .with_help("remove the step or the decision before it"),
                );
                break;
            }
            decided = self.step_terminates(step, &mut Vec::new());
            match &step.kind {
                TStepKind::If { arms, otherwise } => {
                    self.arm_warnings(arms);
                    for (_, body) in arms {
                        self.block_warnings(body);
                    }
                    if let Some(o) = otherwise {
                        self.block_warnings(o);
                    }
                }
                TStepKind::Exception { body, .. } => self.block_warnings(body),
                _ => {}
            }
        }
    }

    fn arm_warnings(&mut self, arms: &[(TExpr, Vec<TStep>)]) {
        let mut earlier: Vec<(Vec<String>, Span)> = Vec::new();
        for (guard, _) in arms {
            if let Some(ConstValue::Bool(false)) = guard.as_const() {
                self.diagnostics.push(
                    Diagnostic::warning("this arm can never be selected", guard.span)
                        .with_label("the condition is always false"),
                );
                continue;
            }
            let conjuncts = self.conjuncts(guard);
            let covered = earlier.iter().find(|(previous, _)| {
                previous.is_empty() || previous.iter().all(|c| conjuncts.contains(c))
            });
            if let Some((_, previous_span)) = covered {
                self.diagnostics.push(
                    Diagnostic::warning("this arm can never be selected", guard.span)
                        .with_label("an earlier condition holds whenever this one does")
                        .with_secondary(*previous_span, "earlier condition"),
                );
            }
            earlier.push((conjuncts, guard.span));
        }
    }

    /// The source text of each `and` operand of a guard; empty for `true`.
    fn conjuncts(&self, guard: &TExpr) -> Vec<String> {
        match &guard.kind {
            TKind::And(left, right) => {
                let mut parts = self.conjuncts(left);
                parts.extend(self.conjuncts(right));
                parts
            }
            TKind::Const(ConstValue::Bool(true)) => Vec::new(),
            _ => vec![self
                .text(guard.span)
                .trim_start_matches('(')
                .trim_end_matches(')')
                .to_string()],
        }
    }

    fn unused(&mut self) {
        for (index, decl) in self.scope.consts.iter().enumerate() {
            if decl.name.span.file == FileId(0) && !self.used_consts.contains(&(index as u32)) {
                self.diagnostics.push(
                    Diagnostic::warning(
                        format!("constant `{}` is never used", decl.name.name),
                        decl.name.span,
                    )
                    .with_help("remove it, or use it in a flow"),
                );
            }
        }
        for (index, decl) in self.scope.switches.iter().enumerate() {
            if decl.name.span.file == FileId(0) && !self.used_switches.contains(&(index as u32)) {
                self.diagnostics.push(
                    Diagnostic::warning(
                        format!("switch `{}` is never used", decl.name.name),
                        decl.name.span,
                    )
                    .with_help("a switch no flow reads has no effect; remove it or use it"),
                );
            }
        }
    }

    // ---- tests and invariants ----

    fn test(&mut self, test: &ast::TestDecl, checked: &Checked) -> CheckedTest {
        use ast::TestStatementKind as S;
        let mut kinds: Vec<u32> = Vec::new();
        let mut steps = Vec::new();
        let variants = checked.enum_variants();
        for statement in &test.statements {
            let step = match &statement.kind {
                S::Flow(name) => {
                    let Some(flow) = self.flow_ref(name, checked) else {
                        continue;
                    };
                    kinds = checked.flows[flow as usize].kinds.clone();
                    TestStep::Flow(name.name.clone())
                }
                S::Principal { kind, record } => match self.scope.kind_index.get(&kind.name) {
                    Some(&index) => {
                        let fields = self.scope.kinds[index as usize].fields.clone();
                        let owner = format!("principal `{}`", kind.name);
                        let values = self.constant_record(record, &fields, &owner, &variants);
                        kinds = vec![index];
                        TestStep::Principal {
                            kind: kind.name.clone(),
                            values,
                        }
                    }
                    None => {
                        self.error(Diagnostic::error(
                            format!("unknown principal kind `{}`", kind.name),
                            kind.span,
                        ));
                        continue;
                    }
                },
                S::Context(record) => {
                    let fields = self.scope.context.clone();
                    TestStep::Context(self.constant_record(record, &fields, "context", &variants))
                }
                S::Update { context, principal } => {
                    let mut update_context = Vec::new();
                    let mut update_principal = Vec::new();
                    if let Some(record) = context {
                        let fields = self.scope.context.clone();
                        update_context =
                            self.constant_record(record, &fields, "context", &variants);
                    }
                    if let Some(record) = principal {
                        match kinds.first() {
                            Some(&kind) => {
                                let fields = self.scope.kinds[kind as usize].fields.clone();
                                update_principal =
                                    self.constant_record(record, &fields, "principal", &variants);
                            }
                            None => self.error(
                                Diagnostic::error(
                                    "`update principal` needs the principal's kind",
                                    record.span,
                                )
                                .with_help("give `principal KIND { ... }` before the update"),
                            ),
                        }
                    }
                    TestStep::Event(TestEvent::Update {
                        context: update_context,
                        principal: update_principal,
                    })
                }
                S::Session(record) => TestStep::Session(self.session_record(record, &variants)),
                S::Switches(record) => {
                    let mut values = Vec::new();
                    for (key, value) in &record.entries {
                        match self.scope.switch_index.get(&key.name) {
                            Some(&index) => {
                                self.used_switches.insert(index);
                                let ty = resolve_type(
                                    &self.scope.switches[index as usize].ty,
                                    self.scope,
                                    &mut Vec::new(),
                                );
                                if let Some(json) = self.constant_json(value, &ty, &variants) {
                                    values.push((key.name.clone(), json));
                                }
                            }
                            None => self.error(Diagnostic::error(
                                format!("unknown switch `{}`", key.name),
                                key.span,
                            )),
                        }
                    }
                    TestStep::Switches(values)
                }
                S::Verify(factor) | S::Fail(factor) | S::Enroll(factor) => {
                    let Some(found) = self.factor(factor, false) else {
                        continue;
                    };
                    let name = found.name().to_string();
                    TestStep::Event(match &statement.kind {
                        S::Verify(_) => TestEvent::Verify(name),
                        S::Fail(_) => TestEvent::Fail(name),
                        _ => TestEvent::Enroll(name),
                    })
                }
                S::Approve { role, approver } => TestStep::Event(TestEvent::Approval {
                    role: role.name.clone(),
                    approver: approver.clone(),
                    granted: true,
                }),
                S::Refuse { role, approver } => TestStep::Event(TestEvent::Approval {
                    role: role.name.clone(),
                    approver: approver.clone(),
                    granted: false,
                }),
                S::Expect { decision, detail } => {
                    let expected = match detail.as_ref().map(|d| &d.kind) {
                        None => None,
                        Some(ExprKind::Str(reason)) => Some(Expected::Reason(reason.clone())),
                        Some(ExprKind::Set(elements)) => {
                            let mut names = Vec::new();
                            for element in elements {
                                match &element.kind {
                                    ExprKind::Name(name) => names.push(name.clone()),
                                    _ => self.error(Diagnostic::error(
                                        "expected a factor or role name",
                                        element.span,
                                    )),
                                }
                            }
                            names.sort();
                            names.dedup();
                            Some(Expected::Names(names))
                        }
                        Some(_) => {
                            let span = detail.as_ref().map(|d| d.span).unwrap_or(statement.span);
                            self.error(
                                Diagnostic::error(
                                    "expected a reason string or a set of names",
                                    span,
                                )
                                .with_help(
                                    "write `expect deny \"reason\"` or `expect challenge {totp}`",
                                ),
                            );
                            None
                        }
                    };
                    TestStep::Expect {
                        decision: decision.name.clone(),
                        detail: expected,
                    }
                }
                S::At(expr) => {
                    let typed = self.expr(expr, None, &Env::Constant);
                    match typed.as_const() {
                        Some(ConstValue::Time(t)) => TestStep::At(Clock::Set(*t)),
                        Some(ConstValue::Duration(d)) => TestStep::At(Clock::Advance(*d)),
                        _ => {
                            if !typed.ty.is_error() {
                                let shown = self.show(&typed.ty);
                                self.error(
                                    Diagnostic::error(format!("`at` needs a `Time` or a `Duration`, found `{shown}`"), typed.span)
                                        .with_help("write `at time(\"2026-12-04T10:00:00Z\")` or `at 5m` to advance the clock"),
                                );
                            }
                            continue;
                        }
                    }
                }
            };
            steps.push((step, statement.span));
        }
        CheckedTest {
            name: test.name.clone(),
            steps,
            span: test.span,
        }
    }

    /// A test's `session { ... }`: its times, and its factors as names.
    fn session_record(
        &mut self,
        record: &ast::Record,
        variants: &[Vec<String>],
    ) -> Vec<(String, serde_json::Value)> {
        let mut values = Vec::new();
        for (key, value) in &record.entries {
            let expected = match key.name.as_str() {
                "factors" => Type::set_of(Type::Factor),
                "started_at" | "last_active_at" => Type::Time,
                _ => {
                    self.error(
                        Diagnostic::error(
                            format!("`session` has no attribute `{}`", key.name),
                            key.span,
                        )
                        .with_help(
                            "a test session sets `factors`, `started_at` and `last_active_at`",
                        ),
                    );
                    continue;
                }
            };
            if let Some(json) = self.constant_json(value, &expected, variants) {
                values.push((key.name.clone(), json));
            }
        }
        values
    }

    fn constant_json(
        &mut self,
        value: &ast::Expr,
        ty: &Type,
        variants: &[Vec<String>],
    ) -> Option<serde_json::Value> {
        let typed = self.typed(value, ty, &Env::Constant);
        match typed.as_const() {
            Some(constant) => Some(constant.to_json(variants)),
            None if typed.ty.is_error() => None,
            None => {
                self.error(Diagnostic::error(
                    "test values must be constants",
                    typed.span,
                ));
                None
            }
        }
    }

    fn constant_record(
        &mut self,
        record: &ast::Record,
        fields: &[crate::resolve::FieldSymbol],
        owner: &str,
        variants: &[Vec<String>],
    ) -> Vec<(String, serde_json::Value)> {
        let mut values = Vec::new();
        for (key, value) in &record.entries {
            match fields.iter().find(|f| f.name == key.name) {
                Some(field) => {
                    let ty = field.ty.clone();
                    if let Some(json) = self.constant_json(value, &ty, variants) {
                        values.push((key.name.clone(), json));
                    }
                }
                None => {
                    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
                    self.unknown_attribute(owner, &names, key);
                }
            }
        }
        values
    }

    fn flow_ref(&mut self, name: &ast::Ident, checked: &Checked) -> Option<u32> {
        match checked.flows.iter().position(|f| f.name == name.name) {
            Some(index) => Some(index as u32),
            None => {
                let mut diagnostic =
                    Diagnostic::error(format!("unknown flow `{}`", name.name), name.span);
                if let Some(close) =
                    did_you_mean(&name.name, checked.flows.iter().map(|f| f.name.as_str()))
                {
                    diagnostic = diagnostic.with_help(format!("did you mean `{close}`?"));
                }
                self.error(diagnostic);
                None
            }
        }
    }

    fn invariant(
        &mut self,
        decl: &ast::InvariantDecl,
        checked: &Checked,
    ) -> Option<CheckedInvariant> {
        let flow = self.flow_ref(&decl.flow, checked)?;
        let target = &checked.flows[flow as usize];
        let env = Env::Flow {
            kinds: target.kinds.clone(),
            any: target.any_kind,
        };
        let when = decl.when.as_ref().map(|w| self.condition(w, &env));
        let implies = self.condition(&decl.implies, &env);
        Some(CheckedInvariant {
            name: decl.name.clone(),
            flow,
            when,
            decision: decl.decision.name.clone(),
            implies,
            span: decl.span,
        })
    }
}

/// Factors that resist phishing: WebAuthn and PIV authenticators bind the
/// sign-in to the verifier's origin (NIST SP 800-63B revision 3, 5.2.5).
const PHISHING_RESISTANT: u64 = authflow_runtime::factor::mask(&[
    Factor::Passkey,
    Factor::SecurityKey,
    Factor::Piv,
    Factor::Webauthn,
]);

/// Flow name parts that mark a flow guarding elevated access.
const ELEVATED_NAME_PARTS: &[&str] = &[
    "admin",
    "privileged",
    "root",
    "sudo",
    "step_up",
    "sensitive",
    "break_glass",
];

/// What the lints know about the path to a step.
#[derive(Clone)]
struct LintPath {
    factor_required: bool,
    /// Switches read by the guards that select this path.
    switches: Vec<String>,
}

fn switch_names(expr: &TExpr, switches: &[&ast::SwitchDecl], out: &mut Vec<String>) {
    if let TKind::Input(Input::Switch(index)) = &expr.kind {
        let name = switches[*index as usize].name.name.clone();
        if !out.contains(&name) {
            out.push(name);
        }
    }
    for child in children(expr) {
        switch_names(child, switches, out);
    }
}

fn contains_step(steps: &[TStep], wanted: &dyn Fn(&TStepKind) -> bool) -> bool {
    steps.iter().any(|step| {
        wanted(&step.kind)
            || match &step.kind {
                TStepKind::If { arms, otherwise } => {
                    arms.iter().any(|(_, body)| contains_step(body, wanted))
                        || otherwise
                            .as_ref()
                            .is_some_and(|body| contains_step(body, wanted))
                }
                TStepKind::Exception { body, .. } => contains_step(body, wanted),
                _ => false,
            }
    })
}

/// The most steps one flow may contain once every `run` is inlined; it
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
