//! A reference evaluator. It runs one flow of a checked program by walking
//! its steps and expressions with ordinary branches, following the
//! evaluation, outcomes and traces that `docs/language.md` describes.
//!
//! It is a readable specification for differential testing, not a second
//! engine: it is neither constant-time nor fast, and it shares no code with
//! lowering or the kernels. It reads the same validated [`Facts`] the engine
//! binds, so request validation and the folding of events into facts (the
//! approval rules included) are the runtime's, and the results compare with
//! `==` against [`authflow_runtime::Policy::evaluate`].

use std::collections::HashMap;

use authflow_runtime::bind::{self, Facts};
use authflow_runtime::factor::{assurance_level, level_factors, Factor};
use authflow_runtime::outcome::{Attributes, Obligation, Outcome, TraceEntry};
use authflow_runtime::program::{Decision, Program};
use authflow_runtime::value::{
    format_cidr, format_duration, format_ip, format_time, hour_of, weekday_of, Cidr,
};
use serde_json::Value as Json;

use crate::check::{
    Checked, CheckedFlow, Compare, Input, Requirement, SetTest, TExpr, TKind, TStep, TStepKind,
};
use crate::types::{ConstValue, Type};
use crate::Compilation;

/// The deny reason of a `require ... attempts N` step whose failures reached `N`.
const TOO_MANY_ATTEMPTS: &str = "too many failed attempts";
const APPROVAL_REFUSED: &str = "approval refused";
const APPROVAL_EXPIRED: &str = "approval expired";
/// The deny reason of a path that reaches the end of its flow.
const NO_DECISION: &str = "no decision";

/// The maximum depth of nested `run` steps. The checker rejects `run`
/// cycles, so only a corrupt program reaches it.
const MAX_RUN_DEPTH: usize = 256;

/// The result of one reference evaluation: the outcome without a trace, and
/// the trace steps the engine would record for it.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    pub outcome: Outcome,
    pub steps: Vec<TraceEntry>,
}

/// Evaluates the flow that `facts` was routed to. `program` must be compiled
/// from `compilation`: it supplies the flow names, the request schema that
/// orders the attributes of `facts`, and the approval roles that index
/// `facts.roles`. A construct or value that a checked program cannot
/// contain is an error, not a panic.
pub fn evaluate(
    compilation: &Compilation,
    program: &Program,
    facts: &Facts,
) -> Result<Evaluation, String> {
    let checked = compilation
        .checked
        .as_ref()
        .ok_or("the compilation has errors and no checked program")?;
    let flow_name = &program
        .flows
        .get(facts.request.flow)
        .ok_or_else(|| format!("the program has no flow {}", facts.request.flow))?
        .name;
    let flow = checked
        .flow(flow_name)
        .ok_or_else(|| format!("the checked program has no flow `{flow_name}`"))?;
    let sources: Vec<&str> = compilation
        .sources
        .iter()
        .map(|source| source.text.as_str())
        .collect();
    let mut walker = Walker {
        checked,
        program,
        facts,
        sources: &sources,
        sizes: HashMap::new(),
        next_index: 0,
        steps: Vec::new(),
        obligations: Vec::new(),
        exception: None,
        run_depth: 0,
    };
    let decided = walker.block(&flow.body)?.unwrap_or_else(|| Decided {
        reason: Some(NO_DECISION.to_string()),
        ..Decided::new(Decision::Deny)
    });
    Ok(walker.finish(decided))
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

/// A run-time value. Sets keep their elements sorted and without
/// duplicates, and `None` is an absent optional.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Val {
    Bool(bool),
    Int(i64),
    Str(String),
    /// Microseconds.
    Duration(i64),
    /// Microseconds since the Unix epoch.
    Time(i64),
    Ip(u128),
    Cidr(Cidr),
    Factor(u8),
    /// The variant index; the expression's type names the enum.
    Enum(u32),
    Set(Vec<Val>),
    None,
}

impl Val {
    fn set(mut elements: Vec<Val>) -> Val {
        elements.sort();
        elements.dedup();
        Val::Set(elements)
    }

    fn factors(bits: u64) -> Val {
        Val::set(
            Factor::ALL
                .iter()
                .filter(|factor| bits & factor.bit() != 0)
                .map(|factor| Val::Factor(*factor as u8))
                .collect(),
        )
    }

