//! Invariant proofs and semantic diffs by SAT over the decision kernel.
//!
//! A flow's kernel is straight-line code, so one evaluation is a circuit
//! from record words to outcome words. This module bit-blasts that circuit
//! and the invariant's conditions into CNF (Tseitin encoding, 64-bit words,
//! saturating arithmetic as in the kernel) over symbolic facts, and queries a
//! SAT solver (`batsat`) for facts that violate the invariant.
//!
//! Only the final evaluation of a flow instance is modelled: every earlier
//! evaluation of a request and its events is itself the final evaluation of
//! a shorter input, so an invariant holds at every evaluation exactly when
//! it holds at every final one.
//!
//! The symbolic facts carry the constraints that binding a valid request
//! and events guarantees: booleans and presence words are 0 or 1, enum and
//! factor values are in range, times lie in the RFC 3339 range with
//! session start <= last activity <= flow start <= now, a factor has a
//! verification time (between session start and now) exactly when it is
//! verified, approval grant times lie between flow start and now, string ids
//! follow the binder's interning, and string sets have bits only for texts a
//! slot can hold.
//!
//! Every violation the solver finds is turned into a request and events and
//! replayed through `authflow_runtime::Policy`. A violation that the engine
//! does not reproduce is reported as [`Verdict::Unknown`], never as a
//! violation.
//!
//! Limits:
//! - Failure counts and string set sizes are bounded by what the runtime
//!   accepts: at most 65,535 events in a flow state and 65,535 elements in a
//!   set (`authflow_runtime::bind::MAX_EVENTS`, `MAX_SET_ELEMENTS`).
//! - Flows whose decision depends on `hour()` or `weekday()`, and
//!   invariants whose conditions use them, are not analysed (`Unknown`).
//! - Request sets of `Int`, `Ip` or `Cidr` values are not supported
//!   (`Unknown`); the language does not allow them in requests today.
//! - [`diff`] needs identical schemas in both programs and compares the
//!   decision, the offered factors and the awaited roles, not reasons,
//!   attributes or obligations.

mod circuit;
mod condition;
mod kernel;
mod request;
mod routes;
mod witness;

pub use routes::{route_changes, RouteChange};

use std::collections::BTreeSet;

use authflow_runtime::program::{self, out, Decision, Program, Schema};
use authflow_runtime::Policy;
use batsat::{lbool, Lit, SolverInterface};
use serde_json::Value as Json;

use crate::check::{Checked, TExpr, TKind};
use crate::span::Span;
use crate::types::ConstValue;
use circuit::Circuit;
use condition::Condition;
use request::Universe;

/// The outcome of proving one invariant.
#[derive(Clone, Debug, PartialEq)]
pub struct InvariantResult {
    pub name: String,
    pub span: Span,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// The invariant holds for every valid request and events.
    Proved,
    /// A request and events, confirmed with the engine, whose final
    /// evaluation violates the invariant.
    Violated { request: Json, events: Vec<Json> },
    /// The analysis could not decide.
    Unknown { reason: String },
}

/// The kind of change of a decision between two programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    NewlyAllowed,
    NewlyDenied,
    NewlyChallenged,
    NewlyEnrolled,
    NewlyPending,
    /// The same challenge, enroll or pending decision with other factors
    /// offered or other roles awaited.
    ChangedOptions,
}

/// A class of inputs on which two programs decide differently, with one
/// example confirmed by the engine.
#[derive(Clone, Debug, PartialEq)]
pub struct Region {
    pub change: Change,
    pub old: Decision,
    pub new: Decision,
    pub request: Json,
    pub events: Vec<Json>,
}

fn decision_named(name: &str) -> Option<Decision> {
    (1..=5)
        .filter_map(Decision::from_code)
        .find(|d| d.name() == name)
}

fn collect_strings(expr: &TExpr, texts: &mut BTreeSet<String>) {
    fn constant(value: &ConstValue, texts: &mut BTreeSet<String>) {
        match value {
            ConstValue::Str(text) => {
                texts.insert(text.clone());
            }
            ConstValue::Set(elements) => elements.iter().for_each(|e| constant(e, texts)),
            _ => {}
        }
    }
    match &expr.kind {
        TKind::Const(value) => constant(value, texts),
        TKind::Input(_) | TKind::Error => {}
        TKind::Not(a) | TKind::Neg(a) | TKind::IsEmpty(a) | TKind::Len(a) => {
            collect_strings(a, texts)
        }
        TKind::Hour(a) | TKind::Weekday(a) => collect_strings(a, texts),
        TKind::IsNone { operand, .. } => collect_strings(operand, texts),
        TKind::And(a, b)
        | TKind::Or(a, b)
        | TKind::Compare(_, a, b)
        | TKind::Coalesce(a, b)
        | TKind::Add(a, b)
        | TKind::Sub(a, b) => {
            collect_strings(a, texts);
            collect_strings(b, texts);
        }
        TKind::Member { element, container } => {
            collect_strings(element, texts);
            collect_strings(container, texts);
        }
        TKind::SetTest { set, other, .. } => {
            collect_strings(set, texts);
            collect_strings(other, texts);
        }
    }
}

fn solve(c: &mut Circuit, assumptions: &[Lit]) -> bool {
    c.solver.solve_limited(assumptions) == lbool::TRUE
}

/// Clears as many of `candidates` as the constraints allow, one at a time,
/// keeping `fixed` true, so that counterexamples carry few factors, roles
/// and set elements. Leaves
/// the solver holding a model under the returned assumptions.
fn minimize(c: &mut Circuit, fixed: &[Lit], candidates: &[Lit]) -> Vec<Lit> {
    let mut assumptions = fixed.to_vec();
    for &lit in candidates {
        if c.known(lit).is_some() {
            continue;
        }
        // A candidate already clear stays clear, so later rounds cannot set it.
        assumptions.push(!lit);
        if c.value(lit) && !solve(c, &assumptions) {
            assumptions.pop();
            assumptions.push(lit);
            solve(c, &assumptions);
        }
    }
    solve(c, &assumptions);
    assumptions
}

fn candidates(request: &request::Request) -> Vec<Lit> {
    let mut lits: Vec<Lit> = Vec::new();
    lits.extend(request.verified.iter().take(15));
    lits.extend(request.enrolled.iter().take(15));
    for role in &request.roles {
        lits.push(role.granted);
        lits.push(role.refused);
    }
    for failures in &request.failures {
        lits.extend(failures.iter().rev());
    }
    for attribute in &request.attributes {
        if let authflow_runtime::program::ValueType::Set(_) = attribute.ty {
            for word in &attribute.words {
                lits.extend(word.iter().rev());
            }
        }
    }
    lits
}

/// Proves every invariant of a checked program against its compiled form.
pub fn check_invariants(checked: &Checked, program: &Program) -> Vec<InvariantResult> {
    checked
        .invariants
        .iter()
        .map(|invariant| {
            let verdict = prove(checked, program, invariant)
                .unwrap_or_else(|reason| Verdict::Unknown { reason });
            InvariantResult {
                name: invariant.name.clone(),
                span: invariant.span,
                verdict,
            }
        })
        .collect()
}