    fn from_const(value: &ConstValue) -> Val {
        match value {
            ConstValue::Bool(b) => Val::Bool(*b),
            ConstValue::Int(i) => Val::Int(*i),
            ConstValue::Str(s) => Val::Str(s.clone()),
            ConstValue::Duration(d) => Val::Duration(*d),
            ConstValue::Time(t) => Val::Time(*t),
            ConstValue::Ip(ip) => Val::Ip(*ip),
            ConstValue::Cidr { network, prefix } => Val::Cidr(Cidr {
                network: *network,
                prefix: *prefix,
            }),
            ConstValue::Factor(f) => Val::Factor(*f),
            ConstValue::Enum { variant, .. } => Val::Enum(*variant),
            ConstValue::Set(elements) => Val::set(elements.iter().map(Val::from_const).collect()),
            ConstValue::None => Val::None,
        }
    }

    fn from_input(value: Option<&bind::Value>) -> Val {
        let Some(value) = value else {
            return Val::None;
        };
        match value {
            bind::Value::Bool(b) => Val::Bool(*b),
            bind::Value::Int(i) => Val::Int(*i),
            bind::Value::Str(s) => Val::Str(s.clone()),
            bind::Value::Duration(d) => Val::Duration(*d),
            bind::Value::Time(t) => Val::Time(*t),
            bind::Value::Ip(ip) => Val::Ip(*ip),
            bind::Value::Cidr(cidr) => Val::Cidr(*cidr),
            bind::Value::Factor(f) => Val::Factor(*f),
            bind::Value::Enum(v) => Val::Enum(*v),
            bind::Value::Set(elements) => Val::set(
                elements
                    .iter()
                    .map(|element| Val::from_input(Some(element)))
                    .collect(),
            ),
        }
    }

    fn bool(&self) -> Result<bool, String> {
        match self {
            Val::Bool(b) => Ok(*b),
            other => Err(format!("expected a Bool value, found {other:?}")),
        }
    }

    fn int(&self) -> Result<i64, String> {
        match self {
            Val::Int(i) => Ok(*i),
            other => Err(format!("expected an Int value, found {other:?}")),
        }
    }

    fn duration(&self) -> Result<i64, String> {
        match self {
            Val::Duration(d) => Ok(*d),
            other => Err(format!("expected a Duration value, found {other:?}")),
        }
    }

    fn elements(&self) -> Result<&[Val], String> {
        match self {
            Val::Set(elements) => Ok(elements),
            other => Err(format!("expected a set, found {other:?}")),
        }
    }

    /// Returns the number that `<`, `<=`, `>` and `>=` compare.
    fn ordered(&self) -> Result<i64, String> {
        match self {
            Val::Int(v) | Val::Duration(v) | Val::Time(v) => Ok(*v),
            other => Err(format!("`<` cannot compare {other:?}")),
        }
    }
}

/// Tests `element in container`: an `Ip` is in a network when the network
/// contains it, and any other value is in a set that contains an equal value.
fn member(element: &Val, container: &Val) -> Result<bool, String> {
    match (element, container) {
        (Val::Ip(ip), Val::Cidr(network)) => Ok(network.contains(*ip)),
        (_, Val::Set(elements)) => {
            Ok(elements.iter().any(|candidate| match (element, candidate) {
                (Val::Ip(ip), Val::Cidr(network)) => network.contains(*ip),
                _ => candidate == element,
            }))
        }
        _ => Err(format!(
            "cannot test whether {element:?} is in {container:?}"
        )),
    }
}

/// Adds or subtracts, saturating at the bounds of a 64-bit value as the
/// language defines arithmetic at run time.
fn arithmetic(add: bool, left: &Val, right: &Val) -> Result<Val, String> {
    let combine = |x: i64, y: i64| {
        if add {
            x.saturating_add(y)
        } else {
            x.saturating_sub(y)
        }
    };
    Ok(match (left, right) {
        (Val::Int(x), Val::Int(y)) => Val::Int(combine(*x, *y)),
        (Val::Duration(x), Val::Duration(y)) => Val::Duration(combine(*x, *y)),
        (Val::Time(t), Val::Duration(d)) => Val::Time(combine(*t, *d)),
        (Val::Duration(d), Val::Time(t)) if add => Val::Time(t.saturating_add(*d)),
        (Val::Time(x), Val::Time(y)) if !add => Val::Duration(x.saturating_sub(*y)),
        _ => {
            return Err(format!(
                "cannot {} {left:?} and {right:?}",
                if add { "add" } else { "subtract" }
            ))
        }
    })
}

// ---------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------

/// A decision made by a step, before it becomes an [`Outcome`].
struct Decided {
    decision: Decision,
    reason: Option<String>,
    /// Factor bitset of a challenge or enroll decision.
    options: u64,
    awaiting: Vec<String>,
    attributes: Attributes,
}