fn prove(
    checked: &Checked,
    program: &Program,
    invariant: &crate::check::CheckedInvariant,
) -> Result<Verdict, String> {
    let flow_name = &checked
        .flows
        .get(invariant.flow as usize)
        .ok_or("the invariant names no flow")?
        .name;
    let (_, flow) = program
        .flow(flow_name)
        .ok_or_else(|| format!("flow `{flow_name}` is missing from the program"))?;
    let decision = decision_named(&invariant.decision)
        .ok_or_else(|| format!("unknown decision `{}`", invariant.decision))?;
    let mut texts: BTreeSet<String> = program.strings.iter().cloned().collect();
    if let Some(when) = &invariant.when {
        collect_strings(when, &mut texts);
    }
    collect_strings(&invariant.implies, &mut texts);
    let universe = Universe {
        texts: texts.into_iter().collect(),
    };
    let switches: Vec<String> = checked.switches.iter().map(|s| s.name.clone()).collect();
    let mut policy = Policy::new(program.clone())?;
    policy.reach_all_flows();

    for &kind in &flow.kinds {
        let mut c = Circuit::new();
        let request = request::symbolic(
            &mut c,
            &program.schema,
            kind as usize,
            &universe,
            &program.roles,
        )?;
        let record = request::record(&mut c, &request, program, &universe)?;
        let code_bits = 0xff << program::Verdict::DECISION_SHIFT;
        let outcome = kernel::outcome(&mut c, flow, &record, &[(out::VERDICT, code_bits)])?;
        let (code, _) = verdict_fields(&c, &outcome[0]);
        let expected = c.word(decision as u64);
        let decided = c.eq(&code, &expected);
        let condition = Condition {
            request: &request,
            universe: &universe,
            switches: &switches,
        };
        let when = match &invariant.when {
            Some(when) => condition.truth(&mut c, when)?,
            None => c.constant(true),
        };
        let implies = condition.truth(&mut c, &invariant.implies)?;
        let violated = c.and_all(&[decided, when, !implies]);
        c.assert(violated);
        if !solve(&mut c, &[]) {
            continue;
        }
        minimize(&mut c, &[], &candidates(&request));
        let (request_json, events) = witness::build(&c, program, flow_name, &request, &universe);
        return Ok(confirm_violation(
            &policy,
            program,
            invariant,
            decision,
            &universe,
            &switches,
            request_json,
            events,
        ));
    }
    Ok(Verdict::Proved)
}

/// Replays a counterexample and re-evaluates the invariant on the facts of
/// its final evaluation.
#[allow(clippy::too_many_arguments)]
fn confirm_violation(
    policy: &Policy,
    program: &Program,
    invariant: &crate::check::CheckedInvariant,
    decision: Decision,
    universe: &Universe,
    switches: &[String],
    request_json: Json,
    events: Vec<Json>,
) -> Verdict {
    let unconfirmed = |detail: String| Verdict::Unknown {
        reason: format!(
            "the solver found a possible violation that the engine does not reproduce ({detail}); \
             the analysis may be missing a constraint on valid input"
        ),
    };
    let (state, outcome) = match witness::replay(policy, &request_json, &events) {
        Ok(result) => result,
        Err(message) => return unconfirmed(message),
    };
    if outcome.decision != decision {
        return unconfirmed(format!("the engine decides {}", outcome.decision.name()));
    }
    let facts = match policy.facts(&state) {
        Ok(facts) => facts,
        Err(error) => return unconfirmed(error.to_string()),
    };
    let mut c = Circuit::new();
    let concrete = request::concrete(&mut c, program, &facts, universe, &program.roles);
    let condition = Condition {
        request: &concrete,
        universe,
        switches,
    };
    let when = match &invariant.when {
        Some(when) => condition.truth(&mut c, when),
        None => Ok(c.constant(true)),
    };
    let implies = condition.truth(&mut c, &invariant.implies);
    match (when.map(|l| c.known(l)), implies.map(|l| c.known(l))) {
        (Ok(Some(true)), Ok(Some(false))) => Verdict::Violated {
            request: request_json,
            events,
        },
        _ => unconfirmed("the invariant holds on the replayed input".to_string()),
    }
}

/// Describes the first difference between two schemas, ignoring record slots.
fn schema_difference(old: &Schema, new: &Schema) -> Option<String> {
    if old.enums != new.enums {
        return Some("the enums differ".to_string());
    }
    let attributes = |list: &[authflow_runtime::program::Attribute]| -> Vec<(String, authflow_runtime::program::ValueType)> {
        list.iter().map(|a| (a.name.clone(), a.ty.clone())).collect()
    };
    let old_kinds: Vec<_> = old
        .kinds
        .iter()
        .map(|k| (k.name.clone(), attributes(&k.attributes)))
        .collect();
    let new_kinds: Vec<_> = new
        .kinds
        .iter()
        .map(|k| (k.name.clone(), attributes(&k.attributes)))
        .collect();
    if old_kinds != new_kinds {
        return Some("the principal kinds or their attributes differ".to_string());
    }
    if attributes(&old.context) != attributes(&new.context) {
        return Some("the context attributes differ".to_string());
    }
    let switches = |s: &Schema| -> Vec<_> {
        s.switches
            .iter()
            .map(|s| (s.name.clone(), s.ty.clone(), s.default.clone()))
            .collect()
    };
    if switches(old) != switches(new) {
        return Some("the switches or their defaults differ".to_string());
    }
    None
}

/// The outcome words that a diff compares, per program: decision, options,
/// and one literal per role of the role universe for the awaited roles.
fn diff_outcome(
    c: &mut Circuit,
    program: &Program,
    flow: &authflow_runtime::program::Flow,
    record: &[circuit::Word],
    roles: &[String],
) -> Result<(circuit::Word, circuit::Word, Vec<Lit>), String> {
    // Every bit of the verdict but the site's.
    let mut wanted = vec![(out::VERDICT, (1 << program::Verdict::SITE_SHIFT) - 1)];
    wanted.extend((0..flow.role_words).map(|w| (out::AWAITING + w, u64::MAX)));
    let words = kernel::outcome(c, flow, record, &wanted)?;
    let awaiting = roles
        .iter()
        .map(|name| match program.roles.iter().position(|r| r == name) {
            Some(i) => words[1 + i / 64][i % 64],
            None => c.constant(false),
        })
        .collect();
    let (code, options) = verdict_fields(c, &words[0]);
    Ok((code, options, awaiting))
}

/// Splits a symbolic [`program::Verdict`] word into its decision code and its
/// options, each as a word of its own.
fn verdict_fields(c: &Circuit, verdict: &circuit::Word) -> (circuit::Word, circuit::Word) {
    let zero = c.constant(false);
    let mut code = [zero; 64];
    let decision = program::Verdict::DECISION_SHIFT as usize;
    code[..8].copy_from_slice(&verdict[decision..decision + 8]);
    let mut options = [zero; 64];
    let width = program::Verdict::OPTIONS_BITS as usize;
    options[..width].copy_from_slice(&verdict[..width]);
    (code, options)
}