impl Decided {
    fn new(decision: Decision) -> Decided {
        Decided {
            decision,
            reason: None,
            options: 0,
            awaiting: Vec::new(),
            attributes: Attributes::default(),
        }
    }

    fn deny(reason: &str) -> Decided {
        Decided {
            reason: Some(reason.to_string()),
            ..Decided::new(Decision::Deny)
        }
    }
}

/// The state of one evaluation while it walks the flow.
struct Walker<'a> {
    checked: &'a Checked,
    program: &'a Program,
    facts: &'a Facts,
    /// Source text by file id, for the line of each traced step.
    sources: &'a [&'a str],
    /// Trace-table sizes of flow bodies by flow index, including the steps of
    /// every `run` inside them.
    sizes: HashMap<u32, usize>,
    /// The trace-table index of the next step. The table lists every step of
    /// the flow in source order, with each block's steps after the step that
    /// contains it and a `run` target's steps after the `run`.
    next_index: usize,
    steps: Vec<TraceEntry>,
    obligations: Vec<Obligation>,
    /// The exception path entered last.
    exception: Option<String>,
    run_depth: usize,
}

impl<'a> Walker<'a> {
    /// Runs the steps of a block in order until one decides.
    fn block(&mut self, steps: &[TStep]) -> Result<Option<Decided>, String> {
        for step in steps {
            if let Some(decided) = self.step(step)? {
                return Ok(Some(decided));
            }
        }
        Ok(None)
    }

    /// Runs one step, records its trace entry, and returns its decision, or
    /// the decision of the block or flow it ran.
    fn step(&mut self, step: &TStep) -> Result<Option<Decided>, String> {
        let index = self.next_index;
        self.next_index += 1;
        let entry = self.steps.len();
        self.steps.push(TraceEntry {
            index,
            line: self.line(step)?,
            step: step.text.clone(),
            guards: Vec::new(),
            arm: None,
            result: "continue".to_string(),
        });
        let decided = match &step.kind {
            TStepKind::Allow { attributes } => Some(Decided {
                attributes: self.record(attributes)?,
                ..Decided::new(Decision::Allow)
            }),
            TStepKind::Deny { reason, when } => {
                let fires = match when {
                    Some(when) => {
                        let fires = self.value(when)?.bool()?;
                        self.steps[entry].guards.push(fires);
                        fires
                    }
                    None => true,
                };
                fires.then(|| Decided::deny(reason))
            }
            TStepKind::Require {
                requirement,
                within,
                attempts,
            } => self.require(entry, *requirement, within.as_ref(), attempts.as_ref())?,
            TStepKind::Enroll { requirement } => self.enroll(entry, *requirement)?,
            TStepKind::Approve { roles, within } => self.approve(entry, roles, within.as_ref())?,
            TStepKind::Emit { name, attributes } => {
                let attributes = self.record(attributes)?;
                self.obligations.push(Obligation {
                    name: name.clone(),
                    attributes,
                });
                None
            }
            TStepKind::If { arms, otherwise } => {
                // The step that decides inside the chosen block records the
                // decision, so this entry keeps the result `continue`.
                return self.branch(entry, arms, otherwise.as_deref());
            }
            TStepKind::Exception { name, when, body } => {
                let entered = self.value(when)?.bool()?;
                self.steps[entry].guards.push(entered);
                let after = self.next_index + self.block_size(body)?;
                if !entered {
                    self.next_index = after;
                    return Ok(None);
                }
                self.exception = Some(name.clone());
                let decided = self.block(body)?;
                self.next_index = after;
                return Ok(decided);
            }
            TStepKind::Run { flow } => return self.run(*flow),
        };
        if let Some(decided) = &decided {
            self.steps[entry].result = decided.decision.name().to_string();
        }
        Ok(decided)
    }