/// Finds the classes of input on which `new` decides flow `flow` differently
/// from `old`: one region per pair of old and new decision, each with an
/// example confirmed by running both programs. Both programs must declare
/// the same enums, principal kinds, context and switches.
pub fn diff(old: &Program, new: &Program, flow: &str) -> Result<Vec<Region>, String> {
    if let Some(difference) = schema_difference(&old.schema, &new.schema) {
        return Err(format!(
            "cannot compare the programs: {difference}; a diff needs identical enums, principal kinds, context and switches"
        ));
    }
    let (_, old_flow) = old
        .flow(flow)
        .ok_or_else(|| format!("flow `{flow}` is not in the old program"))?;
    let (_, new_flow) = new
        .flow(flow)
        .ok_or_else(|| format!("flow `{flow}` is not in the new program"))?;
    if old_flow.kinds != new_flow.kinds {
        return Err(format!(
            "flow `{flow}` accepts other principal kinds in the two programs"
        ));
    }
    let universe = Universe {
        texts: old
            .strings
            .iter()
            .chain(&new.strings)
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let roles: Vec<String> = old
        .roles
        .iter()
        .chain(&new.roles)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut old_policy = Policy::new(old.clone())?;
    let mut new_policy = Policy::new(new.clone())?;
    old_policy.reach_all_flows();
    new_policy.reach_all_flows();

    let mut regions: Vec<Region> = Vec::new();
    for &kind in &old_flow.kinds {
        let mut c = Circuit::new();
        let request = request::symbolic(&mut c, &old.schema, kind as usize, &universe, &roles)?;
        let old_record = request::record(&mut c, &request, old, &universe)?;
        let new_record = request::record(&mut c, &request, new, &universe)?;
        let (old_decision, old_options, old_awaiting) =
            diff_outcome(&mut c, old, old_flow, &old_record, &roles)?;
        let (new_decision, new_options, new_awaiting) =
            diff_outcome(&mut c, new, new_flow, &new_record, &roles)?;

        let same_decision = c.eq(&old_decision, &new_decision);
        let same_options = c.eq(&old_options, &new_options);
        let mut same_roles = Vec::new();
        for (a, b) in old_awaiting.iter().zip(&new_awaiting) {
            same_roles.push(!c.xor(*a, *b));
        }
        let same_awaiting = c.and_all(&same_roles);
        let codes: Vec<circuit::Word> = [Decision::Challenge, Decision::Enroll, Decision::Pending]
            .iter()
            .map(|d| c.word(*d as u64))
            .collect();
        let is_challenge = c.eq(&old_decision, &codes[0]);
        let is_enroll = c.eq(&old_decision, &codes[1]);
        let offers = c.or(is_challenge, is_enroll);
        let is_pending = c.eq(&old_decision, &codes[2]);
        let options_changed = c.and(offers, !same_options);
        let roles_changed = c.and(is_pending, !same_awaiting);
        let detail_changed = c.or(options_changed, roles_changed);
        let changed_same = c.and(same_decision, detail_changed);
        let changed = c.or(!same_decision, changed_same);
        c.assert(changed);

        // Each round finds one (old, new) decision pair and then excludes it.
        while solve(&mut c, &[]) {
            let old_code = c.word_value(&old_decision);
            let new_code = c.word_value(&new_decision);
            let old_word = c.word(old_code);
            let new_word = c.word(new_code);
            let old_hit = c.eq(&old_decision, &old_word);
            let new_hit = c.eq(&new_decision, &new_word);
            let pair = c.and(old_hit, new_hit);
            minimize(&mut c, &[pair], &candidates(&request));
            let (request_json, events) = witness::build(&c, old, flow, &request, &universe);
            let (Some(before), Some(after)) =
                (Decision::from_code(old_code), Decision::from_code(new_code))
            else {
                return Err(format!(
                    "the solver found an outcome with no decision (codes {old_code} and {new_code})"
                ));
            };
            let change = if before == after {
                Change::ChangedOptions
            } else {
                match after {
                    Decision::Allow => Change::NewlyAllowed,
                    Decision::Deny => Change::NewlyDenied,
                    Decision::Challenge => Change::NewlyChallenged,
                    Decision::Enroll => Change::NewlyEnrolled,
                    Decision::Pending => Change::NewlyPending,
                }
            };
            let (_, old_outcome) = witness::replay(&old_policy, &request_json, &events)?;
            let (_, new_outcome) = witness::replay(&new_policy, &request_json, &events)?;
            let reproduced = old_outcome.decision == before
                && new_outcome.decision == after
                && (before != after
                    || old_outcome.options != new_outcome.options
                    || old_outcome.awaiting != new_outcome.awaiting);
            if !reproduced {
                return Err(format!(
                    "the solver found a difference ({} to {}) that the engine does not reproduce \
                     (it decides {} and {}); the analysis may be missing a constraint on valid input",
                    before.name(),
                    after.name(),
                    old_outcome.decision.name(),
                    new_outcome.decision.name()
                ));
            }
            if !regions.iter().any(|r| r.old == before && r.new == after) {
                regions.push(Region {
                    change,
                    old: before,
                    new: after,
                    request: request_json,
                    events,
                });
            }
            c.assert(!pair);
        }
    }
    Ok(regions)
}