    /// Runs an `if` chain or a `match`. Every guard is evaluated, and the
    /// first true one selects its block.
    fn branch(
        &mut self,
        entry: usize,
        arms: &[(TExpr, Vec<TStep>)],
        otherwise: Option<&[TStep]>,
    ) -> Result<Option<Decided>, String> {
        let mut guards = Vec::with_capacity(arms.len());
        for (guard, _) in arms {
            guards.push(self.value(guard)?.bool()?);
        }
        let chosen = guards.iter().position(|&guard| guard);
        self.steps[entry].guards = guards;

        // "else" when no guard is true: the `else` block, no block for a
        // chain without one, or the last arm of a `match`, which reaches
        // here as `otherwise` without a guard.
        self.steps[entry].arm = Some(match chosen {
            Some(arm) => Json::from(arm + 1),
            None => Json::from("else"),
        });

        // Skip the table entries of the arms before the chosen block, and
        // continue after the entries of every arm.
        let mut sizes = Vec::with_capacity(arms.len() + 1);
        for (_, block) in arms {
            sizes.push(self.block_size(block)?);
        }
        let after = self.next_index
            + sizes.iter().sum::<usize>()
            + otherwise.map_or(Ok(0), |block| self.block_size(block))?;
        let block = match chosen {
            Some(arm) => {
                self.next_index += sizes[..arm].iter().sum::<usize>();
                &arms[arm].1[..]
            }
            None => {
                self.next_index += sizes.iter().sum::<usize>();
                otherwise.unwrap_or(&[])
            }
        };

        let decided = self.block(block)?;
        self.next_index = after;
        Ok(decided)
    }

    /// Runs the target flow's steps in place, so its decision is the caller's.
    fn run(&mut self, flow: u32) -> Result<Option<Decided>, String> {
        let target = self.flow(flow)?;
        if self.run_depth >= MAX_RUN_DEPTH {
            return Err(format!(
                "`run {}` nests more than {MAX_RUN_DEPTH} levels deep",
                target.name
            ));
        }
        let after = self.next_index + self.flow_size(flow)?;
        self.run_depth += 1;
        let decided = self.block(&target.body)?;
        self.run_depth -= 1;
        self.next_index = after;
        Ok(decided)
    }

    fn require(
        &mut self,
        entry: usize,
        requirement: Requirement,
        within: Option<&TExpr>,
        attempts: Option<&TExpr>,
    ) -> Result<Option<Decided>, String> {
        let within = within.map(|w| self.value(w)?.duration()).transpose()?;
        let limit = attempts.map(|a| self.value(a)?.int()).transpose()?;
        let counting = self.counting_factors(within);
        let (satisfied, options, accepted) = match requirement {
            Requirement::Any(listed) => (counting & listed != 0, listed, listed),
            Requirement::All(listed) => (listed & !counting == 0, listed & !counting, listed),
            Requirement::Level(level) => {
                let accepted = level_factors(level);
                (
                    assurance_level(counting) >= level,
                    accepted & !counting,
                    accepted,
                )
            }
        };
        self.steps[entry].guards.push(satisfied);
        if let Some(limit) = limit {
            let failures: u64 = Factor::ALL
                .iter()
                .filter(|factor| accepted & factor.bit() != 0)
                .map(|factor| self.facts.failures[*factor as usize])
                .fold(0, u64::saturating_add);
            let locked = i128::from(failures) >= i128::from(limit);
            self.steps[entry].guards.push(locked);
            if locked {
                return Ok(Some(Decided::deny(TOO_MANY_ATTEMPTS)));
            }
        }
        if satisfied {
            return Ok(None);
        }
        Ok(Some(Decided {
            options,
            ..Decided::new(Decision::Challenge)
        }))
    }

    /// Collects the factors that count for a `require`: the verified ones,
    /// and with `within D` those verified last at most `D` before now.
    fn counting_factors(&self, within: Option<i64>) -> u64 {
        Factor::ALL
            .iter()
            .filter(|factor| self.facts.verified & factor.bit() != 0)
            .filter(|factor| match within {
                None => true,
                Some(limit) => {
                    let at = self.facts.verified_at[**factor as usize];
                    i128::from(self.facts.now) - i128::from(at) <= i128::from(limit)
                }
            })
            .fold(0, |bits, factor| bits | factor.bit())
    }

    /// Decides an `enroll` step. Its one trace guard is whether the factors
    /// are registered.
    fn enroll(
        &mut self,
        entry: usize,
        requirement: Requirement,
    ) -> Result<Option<Decided>, String> {
        let enrolled = self.facts.enrolled;
        let (satisfied, options) = match requirement {
            Requirement::Any(listed) => (enrolled & listed != 0, listed),
            Requirement::All(listed) => (listed & !enrolled == 0, listed & !enrolled),
            Requirement::Level(level) => {
                return Err(format!("`enroll aal{level}`: levels cannot be enrolled"))
            }
        };
        self.steps[entry].guards.push(satisfied);
        Ok((!satisfied).then(|| Decided {
            options,
            ..Decided::new(Decision::Enroll)
        }))
    }

    /// Decides an `approve` step. Its trace guards are whether every role
    /// approved in time and whether one refused, then with `within` whether
    /// the deadline has passed.
    fn approve(
        &mut self,
        entry: usize,
        roles: &[String],
        within: Option<&TExpr>,
    ) -> Result<Option<Decided>, String> {
        // The deadline is `within` after the flow started, in i128 so that it
        // does not saturate.
        let deadline = within
            .map(|w| {
                self.value(w)?
                    .duration()
                    .map(|d| i128::from(self.facts.flow_started) + i128::from(d))
            })
            .transpose()?;

        // The facts fold approval events into one state per role, having
        // already dropped approvals by the principal, approvals for roles
        // that no step of this flow lists and, for separation of duties, a
        // second role's grant by one approver.
        let mut states = Vec::with_capacity(roles.len());
        for role in roles {
            let index = self
                .program
                .roles
                .iter()
                .position(|known| known == role)
                .ok_or_else(|| format!("role `{role}` is missing from the program's roles"))?;
            let state = self
                .facts
                .roles
                .get(index)
                .ok_or_else(|| format!("the facts have no state for role `{role}`"))?;
            states.push((role, state));
        }

        let in_time = |granted_at: i64| deadline.is_none_or(|d| i128::from(granted_at) <= d);
        let approved = states
            .iter()
            .all(|(_, state)| state.granted && in_time(state.granted_at));
        let refused = states.iter().any(|(_, state)| state.refused);
        let past = deadline.map(|d| i128::from(self.facts.now) > d);

        self.steps[entry].guards.extend([approved, refused]);
        self.steps[entry].guards.extend(past);

        // A refusal wins over approvals, and an approval in time over the deadline.
        if refused {
            return Ok(Some(Decided::deny(APPROVAL_REFUSED)));
        }
        if approved {
            return Ok(None);
        }
        if past == Some(true) {
            return Ok(Some(Decided::deny(APPROVAL_EXPIRED)));
        }
        let mut awaiting: Vec<String> = states
            .iter()
            .filter(|(_, state)| !state.granted)
            .map(|(role, _)| (*role).clone())
            .collect();
        awaiting.sort();
        Ok(Some(Decided {
            awaiting,
            ..Decided::new(Decision::Pending)
        }))
    }

    /// Builds the outcome of the decision that ended the walk.
    fn finish(self, decided: Decided) -> Evaluation {
        let mut options: Vec<String> = Factor::ALL
            .iter()
            .filter(|factor| decided.options & factor.bit() != 0)
            .map(|factor| factor.name().to_string())
            .collect();
        options.sort();
        let is_final = decided.decision.is_final();
        let outcome = Outcome {
            decision: decided.decision,
            reason: decided.reason,
            options: if matches!(decided.decision, Decision::Challenge | Decision::Enroll) {
                options
            } else {
                Vec::new()
            },
            awaiting: decided.awaiting,
            attributes: decided.attributes,
            obligations: if is_final {
                self.obligations
            } else {
                Vec::new()
            },
            exception: self.exception,
            trace: None,
        };
        Evaluation {
            outcome,
            steps: self.steps,
        }
    }

    fn flow(&self, index: u32) -> Result<&'a CheckedFlow, String> {
        let checked: &'a Checked = self.checked;
        checked
            .flows
            .get(index as usize)
            .ok_or_else(|| format!("`run` names flow {index}, which does not exist"))
    }

    /// Returns the 1-based line of the step's first character.
    fn line(&self, step: &TStep) -> Result<u32, String> {
        let text = self
            .sources
            .get(step.span.file.0 as usize)
            .ok_or_else(|| format!("no source text for file {}", step.span.file.0))?;
        let before = text
            .get(..step.span.start as usize)
            .ok_or("a step's span lies outside its file")?;
        Ok(1 + before.matches('\n').count() as u32)
    }

    /// Counts the trace-table entries of a block.
    fn block_size(&mut self, steps: &[TStep]) -> Result<usize, String> {
        let mut size = 0;
        for step in steps {
            size += 1 + match &step.kind {
                TStepKind::If { arms, otherwise } => {
                    let mut inner = 0;
                    for (_, block) in arms {
                        inner += self.block_size(block)?;
                    }
                    inner + otherwise.as_deref().map_or(Ok(0), |b| self.block_size(b))?
                }
                TStepKind::Exception { body, .. } => self.block_size(body)?,
                TStepKind::Run { flow } => self.flow_size(*flow)?,
                _ => 0,
            };
        }
        Ok(size)
    }

    fn flow_size(&mut self, flow: u32) -> Result<usize, String> {
        if let Some(&size) = self.sizes.get(&flow) {
            return Ok(size);
        }
        if self.run_depth >= MAX_RUN_DEPTH {
            return Err(format!("`run` nests more than {MAX_RUN_DEPTH} levels deep"));
        }
        let body = &self.flow(flow)?.body;
        self.run_depth += 1;
        let size = self.block_size(body);
        self.run_depth -= 1;
        let size = size?;
        self.sizes.insert(flow, size);
        Ok(size)
    }

    // -----------------------------------------------------------------------
    // Expressions
    // -----------------------------------------------------------------------

    /// Evaluates an expression. Both operands of `and` and `or` are always
    /// evaluated, as the language defines, although no result depends on it.
    fn value(&self, expr: &TExpr) -> Result<Val, String> {
        Ok(match &expr.kind {
            TKind::Const(value) => Val::from_const(value),
            TKind::Input(input) => self.input(input)?,
            TKind::Not(a) => Val::Bool(!self.value(a)?.bool()?),
            TKind::Neg(a) => match self.value(a)? {
                Val::Int(i) => Val::Int(i.saturating_neg()),
                Val::Duration(d) => Val::Duration(d.saturating_neg()),
                other => return Err(format!("cannot negate {other:?}")),
            },
            TKind::And(a, b) => {
                let (a, b) = (self.value(a)?.bool()?, self.value(b)?.bool()?);
                Val::Bool(a && b)
            }
            TKind::Or(a, b) => {
                let (a, b) = (self.value(a)?.bool()?, self.value(b)?.bool()?);
                Val::Bool(a || b)
            }
            TKind::Compare(op, a, b) => {
                let (a, b) = (self.value(a)?, self.value(b)?);
                Val::Bool(match op {
                    Compare::Eq => a == b,
                    Compare::Ne => a != b,
                    Compare::Lt => a.ordered()? < b.ordered()?,
                    Compare::Le => a.ordered()? <= b.ordered()?,
                    Compare::Gt => a.ordered()? > b.ordered()?,
                    Compare::Ge => a.ordered()? >= b.ordered()?,
                })
            }
            TKind::IsNone { operand, negated } => {
                Val::Bool((self.value(operand)? == Val::None) != *negated)
            }
            TKind::Coalesce(a, b) => match self.value(a)? {
                Val::None => self.value(b)?,
                present => present,
            },
            TKind::Add(a, b) => arithmetic(true, &self.value(a)?, &self.value(b)?)?,
            TKind::Sub(a, b) => arithmetic(false, &self.value(a)?, &self.value(b)?)?,
            TKind::Member { element, container } => {
                Val::Bool(member(&self.value(element)?, &self.value(container)?)?)
            }
            TKind::SetTest { test, set, other } => {
                let (set, other) = (self.value(set)?, self.value(other)?);
                let (set, other) = (set.elements()?, other.elements()?);
                Val::Bool(match test {
                    SetTest::ContainsAny => other.iter().any(|x| set.contains(x)),
                    SetTest::ContainsAll => other.iter().all(|x| set.contains(x)),
                })
            }
            TKind::IsEmpty(a) => Val::Bool(self.value(a)?.elements()?.is_empty()),
            TKind::Len(a) => {
                Val::Int(i64::try_from(self.value(a)?.elements()?.len()).unwrap_or(i64::MAX))
            }
            TKind::Hour(a) => match self.value(a)? {
                Val::Time(t) => Val::Int(hour_of(t)),
                other => return Err(format!("`hour` needs a Time, found {other:?}")),
            },
            TKind::Weekday(a) => match self.value(a)? {
                Val::Time(t) => Val::Int(weekday_of(t)),
                other => return Err(format!("`weekday` needs a Time, found {other:?}")),
            },
            TKind::Error => return Err("the expression did not type-check".to_string()),
        })
    }

    fn input(&self, input: &Input) -> Result<Val, String> {
        let facts = self.facts;
        let request = &facts.request;
        Ok(match input {
            Input::Principal(name) if name == "id" => Val::Str(request.id.clone()),
            Input::Principal(name) if name == "enrolled" => Val::factors(facts.enrolled),
            Input::Principal(name) => {
                let kind = self
                    .program
                    .schema
                    .kinds
                    .get(request.kind as usize)
                    .ok_or_else(|| format!("the program has no principal kind {}", request.kind))?;
                let index = kind
                    .attributes
                    .iter()
                    .position(|attribute| attribute.name == *name)
                    .ok_or_else(|| format!("kind `{}` has no attribute `{name}`", kind.name))?;
                Val::from_input(request.principal.get(index).and_then(Option::as_ref))
            }
            Input::Context(name) => {
                let index = self
                    .program
                    .schema
                    .context
                    .iter()
                    .position(|attribute| attribute.name == *name)
                    .ok_or_else(|| format!("the context has no attribute `{name}`"))?;
                Val::from_input(request.context.get(index).and_then(Option::as_ref))
            }
            Input::Switch(index) => {
                let switch = self
                    .checked
                    .switches
                    .get(*index as usize)
                    .ok_or_else(|| format!("the checked program has no switch {index}"))?;
                let position = self
                    .program
                    .schema
                    .switches
                    .iter()
                    .position(|declared| declared.name == switch.name)
                    .ok_or_else(|| format!("the program has no switch `{}`", switch.name))?;
                match request.switches.get(position).and_then(Option::as_ref) {
                    Some(value) => Val::from_input(Some(value)),
                    None => Val::from_const(&switch.default),
                }
            }
            Input::Now => Val::Time(facts.now),
            Input::SessionFactors => Val::factors(facts.verified),
            Input::SessionAal => Val::Int(i64::from(assurance_level(facts.verified))),
            Input::SessionAge => Val::Duration(facts.now.saturating_sub(request.session_started)),
            Input::SessionIdle => Val::Duration(facts.now.saturating_sub(request.last_active)),
            Input::SessionStartedAt => Val::Time(request.session_started),
            Input::SessionLastActiveAt => Val::Time(request.last_active),
            Input::Failures(factor) => {
                Val::Int(i64::try_from(facts.failures[*factor as usize]).unwrap_or(i64::MAX))
            }
        })
    }

    // -----------------------------------------------------------------------
    // Outputs
    // -----------------------------------------------------------------------

    /// Computes a `with { ... }` record in the order written.
    fn record(&self, entries: &[(String, TExpr)]) -> Result<Attributes, String> {
        let mut values = Vec::with_capacity(entries.len());
        for (name, expr) in entries {
            let value = self.value(expr)?;
            values.push((name.clone(), self.json(&value, &expr.ty)?));
        }
        Ok(Attributes(values))
    }

    /// Renders a value in its JSON form (docs/language.md, sections 4 and 11).
    fn json(&self, value: &Val, ty: &Type) -> Result<Json, String> {
        Ok(match (value, ty) {
            (Val::None, Type::Optional(_) | Type::NoneLiteral) => Json::Null,
            (_, Type::Optional(inner)) => self.json(value, inner)?,
            (Val::Bool(b), Type::Bool) => Json::from(*b),
            (Val::Int(i), Type::Int) => Json::from(*i),
            (Val::Str(s), Type::String) => Json::from(s.as_str()),
            (Val::Duration(d), Type::Duration) => Json::from(format_duration(*d)),
            (Val::Time(t), Type::Time) => Json::from(format_time(*t)),
            (Val::Ip(ip), Type::Ip) => Json::from(format_ip(*ip)),
            (Val::Cidr(cidr), Type::Cidr) => Json::from(format_cidr(*cidr)),
            (Val::Factor(f), Type::Factor) => Json::from(
                Factor::from_index(usize::from(*f))
                    .ok_or_else(|| format!("no factor has index {f}"))?
                    .name(),
            ),
            (Val::Enum(variant), Type::Enum(enumeration)) => Json::from(
                self.checked
                    .enums
                    .get(*enumeration as usize)
                    .and_then(|(_, variants)| variants.get(*variant as usize))
                    .ok_or_else(|| format!("enum {enumeration} has no variant {variant}"))?
                    .as_str(),
            ),
            (Val::Set(elements), Type::Set(element)) => {
                // Sets print sorted: the elements are in value order, and
                // names (strings, factors, enum values) sort by their text.
                let mut rendered = Vec::with_capacity(elements.len());
                for value in elements {
                    rendered.push(self.json(value, element)?);
                }
                if matches!(**element, Type::String | Type::Factor | Type::Enum(_)) {
                    rendered.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
                }
                Json::Array(rendered)
            }
            (Val::Set(elements), Type::EmptySet) if elements.is_empty() => Json::Array(Vec::new()),
            (value, ty) => return Err(format!("cannot render {value:?} as {ty:?}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use authflow_runtime::{FlowState, Policy};
    use serde_json::{json, Value};

    use super::*;
    use crate::{build_program, check_source, NoImports};

    const NOW: &str = "2026-12-04T10:00:00Z";

    /// Evaluates `request` and `events` with the reference evaluator after
    /// the last event. The engine only validates the input here.
    fn evaluate_text(policy: &str, request: Value, events: &[Value]) -> Evaluation {
        let compilation = check_source("test.flow", policy, &mut NoImports);
        let program = build_program(&compilation).expect("the policy compiles");
        let mut engine = Policy::new(program.clone()).expect("the program verifies");
        engine.reach_all_flows();
        let state = FlowState {
            events: events.to_vec(),
            ..engine.start(&request, 0).expect("a valid request")
        };
        let facts = engine.facts(&state).expect("valid events");
        evaluate(&compilation, &program, &facts).expect("the reference evaluates")
    }

    fn request(flow: &str, session: Value) -> Value {
        json!({
            "flow": flow,
            "principal": { "kind": "human", "id": "u-1" },
            "session": session,
            "now": NOW,
        })
    }

    const POLICY: &str = r#"
principal human {}

flow fresh for human {
  require totp within 10m
  allow
}

flow locked for human {
  require password attempts 0
  allow
}

flow undecided for human {
  emit "audit"
  deny "blocked" when false
}

flow approval for human {
  approve by manager within 1h
  allow
}

flow break_glass for human {
  exception "break_glass" when true {
    require security_key
    allow
  }
  deny "unreachable"
}
"#;

    #[test]
    fn within_includes_its_bound() {
        let at_bound = json!({ "factors": [{ "factor": "totp", "at": "2026-12-04T09:50:00Z" }] });
        let outcome = evaluate_text(POLICY, request("fresh", at_bound), &[]).outcome;
        assert_eq!(outcome.decision, Decision::Allow);

        let late =
            json!({ "factors": [{ "factor": "totp", "at": "2026-12-04T09:49:59.999999Z" }] });
        let outcome = evaluate_text(POLICY, request("fresh", late), &[]).outcome;
        assert_eq!(outcome.decision, Decision::Challenge);
        assert_eq!(outcome.options, ["totp"]);
    }

    #[test]
    fn zero_attempts_deny_at_once() {
        let verified = json!({ "factors": [{ "factor": "password", "at": NOW }] });
        let evaluation = evaluate_text(POLICY, request("locked", verified), &[]);
        assert_eq!(evaluation.outcome.decision, Decision::Deny);
        assert_eq!(
            evaluation.outcome.reason.as_deref(),
            Some(TOO_MANY_ATTEMPTS)
        );
        assert_eq!(evaluation.steps[0].guards, [true, true]);
        assert_eq!(evaluation.steps[0].result, "deny");
    }

    #[test]
    fn flow_end_denies_with_obligations() {
        let evaluation = evaluate_text(POLICY, request("undecided", json!({})), &[]);
        assert_eq!(evaluation.outcome.decision, Decision::Deny);
        assert_eq!(evaluation.outcome.reason.as_deref(), Some(NO_DECISION));
        assert_eq!(evaluation.outcome.obligations.len(), 1);
        assert_eq!(evaluation.outcome.obligations[0].name, "audit");
        let results: Vec<&str> = evaluation.steps.iter().map(|s| s.result.as_str()).collect();
        assert_eq!(results, ["continue", "continue"]);
    }

    #[test]
    fn approval_at_deadline_counts() {
        let approval = |at: &str| json!({ "approval": { "role": "manager", "approver": "m-1", "granted": true, "at": at } });
        let on_time = [approval("2026-12-04T11:00:00Z")];
        let outcome = evaluate_text(POLICY, request("approval", json!({})), &on_time).outcome;
        assert_eq!(outcome.decision, Decision::Allow);

        let late = [approval("2026-12-04T11:00:00.000001Z")];
        let outcome = evaluate_text(POLICY, request("approval", json!({})), &late).outcome;
        assert_eq!(outcome.decision, Decision::Deny);
        assert_eq!(outcome.reason.as_deref(), Some(APPROVAL_EXPIRED));

        let outcome = evaluate_text(POLICY, request("approval", json!({})), &[]).outcome;
        assert_eq!(outcome.decision, Decision::Pending);
        assert_eq!(outcome.awaiting, ["manager"]);
    }

    #[test]
    fn exception_marks_challenge() {
        let evaluation = evaluate_text(POLICY, request("break_glass", json!({})), &[]);
        assert_eq!(evaluation.outcome.decision, Decision::Challenge);
        assert_eq!(evaluation.outcome.exception.as_deref(), Some("break_glass"));
        let indexes: Vec<usize> = evaluation.steps.iter().map(|s| s.index).collect();
        assert_eq!(indexes, [0, 1]);
        assert_eq!(evaluation.steps[0].guards, [true]);
    }
}
